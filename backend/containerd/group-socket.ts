// The socket a pod's runc v2 shim serves. containerd's shims name it after the shim's group (crisp
// groups a pod's containers by the pod id): sha256("<containerd address>/<namespace>/<group>") below
// /run/containerd/s, whatever containerd's state dir is. containerd 2's shims remove on exit only the
// socket named after their own `-id`; a pod without a pause container has its group socket bound by a
// shim whose id is a container's, so crisp removes what such a shim leaves behind.
import { createHash } from 'node:crypto';
import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../../common/errors.js';
import { socketState } from '../../common/unix-socket.js';
import type { Logger } from '../../common/logger.js';
import { sleep } from '../../common/time.js';

export const SHIM_SOCKET_DIR = '/run/containerd/s';

export function groupSocketPath(containerdAddress: string, namespace: string, podId: string): string {
  const hash = createHash('sha256').update(join(containerdAddress, namespace, podId)).digest('hex');
  return join(SHIM_SOCKET_DIR, hash);
}

/** Removes the socket at `path` if nobody listens on it; true once nothing is there. Only a socket file is removed. */
export async function removeIfStale(path: string): Promise<boolean> {
  const state = await socketState(path);
  if (state === 'gone') return true;
  if (state !== 'stale') return false;
  try {
    if (!(await lstat(path)).isSocket()) return false;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return true;
    throw err;
  }
  await rm(path, { force: true });
  return true;
}

/**
 * Waits up to ~1 s (`tries` × `intervalMs`) for a shutting-down shim to let go of `path`, removing the
 * socket once nobody serves it; false if a shim still serves it then.
 */
export async function waitSocketFree(path: string, tries: number, intervalMs: number): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await removeIfStale(path)) return true;
    await sleep(intervalMs);
  }
  return removeIfStale(path);
}

/** waitSocketFree for a removed pod's shim: one still serving is logged. */
export async function waitSocketGone(path: string, log: Logger): Promise<void> {
  if (!(await waitSocketFree(path, 20, 50))) log.warn({ socket: path }, 'a pod shim still serves after its pod was removed');
}
