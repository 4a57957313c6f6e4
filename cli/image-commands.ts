// crictl-like image commands: pull (with a progress bar), images, rmi, inspecti.
import { join } from 'node:path';
import type { Command } from 'commander';
import { withClient } from './client-context.js';
import { printTable, shortId, humanBytes } from './table.js';
import { parseImageReference, referenceString } from '../backend/registry/reference.js';
import { pullProgressPath, readPullProgress, type PullProgress } from '../backend/images/progress.js';

/** A progress file not rewritten for this long belongs to a pull that is no longer running. */
const STALE_PROGRESS_MS = 10_000;
const BAR_WIDTH = 24;

const mb = (n: number) => (n / 1e6).toFixed(1);

/**
 * One line of `crisp pull` progress: a bar, percent, MB done/total and MB/s when crispd publishes the
 * pull's progress; elapsed time only while it does not (resolving, or a daemon with another state dir).
 * Fits in `columns` (cut at the end).
 */
export function renderPullProgress(image: string, progress: PullProgress | undefined, elapsedMs: number, columns = 80): string {
  const elapsed = `${(elapsedMs / 1000).toFixed(1)}s`;
  let line: string;
  if (!progress || progress.total <= 0) {
    line = `pulling ${image} … ${elapsed}`;
  } else {
    const fraction = Math.min(1, Math.max(0, progress.done / progress.total));
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    line = `${bar} ${percent} ${mb(progress.done)}/${mb(progress.total)} MB ${mb(progress.bytesPerSecond)} MB/s ${elapsed} ${image}`;
  }
  return line.length > columns - 1 ? line.slice(0, Math.max(0, columns - 2)) + '…' : line;
}

function splitRepoTag(ref: string): [string, string] {
  const at = ref.lastIndexOf(':');
  return at > ref.lastIndexOf('/') ? [ref.slice(0, at), ref.slice(at + 1)] : [ref, '<none>'];
}

export function registerImageCommands(program: Command): void {
  program
    .command('pull <image>')
    .description('pull an image through crispd')
    .option('--creds <user:pass>', 'registry credentials')
    .option('--state <dir>', "crispd's state directory, where running pulls publish progress", '/run/crisp')
    .action(async (image: string, o: { creds?: string; state: string }) => {
      await withClient(program, async (cri) => {
        const [username, ...rest] = (o.creds ?? '').split(':');
        const auth = o.creds ? { username, password: rest.join(':') } : null;
        // The CRI call has no progress stream: while it runs, draw crispd's progress file (TTY only).
        const stop = process.stderr.isTTY ? showPullProgress(image, o.state) : undefined;
        try {
          const res = await cri.image.unary('PullImage', { image: { image }, auth });
          await stop?.();
          console.log(`Image is up to date for ${res.imageRef}`);
        } finally {
          await stop?.();
        }
      });
    });

  program
    .command('images')
    .description('list images')
    .option('-q, --quiet', 'ids only')
    .action(async (o: { quiet?: boolean }) => {
      await withClient(program, async (cri) => {
        const res = await cri.image.unary('ListImages', {});
        if (o.quiet) return res.images.forEach((i) => console.log(i.id));
        const rows: string[][] = [];
        for (const img of res.images) {
          const tags = img.repoTags.length ? img.repoTags : ['<none>:<none>'];
          for (const t of tags) {
            const [repo, tag] = splitRepoTag(t);
            rows.push([repo, tag, shortId(img.id), humanBytes(img.size), img.pinned ? 'pinned' : '']);
          }
        }
        printTable(['IMAGE', 'TAG', 'IMAGE ID', 'SIZE', ''], rows);
      });
    });

  program
    .command('rmi <images...>')
    .description('remove images (by id, tag or digest)')
    .action(async (images: string[]) => {
      await withClient(program, async (cri) => {
        for (const image of images) {
          await cri.image.unary('RemoveImage', { image: { image } });
          console.log(`Deleted: ${image}`);
        }
      });
    });

  program
    .command('inspecti <image>')
    .description('image status (verbose) as JSON')
    .action(async (image: string) => {
      await withClient(program, async (cri) => {
        const res = await cri.image.unary('ImageStatus', { image: { image }, verbose: true });
        if (!res.image) throw new Error(`image "${image}" not found`);
        console.log(JSON.stringify({ status: res.image, info: res.info.info ? JSON.parse(res.info.info) : {} }, null, 2));
      });
    });

  program
    .command('imagefsinfo')
    .description('image filesystem usage')
    .action(async () => {
      await withClient(program, async (cri) => {
        console.log(JSON.stringify(await cri.image.unary('ImageFsInfo', {}), null, 2));
      });
    });
}

/** Redraw the progress line on stderr until the returned function is called (which clears it). */
function showPullProgress(image: string, stateDir: string): () => Promise<void> {
  const started = Date.now();
  let path: string | undefined;
  try {
    path = pullProgressPath(join(stateDir, 'pulls'), referenceString(parseImageReference(image)));
  } catch {
    // An invalid reference: crispd will say why; show elapsed time meanwhile.
  }
  let busy: Promise<void> | undefined;
  let stopped = false;
  const draw = async () => {
    const p = path ? await readPullProgress(path) : undefined;
    const fresh = p && Date.now() - p.updatedAt < STALE_PROGRESS_MS ? p : undefined;
    if (!stopped) process.stderr.write(`\r${renderPullProgress(image, fresh, Date.now() - started, process.stderr.columns || 80)}\x1b[K`);
  };
  const timer = setInterval(() => {
    busy ??= draw().finally(() => (busy = undefined));
  }, 250);
  return async () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    await busy;
    process.stderr.write('\r\x1b[K');
  };
}
