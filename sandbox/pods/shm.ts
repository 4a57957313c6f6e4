// The pod's /dev/shm: a size-limited tmpfs shared by the pod's containers (unless hostIPC). crisp-nshelper's
// pin mounts it with the pod's namespaces (native/nshelper.ts, PinOptions.shm); this module takes it down.
import { rmdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { runChecked } from '../../native/spawner.js';
import { isENOENT } from '../../common/errors.js';

export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;

export function isMountPoint(path: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): boolean {
  return mountinfo.split('\n').some((l) => l.split(' ')[4] === path);
}

export async function unmountIfMounted(path: string): Promise<void> {
  if (isMountPoint(path)) await runChecked('umount', ['-l', path]);
  try {
    await rmdir(path);
  } catch (err) {
    if (!isENOENT(err)) throw err;
  }
}
