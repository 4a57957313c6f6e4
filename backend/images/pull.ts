// Image pull into containerd: resolve (registry client) → manifests and config into the content store
// → layers fetched concurrently, each unpacked as soon as it and its parent are ready → image records.
// A lease holds everything until the records exist; identical pulls in flight share one download.
//
// Resume: each blob downloads under a stable ingest ref owned by its own short-lived lease (24 h), not by
// the pull's lease, so an interrupted or stalled download survives the failed pull and the next pull
// continues from the bytes containerd already holds (a Range request).
import { randomBytes } from 'node:crypto';
import type { ContainerdClient } from '../containerd/client.js';
import { ContainerdClient as Ctd } from '../containerd/client.js';
import type { RegistryClient } from '../registry/client.js';
import type { RegistryAuth } from '../registry/auth.js';
import type { Descriptor } from '../registry/oci.js';
import { digestReference, referenceString, repositoryName, tagReference, parseImageReference, type ImageReference } from '../registry/reference.js';
import type { CallOptions } from '../../common/grpc-client.js';
import { CrispError, withContext, errorMessage, isAlreadyExists, isCrispError, isNotFound } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { traced } from '../../common/tracing.js';
import { ContentStore } from './content-store.js';
import { IngestFiles } from './ingest-files.js';
import { BlobFetcher, type FetchPool } from './blob-fetcher.js';
import { Unpacker, chainIds } from './unpack.js';
import { LayerExtractor, type StagedLayer } from './layer-extract.js';
import { Slots } from '../../common/slots.js';
import { ImageRecords, CRI_MANAGED_LABEL } from './records.js';
import { PullProgressFile, RateMeter, pullProgressPath, type LayerProgress, type PullProgress } from './progress.js';

export type { PullProgress } from './progress.js';

export interface PullOptions {
  auth?: RegistryAuth | null;
  onProgress?: (p: PullProgress) => void;
}

export interface PullerOptions {
  snapshotter: string;
  maxConcurrentDownloads: number;
  /** A pull whose downloads make no byte progress for this long is cancelled. */
  progressTimeoutMs: number;
  /** Where running pulls publish their progress (see progress.ts); none when unset. */
  progressDir?: string;
  /**
   * containerd's content store directory when it is on this host (the embedded containerd): layer bytes
   * are then written to the ingest files directly (see ingest-files.ts); otherwise over the content API.
   */
  contentRoot?: string;
  /**
   * With a local content store: download layers on worker threads (blob-fetcher.ts), a pool per pull of
   * at most maxConcurrentDownloads. Default true; false keeps every byte on this thread.
   */
  downloadWorkers?: boolean;
  /**
   * With a local content store and the overlayfs snapshotter: crisp extracts layers itself with
   * crisp-untar (layer-extract.ts) instead of asking containerd's differ; unset: the differ.
   */
  localExtract?: { untar: string; snapshotRoot: string };
  /** The worker launcher (tests pass one with a stand-in worker). */
  blobFetcher?: BlobFetcher;
  log: Logger;
}

export interface PullResult {
  /** The image id: the config digest. */
  id: string;
  /** The reference's repo digest ("repo@sha256:…"). */
  repoDigest: string;
}

const TICK_MS = 500;
const DEBUG_EVERY_MS = 2000;
const INFO_EVERY_MS = 10_000;
const DOWNLOAD_LEASE_TTL_MS = 24 * 3600 * 1000;
const FOLLOW_IDLE_EXTRA_MS = 10_000;

/** Run `fn` over `items` with at most `limit` at once, in order of start; stops starting new ones once aborted. */
async function forEachLimited<T>(items: readonly T[], limit: number, signal: AbortSignal, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && !signal.aborted) {
      const i = next++;
      await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
}

/** The stable ingest ref of a blob: the same on every attempt, so a retry finds the partial data. */
export function ingestRef(digest: string): string {
  return `crisp-blob-${digest.replace(':', '-')}`;
}

/** The lease that owns a blob's ingest while it downloads (and after an interrupted attempt). */
export function downloadLeaseId(digest: string): string {
  return `crisp-download-${digest.replace(':', '-')}`;
}

interface DownloadProgress {
  start: () => void;
  /** Bytes an earlier attempt left in the store. */
  resumed: (n: number) => void;
  /** The bytes go into this local ingest file (a follower may extract it meanwhile). */
  filling: (file: string) => void;
  bytes: (n: number) => void;
  /** Every byte is in; containerd has yet to verify and commit them. */
  received: () => void;
  end: () => void;
}

