// The default cgroup parent (config `cgroup_parent`, for pods kubelet gives none): made by crisp when
// the first such pod needs it and removed again when the last one goes — but only if crisp made it. A
// parent that existed before (an operator's, with its own limits) is left alone, as kubelet's own
// kubepods tree is: kubelet creates and owns that one. Whether crisp made it is kept in a marker file
// in the state dir, which a reboot clears together with the cgroups themselves. Making a pod cgroup
// below the parent and removing the parent are serialised, so a pod never loses its parent midway.
import { readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isENOENT, isErrno } from '../common/errors.js';
import { cgroupExists, cgroupMounts } from './cgroups.js';

export class DefaultCgroupParent {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    /** The parent, e.g. "/crisp". */
    readonly path: string,
    /** File recording that crisp made `path` (its content is the path). */
    private readonly marker: string,
    private readonly mounts: () => string[] = cgroupMounts,
  ) {}

  /** Whether `cgroupPath` is a pod cgroup directly below this parent. */
  holds(cgroupPath: string): boolean {
    return this.removable && cgroupPath.startsWith(`${this.path}/`) && !cgroupPath.slice(this.path.length + 1).includes('/');
  }

  private get removable(): boolean {
    return this.path !== '' && this.path !== '/';
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Runs `makeChild` (which creates a pod cgroup below the parent), marking the parent ours if it is missing. */
  withParent<T>(makeChild: () => Promise<T>): Promise<T> {
    return this.serial(async () => {
      if (this.removable && !(await cgroupExists(this.path, this.mounts()))) await writeFile(this.marker, this.path, { mode: 0o600 });
      return makeChild();
    });
  }

  /**
   * After a pod cgroup below the parent was removed: removes the parent if crisp made it and no pod
   * cgroup is left below it. Returns whether it was removed.
   */
  releaseIfUnused(): Promise<boolean> {
    return this.serial(async () => {
      if (!this.removable) return false;
      let owner: string;
      try {
        owner = await readFile(this.marker, 'utf8');
      } catch (err) {
        if (isENOENT(err)) return false; // not ours: made by someone else before crisp needed it
        throw err;
      }
      if (owner !== this.path) return false; // marked for another cgroup_parent (config changed)
      for (const m of this.mounts()) {
        try {
          await rmdir(join(m, this.path));
        } catch (err) {
          if (isENOENT(err)) continue;
          // A pod cgroup still below it (EBUSY on cgroupfs, ENOTEMPTY elsewhere): still in use.
          if (isErrno(err, 'EBUSY') || isErrno(err, 'ENOTEMPTY')) return false;
          throw err;
        }
      }
      await rm(this.marker, { force: true });
      return true;
    });
  }
}
