// crictl-like image commands: pull (with a progress line), images, rmi, inspecti.
import type { Command } from 'commander';
import { withClient } from './client-context.js';
import { printTable, shortId, humanBytes } from './table.js';

function splitRepoTag(ref: string): [string, string] {
  const at = ref.lastIndexOf(':');
  return at > ref.lastIndexOf('/') ? [ref.slice(0, at), ref.slice(at + 1)] : [ref, '<none>'];
}

export function registerImageCommands(program: Command): void {
  program
    .command('pull <image>')
    .description('pull an image through crispd')
    .option('--creds <user:pass>', 'registry credentials')
    .action(async (image: string, o: { creds?: string }) => {
      await withClient(program, async (cri) => {
        const [username, ...rest] = (o.creds ?? '').split(':');
        const auth = o.creds ? { username, password: rest.join(':') } : null;
        const started = Date.now();
        // The CRI call has no progress stream: show elapsed time while it runs.
        const tick = process.stderr.isTTY
          ? setInterval(() => process.stderr.write(`\rpulling ${image} … ${((Date.now() - started) / 1000).toFixed(1)}s`), 200)
          : undefined;
        try {
          const res = await cri.image.unary('PullImage', { image: { image }, auth });
          if (tick) process.stderr.write('\n');
          console.log(`Image is up to date for ${res.imageRef}`);
        } finally {
          if (tick) clearInterval(tick);
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
