// Pod cgroups for the cgroupfs driver on cgroup v1, hybrid and v2 hosts: the pod's directory is made
// in every hierarchy runc will place its containers in, and removed with the pod. Under the systemd
// driver systemd owns the tree: crisp only names the slice and lets runc ask systemd.
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isENOENT, isErrno, invalidArgument } from '../common/errors.js';
import { sleep } from '../common/time.js';
import { pathExists } from '../common/path-exists.js';
import { parseMountinfo } from './mountinfo.js';

export type CgroupDriver = 'cgroupfs' | 'systemd';

/** One cgroup or cgroup2 line of a mountinfo table. */
interface CgroupMountLine {
  fstype: 'cgroup' | 'cgroup2';
  mountPoint: string;
  /** The filesystem's options: a v1 hierarchy names its controllers here. */
  superOptions: string[];
}

let hostLines: CgroupMountLine[] | undefined;
let hostMounts: string[] | undefined;

/**
 * The host's cgroup lines are read from /proc/self/mountinfo once: the hierarchies are mounted at boot
 * and stay, while the table itself grows by several lines per pod (pins, /dev/shm, rootfs), so reading
 * it for every pod cgroup cost more with every pod on the node.
 */
function cgroupLines(mountinfo?: string): CgroupMountLine[] {
  if (mountinfo === undefined) return (hostLines ??= parseCgroupLines(readFileSync('/proc/self/mountinfo', 'utf8')));
  return parseCgroupLines(mountinfo);
}

function parseCgroupLines(mountinfo: string): CgroupMountLine[] {
  const out: CgroupMountLine[] = [];
  for (const { fstype, mountPoint, superOptions } of parseMountinfo(mountinfo)) if (fstype === 'cgroup' || fstype === 'cgroup2') out.push({ fstype, mountPoint, superOptions });
  return out;
}

/** Mount points of every cgroup hierarchy (v1 controllers and the v2 tree); the host's by default. */
export function cgroupMounts(mountinfo?: string): string[] {
  const points = () => [...new Set(cgroupLines(mountinfo).map((l) => l.mountPoint))];
  if (mountinfo === undefined) return (hostMounts ??= points());
  return points();
}

/** Whether a cgroup v1 hierarchy carries `controller` (the host's mountinfo by default). */
export function v1ControllerMounted(controller: string, mountinfo?: string): boolean {
  return cgroupLines(mountinfo).some((l) => l.fstype === 'cgroup' && l.superOptions.includes(controller));
}

/** The cgroup v2 root if the host is pure v2 ("unified"), else undefined. */
export function isUnifiedOnly(mounts: string[]): boolean {
  return mounts.length === 1;
}

/** Validate a cgroupfs path from a request: absolute, no "..", no empty elements. */
export function checkCgroupfsPath(path: string, field: string): string {
  if (!path.startsWith('/')) throw invalidArgument(`${field}: "${path}" must be an absolute cgroup path for the cgroupfs driver`);
  if (path.split('/').some((p) => p === '..' || p === '.')) throw invalidArgument(`${field}: "${path}" must not contain . or ..`);
  return path.replace(/\/+$/, '') || '/';
}

export function checkSystemdSlice(name: string, field: string): string {
  if (!/^[A-Za-z0-9_.:\\-]+\.slice$/.test(name)) throw invalidArgument(`${field}: "${name}" is not a systemd slice name (NAME.slice)`);
  return name;
}

/** cgroupsPath for a container's OCI spec. */
export function containerCgroupsPath(driver: CgroupDriver, podCgroup: string, containerId: string): string {
  return driver === 'systemd' ? `${podCgroup}:crisp:${containerId}` : `${podCgroup}/${containerId}`;
}

/** Make `path` in every hierarchy; true if crisp created it anywhere (and so owns its removal). */
export async function createCgroup(path: string, mounts = cgroupMounts()): Promise<boolean> {
  let created = false;
  for (const m of mounts) {
    const dir = join(m, path);
    try {
      // One mkdir; a missing parent (rare: kubelet makes its parents first) takes the recursive way.
      await mkdir(dir);
      created = true;
    } catch (err) {
      if (isErrno(err, 'EEXIST')) continue;
      if (!isENOENT(err)) throw err;
      await mkdir(dir, { recursive: true });
      created = true;
    }
  }
  return created;
}

const BUSY_RETRIES = 40;
const BUSY_KILL_AT = 10;
const BUSY_WAIT_MS = 50;

/**
 * Remove `path` from every hierarchy, with any cgroups left below it (a container cgroup runc did not
 * take away, e.g. after a create that containerd's restart cut short). Busy directories (processes still
 * exiting) are retried; processes still there after half a second are leftovers of the pod and are
 * killed, as kubelet kills what is left in a pod cgroup it removes. Returns the pids killed.
 */
export async function removeCgroup(path: string, mounts = cgroupMounts()): Promise<number[]> {
  const killed: number[] = [];
  for (const m of mounts) await removeTree(join(m, path), killed);
  return killed;
}

async function removeTree(dir: string, killed: number[]): Promise<void> {
  let children: string[];
  try {
    children = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch (err) {
    if (isENOENT(err)) return;
    throw err;
  }
  for (const child of children) await removeTree(child, killed);
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if (isENOENT(err)) return;
      if (!isErrno(err, 'EBUSY')) throw err;
      if (attempt < BUSY_KILL_AT) {
        await sleep(BUSY_WAIT_MS);
        continue;
      }
      const pids = await cgroupPids(dir);
      if (attempt >= BUSY_RETRIES) {
        throw new Error(`removing cgroup ${dir}: still busy after ${(BUSY_RETRIES * BUSY_WAIT_MS) / 1000} s${pids.length ? `, holding processes ${pids.join(', ')}` : ''}`, { cause: err });
      }
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
          if (!killed.includes(pid)) killed.push(pid);
        } catch {
          // Exited since cgroup.procs was read: what the kill was for.
        }
      }
      await sleep(BUSY_WAIT_MS);
    }
  }
}

/** The processes in one cgroup directory (not below it). */
async function cgroupPids(dir: string): Promise<number[]> {
  try {
    const text = await readFile(join(dir, 'cgroup.procs'), 'utf8');
    return text.split('\n').filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
  } catch (err) {
    if (isENOENT(err)) return [];
    throw err;
  }
}

/** Whether `path` exists in any hierarchy (tests, leak checks). */
export async function cgroupExists(path: string, mounts = cgroupMounts()): Promise<boolean> {
  for (const m of mounts) if (await pathExists(join(m, path))) return true;
  return false;
}