/** Byte counts of one pull, watched by the progress tick. */
class PullMeter {
  done = 0;
  /** Part of `done` that an earlier attempt downloaded: not counted in the rate. */
  resumed = 0;
  /** Bytes received from the registry by this pull. */
  received = 0;
  total = 0;
  layers: LayerProgress[] = [];
  /** Downloads in flight: a stall only counts while something should be arriving. */
  active = new Set<string>();
  lastProgress = Date.now();
  readonly rate = new RateMeter();

  constructor(
    readonly reference: string,
    readonly startedAt: number,
  ) {
    // The start as the first sample: early ticks report the rate since the start rather than 0.
    this.rate.add(startedAt, 0);
  }

  bytes(i: number, n: number): void {
    this.layers[i]!.done += n;
    this.done += n;
    this.received += n;
    this.lastProgress = Date.now();
  }

  resume(i: number, n: number): void {
    this.layers[i]!.done += n;
    this.done += n;
    this.resumed += n;
  }

  snapshot(now: number): PullProgress {
    return {
      reference: this.reference,
      done: this.done,
      total: this.total,
      received: this.received,
      layers: this.layers.map((l) => ({ ...l })),
      bytesPerSecond: this.rate.rate(),
      startedAt: this.startedAt,
      updatedAt: now,
    };
  }
}

export class ImagePuller {
  private readonly content: ContentStore;
  private readonly unpacker: Unpacker;
  /** In-flight pulls by normalised reference; and blob downloads by digest, shared across pulls. */
  private readonly pulls = new Map<string, Promise<PullResult>>();
  private readonly blobs = new Map<string, Promise<void>>();
  /** Downloads on worker threads, into local ingest files; unset: on this thread. */
  private readonly fetcher: BlobFetcher | undefined;
  /** crisp's own extraction (embedded containerd, overlayfs); unset: containerd's differ for every layer. */
  private readonly extractor: LayerExtractor | undefined;
  /** Layer extractions running at once, across pulls. */
  private readonly extractSlots: Slots;

