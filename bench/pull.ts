// Image pull + unpack time of a generated multi-layer image (incompressible data, ~300 MiB in 10 layers
// plus a busybox base by default) from the loopback registry, with a cold cache every run: crisp's CRI
// PullImage against containerd's own pull (`ctr image pull` on crispd's embedded containerd: same
// containerd, same overlayfs snapshotter, same registry) and, as a second reference, containerd's CRI
// plugin PullImage on the peer.
//   node dist/bench/pull.js [--size-mb 300] [--layers 10] [--runs 5] [--peer-cri true]
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withBenchEnv, type BenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { summarize } from './lib/stats.js';
import { saveBenchmark, fmt } from './lib/results.js';
import { timed } from './lib/timing.js';
import { step } from './lib/errors.js';
import { largeImage, type TestImage } from '../test/e2e/fixtures/images.js';
import { sleep } from '../common/time.js';
import { childrenNamed } from '../test/e2e/lib/crispd.js';

const opts = parseOptions('pull', {
  'size-mb': { kind: 'number', default: 300, min: 1, doc: 'payload of the generated image in MiB (incompressible)' },
  layers: { kind: 'number', default: 10, min: 1, doc: 'payload layers (a busybox base layer comes on top)' },
  runs: { kind: 'number', default: 5, min: 1, doc: 'cold pulls per puller' },
  'peer-cri': { kind: 'boolean', default: true, doc: 'also pull through the containerd CRI plugin (a second containerd)' },
  'max-downloads': { kind: 'number', default: 3, min: 1, doc: 'concurrent layer downloads for ctr (crisp and containerd CRI default to 3)' },
  'gc-timeout': { kind: 'number', default: 120, min: 1, doc: 'seconds to wait for removed content and snapshots to be collected' },
});

const CTR_NAMESPACE = 'bench';
const CALL_TIMEOUT_MS = 30 * 60_000;

interface Target {
  /** Puller label in the results. */
  label: 'crisp' | 'ctr' | 'containerd CRI';
  /** The daemons doing this puller's work, for CPU time (their own and their reaped children's). */
  daemons: () => { role: string; pid: number }[];
  contentBlobDir: string;
  snapshotDir: string;
  pull(ref: string): Promise<void>;
  remove(ref: string): Promise<void>;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

/** Clock ticks of `pid`: user + system, with the children it reaped when `reaped`; 0 once it is gone. */
function ticksOf(pid: number, reaped: boolean): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime stime cutime cstime are 14–17.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0);
  } catch {
    return 0; // gone: its time is in its parent's reaped children now
  }
}

/**
 * CPU seconds of `pids` so far: user + system, with the children they reaped (crisp-untar, unpigz), and
 * the crisp-fetch processes still running (crispd keeps them between pulls; one that ends during a
 * pull moves its whole time into crispd's reaped children, so the difference stays right).
 */
function cpuSeconds(daemons: readonly { role: string; pid: number }[], byRole?: Map<string, number>): number {
  let ticks = 0;
  for (const { role, pid } of daemons) {
    const t = ticksOf(pid, true) + childrenNamed(pid, 'crisp-fetch').reduce((sum, child) => sum + ticksOf(child, false), 0);
    ticks += t;
    byRole?.set(role, (byRole.get(role) ?? 0) + t / 100);
  }
  return ticks / 100;
}

