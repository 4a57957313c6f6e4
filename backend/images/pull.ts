// Image pull into containerd: resolve (registry client) → manifests and config into the content store
// → layers fetched concurrently, each unpacked as soon as it and its parent are ready → image records.
// A lease holds everything until the records exist; identical pulls in flight share one download.
import { randomBytes } from 'node:crypto';
import type { ContainerdClient } from '../containerd/client.js';
import { ContainerdClient as Ctd } from '../containerd/client.js';
import type { RegistryClient } from '../registry/client.js';
import type { RegistryAuth } from '../registry/auth.js';
import type { Descriptor } from '../registry/oci.js';
import { digestReference, referenceString, repositoryName, tagReference, parseImageReference, type ImageReference } from '../registry/reference.js';
import type { CallOptions } from '../../common/grpc-client.js';
import { CrispError, withContext, errorMessage, isCrispError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { ContentStore } from './content-store.js';
import { Unpacker, chainIds } from './unpack.js';
import { ImageRecords, CRI_MANAGED_LABEL } from './records.js';

export interface PullProgress {
  reference: string;
  /** Bytes done / total over all layers and configs. */
  done: number;
  total: number;
  layers: { digest: string; done: number; total: number }[];
  bytesPerSecond: number;
}

export interface PullOptions {
  auth?: RegistryAuth | null;
  onProgress?: (p: PullProgress) => void;
}

export interface PullerOptions {
  snapshotter: string;
  maxConcurrentDownloads: number;
  /** A pull making no byte progress for this long is cancelled. */
  progressTimeoutMs: number;
  log: Logger;
}

export interface PullResult {
  /** The image id: the config digest. */
  id: string;
  /** The reference's repo digest ("repo@sha256:…"). */
  repoDigest: string;
}

/** Run `fn` over `items` with at most `limit` at once, in order of start. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
}

export class ImagePuller {
  private readonly content: ContentStore;
  private readonly unpacker: Unpacker;
  /** In-flight pulls by normalised reference; and blob downloads by digest, shared across pulls. */
  private readonly pulls = new Map<string, Promise<PullResult>>();
  private readonly blobs = new Map<string, Promise<void>>();

  constructor(
    private readonly ctd: ContainerdClient,
    private readonly registry: RegistryClient,
    private readonly records: ImageRecords,
    private readonly opts: PullerOptions,
  ) {
    this.content = new ContentStore(ctd);
    this.unpacker = new Unpacker(ctd, opts.snapshotter);
  }

  pull(reference: string, options: PullOptions = {}): Promise<PullResult> {
    const ref = parseImageReference(reference);
    const key = referenceString(ref);
    const running = this.pulls.get(key);
    if (running) return running;
    const p = this.pullOnce(ref, options).finally(() => this.pulls.delete(key));
    this.pulls.set(key, p);
    return p;
  }

  private async pullOnce(ref: ImageReference, options: PullOptions): Promise<PullResult> {
    const name = referenceString(ref);
    const started = Date.now();
    const leaseId = `crisp-pull-${randomBytes(8).toString('hex')}`;
    const expire = new Date(Date.now() + 24 * 3600 * 1000).toISOString();
    await this.ctd.leases.unary('Create', { id: leaseId, labels: { 'containerd.io/gc.expire': expire } });
    const callOpts: CallOptions = Ctd.withLease(leaseId);
    const abort = new AbortController();
    try {
      const image = await this.registry.resolveImage(ref, { auth: options.auth ?? null, signal: abort.signal });
      const diffIds = image.config.rootfs.diff_ids;
      const chains = chainIds(diffIds);
      const layers = image.manifest.layers;
      const source = `containerd.io/distribution.source.${ref.domain}`;

      // Progress: bytes moved, watched by a stall timer.
      const perLayer = layers.map((l) => ({ digest: l.digest, done: 0, total: l.size }));
      let done = 0;
      let lastProgress = Date.now();
      const total = layers.reduce((n, l) => n + l.size, 0);
      const report = () =>
        options.onProgress?.({
          reference: name,
          done,
          total,
          layers: perLayer,
          bytesPerSecond: Math.round((done / Math.max(1, Date.now() - started)) * 1000),
        });
      const stall = setInterval(() => {
        if (Date.now() - lastProgress > this.opts.progressTimeoutMs) {
          abort.abort(
            new CrispError('DEADLINE_EXCEEDED', `pull of "${name}" made no progress for ${Math.round(this.opts.progressTimeoutMs / 1000)} s (image_pull_progress_timeout)`),
          );
        }
        this.opts.log.debug({ ref: name, done, total }, 'pull progress');
        report();
      }, Math.min(1000, this.opts.progressTimeoutMs));
      stall.unref();

      try {
        // Layers first (GC labels on parents need nothing to exist; the lease protects the rest).
        const downloaded = layers.map(() => {
          let resolve!: () => void;
          let reject!: (e: unknown) => void;
          const p = new Promise<void>((res, rej) => {
            resolve = res;
            reject = rej;
          });
          p.catch(() => undefined);
          return { p, resolve, reject };
        });
        const downloads = forEachLimited(layers, this.opts.maxConcurrentDownloads, async (layer, i) => {
          try {
            await this.fetchBlob(ref, layer, { 'containerd.io/uncompressed': diffIds[i]!, [source]: ref.path }, callOpts, abort.signal, options.auth, (n) => {
              perLayer[i]!.done += n;
              done += n;
              lastProgress = Date.now();
            });
            perLayer[i]!.done = layer.size;
            downloaded[i]!.resolve();
          } catch (err) {
            downloaded[i]!.reject(err);
            throw err;
          }
        });
        downloads.catch(() => undefined);
        // Unpack in order, each layer as soon as it is in the store.
        for (let i = 0; i < layers.length; i++) {
          await Promise.race([downloaded[i]!.p, abortPromise(abort.signal)]);
          lastProgress = Date.now();
          await this.unpacker.applyLayer(layers[i]!, diffIds[i]!, chains[i]!, i === 0 ? '' : chains[i - 1]!, callOpts);
        }
        await downloads;
      } catch (err) {
        if (abort.signal.aborted && isCrispError(abort.signal.reason)) throw abort.signal.reason;
        abort.abort(err);
        throw err;
      } finally {
        clearInterval(stall);
      }

      // Metadata blobs with the labels containerd's GC follows: index → manifest → config + layers,
      // config → the unpacked snapshot chain.
      const top = chains[chains.length - 1];
      await this.content.writeBuffer(
        image.configDescriptor.digest,
        image.configBytes,
        top ? { [`containerd.io/gc.ref.snapshot.${this.opts.snapshotter}`]: top } : {},
        callOpts,
      );
      const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': image.configDescriptor.digest };
      layers.forEach((l, i) => (manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest));
      await this.content.writeBuffer(image.manifestDescriptor.digest, image.manifestBytes, manifestLabels, callOpts);
      if (image.target.digest !== image.manifestDescriptor.digest) {
        await this.content.writeBuffer(image.target.digest, image.targetBytes, { 'containerd.io/gc.ref.content.m.0': image.manifestDescriptor.digest }, callOpts);
      }

      const id = image.configDescriptor.digest;
      const repoDigest = digestReference(ref, image.target.digest);
      const target = { mediaType: image.target.mediaType, digest: image.target.digest, size: image.target.size };
      const names = [tagReference(ref), repoDigest, id].filter((n): n is string => n !== undefined);
      for (const n of names) await this.records.put(n, target, { [CRI_MANAGED_LABEL]: 'managed' });
      this.opts.log.info(
        { ref: name, id, repo: repositoryName(ref), layers: layers.length, bytes: done, ms: Date.now() - started },
        'image pulled',
      );
      report();
      return { id, repoDigest };
    } catch (err) {
      throw withContext(`pulling "${name}"`, err);
    } finally {
      await this.ctd.leases.unary('Delete', { id: leaseId, sync: false }).catch((err: unknown) => {
        this.opts.log.warn({ lease: leaseId, err: errorMessage(err) }, 'deleting pull lease failed');
      });
    }
  }

  /** Download one blob into the content store unless it is there; shared by concurrent pulls. */
  private fetchBlob(
    ref: ImageReference,
    desc: Descriptor,
    labels: Record<string, string>,
    callOpts: CallOptions,
    signal: AbortSignal,
    auth: RegistryAuth | null | undefined,
    onBytes: (n: number) => void,
  ): Promise<void> {
    const running = this.blobs.get(desc.digest);
    if (running) return running;
    const p = (async () => {
      if (await this.content.info(desc.digest)) {
        await this.content.setLabels(desc.digest, labels);
        return;
      }
      // A stable ref per digest, so an interrupted download resumes where it stopped.
      const ingestRef = `crisp-blob-${desc.digest.replace(':', '-')}`;
      const offset = await this.content.resumeOffset(ingestRef, callOpts);
      const blob = await this.registry.fetchBlob(ref, desc, { auth: auth ?? null, signal, offset });
      if (offset > 0) onBytes(offset);
      await this.content.write({ ref: ingestRef, digest: desc.digest, size: desc.size, offset, source: blob.stream, labels, opts: { ...callOpts, signal }, onBytes });
    })().finally(() => this.blobs.delete(desc.digest));
    this.blobs.set(desc.digest, p);
    return p;
  }
}

function abortPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}
