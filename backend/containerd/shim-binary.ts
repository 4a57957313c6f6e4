// Which shim binary containerd runs for a runtime type, found the way containerd finds it: the binary
// name derived from the type (io.containerd.runc.v2 → containerd-shim-runc-v2), first in containerd's
// working directory, then in its PATH, then beside the containerd binary. crispd starts a pod's warm
// shim itself (warm-shims.ts) and must start the very binary containerd would, or containerd would
// later talk to a shim of another version.
import { accessSync, constants } from 'node:fs';
import { delimiter, dirname, isAbsolute, join } from 'node:path';

/** "io.containerd.runc.v2" → "containerd-shim-runc-v2"; undefined for a name of another shape. */
export function shimBinaryName(runtimeType: string): string | undefined {
  const parts = runtimeType.split('.');
  if (parts.length < 2 || parts.some((p) => p === '')) return undefined;
  return `containerd-shim-${parts.at(-2)}-${parts.at(-1)}`;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    // Missing or not executable: the next candidate is tried, as containerd does.
    return false;
  }
}

export interface ShimLookup {
  /** containerd's working directory. */
  cwd: string;
  /** containerd's PATH. */
  path: string;
  /** The containerd binary, absolute. */
  containerdBinary: string;
  /** The runc v2 shim behind crisp-shim-start, when containerd runs with it (shim-start-helper.ts). */
  runcShim?: string;
}

/** The shim binary containerd would run for `runtimeType`, or undefined when none is found. */
export function resolveShimBinary(runtimeType: string, where: ShimLookup): string | undefined {
  if (isAbsolute(runtimeType)) return executable(runtimeType) ? runtimeType : undefined;
  const name = shimBinaryName(runtimeType);
  if (!name) return undefined;
  const candidates = [
    join(where.cwd, name),
    ...where.path.split(delimiter).filter((d) => d !== '').map((d) => join(d, name)),
    join(dirname(where.containerdBinary), name),
  ];
  return candidates.find(executable);
}
