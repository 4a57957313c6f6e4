// crisp's in-memory copy of containerd's image records (the CRI image view, one entry per config
// digest), so ImageStatus and ListImages answer without a containerd round trip. It is trusted only
// while containerd's image events are followed (image-events.ts): any event, a crisp pull or remove,
// and every (re)subscription drop the copy, and the next read rebuilds it from containerd. While the
// event stream is down every read goes to containerd.
import { parseImageReference, referenceString } from '../registry/reference.js';
import type { ImageInfo } from './records.js';

export interface ImageLookup {
  image: ImageInfo;
  by: 'id' | 'tag' | 'digest';
  /** The normalised reference that matched (tag or digest lookups). */
  name?: string;
}

const ID_RE = /^(sha256:)?([a-f0-9]{64})$/;
const ID_PREFIX_RE = /^[a-f0-9]{6,63}$/;

/**
 * The image `spec` names: an id (full config digest, with or without "sha256:"), a unique id prefix,
 * or a reference (tag or digest, normalised). Undefined when absent or ambiguous.
 */
export function findImage(images: readonly ImageInfo[], spec: string): ImageLookup | undefined {
  const idMatch = ID_RE.exec(spec);
  if (idMatch) {
    const image = images.find((i) => i.id === `sha256:${idMatch[2]}`);
    if (image) return { image, by: 'id' };
  }
  if (ID_PREFIX_RE.test(spec)) {
    const hits = images.filter((i) => i.id.startsWith(`sha256:${spec}`));
    if (hits.length === 1) return { image: hits[0]!, by: 'id' };
  }
  let name: string;
  try {
    name = referenceString(parseImageReference(spec));
  } catch {
    // Neither an id nor a parseable reference: no image can carry that name.
    return undefined;
  }
  for (const image of images) {
    if (image.repoTags.includes(name)) return { image, by: 'tag', name };
    if (image.repoDigests.includes(name)) return { image, by: 'digest', name };
  }
  return undefined;
}

/** Lookups find() keeps for one copy of the images. */
const MAX_KEPT_LOOKUPS = 256;

export class ImageIndex {
  /** The copy, when it is current; undefined = rebuild on the next read. */
  private images: readonly ImageInfo[] | undefined;
  /** Bumped by every change notice: a rebuild started before one must not become the copy. */
  private generation = 0;
  private live = false;
  private rebuild: { generation: number; result: Promise<readonly ImageInfo[]> } | undefined;
  /** find()'s answers on the copy `foundIn` (a fresh list from containerd is a new copy). */
  private readonly found = new Map<string, ImageLookup | undefined>();
  private foundIn: readonly ImageInfo[] | undefined;

  /** `load` reads every image from containerd (ImageRecords.list). */
  constructor(private readonly load: () => Promise<readonly ImageInfo[]>) {}

  /** Whether reads are served from memory (the event stream is followed). */
  get following(): boolean {
    return this.live;
  }

  /** Something may have changed (an image event, a pull, a remove): the next read rebuilds. */
  invalidate(): void {
    this.generation++;
    this.images = undefined;
  }

  /**
   * The event stream is subscribed (true) or broken (false). Either way the copy is dropped: events
   * may have been missed while no stream was there.
   */
  setFollowing(live: boolean): void {
    this.live = live;
    this.invalidate();
  }

  /** Every image; callers must not modify what they get. */
  async list(): Promise<readonly ImageInfo[]> {
    if (this.images) return this.images;
    // Not following: nothing would tell a copy is stale, so each read asks containerd itself.
    if (!this.live) return this.load();
    // Concurrent readers share one rebuild, but only one that started after the last change notice.
    if (this.rebuild && this.rebuild.generation === this.generation) return this.rebuild.result;
    const generation = this.generation;
    const result = this.load().then((images) => {
      if (this.generation === generation && this.live) this.images = images;
      return images;
    });
    const entry = { generation, result };
    this.rebuild = entry;
    const clear = () => {
      if (this.rebuild === entry) this.rebuild = undefined;
    };
    result.then(clear, clear);
    return result;
  }

  /**
   * The image `spec` names (findImage). Lookups are kept per copy (ImageStatus asks about the same few
   * references all the time, and parsing a reference was most of its cost) and go with it.
   */
  async find(spec: string): Promise<ImageLookup | undefined> {
    const images = await this.list();
    if (images !== this.foundIn) {
      this.found.clear();
      this.foundIn = images;
    }
    const known = this.found.get(spec);
    if (known !== undefined || this.found.has(spec)) return known;
    const hit = findImage(images, spec);
    // Specs come from callers: bounded, and a full map simply starts over.
    if (this.found.size >= MAX_KEPT_LOOKUPS) this.found.clear();
    this.found.set(spec, hit);
    return hit;
  }
}
