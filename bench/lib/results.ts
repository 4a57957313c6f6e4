// Result files: bench/results/<name>.json (everything, for tools) and bench/results/<name>.md (a table
// for people), both stamped with the machine they were measured on.
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { cpus, totalmem, release, loadavg } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO } from '../../test/e2e/lib/crispd.js';
import type { Summary } from './stats.js';
import { interrupted } from './interrupt.js';

export const RESULTS_DIR = join(REPO, 'bench', 'results');

export interface MachineInfo {
  cpus: number;
  /** 1/5/15-minute load averages when the benchmark started and when it ended (other work on the machine shows here). */
  loadStart: number[];
  loadEnd: number[];
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  containerd: string;
  runc: string;
  os: string;
}

function firstLine(cmd: string, args: string[]): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  return (res.stdout ?? '').split('\n')[0]?.trim() || 'unknown';
}

const LOAD_AT_START = loadavg().map((x) => Math.round(x * 100) / 100);

export function machineInfo(): MachineInfo {
  let os = 'unknown';
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {
    // not Linux-standard; keep unknown
  }
  return {
    cpus: cpus().length,
    loadStart: LOAD_AT_START,
    loadEnd: loadavg().map((x) => Math.round(x * 100) / 100),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    containerd: firstLine('containerd', ['--version']),
    runc: firstLine('runc', ['--version']),
    os,
  };
}

/** One row of a side-by-side table: crisp and the peer for the same case. */
export interface ComparisonRow {
  case: string;
  crisp?: Summary;
  peer?: Summary;
  /** crisp / peer of the medians and of the p95s. */
  ratioMedian?: number;
  ratioP95?: number;
  unit: string;
  note?: string;
}

export interface BenchResult {
  benchmark: string;
  /** What the peer column is. */
  peer: string;
  date: string;
  durationSeconds: number;
  machine: MachineInfo;
  params: Record<string, unknown>;
  rows: ComparisonRow[];
  /** Raw samples per case and runtime, for re-analysis. */
  samples: Record<string, Record<string, number[]>>;
  notes: string[];
  /** Extra tables (markdown lines) a benchmark wants in its .md file. */
  extraMarkdown?: string[];
}

/** A number for a table: 3–4 significant digits unless `digits` is given. */
export function fmt(v: number | undefined, digits?: number): string {
  if (v === undefined || !Number.isFinite(v)) return 'n/a';
  if (digits !== undefined) return v.toFixed(digits);
  const a = Math.abs(v);
  return v.toFixed(a >= 1000 ? 0 : a >= 10 ? 1 : 2);
}

export function fmtRatio(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '–' : `${v.toFixed(2)}×`;
}

export function markdownTable(result: BenchResult): string[] {
  const lines = [
    `| case | crisp median | crisp p95 | ${result.peer} median | ${result.peer} p95 | crisp/peer median | crisp/peer p95 | n |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of result.rows) {
    const u = r.unit;
    const n = [r.crisp?.n, r.peer?.n].filter((x) => x !== undefined).join('/');
    const v = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : `${fmt(x, u === 'procs' ? 0 : undefined)} ${u}`);
    lines.push(
      `| ${r.case}${r.note ? ` (${r.note})` : ''} | ${v(r.crisp?.median)} | ${v(r.crisp?.p95)} | ${v(r.peer?.median)} | ${v(r.peer?.p95)} | ${fmtRatio(r.ratioMedian)} | ${fmtRatio(r.ratioP95)} | ${n} |`,
    );
  }
  return lines;
}

export function machineLine(m: MachineInfo): string {
  return `${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB RAM, ${m.os}, kernel ${m.kernel}, Node ${m.node}, ${m.containerd}, ${m.runc}; load average at start ${m.loadStart.join(' ')}, at end ${m.loadEnd.join(' ')}`;
}

export function renderMarkdown(result: BenchResult): string {
  const lines = [
    `# ${result.benchmark}`,
    '',
    `Measured ${result.date} in ${result.durationSeconds.toFixed(0)} s on ${machineLine(result.machine)}.`,
    '',
    `Parameters: ${Object.entries(result.params).map(([k, v]) => `${k}=${String(v)}`).join(', ')}`,
    '',
    ...markdownTable(result),
    '',
    ...(result.extraMarkdown ? [...result.extraMarkdown, ''] : []),
    ...(result.notes.length ? ['Notes:', '', ...result.notes.map((n) => `- ${n}`), ''] : []),
  ];
  return lines.join('\n');
}

/** Write <name>.json and <name>.md under bench/results (or `dir`); returns the two paths. */
export function writeResults(name: string, result: BenchResult, dir = RESULTS_DIR): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${name}.json`);
  const md = join(dir, `${name}.md`);
  writeFileSync(json, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(md, renderMarkdown(result));
  return { json, md };
}

/** Assemble, write and print one benchmark's results. */
export function saveBenchmark(
  name: string,
  parts: Omit<BenchResult, 'benchmark' | 'date' | 'machine' | 'durationSeconds'> & { title: string; startedAt: number },
): BenchResult {
  const { title, startedAt, ...rest } = parts;
  // A run cut short by a signal would write numbers from a half-torn-down bench.
  if (interrupted()) throw new Error(`${name}: interrupted; results not written`);
  const result: BenchResult = {
    benchmark: title,
    date: new Date().toISOString(),
    durationSeconds: (Date.now() - startedAt) / 1000,
    machine: machineInfo(),
    ...rest,
  };
  const files = writeResults(name, result);
  console.log(renderMarkdown(result));
  console.log(`results: ${files.json}, ${files.md}`);
  return result;
}
