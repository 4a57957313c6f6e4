// Hostile CRI requests from a seeded PRNG: a valid template per method with a few fields replaced by
// boundary or garbage values (huge strings and maps, invalid UTF-8, negative and huge numbers, unknown
// enum values, traversal and symlinks in paths), or a message made up from nothing. Requests are encoded
// with a copy of the CRI schema whose string fields are bytes, so raw bytes (invalid UTF-8) reach the
// server exactly as sent.
import protobuf from 'protobufjs';
import Long from 'long';
import { stringsAsBytesRoot } from '../../../common/undecodable-request.js';

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Where path-bearing fields may point: all of it inside the test's own directory. */
export interface PathTargets {
  /** The pod log root crispd is configured with. */
  logRoot: string;
  /** A directory outside every root crisp owns; nothing may be created in it. */
  outside: string;
  /** Symlinks to `outside` (and to /) planted where crisp reads or writes. */
  symlinks: string[];
}

const INVALID_UTF8 = [
  [0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0x61, 0xfe, 0x62],
  [0xe2, 0x82],
].map((b) => Buffer.from(b));

const PLAIN_STRINGS = [
  '',
  ' ',
  'a',
  '-',
  '.',
  '..',
  '/',
  'a\0b',
  '\0',
  'a\nb',
  'line\r\nbreak',
  'tab\there',
  'UPPER_case',
  '-leading-dash',
  '%s%n%x',
  '${jndi:ldap://127.0.0.1/x}',
  "'; DROP TABLE pods; --",
  '\u202egnp.exe',
  '💥🐳',
  '\ud800',
  'k'.repeat(254),
  'x=y',
  'a/b=c',
  'vendor.example/class=dev',
  'vendor.example/class=../../x',
  '0',
  '-1',
  '18446744073709551616',
  'NaN',
  'sha256:',
  'sha256:' + 'f'.repeat(64),
  'f'.repeat(64),
];

const INT32 = [0, 1, -1, 2, 7, 255, 65535, 65536, 2 ** 31 - 1, -(2 ** 31), 1000];
const INT64 = [0, 1, -1, -2, 2 ** 31, 2 ** 53 + 1, -(2 ** 53), 4096, Long.MAX_VALUE, Long.MIN_VALUE, Long.fromString('9223372036854775806')];
const UINT = [0, 1, 2 ** 32 - 1, 2 ** 31, 65536];
const DOUBLES = [0, -0, -1, 1e308, -1e308, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 5e-324];

const PATHY = /path|dir|profile|file|socket|device|mount|cdi/i;

export interface FuzzValue {
  /** What the field became, for the report ("config.labels: 10000 entries"). */
  note: string;
}

/** Encode a request whose strings may be Buffers (raw bytes) with the bytes-for-strings schema. */
export function encodeRaw(typeName: string, value: Record<string, unknown>): Buffer {
  const type = stringsAsBytesRoot().lookupType(typeName);
  return Buffer.from(type.encode(type.fromObject(toBytes(type, value))).finish());
}

function toBytes(type: protobuf.Type, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const f = type.fields[k];
    if (!f || v === undefined || v === null) continue;
    const one = (x: unknown): unknown => {
      if (f.resolvedType instanceof protobuf.Type) return toBytes(f.resolvedType, x as Record<string, unknown>);
      if (f.type === 'bytes' && typeof x === 'string') return Buffer.from(x, 'utf8');
      return x;
    };
    if (f.map) out[k] = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([mk, mv]) => [mk, one(mv)]));
    else if (f.repeated) out[k] = (v as unknown[]).map(one);
    else out[k] = one(v);
  }
  return out;
}

/** The hostile-value generator for one run. */
export class CriFuzzer {
  /** Huge values (1 MiB strings, 10k-entry maps and lists) left for the current request: one at most. */
  private hugeLeft = 1;

  constructor(
    readonly rng: Rng,
    readonly targets: PathTargets,
  ) {}

  /** Start a new request (its one huge value is available again). */
  nextRequest(): void {
    this.hugeLeft = 1;
  }

  /** Whether this value may be huge: a request carries one huge value, so it stays under 16 MiB. */
  private huge(p: number): boolean {
    if (this.hugeLeft <= 0 || !this.rng.chance(p)) return false;
    this.hugeLeft--;
    return true;
  }

  private hostileString(field: string): string | Buffer {
    const r = this.rng;
    const roll = r.int(20);
    if (roll < 2) return Buffer.concat([Buffer.from('ok-'), r.pick(INVALID_UTF8), Buffer.from('-tail')]);
    if (roll < 3) return r.bytes(1 + r.int(64));
    // Inside a 10k-entry collection every value stays small, or the request outgrows 16 MiB.
    if (roll < 4 && this.hugeLeft > 0) return 'x'.repeat(this.huge(0.5) ? 1 << 20 : r.pick([4096, 65_536]));
    if (roll < 11 && PATHY.test(field)) return this.hostilePath();
    return r.pick(PLAIN_STRINGS);
  }