  constructor(
    private readonly ctd: ContainerdClient,
    private readonly registry: RegistryClient,
    private readonly records: ImageRecords,
    private readonly opts: PullerOptions,
  ) {
    this.content = new ContentStore(ctd, opts.contentRoot !== undefined ? new IngestFiles(opts.contentRoot, ctd.options.namespace) : undefined);
    if (opts.contentRoot !== undefined && opts.downloadWorkers !== false) this.fetcher = opts.blobFetcher ?? new BlobFetcher();
    this.unpacker = new Unpacker(ctd, opts.snapshotter);
    if (opts.localExtract && opts.contentRoot !== undefined) this.extractor = new LayerExtractor({ ...opts.localExtract, contentRoot: opts.contentRoot });
    this.extractSlots = new Slots(opts.maxConcurrentDownloads);
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
    const meter = new PullMeter(name, started);
    const log = this.opts.log;
    const file = this.opts.progressDir
      ? new PullProgressFile(pullProgressPath(this.opts.progressDir, name), (err) => log.debug({ ref: name, err: errorMessage(err) }, 'pull progress file'))
      : undefined;
    let lastDebug = started;
    let lastInfo = started;
    const report = (now: number) => {
      meter.rate.add(now, meter.done - meter.resumed);
      const p = meter.snapshot(now);
      file?.write(p);
      options.onProgress?.(p);
      return p;
    };
    // The pull's download workers, started on first use and ended with the pull.
    let pool: FetchPool | undefined;
    const workers = this.fetcher ? () => (pool ??= this.fetcher!.pool(this.opts.maxConcurrentDownloads)) : undefined;
    const tick = setInterval(() => {
      const now = Date.now();
      // Unpacking and metadata writes move no bytes; only downloads in flight can stall.
      if (meter.active.size === 0) meter.lastProgress = now;
      else if (now - meter.lastProgress > this.opts.progressTimeoutMs && !abort.signal.aborted) {
        const stalled = meter.layers.filter((l) => meter.active.has(l.digest)).map((l) => `${l.digest} at ${l.done} of ${l.total} bytes`);
        const seconds = this.opts.progressTimeoutMs / 1000;
        abort.abort(new CrispError('DEADLINE_EXCEEDED', `no bytes received for ${seconds} s (image_pull_progress_timeout = ${seconds}); stalled: ${stalled.join(', ') || 'blob requests'}`));
      }
      const p = report(now);
      if (now - lastInfo >= INFO_EVERY_MS) {
        lastInfo = lastDebug = now;
        log.info({ ref: name, done: p.done, total: p.total, bytesPerSecond: p.bytesPerSecond, s: Math.round((now - started) / 1000) }, 'pull progress');
      } else if (now - lastDebug >= DEBUG_EVERY_MS) {
        lastDebug = now;
        log.debug({ ref: name, done: p.done, total: p.total, bytesPerSecond: p.bytesPerSecond }, 'pull progress');
      }
    }, Math.min(TICK_MS, this.opts.progressTimeoutMs));
    tick.unref();
    try {
      const image = await traced('pull.resolve', { 'cri.image': name }, () => this.registry.resolveImage(ref, { auth: options.auth ?? null, signal: abort.signal }));
      const diffIds = image.config.rootfs.diff_ids;
      const chains = chainIds(diffIds);
      const layers = image.manifest.layers;
      const source = `containerd.io/distribution.source.${ref.domain}`;
      meter.layers = layers.map((l) => ({ digest: l.digest, done: 0, total: l.size }));
      meter.total = layers.reduce((n, l) => n + l.size, 0);

      try {
        const downloaded = layers.map(() => deferred<void>());
        // The ingest file each layer's download writes, once it starts writing one.
        const filling = layers.map(() => deferred<string>());
        // A download holds its slot until its bytes are in, not through containerd's verify and commit: the
        // next layer's bytes can flow meanwhile. `fetches` are the whole downloads.
        const fetches: Promise<void>[] = [];
        const downloads = forEachLimited(layers, this.opts.maxConcurrentDownloads, abort.signal, async (layer, i) => {
          let received!: () => void;
          const slot = new Promise<void>((res) => (received = res));
          const fetch = (async () => {
            try {
              const spanned = { 'oci.layer.digest': layer.digest, 'oci.layer.size': layer.size, 'oci.layer.index': i };
              await traced('pull.fetch', spanned, () => this.fetchBlob(ref, layer, { 'containerd.io/uncompressed': diffIds[i]!, [source]: ref.path }, leaseId, abort.signal, options.auth, {
                start: () => meter.active.add(layer.digest),
                resumed: (n) => meter.resume(i, n),
                filling: (file) => filling[i]!.resolve(file),
                bytes: (n) => meter.bytes(i, n),
                received,
                end: () => meter.active.delete(layer.digest),
              }, workers));
              meter.done += layer.size - meter.layers[i]!.done;
              meter.layers[i]!.done = layer.size;
              downloaded[i]!.resolve();
            } catch (err) {
              downloaded[i]!.reject(err);
              // One failed layer fails the pull: stop the others now rather than after the unpack loop gets there.
              if (!abort.signal.aborted) abort.abort(err);
              throw err;
            }
          })();
          fetch.catch(() => undefined);
          fetches.push(fetch);
          await Promise.race([slot, fetch]);
        });
        downloads.catch(() => undefined);
        // crisp's own extraction: each layer as soon as its blob is in, in parallel (layer-extract.ts).
        const staged = await this.stageLayers(layers, diffIds, chains, downloaded.map((d) => d.p), filling.map((f) => f.p), callOpts, abort);
        try {
          // Into snapshots in order, each layer as soon as it is in the store (and extracted).
          for (let i = 0; i < layers.length; i++) {
            await Promise.race([downloaded[i]!.p, abortPromise(abort.signal)]);
            const tree = await Promise.race([staged[i]!, abortPromise(abort.signal)]);
            await traced('pull.unpack', { 'oci.layer.digest': layers[i]!.digest, 'oci.layer.index': i }, () =>
              this.unpacker.applyLayer(layers[i]!, diffIds[i]!, chains[i]!, i === 0 ? '' : chains[i - 1]!, callOpts, tree, leaseId),
            );
          }
          await downloads;
          await Promise.all(fetches);
        } finally {
          // Trees not moved into a snapshot (a failed pull, a chain another pull committed) go; a placed
          // tree is gone from the staging dir already.
          await Promise.all(staged.map((p) => p.then((t) => t?.discard(), () => undefined)));
        }
      } catch (err) {
        // The first cause wins: a stall or the layer that failed, not the cancellations that followed.
        const cause: unknown = abort.signal.aborted ? abort.signal.reason : err;
        if (!abort.signal.aborted) abort.abort(err);
        throw cause;
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
      log.info({ ref: name, id, repo: repositoryName(ref), layers: layers.length, bytes: meter.done, ms: Date.now() - started }, 'image pulled');
      report(Date.now());
      return { id, repoDigest };
    } catch (err) {
      throw withContext(`pulling "${name}"`, err);
    } finally {
      clearInterval(tick);
      await pool?.close();
      await file?.close();
      await this.ctd.leases.unary('Delete', { id: leaseId, sync: false }).catch((err: unknown) => {
        log.warn({ lease: leaseId, err: errorMessage(err) }, 'deleting pull lease failed');
      });
    }
  }

  /**
   * Start extracting every layer crisp can extract itself: while its download writes the ingest file
   * (`filling[i]`, crisp-untar following the file), else once its blob is in (`downloaded[i]`), at most
   * maxConcurrentDownloads of the latter at once. Followers take no slot: there is one per download in
   * flight. Resolves to undefined for layers containerd applies or that are unpacked already. Every
   * promise settles even when the pull fails, so the caller can discard.
   */
  private async stageLayers(
    layers: readonly Descriptor[],
    diffIds: readonly string[],
    chains: readonly string[],
    downloaded: readonly Promise<void>[],
    filling: readonly Promise<string>[],
    opts: CallOptions,
    abort: AbortController,
  ): Promise<Promise<StagedLayer | undefined>[]> {
    const extractor = this.extractor;
    if (!extractor || !(await extractor.usable())) return layers.map(() => Promise.resolve(undefined));
    return layers.map((layer, i) => {
      if (!extractor.handles(layer)) return Promise.resolve(undefined);
      // Raced with the abort: a layer whose download never started (the pull failed first) never resolves.
      const started = Promise.race([downloaded[i]!.then(() => undefined), filling[i]!, abortPromise(abort.signal)]);
      const p = started.then(async (file) => {
        if (file !== undefined) {
          const tree = await this.extractFollowing(extractor, layer, i, diffIds[i]!, chains[i]!, file, opts, abort.signal);
          if (tree !== 'again') return tree;
          await Promise.race([downloaded[i]!, abortPromise(abort.signal)]);
        }
        return this.extractSlots.run(async () => {
          if (await this.unpacker.exists(chains[i]!, opts)) return undefined;
          const t0 = Date.now();
          try {
            const tree = await traced('pull.extract', { 'oci.layer.digest': layer.digest, 'oci.layer.index': i }, () => extractor.extract(layer, diffIds[i]!));
            this.opts.log.debug({ digest: layer.digest, size: layer.size, ms: Date.now() - t0 }, 'layer extracted');
            return tree;
          } catch (err) {
            // A diff id that does not match fails with any unpacker. Anything else crisp-untar refuses
            // (a sparse file, a tar dialect it does not read) is left to containerd's differ, which then
            // succeeds or fails on its own terms: crisp's unpack never refuses what containerd's accepts.
            if (isCrispError(err, 'FAILED_PRECONDITION')) throw err;
            this.opts.log.warn({ digest: layer.digest, err: errorMessage(err) }, "crisp-untar did not extract the layer; containerd's differ applies it");
            return undefined;
          }
        });
      });
      // A failed extraction fails the pull now, not when the in-order loop reaches its layer.
      p.catch((err: unknown) => {
        if (!abort.signal.aborted) abort.abort(err);
      });
      return p;
    });
  }

  /**
   * Extract a layer from the ingest file its download is writing. 'again' when that did not work out for
   * any reason but the pull's end (the download started over, a tar dialect crisp-untar refuses, a diff
   * id that does not match what was read): the committed blob is then extracted as usual, which decides.
   */
  private async extractFollowing(
    extractor: LayerExtractor,
    layer: Descriptor,
    index: number,
    diffId: string,
    chain: string,
    file: string,
    opts: CallOptions,
    signal: AbortSignal,
  ): Promise<StagedLayer | undefined | 'again'> {
    if (await this.unpacker.exists(chain, opts)) return undefined;
    const t0 = Date.now();
    try {
      const tree = await traced('pull.extract', { 'oci.layer.digest': layer.digest, 'oci.layer.index': index, 'crisp.extract.following': true }, () =>
        // Longer than the pull's own stall limit, whose error then names the stalled download.
        extractor.extract(layer, diffId, { file, idleMs: this.opts.progressTimeoutMs + FOLLOW_IDLE_EXTRA_MS, signal }),
      );
      this.opts.log.debug({ digest: layer.digest, size: layer.size, ms: Date.now() - t0 }, 'layer extracted while downloading');
      return tree;
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      this.opts.log.debug({ digest: layer.digest, err: errorMessage(err) }, 'extracting while downloading did not work out; extracting the committed blob');
      return 'again';
    }
  }

  /**
   * Get one blob into the content store, held by the pull's lease. A download already running for the
   * same digest (another pull) is joined rather than repeated.
   */
  private async fetchBlob(
    ref: ImageReference,
    desc: Descriptor,
    labels: Record<string, string>,
    pullLease: string,
    signal: AbortSignal,
    auth: RegistryAuth | null | undefined,
    progress: DownloadProgress,
    workers: (() => FetchPool) | undefined,
  ): Promise<void> {
    let shared = this.blobs.get(desc.digest);
    if (!shared) {
      shared = (async () => {
        // Hold the blob under the pull's lease before looking, so GC cannot take it in between; a
        // blob collected anyway (it was unreferenced when we looked) is simply downloaded.
        await this.leaseContent(pullLease, desc.digest);
        if (await this.content.info(desc.digest)) {
          try {
            await this.content.setLabels(desc.digest, labels);
            return;
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
        }
        await this.download(ref, desc, labels, pullLease, signal, auth, progress, workers);
      })().finally(() => this.blobs.delete(desc.digest));
      this.blobs.set(desc.digest, shared);
    }
    await shared;
    await this.leaseContent(pullLease, desc.digest);
  }

  /**
   * Download into the content store under the blob's own lease, then hand the blob to the pull's lease.
   * On failure the partial data stays (with its lease) for the next attempt, unless it was bad.
   */
  private async download(
    ref: ImageReference,
    desc: Descriptor,
    labels: Record<string, string>,
    pullLease: string,
    signal: AbortSignal,
    auth: RegistryAuth | null | undefined,
    progress: DownloadProgress,
    workers: (() => FetchPool) | undefined,
  ): Promise<void> {
    const lease = downloadLeaseId(desc.digest);
    const iref = ingestRef(desc.digest);
    await this.createDownloadLease(lease);
    progress.start();
    try {
      let resumedAt = 0;
      const resumeFrom = (offset: number) => {
        // A fill that fell back to `open` reports the same offset once.
        if (offset > resumedAt) progress.resumed(offset - resumedAt);
        resumedAt = offset;
      };
      const verifiedBy = await this.content.write({
        ref: iref,
        digest: desc.digest,
        size: desc.size,
        open: async (offset) => {
          resumeFrom(offset);
          const blob = await this.registry.fetchBlob(ref, desc, { auth: auth ?? null, signal, offset });
          return { stream: blob.stream, origin: blob.endpoint || ref.domain };
        },
        onReceived: progress.received,
        ...(workers
          ? {
              fill: async (file: string, offset: number) => {
                resumeFrom(offset);
                progress.filling(file);
                const request = await this.registry.blobRequest(ref, desc, { auth: auth ?? null, offset });
                if (!request) return false;
                return workers().fetch({ request, file, offset, size: desc.size, digest: desc.digest }, signal, progress.bytes);
              },
            }
          : {}),
        labels,
        opts: { ...Ctd.withLease(lease), signal },
        onBytes: progress.bytes,
      });
      if (resumedAt > 0) this.opts.log.info({ digest: desc.digest, offset: resumedAt, size: desc.size }, 'blob download resumed');
      this.opts.log.debug({ digest: desc.digest, size: desc.size, verifiedBy }, 'blob committed');
    } catch (err) {
      // With no ingest left (bad content was discarded) the lease has nothing to keep.
      const kept = await this.content.ingestOffset(iref).catch(() => undefined);
      if (kept === undefined) await this.deleteLease(lease);
      else this.opts.log.debug({ digest: desc.digest, offset: kept, size: desc.size, err: errorMessage(err) }, 'download interrupted; partial blob kept for resume');
      throw err;
    } finally {
      progress.end();
    }
    // The download lease protects the blob until the pull's lease holds it.
    await this.leaseContent(pullLease, desc.digest);
    await this.deleteLease(lease);
  }

  private async createDownloadLease(id: string): Promise<void> {
    const expire = new Date(Date.now() + DOWNLOAD_LEASE_TTL_MS).toISOString();
    try {
      await this.ctd.leases.unary('Create', { id, labels: { 'containerd.io/gc.expire': expire } });
    } catch (err) {
      if (!isAlreadyExists(err)) throw withContext(`creating download lease ${id}`, err);
    }
  }

  private async leaseContent(lease: string, digest: string): Promise<void> {
    try {
      await this.ctd.leases.unary('AddResource', { id: lease, resource: { id: digest, type: 'content' } });
    } catch (err) {
      throw withContext(`adding ${digest} to lease ${lease}`, err);
    }
  }

  private async deleteLease(id: string): Promise<void> {
    await this.ctd.leases.unary('Delete', { id, sync: false }).catch((err: unknown) => {
      if (!isNotFound(err)) this.opts.log.warn({ lease: id, err: errorMessage(err) }, 'deleting lease failed');
    });
  }
}

/** A promise with its settlers; a rejection nobody awaits yet is not reported as unhandled. */
function deferred<T>(): { p: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const p = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  p.catch(() => undefined);
  return { p, resolve, reject };
}

function abortPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}