function criTarget(label: Target['label'], side: Side, containerdRoot: string): Target {
  return {
    label,
    daemons: () => side.daemonPids(),
    contentBlobDir: side.contentBlobDir,
    snapshotDir: join(containerdRoot, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots'),
    pull: async (ref) => {
      await step(label, `PullImage ${ref}`, () => side.client.image.unary('PullImage', { image: { image: ref } }, { timeoutMs: CALL_TIMEOUT_MS }));
    },
    remove: async (ref) => {
      await step(label, `RemoveImage ${ref}`, () => side.client.image.unary('RemoveImage', { image: { image: ref } }));
    },
  };
}

function ctrTarget(env: BenchEnv, maxDownloads: number): Target {
  const crisp = env.crisp!;
  const root = join(env.crispd!.root, 'containerd');
  const base = ['--address', crisp.containerdSocket, '-n', CTR_NAMESPACE];
  return {
    label: 'ctr',
    // The ctr process itself is not counted (it is gone by the time it could be read).
    daemons: () => crisp.daemonPids().filter((d) => d.role.includes('containerd')),
    contentBlobDir: crisp.contentBlobDir,
    snapshotDir: join(root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots'),
    pull: (ref) => step('ctr', `image pull ${ref}`, () => run('ctr', [...base, 'image', 'pull', '--plain-http', '--max-concurrent-downloads', String(maxDownloads), ref], CALL_TIMEOUT_MS)),
    // --sync: the content and snapshots are collected before ctr returns.
    remove: (ref) => step('ctr', `image rm ${ref}`, () => run('ctr', [...base, 'image', 'rm', '--sync', ref], 120_000)),
  };
}

const present = (t: Target, image: TestImage) => image.blobs.filter((b) => existsSync(join(t.contentBlobDir, b.digest.slice('sha256:'.length))));
const snapshotCount = (t: Target) => (existsSync(t.snapshotDir) ? readdirSync(t.snapshotDir).length : 0);

/** Wait until none of the image's blobs is in the target's content store and the snapshot count is back to `baseline`. */
async function waitCold(t: Target, image: TestImage, baseline: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const blobs = present(t, image).length;
    const snaps = snapshotCount(t);
    if (blobs === 0 && snaps <= baseline) return;
    if (Date.now() > deadline) {
      throw new Error(`${t.label}: cache not cold ${timeoutMs / 1000} s after removing the image: ${blobs} of its blobs and ${snaps - baseline} extra snapshots remain`);
    }
    await sleep(200);
  }
}

const startedAt = Date.now();
await withBenchEnv({ peer: opts['peer-cri'], pullImages: false }, async (env) => {
  const rec = new Recorder('s');
  const notes: string[] = [];
  const perPuller = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const cpuByRole = new Map<string, number[]>();
  let mib = 0;
  const genStart = Date.now();
  const image = await largeImage({ sizeMB: opts['size-mb'], layers: opts.layers, seed: `crisp-bench-${env.run}` });
  try {
    const compressed = image.blobs.reduce((a, b) => a + b.size, 0);
    const genSeconds = (Date.now() - genStart) / 1000;
    const pushStart = Date.now();
    await env.registry.push(image, 'bench/large', 'v1');
    const ref = `${env.registry.host}/bench/large:v1`;
    const pushSeconds = (Date.now() - pushStart) / 1000;
    console.error(`[bench] image: ${image.layers.length} layers, ${fmt(compressed / 2 ** 20)} MiB compressed; generated in ${fmt(genSeconds)} s, pushed in ${fmt(pushSeconds)} s`);

    const targets: Target[] = [criTarget('crisp', env.crisp!, join(env.crispd!.root, 'containerd')), ctrTarget(env, opts['max-downloads'])];
    if (env.peer) targets.push(criTarget('containerd CRI', env.peer, env.peerd!.root));
    const baseline = new Map(targets.map((t) => [t, snapshotCount(t)]));
    mib = compressed / 2 ** 20;

    // Warm-up: one small pull per puller (connections, code paths), not recorded.
    for (const t of targets) {
      await t.pull(env.busyboxRef);
      await t.remove(env.busyboxRef);
      await waitCold(t, image, baseline.get(t)!, opts['gc-timeout'] * 1000);
    }

    for (let r = 0; r < opts.runs; r++) {
      // Rotate the order each round so no puller always goes first after the previous one's disk writes.
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of order) {
        await waitCold(t, image, baseline.get(t)!, opts['gc-timeout'] * 1000);
        await run('sync', [], 120_000);
        const rolesBefore = new Map<string, number>();
        const cpuBefore = cpuSeconds(t.daemons(), rolesBefore);
        const { ms } = await timed(() => t.pull(ref));
        const rolesAfter = new Map<string, number>();
        (cpu.get(t.label) ?? cpu.set(t.label, []).get(t.label)!).push(cpuSeconds(t.daemons(), rolesAfter) - cpuBefore);
        for (const [role, after] of rolesAfter) {
          const key = `${t.label}: ${role}`;
          (cpuByRole.get(key) ?? cpuByRole.set(key, []).get(key)!).push(after - (rolesBefore.get(role) ?? 0));
        }
        const layersAfter = snapshotCount(t) - baseline.get(t)!;
        if (layersAfter < image.layers.length) throw new Error(`${t.label}: pull returned but only ${layersAfter} of ${image.layers.length} layers are unpacked`);
        const seconds = ms / 1000;
        if (t.label === 'crisp') {
          rec.add('vs ctr image pull (same containerd)', 'crisp', seconds);
          if (env.peer) rec.add('vs containerd CRI PullImage', 'crisp', seconds);
        } else {
          rec.add(t.label === 'ctr' ? 'vs ctr image pull (same containerd)' : 'vs containerd CRI PullImage', 'containerd', seconds);
        }
        (perPuller.get(t.label) ?? perPuller.set(t.label, []).get(t.label)!).push(seconds);
        console.error(`[bench] round ${r + 1}/${opts.runs}: ${t.label} ${fmt(seconds, 2)} s`);
        await t.remove(ref);
      }
    }
    notes.push(
      `Image: ${image.layers.length} layers (busybox base + ${opts.layers} of random data in 1 MiB files), ${fmt(compressed / 2 ** 20)} MiB compressed (gzip, stored: the data does not compress), generated in ${fmt(genSeconds)} s, pushed in ${fmt(pushSeconds)} s.`,
      'Time is from the call to its return: PullImage over CRI, or the ctr process from start to exit. Every puller unpacks into overlayfs; the benchmark checks that all layers are unpacked after each pull.',
      'Cold cache: after each pull the image is removed (CRI RemoveImage / ctr image rm --sync) and the next pull waits until none of its blobs is in the content store and the snapshot count is back to the baseline.',
      `ctr: \`ctr --address <crispd's embedded containerd> -n ${CTR_NAMESPACE} image pull --plain-http --max-concurrent-downloads ${opts['max-downloads']} <ref>\` (crisp and containerd's CRI also fetch 3 layers at a time).`,
      'ctr applies layers with the embedded containerd\'s "walking" differ (also containerd 1.6\'s default on Linux, which the peer keeps); crisp extracts them itself (image_unpack = crisp, the default).',
      'Architecture matters here: crisp and ctr are both clients of containerd. ctr streams layer bytes into the content store over the content API (gRPC) and unpacks after the downloads through the diff service. crisp\'s downloads (crisp-fetch, libcurl processes, one per download slot, kept up to 10 s between pulls; worker threads without it) write the bytes straight into the embedded containerd\'s ingest files, hashing them on the way; crispd hands containerd each verified blob without a re-read (a shared-content commit) and crisp-untar extracts every layer as soon as its blob is in, several at once, into snapshots committed in chain order. containerd\'s CRI plugin runs inside containerd, writes content locally and also unpacks while later layers download.',
      'The registry\'s blobs sit in the page cache for every puller alike; the page cache is not dropped between runs (other work shares this machine).',
    );
  } finally {
    await image.cleanup();
  }
  saveBenchmark('pull', {
    title: 'Image pull + unpack (cold cache)',
    peer: 'containerd',
    startedAt,
    params: { sizeMB: opts['size-mb'], layers: opts.layers, runs: opts.runs, peerCri: opts['peer-cri'], maxDownloads: opts['max-downloads'] },
    rows: rec.rows(),
    samples: rec.samples(),
    notes,
    extraMarkdown: [
      'Per puller (throughput = compressed MiB / median seconds; CPU = user + system seconds of the puller\'s daemons during the pull, with the children they reaped: crispd (with its worker threads when it downloads on them, and the crisp-fetch processes it runs, also those it keeps between pulls), its embedded containerd and crisp-spawner (crisp-untar); the peer\'s containerd; for ctr, the embedded containerd only):',
      '',
      '| puller | median | p95 | throughput | CPU median | runs |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...[...perPuller.entries()].map(([label, xs]) => {
        const s = summarize(xs);
        const c = summarize(cpu.get(label) ?? [0]);
        return `| ${label} | ${fmt(s.median, 2)} s | ${fmt(s.p95, 2)} s | ${fmt(mib / s.median)} MiB/s | ${fmt(c.median, 2)} s | ${s.n} |`;
      }),
      '',
      `CPU per pull by process (median seconds): ${[...cpuByRole.entries()].map(([k, xs]) => `${k} ${fmt(summarize(xs).median, 2)}`).join('; ')}.`,
    ],
  });
});