  hostilePath(): string {
    const r = this.rng;
    const t = this.targets;
    return r.pick([
      `${t.logRoot}/../${t.outside.split('/').pop()}`,
      `${t.logRoot}/../../../../../../${t.outside}`,
      `${t.logRoot}/./a/../../x`,
      ...t.symlinks,
      ...t.symlinks.map((s) => `${s}/inner`),
      ...t.symlinks.map((s) => `${s}/../escape`),
      '../../../../../../etc/passwd',
      '../' .repeat(40) + 'tmp',
      '/proc/self/root/etc/shadow',
      '/proc/self/fd/0',
      '/dev/mem',
      '/dev/../dev/null',
      '/sys/kernel/debug',
      '//',
      '/.',
      'relative/path',
      '/a\0/b',
      `/${'d/'.repeat(2000)}x`,
      `/${'n'.repeat(300)}`,
      'localhost/../../x',
      'localhost//etc/passwd',
    ]);
  }

  private hostileNumber(type: string): number | Long {
    const r = this.rng;
    if (type === 'double' || type === 'float') return r.pick(DOUBLES);
    if (type === 'int64' || type === 'sint64' || type === 'sfixed64') return r.pick(INT64);
    if (type === 'uint64' || type === 'fixed64') return r.pick([...INT64, Long.MAX_UNSIGNED_VALUE]);
    if (type === 'uint32' || type === 'fixed32') return r.pick(UINT);
    return r.pick(INT32);
  }

  private hostileScalar(field: protobuf.Field, name: string): unknown {
    if (field.resolvedType instanceof protobuf.Enum) {
      const known = Object.values(field.resolvedType.values);
      return this.rng.chance(0.5) ? this.rng.pick([-1, 99, 2 ** 31 - 1, -(2 ** 31), 1000]) : this.rng.pick(known);
    }
    if (field.type === 'bool') return this.rng.chance(0.5);
    if (field.type === 'string' || field.type === 'bytes') return this.hostileString(name);
    return this.hostileNumber(field.type);
  }

  /** A made-up value for `field`, at most `depth` messages deep. */
  private hostileValue(field: protobuf.Field, name: string, depth: number): unknown {
    const r = this.rng;
    const element = () =>
      field.resolvedType instanceof protobuf.Type ? this.randomMessage(field.resolvedType, `${name}[]`, depth - 1) : this.hostileScalar(field, name);
    if (field.map) {
      const n = this.huge(0.25) ? 10_000 : r.pick([0, 1, 3]);
      const entries: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        const key = n > 100 ? `fuzz.example/k-${i}` : (() => {
          const k = this.hostileString(name);
          return typeof k === 'string' ? k : `raw-${i}`;
        })();
        entries[key] = n > 100 ? `v-${i}` : element();
      }
      return entries;
    }
    if (field.repeated) {
      const big = field.resolvedType instanceof protobuf.Type ? 300 : 10_000;
      const n = this.huge(0.2) ? big : r.pick([0, 1, 2, 5]);
      return Array.from({ length: n }, element);
    }
    return element();
  }

  /** A message of `type` with every field made up (each present with probability ½). */
  randomMessage(type: protobuf.Type, name: string, depth = 3): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (depth <= 0) return out;
    for (const f of type.fieldsArray) {
      if (this.rng.chance(0.5)) out[f.name] = this.hostileValue(f, `${name}.${f.name}`, depth);
    }
    return out;
  }

  /**
   * `template` with `count` fields, chosen by a random walk down the message, replaced by hostile
   * values; returns the notes of what changed ("config.linux.security_context.seccomp.localhost_ref").
   */
  mutate(type: protobuf.Type, template: Record<string, unknown>, count: number, keep: (path: string) => boolean = () => false): string[] {
    const notes: string[] = [];
    for (let i = 0; i < count; i++) {
      let t = type;
      let obj = template;
      let path = '';
      for (let depth = 0; depth < 8 && t.fieldsArray.length > 0; depth++) {
        const f = this.rng.pick(t.fieldsArray);
        const p = path ? `${path}.${f.name}` : f.name;
        if (keep(p)) break;
        const sub = f.resolvedType instanceof protobuf.Type && !f.map ? f.resolvedType : undefined;
        const current = obj[f.name];
        // Go deeper into a present sub-message most of the time; elements of repeated messages too.
        if (sub && this.rng.chance(0.75)) {
          if (f.repeated) {
            const list = Array.isArray(current) && current.length > 0 ? (current as Record<string, unknown>[]) : [{}];
            obj[f.name] = list;
            const idx = this.rng.int(list.length);
            obj = list[idx]!;
            path = `${p}[${idx}]`;
          } else {
            if (!current || typeof current !== 'object') obj[f.name] = {};
            obj = obj[f.name] as Record<string, unknown>;
            path = p;
          }
          t = sub;
          continue;
        }
        obj[f.name] = this.hostileValue(f, p, 2);
        notes.push(p);
        break;
      }
    }
    return notes;
  }
}
