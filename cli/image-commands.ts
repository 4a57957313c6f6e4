// crictl-like image commands: pull (with a progress bar), images, rmi, inspecti.
import { join } from 'node:path';
import type { Command } from 'commander';
import { notFound } from '../common/errors.js';
import { forEachId, withClient } from './client-context.js';
import { printTable, printKeyValues, shortId, humanBytes } from './table.js';
import { parseInfo, parseOutputFormat, protoJson, renderDocument } from './output.js';
import { parseImageReference, referenceString } from '../backend/registry/reference.js';
import { pullProgressPath, readPullProgress, type PullProgress } from '../backend/images/progress.js';
import { CREDS_ENV, resolvePullCreds } from './pull-creds.js';

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

/**
 * The line `crisp pull` ends with: "Image is up to date" only when nothing was downloaded — the node
 * already held the image under that reference with the same id, and no layer bytes were seen arriving
 * (`received`, from crispd's progress file while the pull ran) — otherwise what was downloaded. The
 * image id is the last word either way, as crictl prints it.
 */
export function pullResultLine(image: string, idBefore: string | undefined, imageRef: string, received = 0): string {
  if (idBefore !== undefined && idBefore === imageRef && received === 0) return `Image is up to date for ${imageRef}`;
  if (idBefore === imageRef) return `Downloaded missing layers of ${image}: ${imageRef}`;
  if (idBefore !== undefined) return `Downloaded newer image for ${image}: ${imageRef}`;
  return `Downloaded ${image}: ${imageRef}`;
}

/** `crisp images REF`: REF names a repository (any tag) or repository:tag, or an id prefix. */
export function imageMatches(img: { id: string; repoTags: string[]; repoDigests: string[] }, ref: string | undefined): boolean {
  if (!ref) return true;
  const id = img.id.replace(/^sha256:/, '');
  if (ref.replace(/^sha256:/, '').length >= 4 && id.startsWith(ref.replace(/^sha256:/, ''))) return true;
  const hasTag = splitRepoTag(ref)[1] !== '<none>';
  return img.repoTags.some((t) => (hasTag ? t === ref : splitRepoTag(t)[0] === ref)) || img.repoDigests.some((d) => d === ref);
}

function splitRepoTag(ref: string): [string, string] {
  const at = ref.lastIndexOf(':');
  return at > ref.lastIndexOf('/') ? [ref.slice(0, at), ref.slice(at + 1)] : [ref, '<none>'];
}

