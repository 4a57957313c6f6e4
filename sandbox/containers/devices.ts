// Host devices for a container's spec: CRI device requests resolved to type/major/minor, and every
// host device for privileged containers.
import { stat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument, isENOENT } from '../../common/errors.js';
import type { DeviceSpec } from './types.js';

export interface HostDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
  permissions: string;
}

/** Linux dev_t → major/minor (glibc's gnu_dev_major/minor). */
export function splitDev(rdev: number): { major: number; minor: number } {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00);
  return { major, minor };
}

async function deviceAt(hostPath: string, containerPath: string, permissions: string): Promise<HostDevice | undefined> {
  const st = await stat(hostPath);
  if (!st.isCharacterDevice() && !st.isBlockDevice()) return undefined;
  const { major, minor } = splitDev(st.rdev);
  return { path: containerPath, type: st.isCharacterDevice() ? 'c' : 'b', major, minor, fileMode: st.mode & 0o777, uid: st.uid, gid: st.gid, permissions };
}

/** CRI devices: a device node, or a directory of them (as containerd allows). */
export async function resolveDevices(devices: DeviceSpec[]): Promise<HostDevice[]> {
  const out: HostDevice[] = [];
  for (const [i, d] of devices.entries()) {
    const field = `config.devices[${i}]`;
    if (!/^[rwm]{1,3}$/.test(d.permissions || 'rwm')) throw invalidArgument(`${field}.permissions: "${d.permissions}" is not a subset of "rwm"`);
    let st;
    try {
      st = await stat(d.hostPath);
    } catch (err) {
      if (isENOENT(err)) throw invalidArgument(`${field}.host_path: "${d.hostPath}" does not exist`);
      throw err;
    }
    if (st.isDirectory()) {
      for (const name of await readdir(d.hostPath)) {
        const dev = await deviceAt(join(d.hostPath, name), join(d.containerPath, name), d.permissions || 'rwm').catch(() => undefined);
        if (dev) out.push(dev);
      }
      continue;
    }
    const dev = await deviceAt(d.hostPath, d.containerPath || d.hostPath, d.permissions || 'rwm');
    if (!dev) throw invalidArgument(`${field}.host_path: "${d.hostPath}" is not a device`);
    out.push(dev);
  }
  return out;
}

/** Every device node under /dev (privileged containers), skipping pseudo-terminals and the console. */
export async function allHostDevices(root = '/dev'): Promise<HostDevice[]> {
  const out: HostDevice[] = [];
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(dir, name);
      if (p === '/dev/pts' || p === '/dev/shm' || p === '/dev/mqueue' || p === '/dev/console' || p === '/dev/ptmx') continue;
      try {
        const st = await stat(p);
        if (st.isDirectory()) await walk(p);
        else {
          const dev = await deviceAt(p, p, 'rwm');
          if (dev) out.push(dev);
        }
      } catch {
        // vanished or unreadable
      }
    }
  };
  await walk(root);
  return out;
}
