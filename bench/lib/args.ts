// Benchmark parameters: each has a default sized for a ≤10-minute run on a small machine, and can be
// raised with a flag (`--iterations 200` or `--iterations=200`) or an environment variable
// (CRISP_BENCH_ITERATIONS=200). The flag wins over the environment.
import { parseArgs } from 'node:util';

export interface NumberOption {
  kind: 'number';
  default: number;
  doc: string;
  min?: number;
}

export interface StringOption {
  kind: 'string';
  default: string;
  doc: string;
}

export interface BooleanOption {
  kind: 'boolean';
  default: boolean;
  doc: string;
}

export type OptionSpec = NumberOption | StringOption | BooleanOption;

type ValueOf<O extends OptionSpec> = O extends NumberOption ? number : O extends BooleanOption ? boolean : string;
export type Options<S extends Record<string, OptionSpec>> = { [K in keyof S]: ValueOf<S[K]> };

const envName = (key: string) => `CRISP_BENCH_${key.replace(/-/g, '_').toUpperCase()}`;

function usage(bench: string, spec: Record<string, OptionSpec>): string {
  const lines = [`usage: node dist/bench/${bench}.js [options]`, ''];
  for (const [key, o] of Object.entries(spec)) {
    lines.push(`  --${key} ${o.kind === 'boolean' ? 'true|false' : '<value>'}  (${envName(key)}, default ${String(o.default)})`);
    lines.push(`      ${o.doc}`);
  }
  return lines.join('\n');
}

function parseBoolean(key: string, raw: string): boolean {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new Error(`option --${key}: expected true or false, got "${raw}"`);
}

/** Parse argv and the environment against `spec`; prints usage and exits on --help. */
export function parseOptions<S extends Record<string, OptionSpec>>(bench: string, spec: S, argv = process.argv.slice(2)): Options<S> {
  const parsed = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      ...Object.fromEntries(Object.keys(spec).map((k) => [k, { type: 'string' as const }])),
    },
    allowPositionals: false,
    strict: true,
  });
  if (parsed.values.help) {
    console.log(usage(bench, spec));
    process.exit(0);
  }
  const out: Record<string, number | string | boolean> = {};
  for (const [key, o] of Object.entries(spec)) {
    const flag = (parsed.values as Record<string, string | boolean | undefined>)[key];
    const raw = typeof flag === 'string' ? flag : process.env[envName(key)];
    if (raw === undefined || raw === '') {
      out[key] = o.default;
      continue;
    }
    if (o.kind === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new Error(`option --${key}: expected a number, got "${raw}"`);
      if (o.min !== undefined && n < o.min) throw new Error(`option --${key}: must be at least ${o.min}, got ${n}`);
      out[key] = n;
    } else if (o.kind === 'boolean') {
      out[key] = parseBoolean(key, raw);
    } else {
      out[key] = raw;
    }
  }
  return out as Options<S>;
}
