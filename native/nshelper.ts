// Typed wrapper around native/build/crisp-nshelper (contract in native/README.md). crispd is
// multithreaded, so namespace creation and setns() happen in this single-threaded child program.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { isAbsolute } from 'node:path';
import { isIP } from 'node:net';
import { CrispError, invalidArgument, type ErrorKind } from '../common/errors.js';
import { helperPath } from './helper-paths.js';
import { runCommand, succeeded } from './spawner.js';

/** One id range: container ids [containerId, containerId+length) are host ids [hostId, …). */
export interface IdMapping {
  containerId: number;
  hostId: number;
  length: number;
}

export interface UserNamespaceMappings {
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

export type NamespaceKind = 'user' | 'net' | 'ipc' | 'uts';

export interface PinOptions {
  /** Existing directory; the pinned namespace files are created in it as user/net/ipc/uts. */
  dir: string;
  net?: boolean;
  /** Set the new net namespace's `lo` up (needs `net`), as the CNI loopback plugin would. */
  loopbackUp?: boolean;
  ipc?: boolean;
  uts?: boolean;
  /** Also pin a user namespace with these maps; the other namespaces are then owned by it. */
  user?: UserNamespaceMappings;
  /** Hostname set inside the new uts namespace (needs `uts`). */
  hostname?: string;
  /** Also mount the pod's /dev/shm: a tmpfs of `sizeBytes` on `path` (made if absent; kept if already mounted). */
  shm?: { path: string; sizeBytes: number };
}

/** Path of each pinned namespace file, for the kinds that were asked. */
export type PinnedNamespaces = Partial<Record<NamespaceKind, string>>;

/** Pinned namespace files to join before writing sysctls; only the given ones are joined. */
export interface SysctlNamespaces {
  netns?: string;
  ipcns?: string;
  utsns?: string;
}

export interface IdmapMountOptions {
  /** A user namespace file (pinned or /proc/<pid>/ns/user) whose maps the mount applies. */
  userns: string;
  src: string;
  /** Must exist (a directory for a directory src, a file for a file). */
  dst: string;
  recursive?: boolean;
}

export interface IdmapSupport {
  idmap: boolean;
  overlayOverIdmap: boolean;
  /** Why a feature is missing; "" when both work. */
  reason: string;
}

export interface PidNamespaceOptions {
  /** Existing directory; the pid namespace is pinned at DIR/pid. */
  dir: string;
  /** The pod's pinned user namespace file; the pid namespace is then owned by it, and the init runs
   *  as that namespace's uid/gid 0 (which must be mapped). */
  userns?: string;
  /** Name ps shows for the init (argv[0]; comm keeps the first 15 bytes). Default "crisp-pidinit". */
  name?: string;
}

/** A running pod pid namespace: its init's host pid and the pinned namespace file. */
export interface PidNamespace {
  pid: number;
  path: string;
}

export interface PortForwardOptions {
  /** The pod's pinned network namespace file (or /proc/self/ns/net for a host-network pod). */
  netns: string;
  port: number;
  /** An IPv4 or IPv6 literal; default localhost (127.0.0.1, then ::1). */
  host?: string;
}

export interface StopPidNamespaceOptions {
  dir: string;
  /** Host pid of the init that `startPidNamespace` returned. */
  pid: number;
}

/** A failed helper run: `step` and `detail` come from its `crisp-nshelper: <step>: <detail>` line. */
export class NsHelperError extends CrispError {
  constructor(
    kind: ErrorKind,
    readonly subcommand: string,
    readonly step: string,
    readonly detail: string,
    readonly exitCode: number | null,
  ) {
    super(kind, `nshelper ${subcommand}: ${step}${detail ? `: ${detail}` : ''}`);
    this.name = `NsHelperError(${kind})`;
  }
}

export const isNsHelperError = (err: unknown): err is NsHelperError => err instanceof NsHelperError;

const HELPER_NAME = 'crisp-nshelper' as const;
const TIMEOUT_MS = 30_000;
const MAX_RANGES = 340; // the kernel's limit on lines in uid_map/gid_map
const U32_END = 2 ** 32;

/** Where the helper binary is: config `nshelper_path`, else the default (see helper-paths.ts). */
export function nshelperPath(): string {
  return helperPath(HELPER_NAME);
}

// ---- argv building (pure) ----

function checkPath(what: string, path: string, ctx: string): void {
  if (!path || !isAbsolute(path)) throw invalidArgument(`${ctx}: ${what} must be an absolute path, got "${path}"`);
}

function mapSpec(what: string, ranges: IdMapping[], ctx: string): string {
  if (ranges.length === 0) throw invalidArgument(`${ctx}: ${what} is empty`);
  if (ranges.length > MAX_RANGES) throw invalidArgument(`${ctx}: ${what} has more than ${MAX_RANGES} ranges`);
  return ranges
    .map((r) => {
      const ok =
        [r.containerId, r.hostId, r.length].every((n) => Number.isInteger(n) && n >= 0 && n < U32_END) &&
        r.length > 0 &&
        r.containerId + r.length <= U32_END &&
        r.hostId + r.length <= U32_END;
      if (!ok) throw invalidArgument(`${ctx}: bad ${what} range ${JSON.stringify(r)}`);
      return `${r.containerId} ${r.hostId} ${r.length}`;
    })
    .join(',');
}

export function pinArgs(opts: PinOptions): string[] {
  const ctx = `pin ${opts.dir}`;
  checkPath('dir', opts.dir, ctx);
  if (!opts.net && !opts.ipc && !opts.uts && !opts.user) throw invalidArgument(`${ctx}: no namespace asked`);
  if (opts.hostname !== undefined && !opts.uts) throw invalidArgument(`${ctx}: hostname needs a uts namespace`);
  if (opts.loopbackUp && !opts.net) throw invalidArgument(`${ctx}: loopbackUp needs a net namespace`);
  const args = ['pin', '--dir', opts.dir];
  if (opts.user) {
    args.push('--user');
    args.push('--uid-map', mapSpec('uidMappings', opts.user.uidMappings, ctx));
    args.push('--gid-map', mapSpec('gidMappings', opts.user.gidMappings, ctx));
  }
  if (opts.net) args.push('--net');
  if (opts.loopbackUp) args.push('--lo-up');
  if (opts.ipc) args.push('--ipc');
  if (opts.uts) args.push('--uts');
  if (opts.hostname !== undefined) {
    if (opts.hostname.length === 0 || Buffer.byteLength(opts.hostname) > 64)
      throw invalidArgument(`${ctx}: hostname must be 1-64 bytes`);
    args.push('--hostname', opts.hostname);
  }
  if (opts.shm) {
    checkPath('shm.path', opts.shm.path, ctx);
    if (!Number.isSafeInteger(opts.shm.sizeBytes) || opts.shm.sizeBytes <= 0) throw invalidArgument(`${ctx}: shm size must be a positive byte count, got ${opts.shm.sizeBytes}`);
    args.push('--shm', opts.shm.path, '--shm-size', String(opts.shm.sizeBytes));
  }
  return args;
}

export function unpinArgs(dir: string): string[] {
  checkPath('dir', dir, `unpin ${dir}`);
  return ['unpin', '--dir', dir];
}

export function sysctlArgs(ns: SysctlNamespaces, sysctls: Record<string, string>): string[] {
  const ctx = 'sysctl';
  const args = ['sysctl'];
  for (const [flag, path] of [
    ['--netns', ns.netns],
    ['--ipcns', ns.ipcns],
    ['--utsns', ns.utsns],
  ] as const) {
    if (path === undefined) continue;
    checkPath(flag.slice(2), path, ctx);
    args.push(flag, path);
  }
  if (args.length === 1) throw invalidArgument(`${ctx}: no namespace given`);
  for (const [key, value] of Object.entries(sysctls)) {
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/.test(key)) throw invalidArgument(`${ctx}: bad key "${key}"`);
    if (value.includes('\0')) throw invalidArgument(`${ctx}: value of ${key} contains NUL`);
    args.push(`${key}=${value}`);
  }
  return args;
}

