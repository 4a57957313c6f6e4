// How crispd's log lines look on stderr: pino's JSON as is, or logfmt text (time=… level=… msg=… k=v,
// the shape containerd and CRI-O print) for people reading the journal. When stderr is the systemd
// journal, each line also starts with its syslog priority ("<4>"), which journald takes as the entry's
// PRIORITY, so `journalctl -p warning` works in either format.
import { fstatSync } from 'node:fs';

export type LogFormat = 'json' | 'text';

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
/** syslog priorities: debug 7, info 6, warning 4, err 3, crit 2. */
const PRIORITIES: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };
/** Keys the text format prints first, or not at all (svc, pid and hostname say nothing journald does not). */
const SKIPPED = new Set(['level', 'time', 'msg', 'svc', 'pid', 'hostname']);

function logfmtValue(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return /^[^\s"=\\]+$/.test(s) ? s : JSON.stringify(s);
}

/** One pino JSON line as logfmt text (no newline). */
export function logfmtLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd(); // not pino's JSON: shown as it came
  }
  const level = typeof entry.level === 'number' ? (LEVEL_NAMES[entry.level] ?? String(entry.level)) : String(entry.level);
  const parts = [`time=${logfmtValue(entry.time)}`, `level=${level}`, `msg=${logfmtValue(entry.msg ?? '')}`];
  for (const [k, v] of Object.entries(entry)) if (!SKIPPED.has(k)) parts.push(`${k}=${logfmtValue(v)}`);
  return parts.join(' ');
}

/** The "<N>" syslog priority prefix of a pino JSON line (pino writes "level" first). */
export function journalPrefix(json: string): string {
  const m = /^\{"level":(\d+)/.exec(json);
  return `<${(m && PRIORITIES[Number(m[1])]) ?? 6}>`;
}

/**
 * Whether stderr is connected to the journal: systemd sets JOURNAL_STREAM to "<dev>:<inode>" of the
 * stream it gave the service, which stops being true once stderr is redirected elsewhere.
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env, fd = 2): boolean {
  const [dev, ino] = (env.JOURNAL_STREAM ?? '').split(':');
  if (!dev || !ino) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return st.dev === BigInt(dev) && st.ino === BigInt(ino);
  } catch {
    return false; // no stderr at all: certainly not the journal
  }
}

/** A pino destination writing `format` to `out`, with journal priorities when `journal`. */
export function formattedDestination(format: LogFormat, journal: boolean, out: NodeJS.WritableStream): { write(line: string): void } {
  return {
    write(line: string) {
      const prefix = journal ? journalPrefix(line) : '';
      out.write(format === 'text' ? `${prefix}${logfmtLine(line)}\n` : `${prefix}${line}`);
    },
  };
}
