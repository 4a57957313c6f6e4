// The image service the CRI layer talks to: pull, list, status, remove, filesystem usage, pinning.
import type { ContainerdClient } from '../containerd/client.js';
import type { RegistryClient } from '../registry/client.js';
import { parseImageReference, referenceString } from '../registry/reference.js';
import { notFound, withContext } from '../../common/errors.js';
import { dirUsage, type DirUsage } from '../../common/fs-usage.js';
import type { Logger } from '../../common/logger.js';
import { ImagePuller, type PullOptions, type PullResult } from './pull.js';
import { ImageRecords, type ImageInfo } from './records.js';
import { ImageIndex } from './image-index.js';
import { followImageEvents } from './image-events.js';

export interface ImageServiceOptions {
  snapshotter: string;
  maxConcurrentDownloads: number;
  progressTimeoutMs: number;
  /** Where running pulls publish their progress for `crisp pull` (`<state>/pulls`); none when unset. */
  progressDir?: string;
  /** containerd's content store directory when it is on this host (see PullerOptions.contentRoot). */
  contentRoot?: string;
  /** See PullerOptions.localExtract. */
  localExtract?: { untar: string; snapshotRoot: string };
  pinned: string[];
  log: Logger;
}

export interface ImageView extends ImageInfo {
  pinned: boolean;
}

export interface FsUsage extends DirUsage {
  mountpoint: string;
  timestamp: number;
}

export class ImageService {
  readonly records: ImageRecords;
  /** What list/status/require answer from; kept current by containerd's image events (followEvents). */
  readonly index: ImageIndex;
  private readonly puller: ImagePuller;
  private readonly pinned: Set<string>;
  private snapshotRoot: string | undefined;
  private usageCache: { at: number; value: FsUsage } | undefined;

  constructor(
    private readonly ctd: ContainerdClient,
    registry: RegistryClient,
    private readonly opts: ImageServiceOptions,
  ) {
    this.records = new ImageRecords(ctd);
    this.index = new ImageIndex(() => this.records.list());
    this.puller = new ImagePuller(ctd, registry, this.records, {
      snapshotter: opts.snapshotter,
      maxConcurrentDownloads: opts.maxConcurrentDownloads,
      progressTimeoutMs: opts.progressTimeoutMs,
      ...(opts.progressDir !== undefined ? { progressDir: opts.progressDir } : {}),
      ...(opts.contentRoot !== undefined ? { contentRoot: opts.contentRoot } : {}),
      ...(opts.localExtract ? { localExtract: opts.localExtract } : {}),
      log: opts.log,
    });
    this.pinned = new Set(
      opts.pinned.map((r) => {
        try {
          return referenceString(parseImageReference(r));
        } catch {
          return r;
        }
      }),
    );
  }

  private view(image: ImageInfo): ImageView {
    const pinned = image.repoTags.some((t) => this.pinned.has(t)) || image.repoDigests.some((d) => this.pinned.has(d)) || this.pinned.has(image.id);
    return { ...image, pinned };
  }

  /**
   * Follow containerd's image events until the returned stop is called; until the first subscription
   * is confirmed (and while it is broken) image reads go to containerd.
   */
  followEvents(): () => Promise<void> {
    const ac = new AbortController();
    const done = followImageEvents({ ctd: this.ctd, index: this.index, log: this.opts.log, signal: ac.signal });
    return async () => {
      ac.abort();
      await done;
    };
  }

  async pull(reference: string, options: PullOptions = {}): Promise<PullResult> {
    try {
      const result = await this.puller.pull(reference, options);
      this.usageCache = undefined;
      return result;
    } finally {
      // The records changed (or may have, for a failed pull): the caller's next ImageStatus must see
      // them without waiting for the event.
      this.index.invalidate();
    }
  }

  async list(): Promise<ImageView[]> {
    return (await this.index.list()).map((i) => this.view(i));
  }

  /** The image `spec` names (id, tag or digest), or undefined. */
  async status(spec: string): Promise<ImageView | undefined> {
    const hit = await this.index.find(spec);
    return hit ? this.view(hit.image) : undefined;
  }

  /** The image for a container: NOT_FOUND naming the reference when absent. */
  async require(spec: string): Promise<ImageView> {
    const hit = await this.index.find(spec);
    if (!hit) throw notFound(`image "${spec}" not found: pull it first`);
    return this.view(hit.image);
  }

  /**
   * Remove the image `spec` names (id, tag or digest) with all its tags and digests, as the CRI contract
   * says since cri-api v0.36. Content and snapshots are released to containerd's GC. Absent images are
   * fine (idempotent).
   */
  async remove(spec: string): Promise<void> {
    const hit = await this.index.find(spec);
    if (!hit) return;
    const { image } = hit;
    const names = image.recordNames;
    try {
      for (let i = 0; i < names.length; i++) await this.records.deleteRecord(names[i]!, i === names.length - 1);
    } finally {
      this.index.invalidate();
    }
    this.usageCache = undefined;
  }

  /** Usage of the snapshotter's directory (where image layers live). */
  async fsUsage(): Promise<FsUsage> {
    if (this.usageCache && Date.now() - this.usageCache.at < 2000) return this.usageCache.value;
    const root = await this.snapshotterRoot();
    const usage = await dirUsage(root);
    const value = { ...usage, mountpoint: root, timestamp: Date.now() * 1_000_000 };
    this.usageCache = { at: Date.now(), value };
    return value;
  }

  /** Where the snapshotter keeps layers and writable layers. */
  async snapshotterRoot(): Promise<string> {
    if (this.snapshotRoot) return this.snapshotRoot;
    try {
      const res = await this.ctd.introspection.unary('Plugins', {
        filters: [`type==io.containerd.snapshotter.v1,id==${this.opts.snapshotter}`],
      });
      const root = res.plugins[0]?.exports.root;
      if (!root) throw notFound(`snapshotter ${this.opts.snapshotter} does not export its root`);
      this.snapshotRoot = root;
      return root;
    } catch (err) {
      throw withContext(`locating snapshotter ${this.opts.snapshotter}`, err);
    }
  }
}
