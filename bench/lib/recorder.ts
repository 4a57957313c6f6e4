// Collects samples per (case, runtime) in the order cases first appear, and turns them into the
// side-by-side rows (crisp vs the peer, with crisp/peer ratios) the result files show.
import { ratio, summarize } from './stats.js';
import type { ComparisonRow } from './results.js';
import type { RuntimeName } from './env.js';

export class Recorder {
  private readonly data = new Map<string, { unit: string; note?: string; samples: Partial<Record<RuntimeName, number[]>> }>();

  constructor(private readonly defaultUnit = 'ms') {}

  add(caseName: string, runtime: RuntimeName, value: number, unit = this.defaultUnit): void {
    let entry = this.data.get(caseName);
    if (!entry) {
      entry = { unit, samples: {} };
      this.data.set(caseName, entry);
    }
    (entry.samples[runtime] ??= []).push(value);
  }

  private readonly failures = new Map<string, { count: number; first: string }>();

  /** A call that failed: counted per (case, runtime), the first message kept for the notes. */
  fail(caseName: string, runtime: RuntimeName, message: string): void {
    const key = `${caseName}\u0000${runtime}`;
    const f = this.failures.get(key);
    if (f) f.count++;
    else this.failures.set(key, { count: 1, first: message });
    if (!this.data.has(caseName)) this.data.set(caseName, { unit: this.defaultUnit, samples: {} });
  }

  /** One line per (case, runtime) with failures: how many, and the first error. */
  failureNotes(): string[] {
    return [...this.failures.entries()].map(([key, f]) => {
      const [caseName, runtime] = key.split('\u0000');
      return `${runtime} ${caseName}: ${f.count} failed call(s), first: ${f.first}`;
    });
  }

  note(caseName: string, note: string): void {
    const entry = this.data.get(caseName);
    if (entry) entry.note = note;
  }

  count(caseName: string, runtime: RuntimeName): number {
    return this.data.get(caseName)?.samples[runtime]?.length ?? 0;
  }

  rows(): ComparisonRow[] {
    return [...this.data.entries()].map(([name, e]) => {
      const crisp = e.samples.crisp?.length ? summarize(e.samples.crisp) : undefined;
      const peer = e.samples.containerd?.length ? summarize(e.samples.containerd) : undefined;
      const row: ComparisonRow = { case: name, unit: e.unit };
      if (crisp) row.crisp = crisp;
      if (peer) row.peer = peer;
      if (crisp && peer) {
        row.ratioMedian = ratio(crisp.median, peer.median);
        row.ratioP95 = ratio(crisp.p95, peer.p95);
      }
      const failed = (['crisp', 'containerd'] as const)
        .map((rt) => ({ rt, f: this.failures.get(`${name}\u0000${rt}`) }))
        .filter((x) => x.f)
        .map((x) => `${x.rt}: ${x.f!.count} failed`);
      const note = [e.note, ...failed].filter(Boolean).join('; ');
      if (note) row.note = note;
      return row;
    });
  }

  /** Raw samples rounded to 0.01 for the JSON file. */
  samples(): Record<string, Record<string, number[]>> {
    const out: Record<string, Record<string, number[]>> = {};
    for (const [name, e] of this.data) {
      out[name] = Object.fromEntries(Object.entries(e.samples).map(([rt, xs]) => [rt, xs.map((x) => Math.round(x * 100) / 100)]));
    }
    return out;
  }
}
