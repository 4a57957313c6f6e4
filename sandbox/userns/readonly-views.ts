// Read-only views of the directories that hold image layers. An idmapped clone (open_tree) keeps the
// mount flags of the mount it clones, so an idmapped mount cloned from a read-only view is read-only
// without a remount. One view per layer parent dir (containerd's overlayfs `snapshots` dir), made on
// first use and kept for the daemon's life.
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runChecked } from '../../native/spawner.js';
import { errorMessage, internal } from '../../common/errors.js';
import { detachAndRemove, isMounted } from './mounts.js';

export class ReadonlyViews {
  private readonly views = new Map<string, Promise<string>>();

  /** `dir`: where the views are mounted (<state>/userns/ro). */
  constructor(private readonly dir: string) {}

  /** The view of the dir that holds `layer` (containerd: <snapshots>/<n>/fs → the snapshots dir). */
  static parentOf(layer: string): string {
    return dirname(dirname(layer));
  }

  /** The read-only view of `parent` (mounted on first use). */
  viewOf(parent: string): Promise<string> {
    let view = this.views.get(parent);
    if (!view) {
      view = this.mountView(parent);
      this.views.set(parent, view);
      view.catch(() => this.views.delete(parent));
    }
    return view;
  }

  private async mountView(parent: string): Promise<string> {
    const view = join(this.dir, createHash('sha256').update(parent).digest('hex').slice(0, 16));
    // A restarted crispd finds the view it made before.
    if (await isMounted(view)) return view;
    try {
      await mkdir(view, { recursive: true, mode: 0o700 });
      // Private, so nothing mounted later below the layers' dir propagates into the view or back.
      await runChecked('mount', ['--bind', '--make-private', '-o', 'ro', parent, view]);
    } catch (err) {
      throw internal(`mounting a read-only view of ${parent} on ${view}: ${errorMessage(err)}`, err);
    }
    return view;
  }

  /** Daemon stop: detach every view (idmapped layers cloned from them stay valid). */
  async release(): Promise<void> {
    this.views.clear();
    await detachAndRemove(this.dir);
  }
}
