// The policy of the ulimit NRI plugin, without any NRI: pod annotations in, the container's rlimits and
// environment out. Annotations (a container's own ones win over the pod-wide ones, per limit or
// variable):
//   ulimits.nri.crisp.io/pod               "nofile=1024:4096, nproc=512"  every container of the pod
//   ulimits.nri.crisp.io/container.<name>  the same, for the container named <name>
//   env.nri.crisp.io/pod                   one KEY=VALUE per line (# comments and blank lines skipped)
//   env.nri.crisp.io/container.<name>
// A limit is TYPE=SOFT[:HARD] (HARD defaults to SOFT) with TYPE a ulimit name (nofile, nproc, core, ...)
// or RLIMIT_*. An annotation the plugin cannot read, or a hard limit above the plugin's maximum for that
// type, is an error: the container is not created, and the error names the annotation.

export const ULIMITS_PREFIX = 'ulimits.nri.crisp.io/';
export const ENV_PREFIX = 'env.nri.crisp.io/';

/** ulimit names and the OCI rlimit types (RLIMIT_*) they stand for. */
export const RLIMIT_TYPES: Readonly<Record<string, string>> = {
  as: 'RLIMIT_AS',
  core: 'RLIMIT_CORE',
  cpu: 'RLIMIT_CPU',
  data: 'RLIMIT_DATA',
  fsize: 'RLIMIT_FSIZE',
  locks: 'RLIMIT_LOCKS',
  memlock: 'RLIMIT_MEMLOCK',
  msgqueue: 'RLIMIT_MSGQUEUE',
  nice: 'RLIMIT_NICE',
  nofile: 'RLIMIT_NOFILE',
  nproc: 'RLIMIT_NPROC',
  rss: 'RLIMIT_RSS',
  rtprio: 'RLIMIT_RTPRIO',
  rttime: 'RLIMIT_RTTIME',
  sigpending: 'RLIMIT_SIGPENDING',
  stack: 'RLIMIT_STACK',
};

export interface Rlimit {
  type: string;
  soft: number;
  hard: number;
}

export interface EnvVar {
  key: string;
  value: string;
}

export interface ContainerPolicy {
  rlimits: Rlimit[];
  env: EnvVar[];
}

/** Highest hard limit a pod may ask for, by OCI type (RLIMIT_NOFILE → 1048576). */
export type Maximums = ReadonlyMap<string, number>;

/** An annotation (or a plugin flag) that cannot be applied; the message names it. */
export class PolicyError extends Error {}

/** "nofile" or "RLIMIT_NOFILE" (any case) → "RLIMIT_NOFILE". */
export function rlimitType(name: string): string | undefined {
  const lower = name.trim().toLowerCase();
  const short = lower.startsWith('rlimit_') ? lower.slice('rlimit_'.length) : lower;
  return RLIMIT_TYPES[short];
}

function parseLimitValue(text: string, where: string): number {
  if (text === 'unlimited' || text === 'infinity') {
    throw new PolicyError(`${where}: "${text}" is not supported (give a number; unlimited cannot be represented exactly here)`);
  }
  if (!/^[0-9]+$/.test(text)) throw new PolicyError(`${where}: "${text}" is not a non-negative integer`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new PolicyError(`${where}: ${text} is too large`);
  return n;
}

/** "nofile=1024:4096, nproc=512" (commas or newlines between entries) → rlimits, one per type. */
export function parseUlimits(value: string, annotation: string): Rlimit[] {
  const out = new Map<string, Rlimit>();
  for (const raw of value.split(/[,\n]/)) {
    const entry = raw.trim();
    if (entry === '') continue;
    const where = `annotation ${annotation}: "${entry}"`;
    const m = /^([A-Za-z_]+)\s*=\s*([^:\s]+)(?:\s*:\s*(\S+))?$/.exec(entry);
    if (!m) throw new PolicyError(`${where}: expected TYPE=SOFT[:HARD], e.g. nofile=1024:4096`);
    const type = rlimitType(m[1]!);
    if (!type) throw new PolicyError(`${where}: unknown limit "${m[1]}" (one of ${Object.keys(RLIMIT_TYPES).join(', ')})`);
    if (out.has(type)) throw new PolicyError(`${where}: ${m[1]} is given twice`);
    const soft = parseLimitValue(m[2]!, where);
    const hard = m[3] === undefined ? soft : parseLimitValue(m[3], where);
    if (soft > hard) throw new PolicyError(`${where}: soft limit ${soft} is above the hard limit ${hard}`);
    out.set(type, { type, soft, hard });
  }
  return [...out.values()];
}

/** One KEY=VALUE per line; blank lines and lines starting with # are skipped. */
export function parseEnv(value: string, annotation: string): EnvVar[] {
  const out = new Map<string, EnvVar>();
  for (const raw of value.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line.trim() : line.slice(0, eq).trim();
    if (eq < 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new PolicyError(`annotation ${annotation}: "${line.trim()}": expected KEY=VALUE with KEY a shell variable name`);
    }
    out.set(key, { key, value: line.slice(eq + 1) });
  }
  return [...out.values()];
}

/**
 * What the container gets: pod-wide entries, then the container's own ones replacing them type by type
 * and variable by variable; undefined when no annotation concerns it. Hard limits above `max` fail.
 */
export function containerPolicy(annotations: Readonly<Record<string, string>>, containerName: string, max: Maximums = new Map()): ContainerPolicy | undefined {
  const rlimits = new Map<string, Rlimit>();
  const env = new Map<string, EnvVar>();
  let found = false;
  for (const scope of ['pod', `container.${containerName}`]) {
    const ulimitsKey = `${ULIMITS_PREFIX}${scope}`;
    const ulimits = annotations[ulimitsKey];
    if (ulimits !== undefined) {
      found = true;
      for (const r of parseUlimits(ulimits, ulimitsKey)) {
        const cap = max.get(r.type);
        if (cap !== undefined && r.hard > cap) {
          throw new PolicyError(`annotation ${ulimitsKey}: ${r.type} hard limit ${r.hard} is above the plugin's maximum ${cap}`);
        }
        rlimits.set(r.type, r);
      }
    }
    const envKey = `${ENV_PREFIX}${scope}`;
    const vars = annotations[envKey];
    if (vars !== undefined) {
      found = true;
      for (const v of parseEnv(vars, envKey)) env.set(v.key, v);
    }
  }
  return found ? { rlimits: [...rlimits.values()], env: [...env.values()] } : undefined;
}

/** The plugin's --max flags ("nofile=1048576") → maximums by OCI type. */
export function parseMaximums(flags: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const flag of flags) {
    const m = /^([A-Za-z_]+)=([0-9]+)$/.exec(flag.trim());
    const type = m ? rlimitType(m[1]!) : undefined;
    if (!m || !type) throw new PolicyError(`--max ${flag}: expected TYPE=N with TYPE one of ${Object.keys(RLIMIT_TYPES).join(', ')}`);
    const n = Number(m[2]);
    if (!Number.isSafeInteger(n)) throw new PolicyError(`--max ${flag}: too large`);
    out.set(type, n);
  }
  return out;
}
