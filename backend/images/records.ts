// Image records in containerd (name → target descriptor) and the image view CRI needs: one image per
// config digest with its tags, repo digests, size and config, read back from the content store.
import type { ContainerdClient } from '../containerd/client.js';
import type { Descriptor as CtdDescriptor } from '../../gen/containerd.types.js';
import { isNotFound, withContext, isAlreadyExists, notFound } from '../../common/errors.js';
import { ContentStore } from './content-store.js';
import { chainIds } from './unpack.js';
import { isIndexMediaType, type ImageConfig, type ImageIndex, type ImageManifest } from '../registry/oci.js';
import { pickPlatform } from '../registry/platform.js';
import { findImage, type ImageLookup } from './image-index.js';

export const CRI_MANAGED_LABEL = 'io.cri-containerd.image';

export interface ImageInfo {
  /** Config digest. */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Manifest + config + compressed layers, in bytes. */
  size: number;
  config: ImageConfig;
  configDigest: string;
  manifestDigest: string;
  /** Snapshot chain id of the top layer (the parent of a container's rootfs). */
  topChainId: string;
  chainIds: string[];
  /** Names of the containerd records that point at this image. */
  recordNames: string[];
}

interface Resolved {
  manifestDigest: string;
  manifest: ImageManifest;
  manifestSize: number;
  configDigest: string;
  config: ImageConfig;
}

const ID_RE = /^(sha256:)?([a-f0-9]{64})$/;

export class ImageRecords {
  private readonly content: ContentStore;
  /** target digest → what it resolves to; content is immutable, so this never goes stale (list() drops removed ones). */
  private readonly resolved = new Map<string, Resolved>();

  constructor(private readonly ctd: ContainerdClient) {
    this.content = new ContentStore(ctd);
  }

  async put(name: string, target: CtdDescriptor | { mediaType: string; digest: string; size: number }, labels: Record<string, string>): Promise<void> {
    const image = { name, target, labels };
    try {
      await this.ctd.images.unary('Create', { image });
    } catch (err) {
      if (!isAlreadyExists(err)) throw withContext(`image record ${name}`, err);
      await this.ctd.images.unary('Update', { image, updateMask: { paths: ['target', 'labels'] } }).catch((e: unknown) => {
        throw withContext(`image record ${name}`, e);
      });
    }
  }

  async deleteRecord(name: string, sync: boolean): Promise<void> {
    try {
      await this.ctd.images.unary('Delete', { name, sync });
    } catch (err) {
      if (!isNotFound(err)) throw withContext(`deleting image record ${name}`, err);
    }
  }

  private async resolveTarget(target: { mediaType: string; digest: string }): Promise<Resolved> {
    const cached = this.resolved.get(target.digest);
    if (cached) return cached;
    let manifestDigest = target.digest;
    let bytes = await this.content.read(target.digest);
    if (isIndexMediaType(target.mediaType)) {
      const chosen = pickPlatform(JSON.parse(bytes.toString('utf8')) as ImageIndex);
      manifestDigest = chosen.digest;
      bytes = await this.content.read(chosen.digest);
    }
    const manifest = JSON.parse(bytes.toString('utf8')) as ImageManifest;
    const config = JSON.parse((await this.content.read(manifest.config.digest)).toString('utf8')) as ImageConfig;
    const r: Resolved = { manifestDigest, manifest, manifestSize: bytes.length, configDigest: manifest.config.digest, config };
    this.resolved.set(target.digest, r);
    return r;
  }

  /** Every image, grouped by config digest. Records whose content is gone are skipped. */
  async list(): Promise<ImageInfo[]> {
    const res = await this.ctd.images.unary('List', { filters: [] });
    const byId = new Map<string, ImageInfo>();
    for (const rec of res.images) {
      if (!rec.target) continue;
      let r: Resolved;
      try {
        r = await this.resolveTarget(rec.target);
      } catch {
        continue;
      }
      let info = byId.get(r.configDigest);
      if (!info) {
        const chains = chainIds(r.config.rootfs?.diff_ids ?? []);
        info = {
          id: r.configDigest,
          repoTags: [],
          repoDigests: [],
          size: r.manifestSize + r.manifest.config.size + r.manifest.layers.reduce((n, l) => n + l.size, 0),
          config: r.config,
          configDigest: r.configDigest,
          manifestDigest: r.manifestDigest,
          topChainId: chains[chains.length - 1] ?? '',
          chainIds: chains,
          recordNames: [],
        };
        byId.set(r.configDigest, info);
      }
      info.recordNames.push(rec.name);
      if (ID_RE.test(rec.name)) continue;
      if (rec.name.includes('@')) info.repoDigests.push(rec.name);
      else info.repoTags.push(rec.name);
    }
    for (const info of byId.values()) {
      info.repoTags.sort();
      info.repoDigests.sort();
    }
    // Removed images leave the cache with the listing that no longer has them (a node that pulls new
    // versions for months would otherwise keep every manifest and config it ever resolved).
    const listed = new Set(res.images.map((rec) => rec.target?.digest));
    for (const digest of this.resolved.keys()) if (!listed.has(digest)) this.resolved.delete(digest);
    return [...byId.values()];
  }

  /**
   * Find an image by id (full config digest, with or without "sha256:"), by a unique id prefix, or by
   * reference (tag or digest, normalised), asking containerd. Undefined when absent.
   */
  async find(spec: string): Promise<ImageLookup | undefined> {
    return findImage(await this.list(), spec);
  }

  async get(spec: string): Promise<ImageInfo> {
    const hit = await this.find(spec);
    if (!hit) throw notFound(`image "${spec}" not found`);
    return hit.image;
  }
}
