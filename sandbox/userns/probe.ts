// What this node can do for user-namespace pods, probed once at daemon start: whether the kernel gives
// user namespaces at all, whether idmapped mounts work on the filesystems crisp mounts from (its state
// and root dirs), and whether overlayfs accepts idmapped lower layers. The answer decides how a userns
// container gets its rootfs and what Status reports as the handler's user_namespaces feature.
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../common/errors.js';
import { probeIdmap, type IdmapSupport } from '../../native/nshelper.js';

/** How a userns container's rootfs is made: idmapped lower layers, chown of a copy-up, or not at all. */
export type RootfsStrategy = 'idmap' | 'chown' | 'unavailable';

export interface UsernsSupport {
  /** User-namespace pods can run here: the handler feature user_namespaces. */
  userNamespaces: boolean;
  /** The kernel gives user namespaces at all. */
  kernelUserns: boolean;
  /** Idmapped bind mounts work (pod files and volumes are idmapped). */
  idmap: boolean;
  /** Overlayfs accepts idmapped lower dirs (the rootfs needs no chown). */
  overlayOverIdmap: boolean;
  /** userns_chown_fallback from the config. */
  chownFallback: boolean;
  rootfs: RootfsStrategy;
  /** Why something is missing ("" when idmapped mounts cover everything). */
  reason: string;
  /** How long the probe took. */
  probeMs: number;
}

export interface ProbeOptions {
  /** crispd's runtime state dir: idmapped mounts are made below it. */
  stateDir: string;
  /** crispd's root dir: the snapshots (lower layers) and pod files live below it. */
  rootDir: string;
  chownFallback: boolean;
}

/** Kernel support for user namespaces at all (max_user_namespaces 0 turns them off). */
async function kernelUserNamespaces(): Promise<{ ok: boolean; reason: string }> {
  try {
    const max = Number.parseInt((await readFile('/proc/sys/user/max_user_namespaces', 'utf8')).trim(), 10);
    if (!(max > 0)) return { ok: false, reason: 'user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)' };
    return { ok: true, reason: '' };
  } catch (err) {
    return { ok: false, reason: `the kernel has no user namespaces (${errorMessage(err)})` };
  }
}

async function probeIn(dir: string): Promise<IdmapSupport> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return await probeIdmap(dir);
  } catch (err) {
    return { idmap: false, overlayOverIdmap: false, reason: `probing idmapped mounts in ${dir}: ${errorMessage(err)}` };
  }
}

/** Combines the kernel check and the per-filesystem probes into what crisp will do. */
export function decideSupport(kernel: { ok: boolean; reason: string }, probes: IdmapSupport[], chownFallback: boolean, probeMs = 0): UsernsSupport {
  const idmap = kernel.ok && probes.every((p) => p.idmap);
  const overlayOverIdmap = idmap && probes.every((p) => p.overlayOverIdmap);
  const reason = !kernel.ok ? kernel.reason : probes.map((p) => p.reason).filter(Boolean).join('; ');
  const rootfs: RootfsStrategy = !kernel.ok ? 'unavailable' : overlayOverIdmap ? 'idmap' : chownFallback ? 'chown' : 'unavailable';
  return { userNamespaces: rootfs !== 'unavailable', kernelUserns: kernel.ok, idmap, overlayOverIdmap, chownFallback, rootfs, reason, probeMs };
}

/**
 * Probes once: in `<state>/userns-probe`, and in `<root>/userns-probe` too when the root dir is on
 * another filesystem (the lower layers must be idmappable where they are).
 */
export async function probeUsernsSupport(opts: ProbeOptions): Promise<UsernsSupport> {
  const started = performance.now();
  const kernel = await kernelUserNamespaces();
  const probes: IdmapSupport[] = [];
  if (kernel.ok) {
    const dirs = [join(opts.stateDir, 'userns-probe')];
    await mkdir(opts.rootDir, { recursive: true, mode: 0o711 });
    await mkdir(opts.stateDir, { recursive: true, mode: 0o711 });
    const [s, r] = await Promise.all([stat(opts.stateDir), stat(opts.rootDir)]);
    if (s.dev !== r.dev) dirs.push(join(opts.rootDir, 'userns-probe'));
    for (const d of dirs) probes.push(await probeIn(d));
  }
  return decideSupport(kernel, probes, opts.chownFallback, performance.now() - started);
}

/** One line for logs and errors: what userns pods get here. */
export function describeSupport(s: UsernsSupport): string {
  switch (s.rootfs) {
    case 'idmap':
      return 'user-namespace pods: idmapped rootfs and volumes (no chown)';
    case 'chown':
      return `user-namespace pods: chown fallback (slow rootfs copy-up; volumes ${s.idmap ? 'idmapped' : 'not remapped'}): ${s.reason}`;
    default:
      return `user-namespace pods unavailable: ${s.reason || 'idmapped mounts are not supported'}`;
  }
}