export function idmapMountArgs(opts: IdmapMountOptions): string[] {
  const ctx = `idmap-mount ${opts.src}`;
  checkPath('userns', opts.userns, ctx);
  checkPath('src', opts.src, ctx);
  checkPath('dst', opts.dst, ctx);
  const args = ['idmap-mount', '--userns', opts.userns, '--src', opts.src, '--dst', opts.dst];
  if (opts.recursive) args.push('--recursive');
  return args;
}

/** Recursive read-only bind of `src` onto `dst` (which must exist); see `roMount`. */
export function roMountArgs(src: string, dst: string): string[] {
  const ctx = `ro-mount ${src}`;
  checkPath('src', src, ctx);
  checkPath('dst', dst, ctx);
  return ['ro-mount', '--src', src, '--dst', dst];
}

export function probeIdmapArgs(tmpDir: string): string[] {
  checkPath('tmpDir', tmpDir, `probe-idmap ${tmpDir}`);
  return ['probe-idmap', '--dir', tmpDir];
}

const PID_MAX_LIMIT = 4_194_304; // the kernel's ceiling for pid_max

export function pidnsArgs(opts: PidNamespaceOptions): string[] {
  const ctx = `pidns ${opts.dir}`;
  checkPath('dir', opts.dir, ctx);
  const args = ['pidns', '--dir', opts.dir];
  if (opts.userns !== undefined) {
    checkPath('userns', opts.userns, ctx);
    args.push('--userns', opts.userns);
  }
  if (opts.name !== undefined) {
    if (!/^[\x21-\x7e]{1,64}$/.test(opts.name))
      throw invalidArgument(`${ctx}: name must be 1-64 printable ASCII characters without spaces, got "${opts.name}"`);
    args.push('--name', opts.name);
  }
  return args;
}

