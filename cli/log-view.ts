// `crisp logs`: CRI log records (`<RFC3339Nano> <stdout|stderr> <F|P> <msg>`) → what the person reads,
// with crictl's --tail, --since and --timestamps. Pure: unit-tested.

/** One message: partial (P) records joined up to their final (F) record. */
export interface LogEntry {
  /** The first record's timestamp, as written (RFC 3339, nanoseconds). */
  time: string;
  /** Milliseconds since the epoch (NaN for an unparsable timestamp). */
  ms: number;
  stream: 'stdout' | 'stderr';
  message: string;
  /** False for a trailing partial message (a prompt, `echo -n`): printed without a newline. */
  complete: boolean;
}

const RECORD = /^(\S+) (stdout|stderr) ([FP])(?: (.*))?$/;

/** RFC 3339 with any number of fraction digits → ms (Date.parse takes at most 3). */
export function parseRfc3339(text: string): number {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(text.trim());
  if (!m) return NaN;
  const frac = m[2] ? m[2].slice(0, 4).padEnd(4, '0') : '';
  return Date.parse(`${m[1]}${frac}${m[3]}`);
}

/** Go's time.ParseDuration subset crictl users type: 90s, 42m, 1h30m, 1.5h, 500ms. */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * units[m[2]!]!;
    end = re.lastIndex;
  }
  if (text.length === 0 || end !== text.length) return NaN;
  return total;
}

/** `--since`: an RFC 3339 time or a duration before `now` (ms since the epoch). */
export function parseSince(text: string, now: number): number {
  const abs = parseRfc3339(text);
  if (!Number.isNaN(abs)) return abs;
  const rel = parseDuration(text.trim());
  if (!Number.isNaN(rel)) return now - rel;
  throw new Error(`bad --since "${text}" (want an RFC 3339 time such as 2024-05-01T10:00:00Z, or a duration such as 42m or 1h30m)`);
}

/** Turns CRI log text, fed in any pieces, into messages; partial records wait for their final one. */
export class CriLogParser {
  private carry = '';
  private readonly partial = new Map<string, { time: string; message: string }>();

  /** Whole lines of `chunk` (plus what an earlier chunk left unfinished) → complete messages. */
  feed(chunk: string): LogEntry[] {
    const text = this.carry + chunk;
    const cut = text.lastIndexOf('\n') + 1;
    this.carry = text.slice(cut);
    const out: LogEntry[] = [];
    for (const line of text.slice(0, cut).split('\n')) {
      const m = RECORD.exec(line);
      if (!m) continue;
      const [, time, stream, tag, msg = ''] = m as unknown as [string, string, 'stdout' | 'stderr', string, string | undefined];
      const head = this.partial.get(stream);
      const joined = { time: head?.time ?? time, message: (head?.message ?? '') + msg };
      if (tag === 'P') {
        this.partial.set(stream, joined);
        continue;
      }
      this.partial.delete(stream);
      out.push({ time: joined.time, ms: parseRfc3339(joined.time), stream, message: joined.message, complete: true });
    }
    return out;
  }

  /** Partial messages still waiting for their end (shown as they are when not following). */
  pending(): LogEntry[] {
    return [...this.partial.entries()].map(([stream, p]) => ({ time: p.time, ms: parseRfc3339(p.time), stream: stream as 'stdout' | 'stderr', message: p.message, complete: false }));
  }
}

export interface LogViewOptions {
  streams: Set<string>;
  /** Only messages at or after this time (ms since the epoch). */
  sinceMs?: number;
  /** Only the last N messages (applied once, to what the file already holds). */
  tail?: number;
  timestamps?: boolean;
}

/** Which entries to print, after the stream, --since and --tail filters. */
export function selectEntries(entries: LogEntry[], o: LogViewOptions): LogEntry[] {
  const since = o.sinceMs;
  let out = entries.filter((e) => o.streams.has(e.stream) && (since === undefined || !(e.ms < since)));
  if (o.tail !== undefined) out = o.tail === 0 ? [] : out.slice(-o.tail);
  return out;
}

export function renderEntries(entries: LogEntry[], timestamps = false): string {
  return entries.map((e) => `${timestamps ? `${e.time} ` : ''}${e.message}${e.complete ? '\n' : ''}`).join('');
}

/** CRI log text → the message bytes, as `kubectl logs` shows them (P records joined). */
export function renderCriLog(text: string, opts: LogViewOptions): string {
  const parser = new CriLogParser();
  const entries = [...parser.feed(text.endsWith('\n') ? text : `${text}\n`), ...parser.pending()];
  return renderEntries(selectEntries(entries, opts), opts.timestamps);
}
