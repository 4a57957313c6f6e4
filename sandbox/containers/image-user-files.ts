// The /etc/passwd and /etc/group of an image, read once per image and kept: an image id is the digest
// of its config, which names every layer (diff ids), so the files never change for that id. Every
// CreateContainer resolves its user against them without touching the rootfs again.
import { readFile } from 'node:fs/promises';
import { findInLayers } from './user.js';

export interface ImageUserFiles {
  passwd?: string;
  group?: string;
}

/** Images whose files are kept; beyond that the least recently used one is read again when needed. */
const MAX_IMAGES = 256;

export class ImageUserFilesCache {
  private readonly files = new Map<string, ImageUserFiles>();

  constructor(private readonly maxImages = MAX_IMAGES) {}

  /** The files of image `imageId`, read from `layers` (top-most first) the first time only. */
  async get(imageId: string, layers: string[]): Promise<ImageUserFiles> {
    const hit = this.files.get(imageId);
    if (hit) {
      // Re-inserted: Map order is the eviction order.
      this.files.delete(imageId);
      this.files.set(imageId, hit);
      return hit;
    }
    const read = async (p: string) => {
      const found = findInLayers(p, layers);
      return found ? readFile(found, 'utf8') : undefined;
    };
    const [passwd, group] = await Promise.all([read('etc/passwd'), read('etc/group')]);
    const files: ImageUserFiles = { ...(passwd !== undefined ? { passwd } : {}), ...(group !== undefined ? { group } : {}) };
    this.files.set(imageId, files);
    while (this.files.size > this.maxImages) this.files.delete(this.files.keys().next().value as string);
    return files;
  }

  /** The files of `imageId` when they were read before (no rootfs needed), else undefined. */
  peek(imageId: string): ImageUserFiles | undefined {
    return this.files.get(imageId);
  }

  get size(): number {
    return this.files.size;
  }
}
