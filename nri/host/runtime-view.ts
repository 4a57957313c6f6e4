// The host's view of crisp's pods and containers, for Synchronize and event messages. Records come
// from NriRuntimeAccess, plus the ones the host has seen in events but crisp has not stored yet (a
// pod between its RunPodSandbox event and its save), minus the ones removed in an event but not yet
// deleted from crisp's store: a plugin that connects at any moment sees every object exactly once,
// either in its Synchronize snapshot or as an event after it. Container specs are cached so events
// do not read containerd. What the view keeps beyond crisp's store is forgotten IN_FLIGHT_MS after it
// was last touched, whether or not a plugin ever connects: its maps are kept in touch order, so every
// change drops the expired entries at their front.
import type { Logger } from '../../common/logger.js';
import type { LinuxResourcesJson, NriRuntimeAccess, OciSpecJson } from '../../sandbox/nri-hooks.js';
import type { PodRecord } from '../../sandbox/pods/types.js';
import type { ContainerRecord } from '../../sandbox/containers/types.js';

/** How long an object only the host knows about (or a removed one crisp still lists) is trusted. */
const IN_FLIGHT_MS = 60_000;
const SPEC_FETCH_CONCURRENCY = 16;

interface Seen<T> {
  rec: T;
  at: number;
}

export interface Snapshot {
  pods: PodRecord[];
  containers: { rec: ContainerRecord; spec: OciSpecJson | undefined }[];
}

export class RuntimeView {
  private readonly pods = new Map<string, Seen<PodRecord>>();
  private readonly containers = new Map<string, Seen<ContainerRecord>>();
  private readonly specs = new Map<string, OciSpecJson>();
  private readonly removed = new Map<string, number>();

  constructor(
    private readonly access: NriRuntimeAccess,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  notePod(rec: PodRecord): void {
    const now = this.expire();
    touch(this.pods, rec.id, { rec, at: now });
  }

  forgetPod(id: string): void {
    const now = this.expire();
    this.pods.delete(id);
    touch(this.removed, id, now);
  }

  noteContainer(rec: ContainerRecord, spec?: OciSpecJson): void {
    const now = this.expire();
    touch(this.containers, rec.id, { rec, at: now });
    if (spec) this.specs.set(rec.id, spec);
  }

  forgetContainer(id: string): void {
    const now = this.expire();
    this.containers.delete(id);
    this.specs.delete(id);
    touch(this.removed, id, now);
  }

  /** Entries held beyond crisp's store: seen objects, removed ids and cached specs. */
  held(): number {
    return this.pods.size + this.containers.size + this.removed.size + this.specs.size;
  }

  /**
   * Drops what has been in flight for longer than IN_FLIGHT_MS (a seen record is in crisp's store by
   * then, or its creation failed; a removed one is gone from it). Returns the time used.
   */
  private expire(): number {
    const now = this.now();
    dropExpired(this.removed, (at) => at, now);
    dropExpired(this.pods, (s) => s.at, now);
    // A container's cached spec goes with it; a later event reads the spec through crisp again.
    dropExpired(this.containers, (s) => s.at, now, (id) => this.specs.delete(id));
    return now;
  }

  /** The container's OCI spec: cached, else read through crisp (undefined if it cannot be read). */
  async spec(id: string): Promise<OciSpecJson | undefined> {
    const cached = this.specs.get(id);
    if (cached) return cached;
    try {
      const spec = await this.access.containerSpec(id);
      if (!this.removed.has(id)) this.specs.set(id, spec);
      return spec;
    } catch (err) {
      this.log.debug({ container: id, err: (err as Error).message }, 'NRI: container spec not readable');
      return undefined;
    }
  }

  async resources(id: string): Promise<LinuxResourcesJson> {
    const spec = await this.spec(id);
    const linux = spec?.linux as { resources?: LinuxResourcesJson } | undefined;
    return linux?.resources ?? {};
  }

  /** Keeps the cached spec in step after crisp applied new resources. */
  setResources(id: string, resources: LinuxResourcesJson): void {
    const spec = this.specs.get(id);
    if (!spec) return;
    const linux = (spec.linux ?? {}) as Record<string, unknown>;
    this.specs.set(id, { ...spec, linux: { ...linux, resources } });
  }

  setSpec(id: string, spec: OciSpecJson): void {
    this.specs.set(id, spec);
  }

  async snapshot(): Promise<Snapshot> {
    this.expire();
    const pods = merge(this.access.pods(), this.pods, this.removed);
    const recs = merge(this.access.containers(), this.containers, this.removed);
    const containers: Snapshot['containers'] = new Array(recs.length);
    let next = 0;
    const worker = async () => {
      while (next < recs.length) {
        const i = next++;
        const rec = recs[i]!;
        containers[i] = { rec, spec: await this.spec(rec.id) };
      }
    };
    await Promise.all(Array.from({ length: Math.min(SPEC_FETCH_CONCURRENCY, recs.length) }, worker));
    return { pods, containers };
  }
}

/** Sets `id` as the newest entry of `map` (a Map iterates in insertion order). */
function touch<V>(map: Map<string, V>, id: string, value: V): void {
  map.delete(id);
  map.set(id, value);
}

/** Deletes `map`'s entries older than IN_FLIGHT_MS from its front, up to the first younger one. */
function dropExpired<V>(map: Map<string, V>, at: (v: V) => number, now: number, dropped?: (id: string) => void): void {
  for (const [id, v] of map) {
    if (now - at(v) <= IN_FLIGHT_MS) return;
    map.delete(id);
    dropped?.(id);
  }
}

/**
 * crisp's records, plus recent ones only the host saw, minus recently removed ones (`seen` and `removed`
 * hold only the last IN_FLIGHT_MS: expire() ran first).
 */
function merge<T extends { id: string }>(listed: T[], seen: Map<string, Seen<T>>, removed: Map<string, number>): T[] {
  const out = new Map<string, T>();
  for (const rec of listed) if (!removed.has(rec.id)) out.set(rec.id, rec);
  for (const [id, s] of seen) if (!out.has(id) && !removed.has(id)) out.set(id, s.rec);
  return [...out.values()];
}