export function pidnsStopArgs(opts: StopPidNamespaceOptions): string[] {
  const ctx = `pidns-stop ${opts.dir}`;
  checkPath('dir', opts.dir, ctx);
  // pid 1 of the host is never a pod's init; refusing it here keeps a bad record from reaching kill
  if (!Number.isInteger(opts.pid) || opts.pid <= 1 || opts.pid > PID_MAX_LIMIT)
    throw invalidArgument(`${ctx}: pid must be an integer in 2..${PID_MAX_LIMIT}, got ${opts.pid}`);
  return ['pidns-stop', '--dir', opts.dir, '--pid', String(opts.pid)];
}

export function portfwdArgs(opts: PortForwardOptions): string[] {
  const ctx = `portfwd ${opts.netns} port ${opts.port}`;
  checkPath('netns', opts.netns, ctx);
  if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw invalidArgument(`${ctx}: port must be 1-65535`);
  const args = ['portfwd', '--netns', opts.netns, '--port', String(opts.port)];
  if (opts.host !== undefined) {
    if (isIP(opts.host) === 0) throw invalidArgument(`${ctx}: host must be an IP address, got "${opts.host}"`);
    args.push('--host', opts.host);
  }
  return args;
}

// ---- output parsing (pure) ----

function badOutput(subcommand: string, stdout: string, why: string): NsHelperError {
  return new NsHelperError('INTERNAL', subcommand, 'unexpected output', `${why}: ${JSON.stringify(stdout.trim())}`, 0);
}

function parseJsonObject(subcommand: string, stdout: string): Record<string, unknown> {
  const line = stdout.trim().split('\n').pop() ?? '';
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw badOutput(subcommand, stdout, 'not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw badOutput(subcommand, stdout, 'not an object');
  return value as Record<string, unknown>;
}

export function parsePinOutput(stdout: string, opts: PinOptions): PinnedNamespaces {
  const obj = parseJsonObject('pin', stdout);
  const asked: NamespaceKind[] = [];
  if (opts.user) asked.push('user');
  if (opts.net) asked.push('net');
  if (opts.ipc) asked.push('ipc');
  if (opts.uts) asked.push('uts');
  const out: PinnedNamespaces = {};
  for (const kind of asked) {
    const path = obj[kind];
    if (typeof path !== 'string' || path === '') throw badOutput('pin', stdout, `no path for ${kind}`);
    out[kind] = path;
  }
  return out;
}

export function parseIdmapSupport(stdout: string): IdmapSupport {
  const obj = parseJsonObject('probe-idmap', stdout);
  const { idmap, overlayOverIdmap, reason } = obj;
  if (typeof idmap !== 'boolean' || typeof overlayOverIdmap !== 'boolean' || typeof reason !== 'string')
    throw badOutput('probe-idmap', stdout, 'missing fields');
  return { idmap, overlayOverIdmap, reason };
}

export function parsePidnsOutput(stdout: string): PidNamespace {
  const { pid, path } = parseJsonObject('pidns', stdout);
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1) throw badOutput('pidns', stdout, 'no valid pid');
  if (typeof path !== 'string' || path === '') throw badOutput('pidns', stdout, 'no path');
  return { pid, path };
}

function parseOk(subcommand: string, stdout: string): void {
  if (parseJsonObject(subcommand, stdout).ok !== true) throw badOutput(subcommand, stdout, 'no "ok":true');
}

/** Splits the helper's `crisp-nshelper: <step>: <detail>` line; strerror texts hold no ": ". */
export function parseHelperFailure(stderr: string): { step: string; detail: string } {
  const lines = stderr.split('\n').filter((l) => l.startsWith(`${HELPER_NAME}: `));
  const line = lines.pop()?.slice(HELPER_NAME.length + 2) ?? stderr.trim();
  if (line.startsWith('usage: ')) return { step: 'usage', detail: line.slice('usage: '.length) };
  const cut = line.lastIndexOf(': ');
  return cut < 0 ? { step: line, detail: '' } : { step: line.slice(0, cut), detail: line.slice(cut + 2) };
}

const KIND_BY_EXIT: Record<number, ErrorKind> = { 1: 'INTERNAL', 2: 'INVALID_ARGUMENT', 3: 'ALREADY_EXISTS' };

// ---- running the helper ----

