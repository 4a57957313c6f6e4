// The pod's /dev/shm: a size-limited tmpfs shared by the pod's containers (unless hostIPC). crisp-nshelper's
// pin mounts it with the pod's namespaces (native/nshelper.ts, PinOptions.shm); this module takes it down.
import { rmdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { runChecked } from '../../native/spawner.js';
import { isENOENT } from '../../common/errors.js';

export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;

/**
 * Whether a filesystem of its own is mounted on `path`: its device differs from its parent's. Enough
 * for the pod's tmpfs (every tmpfs mount has its own device) without reading the mount table, which
 * grows with every pod on the node.
 */
async function hasOwnMount(path: string): Promise<boolean> {
  try {
    const [here, parent] = await Promise.all([stat(path), stat(dirname(path))]);
    return here.dev !== parent.dev;
  } catch (err) {
    if (isENOENT(err)) return false;
    throw err;
  }
}

export async function unmountIfMounted(path: string): Promise<void> {
  if (await hasOwnMount(path)) await runChecked('umount', ['-l', path]);
  try {
    await rmdir(path);
  } catch (err) {
    if (!isENOENT(err)) throw err;
  }
}
