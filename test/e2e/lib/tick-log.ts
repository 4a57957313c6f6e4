// A container that prints "tick N" every TICK_MS, and the check of its CRI log: every N from 0 to the
// last present once and in order (nothing lost while crispd was down), and the largest time between
// two consecutive lines (how long logging stalled).
import { readFileSync } from 'node:fs';

export const TICK_MS = 100;
export const TICK_CMD = ['sh', '-c', `i=0; while :; do echo "tick $i"; i=$((i+1)); sleep ${TICK_MS / 1000}; done`];

export interface TickLog {
  /** Last N logged (-1 when none yet). */
  last: number;
  /** Ns missing or out of order. */
  gaps: string[];
  /** Largest time between two consecutive lines, ms. */
  maxPauseMs: number;
}

export function readTickLog(path: string): TickLog {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { last: -1, gaps: [], maxPauseMs: 0 };
  }
  let expected = 0;
  let prevTs: number | undefined;
  let maxPauseMs = 0;
  const gaps: string[] = [];
  for (const line of text.split('\n')) {
    // "<RFC3339Nano> stdout F tick N"
    const m = /^(\S+) stdout F tick (\d+)$/.exec(line);
    if (!m) continue;
    const n = Number(m[2]);
    if (n !== expected) gaps.push(`expected tick ${expected}, got ${n}`);
    expected = n + 1;
    const ts = Date.parse(m[1]!);
    if (prevTs !== undefined) maxPauseMs = Math.max(maxPauseMs, ts - prevTs);
    prevTs = ts;
  }
  return { last: expected - 1, gaps, maxPauseMs };
}
