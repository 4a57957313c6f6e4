// Mount-table helpers for the idmapped mounts crisp makes on the host: which mount points lie below a
// directory (read from /proc/self/mountinfo, so a restarted crispd finds what it made before), lazy
// detach of them, and removal of a directory only once nothing is mounted below it.
import { readFile, rm } from 'node:fs/promises';
import { runCommand } from '../../native/spawner.js';
import { errorMessage, internal } from '../../common/errors.js';
import { pathExists } from '../../common/path-exists.js';

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Mount points from mountinfo text (field 5), in table order. */
export function mountPoints(mountinfo: string): string[] {
  return mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined && p !== '')
    .map(unescapeMountPath);
}

export const isBelow = (path: string, dir: string): boolean => path === dir || path.startsWith(`${dir.replace(/\/+$/, '')}/`);

/** Mount points at or below `dir`, deepest first (each once, however often it is stacked). */
export function mountPointsBelow(dir: string, mountinfo: string): string[] {
  const below = new Set(mountPoints(mountinfo).filter((p) => isBelow(p, dir)));
  return [...below].sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length);
}

export async function readMountinfo(): Promise<string> {
  return readFile('/proc/self/mountinfo', 'utf8');
}

export async function isMounted(path: string, mountinfo?: string): Promise<boolean> {
  return mountPoints(mountinfo ?? (await readMountinfo())).includes(path);
}

/**
 * Lazily detaches (MNT_DETACH) everything mounted at or below `dir`: one umount run for all of them,
 * repeated while stacked mounts remain. A task still using a detached layer keeps it until it is gone.
 */
export async function detachBelow(dir: string): Promise<number> {
  // Nothing can be mounted below a directory that does not exist: no mount table to read (it grows
  // with every pod, and most containers prepare no mount at all).
  if (!(await pathExists(dir, { link: true }))) return 0;
  let detached = 0;
  for (let round = 0; round < 4; round++) {
    const points = mountPointsBelow(dir, await readMountinfo());
    if (points.length === 0) return detached;
    // umount exits non-zero if any target failed; the next round reads the table again and says which.
    await runCommand('umount', ['-l', ...points]);
    detached += points.length;
  }
  const left = mountPointsBelow(dir, await readMountinfo());
  if (left.length > 0) throw internal(`unmounting below ${dir}: still mounted: ${left.join(', ')}`);
  return detached;
}

/** Detaches everything below `dir`, then removes it; refuses to remove while anything is mounted there. */
export async function detachAndRemove(dir: string): Promise<void> {
  try {
    await detachBelow(dir);
  } catch (err) {
    throw internal(`removing ${dir}: ${errorMessage(err)}`, err);
  }
  // A recursive rm crosses mount points: it runs only after the table shows nothing below dir.
  await rm(dir, { recursive: true, force: true });
}
