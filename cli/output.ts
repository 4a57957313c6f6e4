// Output formats (`-o json|yaml|table`) and list filters (name regex, key=value labels, state, last N)
// shared by ps, pods, images and the inspect commands. Pure functions: unit-tested.
import protobuf from 'protobufjs';
import { stringify as toYaml } from 'yaml';
import { lookupType } from '../common/proto-registry.js';

export type OutputFormat = 'json' | 'yaml' | 'table';

const FORMATS: readonly OutputFormat[] = ['json', 'yaml', 'table'];

/** `-o` value → format; anything else is refused with the accepted values named. */
export function parseOutputFormat(value: string | undefined, fallback: OutputFormat): OutputFormat {
  if (value === undefined || value === '') return fallback;
  const v = value.toLowerCase();
  if ((FORMATS as readonly string[]).includes(v)) return v as OutputFormat;
  throw new Error(`unknown output format "${value}" (want json, yaml or table)`);
}

/** A document in JSON (2-space indent) or YAML, ending with a newline. */
export function renderDocument(format: 'json' | 'yaml', doc: unknown): string {
  return format === 'json' ? `${JSON.stringify(doc, null, 2)}\n` : toYaml(doc, { lineWidth: 0 });
}

/**
 * A decoded CRI message as crictl's JSON shows it: enums by name ("CONTAINER_RUNNING"), bytes as
 * text, every field present. `type` is the message's full name without the leading dot
 * ("runtime.v1.Container").
 */
export function protoJson(type: string, message: unknown): Record<string, unknown> {
  const t = lookupType(type);
  const obj = t.toObject(t.fromObject(message as Record<string, unknown>), {
    enums: String,
    longs: Number,
    bytes: String,
    defaults: true,
    arrays: true,
    objects: true,
    json: true,
  });
  return inFieldOrder(t, obj);
}

/** Keys in the .proto's field order (id first), as crictl prints them; protobufjs puts lists first. */
function inFieldOrder(t: protobuf.Type, obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of t.fieldsArray) {
    if (!(f.name in obj)) continue;
    const v = obj[f.name];
    const sub = f.resolvedType instanceof protobuf.Type ? f.resolvedType : undefined;
    const order = (x: unknown) => (sub && x !== null && typeof x === 'object' ? inFieldOrder(sub, x as Record<string, unknown>) : x);
    if (f.map && v && typeof v === 'object') out[f.name] = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, order(x)]));
    else if (Array.isArray(v)) out[f.name] = v.map(order);
    else out[f.name] = order(v);
  }
  for (const [k, v] of Object.entries(obj)) if (!(k in out)) out[k] = v;
  return out;
}

/** An RFC 3339 time (millisecond precision) from a CRI nanosecond timestamp; "" for 0. */
export function nanosToIso(nanos: number): string {
  return nanos > 0 ? new Date(Math.floor(nanos / 1e6)).toISOString() : '';
}

/** `--label key=value` (repeatable) → a label selector. */
export function parseLabelSelector(specs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new Error(`bad --label "${spec}" (want key=value)`);
    out[spec.slice(0, eq)] = spec.slice(eq + 1);
  }
  return out;
}

/** A `--name`/`--namespace` regular expression; a bad one is refused naming the flag. */
export function parseRegexFilter(flag: string, pattern: string | undefined): RegExp | undefined {
  if (pattern === undefined || pattern === '') return undefined;
  try {
    return new RegExp(pattern);
  } catch (err) {
    throw new Error(`bad ${flag} pattern "${pattern}": ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A non-negative integer option (`--tail`, `--last`). */
export function parseCount(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) throw new Error(`bad ${flag} "${value}" (want a non-negative integer)`);
  return Number(value.trim());
}

/**
 * crictl's `--latest` / `--last N`: the newest first, cut to N (0 = all). Without either, the input
 * order (oldest first, as crispd lists) is kept.
 */
export function newestFirst<T extends { createdAt: number }>(items: T[], opts: { latest?: boolean; last?: number }): T[] {
  const n = opts.latest ? 1 : (opts.last ?? 0);
  if (!opts.latest && opts.last === undefined) return items;
  const sorted = [...items].sort((a, b) => b.createdAt - a.createdAt);
  return n > 0 ? sorted.slice(0, n) : sorted;
}

/** A verbose status `info` map with each value parsed as JSON where it is JSON. */
export function parseInfo(info: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) {
    try {
      out[k] = JSON.parse(v);
    } catch {
      out[k] = v;
    }
  }
  // crispd puts everything under "info"; show it at the top as crictl does for containerd.
  const nested = out.info;
  if (Object.keys(out).length === 1 && nested && typeof nested === 'object') return nested as Record<string, unknown>;
  return out;
}
