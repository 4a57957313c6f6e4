// Pods in memory, persisted crash-safely (one JSON file per pod, written atomically) so a restarted
// crispd knows every pod it had. A name registrar reserves kubelet's unique pod name → id.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { notFound, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { podFullName, type PodRecord } from './types.js';

const RECORD = 'pod.json';

export class PodStore {
  private readonly pods = new Map<string, PodRecord>();
  private readonly names = new Map<string, string>();

  constructor(
    /** <root>/pods */
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  podDir(id: string): string {
    return join(this.dir, id);
  }

  /** Load every persisted pod; unreadable records are logged and skipped, never fatal. */
  async load(): Promise<PodRecord[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const id of await readdir(this.dir)) {
      try {
        const rec = JSON.parse(await readFile(join(this.dir, id, RECORD), 'utf8')) as PodRecord;
        this.pods.set(rec.id, rec);
        this.names.set(podFullName(rec.spec.metadata), rec.id);
      } catch (err) {
        this.log.warn({ pod: id, err: errorMessage(err) }, 'skipping unreadable pod record');
      }
    }
    return [...this.pods.values()];
  }

  /** The id holding `fullName`, if any. */
  idByName(fullName: string): string | undefined {
    return this.names.get(fullName);
  }

  reserveName(fullName: string, id: string): void {
    this.names.set(fullName, id);
  }

  releaseName(fullName: string, id: string): void {
    if (this.names.get(fullName) === id) this.names.delete(fullName);
  }

  get(id: string): PodRecord | undefined {
    return this.pods.get(id);
  }

  /** Exact id, or a unique id prefix (as crictl allows). */
  find(idOrPrefix: string): PodRecord | undefined {
    const exact = this.pods.get(idOrPrefix);
    if (exact || idOrPrefix.length < 3) return exact;
    const hits = [...this.pods.values()].filter((p) => p.id.startsWith(idOrPrefix));
    return hits.length === 1 ? hits[0] : undefined;
  }

  require(id: string): PodRecord {
    const p = this.find(id);
    if (!p) throw notFound(`pod sandbox "${id}" not found`);
    return p;
  }

  list(): PodRecord[] {
    return [...this.pods.values()];
  }

  async save(rec: PodRecord): Promise<void> {
    await mkdir(rec.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(rec.dir, RECORD), JSON.stringify(rec));
    this.pods.set(rec.id, rec);
  }

  /** Forget the pod and delete its persistent directory. */
  async delete(rec: PodRecord): Promise<void> {
    this.pods.delete(rec.id);
    this.releaseName(podFullName(rec.spec.metadata), rec.id);
    await rm(rec.dir, { recursive: true, force: true });
  }
}
