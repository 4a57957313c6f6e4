// Mount sources crisp builds on the host for one container, below <state>/containers/<id>/mounts:
// recursive read-only binds (runc 1.1 has no "rro" option, so crisp hands runc a bind of a tree that
// is already read-only all the way down) and image volumes (an image's layers as a read-only view,
// optionally a sub path of it). The container's spec then binds these instead of the originals; they
// are detached from the host once runc has bound them into the container (a host path must not stay
// busy), the image views are released with the container; both are found again after a restart.
import { mkdir, realpath, rmdir, stat, writeFile } from 'node:fs/promises';
import { join, relative, isAbsolute } from 'node:path';
import { describeFailure, runCommand, succeeded } from '../../native/spawner.js';
import { invalidArgument, isENOENT, isErrno, withContext } from '../../common/errors.js';
import { roMount } from '../../native/nshelper.js';
import { detachAndRemove } from '../userns/mounts.js';
import type { RootfsMount } from '../../backend/containerd/runtime.js';
import type { MountSpec } from './types.js';

/** What preparing needs of the image and snapshot backends. */
export interface PreparedMountsBackend {
  /** The image's id and top layer chain id; pulls nothing (kubelet pulls image volumes first). */
  image(ref: string): Promise<{ id: string; topChainId: string }>;
  viewSnapshot(key: string, parent: string): Promise<RootfsMount[]>;
  removeSnapshot(key: string): Promise<void>;
}

const viewKey = (containerId: string, index: number) => `${containerId}-image-volume-${index}`;

export class PreparedMounts {
  constructor(
    /** <state>/containers */
    private readonly dir: string,
    private readonly backend: PreparedMountsBackend,
  ) {}

  private mountsDir(containerId: string): string {
    return join(this.dir, containerId, 'mounts');
  }

  /**
   * The container's mounts with each recursive read-only bind and image volume replaced by a plain
   * read-only bind of what was prepared for it. Throws with the mount's field named; what was made
   * before the failure is left for `release`, which the caller's undo runs.
   */
  async prepare(containerId: string, mounts: readonly MountSpec[]): Promise<MountSpec[]> {
    const out: MountSpec[] = [];
    for (const [i, m] of mounts.entries()) {
      if (m.image) out.push(await this.imageVolume(containerId, i, m));
      else if (m.recursiveReadOnly) out.push(await this.recursiveReadOnly(containerId, i, m));
      else out.push(m);
    }
    return out;
  }

  private async target(containerId: string, name: string, directory: boolean): Promise<string> {
    const dir = this.mountsDir(containerId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, name);
    if (directory) await mkdir(path, { recursive: true, mode: 0o755 });
    else await writeFile(path, '', { mode: 0o444, flag: 'a' });
    return path;
  }

  private async recursiveReadOnly(containerId: string, i: number, m: MountSpec): Promise<MountSpec> {
    const field = `config.mounts[${i}]`;
    const st = await stat(m.hostPath).catch((err: unknown) => {
      throw isENOENT(err) ? invalidArgument(`${field}.host_path: "${m.hostPath}" does not exist`) : err;
    });
    const dst = await this.target(containerId, `rro-${i}`, st.isDirectory());
    try {
      await roMount(m.hostPath, dst);
    } catch (err) {
      throw withContext(`${field}: making "${m.hostPath}" recursively read-only`, err);
    }
    return { ...m, hostPath: dst, readonly: true, recursiveReadOnly: false };
  }

  private async imageVolume(containerId: string, i: number, m: MountSpec): Promise<MountSpec> {
    const field = `config.mounts[${i}]`;
    const spec = m.image!;
    const image = await this.backend.image(spec.image).catch((err: unknown) => {
      throw withContext(`${field}.image: "${spec.image}"`, err);
    });
    spec.imageRef = image.id;
    const layers = await this.backend.viewSnapshot(viewKey(containerId, i), image.topChainId);
    const root = await this.target(containerId, `image-${i}`, true);
    await mountView(layers, root).catch((err: unknown) => {
      throw withContext(`${field}: mounting image "${spec.image}"`, err);
    });
    let source = root;
    if (spec.subPath) {
      // The sub path is resolved inside the mounted image: a symlink in the image may not lead out of it.
      const wanted = join(root, spec.subPath);
      const real = await realpath(wanted).catch((err: unknown) => {
        throw isENOENT(err) ? invalidArgument(`${field}.image_sub_path: "${spec.subPath}" does not exist in image "${spec.image}"`) : err;
      });
      const rel = relative(root, real);
      if (rel.startsWith('..') || isAbsolute(rel)) throw invalidArgument(`${field}.image_sub_path: "${spec.subPath}" leads out of image "${spec.image}"`);
      source = real;
    }
    return { ...m, hostPath: source, readonly: true, recursiveReadOnly: false };
  }

  /**
   * Once the container's mount namespace has its own binds (after Tasks.Create), the host's copies
   * are detached; the image views stay (an overlay in the container still reads their layers).
   */
  async detachSources(containerId: string): Promise<void> {
    try {
      await detachAndRemove(this.mountsDir(containerId));
    } catch (err) {
      throw withContext(`container ${containerId.slice(0, 12)}: detaching prepared mounts`, err);
    }
  }

  /** Unmounts and removes everything prepared for the container, and its image views. */
  async release(containerId: string, mounts: readonly MountSpec[]): Promise<void> {
    try {
      await detachAndRemove(this.mountsDir(containerId));
    } catch (err) {
      throw withContext(`container ${containerId.slice(0, 12)}: releasing prepared mounts`, err);
    }
    for (const [i, m] of mounts.entries()) if (m.image) await this.backend.removeSnapshot(viewKey(containerId, i));
    await removeEmptyDir(join(this.dir, containerId));
  }
}

/** rmdir, never recursive (nothing below may be crossed); gone already or still holding something is fine. */
async function removeEmptyDir(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch (err) {
    // ENOENT: nothing was prepared; ENOTEMPTY: something else lives there and goes with its owner.
    if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ENOTEMPTY')) throw withContext(`removing ${dir}`, err);
  }
}

/** Mounts a snapshot view: a single layer is a bind (made read-only), several are a lower-only overlay. */
async function mountView(layers: RootfsMount[], target: string): Promise<void> {
  const m = layers[0];
  if (!m || layers.length !== 1) throw new Error(`expected one mount for the image view, got ${layers.length}`);
  if (m.type === 'bind') {
    await roMount(m.source, target);
    return;
  }
  const options = m.options.filter((o) => o !== 'rw');
  const res = await runCommand('mount', ['-t', m.type, '-o', ['ro', ...options].join(','), m.source, target]);
  if (!succeeded(res)) throw new Error(describeFailure(`mount -t ${m.type}`, res));
}
