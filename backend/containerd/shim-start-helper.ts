// crisp-shim-start in front of the runc v2 shim (native/crisp-shim-start.c). containerd runs the shim's
// `start` command for every task it creates; for a container joining its pod's running shim that command
// only prints the group's socket address, and the Go shim's start-up is most of its cost. The embedded
// containerd finds `containerd-shim-runc-v2` first in a directory of crisp's, a link to the helper, which
// answers a join itself and execs the real shim (named in the environment) for everything else.
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
}

/**
 * The environment additions that put the helper in front of the runc v2 shim, or undefined when there is
 * no runc v2 shim to put it in front of. The link is (re)made to point at `helper`.
 */
export function shimStartHelperEnv(opts: ShimStartHelperOptions): Record<string, string> | undefined {
  const shim = resolveShimBinary(RUNC_V2, opts.lookup);
  if (!shim) return undefined;
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
