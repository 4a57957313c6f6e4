// Records in memory, persisted crash-safely (one JSON file per record in its own directory, written
// atomically) so a restarted crispd knows everything it had; with a name registrar that reserves a
// unique name → id. Pods and containers both keep their state this way.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic-file.js';
import { notFound, errorMessage, isENOENT } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

export interface StoredRecord {
  id: string;
  /** The record's own directory; deleted with it. */
  dir: string;
}

export class RecordStore<T extends StoredRecord> {
  private readonly records = new Map<string, T>();
  private readonly names = new Map<string, string>();

  constructor(
    readonly dir: string,
    private readonly kind: string,
    private readonly fileName: string,
    private readonly nameOf: (r: T) => string,
    protected readonly log: Logger,
    /** Whether a save is fsynced (survives a power cut) or only atomic (survives a crash of crispd). */
    private readonly durable = true,
  ) {}

  recordDir(id: string): string {
    return join(this.dir, id);
  }

  /** Load every persisted record; unreadable ones are logged and skipped, never fatal. */
  async load(): Promise<T[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const id of await readdir(this.dir)) {
      try {
        const rec = JSON.parse(await readFile(join(this.dir, id, this.fileName), 'utf8')) as T;
        this.records.set(rec.id, rec);
        this.names.set(this.nameOf(rec), rec.id);
      } catch (err) {
        // A directory without a record is one whose creation never finished; its owner cleans it up.
        if (isENOENT(err)) continue;
        this.log.warn({ [this.kind]: id, err: errorMessage(err) }, `skipping unreadable ${this.kind} record`);
      }
    }
    return [...this.records.values()];
  }

  idByName(name: string): string | undefined {
    return this.names.get(name);
  }

  reserveName(name: string, id: string): void {
    this.names.set(name, id);
  }

  releaseName(name: string, id: string): void {
    if (this.names.get(name) === id) this.names.delete(name);
  }

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  /** Exact id, or a unique id prefix (as crictl allows). */
  find(idOrPrefix: string): T | undefined {
    const exact = this.records.get(idOrPrefix);
    if (exact || idOrPrefix.length < 3) return exact;
    const hits = [...this.records.values()].filter((r) => r.id.startsWith(idOrPrefix));
    return hits.length === 1 ? hits[0] : undefined;
  }

  require(id: string, what = this.kind): T {
    const r = this.find(id);
    if (!r) throw notFound(`${what} "${id}" not found`);
    return r;
  }

  list(): T[] {
    return [...this.records.values()];
  }

  async save(rec: T): Promise<void> {
    await mkdir(rec.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(rec.dir, this.fileName), JSON.stringify(rec), 0o600, { durable: this.durable });
    this.records.set(rec.id, rec);
  }

  /** Forget the record and delete its directory. */
  async delete(rec: T): Promise<void> {
    this.records.delete(rec.id);
    this.releaseName(this.nameOf(rec), rec.id);
    await rm(rec.dir, { recursive: true, force: true });
  }
}
