// Pull progress: the snapshot a running pull reports, a transfer-rate meter, and the node-local side
// channel CRI lacks (PullImage has no progress stream): the puller keeps
// <state>/pulls/<sha256(normalised reference)>.json up to date while it runs and removes it at the end,
// and `crisp pull` reads it to draw a progress bar.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.js';

export interface LayerProgress {
  digest: string;
  done: number;
  total: number;
}

export interface PullProgress {
  /** The normalised reference being pulled. */
  reference: string;
  /** Layer bytes done / total (0 while the manifest is being resolved). */
  done: number;
  total: number;
  layers: LayerProgress[];
  /**
   * Bytes this pull received from the registry (data an earlier attempt left and layers already in the
   * store excluded); absent in files written by older versions.
   */
  received?: number;
  /** Recent transfer rate (a few seconds' window), not the average since the start. */
  bytesPerSecond: number;
  /** Milliseconds since the epoch. */
  startedAt: number;
  updatedAt: number;
}

/** Where the progress of `reference` (already normalised) is published under `dir`. */
export function pullProgressPath(dir: string, reference: string): string {
  return join(dir, `${createHash('sha256').update(reference).digest('hex')}.json`);
}

/** Bytes per second over a sliding window of (time, total bytes) samples. */
export class RateMeter {
  private readonly samples: { at: number; bytes: number }[] = [];

  constructor(private readonly windowMs = 5000) {}

  add(at: number, bytes: number): void {
    this.samples.push({ at, bytes });
    // Keep one sample older than the window so the rate spans the whole window.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - this.windowMs) this.samples.shift();
  }

  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at <= first.at) return 0;
    return Math.max(0, Math.round(((last.bytes - first.bytes) * 1000) / (last.at - first.at)));
  }
}

/**
 * The progress file of one pull. Writes are atomic (readers never see half a file) and coalesced: while
 * one is in flight only the newest snapshot waits, so a slow disk never queues up stale ones.
 */
export class PullProgressFile {
  private next: PullProgress | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private dirReady = false;

  constructor(
    readonly path: string,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  write(progress: PullProgress): void {
    if (this.closed) return;
    this.next = progress;
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  /** Resolves once every accepted snapshot is on disk. */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stop writing and remove the file (the pull is over, whichever way it ended). */
  async close(): Promise<void> {
    this.closed = true;
    this.next = undefined;
    await this.flush();
    await rm(this.path, { force: true }).catch((err: unknown) => this.onError(err));
  }

  private async drain(): Promise<void> {
    for (let p = this.next; p && !this.closed; p = this.next) {
      this.next = undefined;
      try {
        if (!this.dirReady) {
          await mkdir(join(this.path, '..'), { recursive: true });
          this.dirReady = true;
        }
        // World-readable: it names only the image and byte counts, and `crisp pull` may not be root. Not
        // durable: the file lives only as long as the pull, and two fsyncs a second would queue behind the
        // layer data being written (and hold libuv threads the layer writes need).
        await writeFileAtomic(this.path, `${JSON.stringify(p)}\n`, 0o644, { durable: false });
      } catch (err) {
        this.onError(err);
      }
    }
  }
}

function isPullProgress(v: unknown): v is PullProgress {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.reference === 'string' &&
    typeof o.done === 'number' &&
    typeof o.total === 'number' &&
    typeof o.bytesPerSecond === 'number' &&
    typeof o.updatedAt === 'number' &&
    Array.isArray(o.layers)
  );
}

/** The published progress at `path`, or undefined when there is none (yet) or it is unreadable. */
export async function readPullProgress(path: string): Promise<PullProgress | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v: unknown = JSON.parse(text);
    return isPullProgress(v) ? v : undefined;
  } catch {
    // Atomic writes make this rare (a foreign file): treat it as no progress.
    return undefined;
  }
}
