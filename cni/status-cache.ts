// CNI readiness for Status without exec'ing plugins on every call: the last answer is served while it
// is younger than `maxAgeMs` and nothing in the conf dir changed (fs.watch); a change or the age limit
// makes the next call ask again. Concurrent callers share one refresh. A removed or broken conflist is
// seen at the next call after the change (or within maxAgeMs where the directory cannot be watched).
// An answer past half its age is still served, and a refresh starts behind it: callers that come often
// never wait for the plugins, and no answer is older than maxAgeMs.
import { watch, type FSWatcher } from 'node:fs';
import type { CniStatus } from './network.js';

export class CniStatusCache {
  private value: { at: number; status: CniStatus } | undefined;
  private inflight: Promise<CniStatus> | undefined;
  private watcher: FSWatcher | undefined;
  private generation = 0;

  constructor(
    private readonly read: () => Promise<CniStatus>,
    private readonly confDir: string,
    private readonly maxAgeMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  private watchConfDir(): void {
    if (this.watcher) return;
    try {
      this.watcher = watch(this.confDir, { persistent: false }, () => this.invalidate());
      this.watcher.on('error', () => {
        // the directory went away: forget the watcher; the age limit and the next call take over
        this.watcher?.close();
        this.watcher = undefined;
        this.invalidate();
      });
    } catch {
      // no conf dir yet: answers expire by age until it exists and can be watched
      this.watcher = undefined;
    }
  }

  invalidate(): void {
    this.value = undefined;
    this.generation++;
  }

  async get(): Promise<CniStatus> {
    this.watchConfDir();
    const age = this.value ? this.now() - this.value.at : Infinity;
    if (age < this.maxAgeMs) {
      if (age >= this.maxAgeMs / 2 && !this.inflight) {
        // a failed refresh ahead of time is no answer: the value ages out and the next caller reads again
        this.refresh().catch(() => undefined);
      }
      return this.value!.status;
    }
    return this.inflight ?? this.refresh();
  }

  private refresh(): Promise<CniStatus> {
    const generation = this.generation;
    const run = this.read().then((status) => {
      // A change while reading makes this answer stale already: serve it once, do not keep it.
      if (generation === this.generation) this.value = { at: this.now(), status };
      return status;
    });
    this.inflight = run.finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
