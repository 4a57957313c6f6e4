// crisp-shim-start in front of the runc v2 shim (native/crisp-shim-start.c). containerd runs the shim's
// `start` command for every task it creates; for a container joining its pod's running shim that command
// only prints the group's socket address, and the Go shim's start-up is most of its cost. The embedded
// containerd finds `containerd-shim-runc-v2` first in a directory of crisp's, a link to the helper, which
// answers a join itself and execs the real shim (named in the environment) for everything else. Only
// containerd 1.x's shim is stood in for: 2.x shims answer `start` with JSON bootstrap parameters.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { isErrno } from '../../common/errors.js';
import { resolveShimBinary, shimBinaryName, type ShimLookup } from './shim-binary.js';

/** The environment variable naming the real shim binary for the helper. */
export const SHIM_BINARY_ENV = 'CRISP_SHIM_BINARY';
export const RUNC_V2 = 'io.containerd.runc.v2';

/** The PATH a process gets when none is set (the embedded containerd's fallback too). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ShimStartHelperOptions {
  /** The crisp-shim-start binary. */
  helper: string;
  /** A directory of crisp's that will hold the link; it goes first in containerd's PATH. */
  dir: string;
  /** Where containerd would look for shims without the helper. */
  lookup: ShimLookup;
  /** The shim's version line (`<shim> -v`); tests pass their own. */
  shimVersion?: (shim: string) => string | undefined;
}

/** "1.6.20~ds1" from the shim's `-v` output; undefined when it does not run or says no version. */
export function runShimVersion(shim: string): string | undefined {
  const r = spawnSync(shim, ['-v'], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? /Version:\s+v?(\S+)/.exec(r.stdout)?.[1] : undefined;
}

/**
 * The environment additions that put the helper in front of the runc v2 shim, or a reason why not (no
 * runc v2 shim, or not a 1.x one). The link is (re)made to point at `helper`.
 */
export function shimStartHelperEnv(opts: ShimStartHelperOptions): Record<string, string> | string {
  const shim = resolveShimBinary(RUNC_V2, opts.lookup);
  if (!shim) return 'no runc v2 shim found';
  const version = (opts.shimVersion ?? runShimVersion)(shim);
  if (!version?.startsWith('1.')) return `${shim} is version ${version ?? 'unknown'}, not 1.x`;
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const link = join(opts.dir, shimBinaryName(RUNC_V2)!);
  let current: string | undefined;
  try {
    current = readlinkSync(link);
  } catch (err) {
    if (!isErrno(err, 'ENOENT') && !isErrno(err, 'EINVAL')) throw err;
  }
  if (current !== opts.helper) {
    rmSync(link, { force: true });
    symlinkSync(opts.helper, link);
  }
  return { PATH: [opts.dir, opts.lookup.path].filter((p) => p !== '').join(delimiter), [SHIM_BINARY_ENV]: shim };
}

/** The real runc v2 shim a process environment (containerd's, read from /proc) names for the helper. */
export function helperTarget(environ: string[]): string | undefined {
  const prefix = `${SHIM_BINARY_ENV}=`;
  return environ.find((e) => e.startsWith(prefix))?.slice(prefix.length) || undefined;
}