async function runHelper(args: string[]): Promise<string> {
  const bin = nshelperPath();
  const subcommand = args[0];
  const run = await runCommand(bin, args, { timeoutMs: TIMEOUT_MS });
  if (run.startError) {
    const code = (run.startError as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES')
      throw new NsHelperError(
        'FAILED_PRECONDITION',
        subcommand,
        `run ${bin}`,
        `${code} (build it with "make -C native" or set config key nshelper_path)`,
        null,
      );
    throw new NsHelperError('INTERNAL', subcommand, `run ${bin}`, run.startError.message, null);
  }
  if (succeeded(run)) return run.stdout;
  if (run.exitCode !== undefined) {
    const { step, detail } = parseHelperFailure(run.stderr);
    throw new NsHelperError(KIND_BY_EXIT[run.exitCode] ?? 'INTERNAL', subcommand, step, detail, run.exitCode);
  }
  const why = `killed by ${run.signal ?? 'a signal'}${run.timedOut ? ' (timeout)' : ''}`;
  throw new NsHelperError('INTERNAL', subcommand, `run ${bin}`, why, null);
}

// ---- API ----

/** Creates and pins the asked namespaces in one step (user namespace first, owning the others). */
export async function pinNamespaces(opts: PinOptions): Promise<PinnedNamespaces> {
  return parsePinOutput(await runHelper(pinArgs(opts)), opts);
}

/** Unmounts and removes the pinned namespace files in `dir`; files already gone are fine. */
export async function unpinNamespaces(dir: string): Promise<void> {
  parseOk('unpin', await runHelper(unpinArgs(dir)));
}

/** Writes namespaced sysctls (`net.ipv4.ip_forward`, `kernel.shmmax`, …) inside pinned namespaces. */
export async function applySysctls(ns: SysctlNamespaces, sysctls: Record<string, string>): Promise<void> {
  if (Object.keys(sysctls).length === 0) return;
  parseOk('sysctl', await runHelper(sysctlArgs(ns, sysctls)));
}

/** Bind-mounts `src` on `dst` with an idmap: on-disk id N appears as the host id N maps to in `userns`. */
export async function idmapMount(opts: IdmapMountOptions): Promise<void> {
  parseOk('idmap-mount', await runHelper(idmapMountArgs(opts)));
}

/**
 * Mounts `src` onto `dst` read-only all the way down (every submount too) with private propagation,
 * so that a plain bind of `dst` gives a container a recursive read-only mount on runc 1.1, which has
 * no "rro" option.
 */
export async function roMount(src: string, dst: string): Promise<void> {
  parseOk('ro-mount', await runHelper(roMountArgs(src, dst)));
}

/** Whether idmapped mounts, and overlay over idmapped lower dirs, work on `tmpDir`'s filesystem. */
export async function probeIdmap(tmpDir: string): Promise<IdmapSupport> {
  return parseIdmapSupport(await runHelper(probeIdmapArgs(tmpDir)));
}

/** Starts the pid 1 of a pod's shared pid namespace (owned by `userns` when given) and pins the
 *  namespace at DIR/pid. The init is detached from crispd (own session, reparented to the host's
 *  init), so it outlives a crispd restart; keep `pid` to stop it. */
export async function startPidNamespace(opts: PidNamespaceOptions): Promise<PidNamespace> {
  return parsePidnsOutput(await runHelper(pidnsArgs(opts)));
}

/** Kills the init (and with it every process in the namespace) if `pid` is still pid 1 of the
 *  namespace pinned at DIR/pid, waits for it to exit, then unpins. Gone init or file is fine. */
export async function stopPidNamespace(opts: StopPidNamespaceOptions): Promise<void> {
  parseOk('pidns-stop', await runHelper(pidnsStopArgs(opts)));
}

/** Starts a relay into a pod's network namespace: the child's stdin goes to ADDR:PORT there and what
 *  comes back appears on its stdout (see native/README.md). The caller owns the process: it dies with
 *  crispd, and ends once both directions have closed. A failure (refused connection, reset) exits
 *  non-zero; turn its stderr into an error with `portForwardFailure`. */
export function startPortForward(opts: PortForwardOptions): ChildProcessWithoutNullStreams {
  return spawn(nshelperPath(), portfwdArgs(opts), { stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The error for a relay that exited with `code` (null: killed by a signal). */
export function portForwardFailure(code: number | null, signal: NodeJS.Signals | null, stderr: string): NsHelperError {
  if (code === null) return new NsHelperError('INTERNAL', 'portfwd', 'relay', `killed by ${signal ?? 'a signal'}`, null);
  const { step, detail } = parseHelperFailure(stderr);
  const kind = code === 1 && /refused|unreachable/i.test(detail) ? 'UNAVAILABLE' : (KIND_BY_EXIT[code] ?? 'INTERNAL');
  return new NsHelperError(kind, 'portfwd', step || 'relay', detail, code);
}
