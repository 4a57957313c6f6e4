// runc mounts a container's rootfs from inside the container's user namespace, so the path to the
// bundle (<state>/containerd/…/<id>/rootfs) must be searchable by the pod's root, a high host uid.
// crispd makes its dirs 0700; where user-namespace pods can run, the ones on that path become 0711
// (search, no listing), as containerd does for its own root and state.
import { chmod, stat } from 'node:fs/promises';
import { isENOENT } from '../../common/errors.js';

/** Adds o+x (and g+x) to each existing dir that lacks it; returns the dirs changed. */
export async function allowTraversal(dirs: readonly string[]): Promise<string[]> {
  const changed: string[] = [];
  for (const dir of dirs) {
    try {
      const st = await stat(dir);
      if (!st.isDirectory() || (st.mode & 0o011) === 0o011) continue;
      await chmod(dir, (st.mode & 0o7777) | 0o011);
      changed.push(dir);
    } catch (err) {
      if (!isENOENT(err)) throw err;
    }
  }
  return changed;
}
