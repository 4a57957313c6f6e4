// Layers → snapshots: Prepare on the parent chain, fill the snapshot (a tree crisp extracted ahead, see
// layer-extract.ts, or containerd's Diff.Apply of the blob), check the diff id against the image
// config, Commit under the chain id. Layers already unpacked are skipped, so a shared base is unpacked once.
import { createHash, randomBytes } from 'node:crypto';
import type { ContainerdClient } from '../containerd/client.js';
import type { CallOptions } from '../../common/grpc-client.js';
import { isNotFound, isAlreadyExists, withContext, CrispError } from '../../common/errors.js';
import type { Descriptor } from '../registry/oci.js';
import type { StagedLayer } from './layer-extract.js';

/** The error for a layer whose unpacked content is not what the image config says, whoever unpacked it. */
export function diffIdMismatch(layer: Descriptor, unpacked: string | undefined, diffId: string): CrispError {
  return new CrispError('FAILED_PRECONDITION', `layer ${layer.digest}: unpacked diff id ${unpacked} does not match the image config's ${diffId}`);
}

/** OCI chain ids: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diff of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? diff : `sha256:${createHash('sha256').update(`${prev} ${diff}`).digest('hex')}`);
  }
  return out;
}

export class Unpacker {
  constructor(
    private readonly ctd: ContainerdClient,
    private readonly snapshotter: string,
  ) {}

  /**
   * Whether the chain's snapshot is committed. With `lease`, the snapshot is added to it first: one a
   * failed pull left unreferenced would otherwise be free for GC between this look and the Prepare of
   * the layer above it ("parent snapshot does not exist").
   */
  async exists(chainId: string, opts: CallOptions = {}, lease?: string): Promise<boolean> {
    if (lease) {
      try {
        await this.ctd.leases.unary('AddResource', { id: lease, resource: { id: chainId, type: `snapshots/${this.snapshotter}` } });
      } catch (err) {
        throw withContext(`adding snapshot ${chainId} to lease ${lease}`, err);
      }
    }
    try {
      await this.ctd.snapshots.unary('Stat', { snapshotter: this.snapshotter, key: chainId }, opts);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw withContext(`snapshot stat ${chainId}`, err);
    }
  }

  /**
   * Unpack one layer whose parent chain is already committed: from `staged` (extracted and verified by
   * crisp) when given, else by containerd's differ.
   */
  async applyLayer(layer: Descriptor, diffId: string, chainId: string, parent: string, opts: CallOptions = {}, staged?: StagedLayer, lease?: string): Promise<void> {
    if (await this.exists(chainId, opts, lease)) return;
    const key = `extract-${randomBytes(6).toString('hex')}-${chainId}`;
    let prepared = false;
    try {
      const prep = await this.ctd.snapshots.unary(
        'Prepare',
        { snapshotter: this.snapshotter, key, parent, labels: { 'containerd.io/snapshot.ref': chainId } },
        opts,
      );
      prepared = true;
      if (staged) {
        await staged.place(prep.mounts);
      } else {
        const applied = await this.ctd.diff.unary(
          'Apply',
          { diff: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, mounts: prep.mounts },
          opts,
        );
        if (applied.applied?.digest !== diffId) throw diffIdMismatch(layer, applied.applied?.digest, diffId);
      }
      try {
        await this.ctd.snapshots.unary('Commit', { snapshotter: this.snapshotter, name: chainId, key, labels: { 'containerd.io/snapshot.ref': chainId } }, opts);
        prepared = false;
      } catch (err) {
        // Another pull committed the same chain meanwhile: ours is redundant.
        if (!isAlreadyExists(err)) throw err;
      }
    } catch (err) {
      throw withContext(`unpacking layer ${layer.digest}`, err);
    } finally {
      if (prepared) {
        await this.ctd.snapshots.unary('Remove', { snapshotter: this.snapshotter, key }, opts).catch(() => undefined);
      }
    }
  }
}