export function registerImageCommands(program: Command): void {
  program
    .command('pull <image>')
    .description('pull an image through crispd')
    .option('--creds <user:pass>', `registry credentials; "-" reads them from stdin (default: $${CREDS_ENV}, so they need not sit in argv)`)
    .option('--state <dir>', "crispd's state directory, where running pulls publish progress", '/run/crisp')
    .action(async (image: string, o: { creds?: string; state: string }) => {
      await withClient(program, async (cri) => {
        const auth = await resolvePullCreds(o.creds, process.env, process.stdin);
        // What the node held before: an image that was there with the same id needed no download.
        const before = await cri.image.unary('ImageStatus', { image: { image } }).then(
          (r) => r.image?.id,
          () => undefined, // a bad reference: PullImage says why
        );
        // The CRI call has no progress stream: while it runs, follow crispd's progress file (a bar on
        // a terminal; either way, whether bytes arrived from the registry).
        const progress = watchPullProgress(image, o.state, Boolean(process.stderr.isTTY));
        try {
          const res = await cri.image.unary('PullImage', { image: { image }, auth });
          await progress.stop();
          console.log(pullResultLine(image, before, res.imageRef, progress.received()));
        } finally {
          await progress.stop();
        }
      });
    });

  program
    .command('images [ref]')
    .description('list images (only those of one repository, or repository:tag, with REF)')
    .option('-q, --quiet', 'ids only')
    .option('--digests', 'show digests')
    .option('-o, --output <format>', 'json, yaml or table', 'table')
    .action(async (ref: string | undefined, o: { quiet?: boolean; digests?: boolean; output: string }) => {
      const format = parseOutputFormat(o.output, 'table');
      await withClient(program, async (cri) => {
        const res = await cri.image.unary('ListImages', {});
        const images = res.images.filter((i) => imageMatches(i, ref));
        if (o.quiet) return images.forEach((i) => console.log(i.id));
        if (format !== 'table') {
          process.stdout.write(renderDocument(format, { images: images.map((i) => protoJson('runtime.v1.Image', i)) }));
          return;
        }
        const rows: string[][] = [];
        for (const img of images) {
          const tags = img.repoTags.length ? img.repoTags : ['<none>:<none>'];
          const digest = img.repoDigests[0]?.split('@')[1] ?? '<none>';
          for (const t of tags) {
            const [repo, tag] = splitRepoTag(t);
            rows.push([repo, tag, ...(o.digests ? [shortId(digest)] : []), shortId(img.id), humanBytes(img.size), img.pinned ? 'pinned' : '']);
          }
        }
        printTable(['IMAGE', 'TAG', ...(o.digests ? ['DIGEST'] : []), 'IMAGE ID', 'SIZE', ''], rows);
      });
    });

  program
    .command('rmi <images...>')
    .description('remove images (by id, tag or digest; every tag of the image goes)')
    .action(async (images: string[]) => {
      await withClient(program, async (cri) => {
        await forEachId(program, images, 'image', async (image) => {
          const st = (await cri.image.unary('ImageStatus', { image: { image } })).image;
          if (!st) throw notFound(`image "${image}" not found`);
          await cri.image.unary('RemoveImage', { image: { image } });
          const names = st.repoTags.length ? st.repoTags : st.repoDigests.length ? st.repoDigests : [st.id];
          for (const n of names) console.log(`Deleted: ${n}`);
        });
      });
    });

  program
    .command('inspecti <images...>')
    .description('image status with verbose info (JSON by default)')
    .option('-o, --output <format>', 'json, yaml or table', 'json')
    .action(async (images: string[], o: { output: string }) => {
      const format = parseOutputFormat(o.output, 'json');
      await withClient(program, async (cri) => {
        await forEachId(program, images, 'image', async (image) => {
          const res = await cri.image.unary('ImageStatus', { image: { image }, verbose: format !== 'table' });
          if (!res.image) throw notFound(`image "${image}" not found`);
          if (format === 'table') {
            return printKeyValues([
              ['ID', res.image.id],
              ['Tags', res.image.repoTags.join(', ')],
              ['Digests', res.image.repoDigests.join(', ')],
              ['Size', humanBytes(res.image.size)],
              ['Pinned', String(res.image.pinned)],
            ]);
          }
          process.stdout.write(renderDocument(format, { status: protoJson('runtime.v1.Image', res.image), info: parseInfo(res.info) }));
        });
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

/**
 * Follows the pull's progress file until stop(): the most bytes it reported received from the registry
 * and, when `draw`, a progress line on stderr (cleared at the end).
 */
function watchPullProgress(image: string, stateDir: string, drawBar: boolean): { stop: () => Promise<void>; received: () => number } {
  const started = Date.now();
  let received = 0;
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
    const fresh = p && Date.now() - p.updatedAt < STALE_PROGRESS_MS && p.updatedAt >= started - 1000 ? p : undefined;
    if (fresh?.received !== undefined) received = Math.max(received, fresh.received);
    if (!stopped && drawBar) process.stderr.write(`\r${renderPullProgress(image, fresh, Date.now() - started, process.stderr.columns || 80)}\x1b[K`);
  };
  const timer = setInterval(() => {
    busy ??= draw().finally(() => (busy = undefined));
  }, 250);
  return {
    received: () => received,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await busy;
      if (drawBar) process.stderr.write('\r\x1b[K');
    },
  };
}
