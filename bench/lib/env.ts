// The benchmark bench: one loopback registry holding the busybox and pause images, crispd (embedded
// containerd) and the peer (containerd with its own CRI plugin), each with its own private CNI network
// built from the same conflist template, both with busybox pulled. Every benchmark runs inside
// withBenchEnv(), which tears everything down on success, on error and on SIGINT/SIGTERM.
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { TestCrispd, childrenNamed, pidsWhere, uniqueId } from '../../test/e2e/lib/crispd.js';
import { writeTestNetwork, type TestNetwork } from '../../test/e2e/lib/network.js';
import { startRegistry, type TestRegistry } from '../../test/e2e/fixtures/registry.js';
import type { CriClient } from '../../cri/client.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerConfig, PodSandboxConfig } from '../../gen/runtime.v1.js';
import { sleep } from '../../common/time.js';
import { PeerContainerd } from './peer.js';
import { benchBusyboxImage, pauseImage } from './images.js';
import { removeBridge, removeIptablesRules } from './network-cleanup.js';
import { killTree } from './procs.js';
import { interrupted, markInterrupted } from './interrupt.js';

export type RuntimeName = 'crisp' | 'containerd';

/** One runtime under test, driven over CRI exactly like the other. */
export interface Side {
  name: RuntimeName;
  client: CriClient;
  /** busybox image reference, pulled. */
  image: string;
  /** Daemon processes whose memory counts as this runtime's. */
  daemonPids(): { role: string; pid: number }[];
  /** Address of the containerd the runtime drives (shims carry it on their command line). */
  containerdSocket: string;
  /** containerd's content blob dir (sha256/), to check a cache is really cold. */
  contentBlobDir: string;
  network: TestNetwork;
  podConfig(name: string): Input<PodSandboxConfig>;
  containerConfig(name: string, cmd: string[]): Input<ContainerConfig>;
  /** RunPodSandbox after creating the pod's log dir (as kubelet does, outside any timing). */
  runPod(name: string): Promise<{ id: string; config: Input<PodSandboxConfig> }>;
  /** Stop and remove every pod this runtime knows. */
  removeAllPods(): Promise<void>;
}

export interface BenchEnvOptions {
  crisp?: boolean;
  peer?: boolean;
  /** Pull busybox on each side (and the pause image on the peer) at start. */
  pullImages?: boolean;
  /** Extra crispd config keys. */
  crispConfig?: Record<string, unknown>;
}

export interface BenchEnv {
  run: string;
  registry: TestRegistry;
  busyboxRef: string;
  pauseRef: string;
  crispd?: TestCrispd;
  peerd?: PeerContainerd;
  crisp?: Side;
  peer?: Side;
  /** Sides present, crisp first. */
  sides: Side[];
}

const subnetNeedle = (net: TestNetwork) => ` ${net.subnet.replace(/0\/24$/, '')}`;

function makeSide(p: {
  name: RuntimeName;
  client: CriClient;
  image: string;
  run: string;
  logRoot: string;
  network: TestNetwork;
  containerdSocket: string;
  contentBlobDir: string;
  daemonPids: () => { role: string; pid: number }[];
}): Side {
  const podConfig = (name: string): Input<PodSandboxConfig> => ({
    metadata: { name, uid: `${name}-${p.run}`, namespace: 'bench', attempt: 0 },
    hostname: name,
    logDirectory: join(p.logRoot, `bench_${name}_${p.run}`),
    labels: { 'crisp.bench/run': p.run },
    linux: {},
  });
  const side: Side = {
    name: p.name,
    client: p.client,
    image: p.image,
    daemonPids: p.daemonPids,
    containerdSocket: p.containerdSocket,
    contentBlobDir: p.contentBlobDir,
    network: p.network,
    podConfig,
    containerConfig: (name, cmd) => ({
      metadata: { name, attempt: 0 },
      image: { image: p.image },
      command: cmd,
      logPath: `${name}/0.log`,
      labels: { 'crisp.bench/run': p.run },
      linux: {},
    }),
    runPod: async (name) => {
      const config = podConfig(name);
      makeLogDir(config.logDirectory!);
      const res = await p.client.runtime.unary('RunPodSandbox', { config });
      return { id: res.podSandboxId, config };
    },
    removeAllPods: async () => {
      const pods = await p.client.runtime.unary('ListPodSandbox', {});
      for (const pod of pods.items) {
        await p.client.runtime.unary('StopPodSandbox', { podSandboxId: pod.id }).catch(() => undefined);
        await p.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod.id }).catch(() => undefined);
      }
    },
  };
  return side;
}

/**
 * Create a pod or container log directory, as kubelet does before the CRI call. Refuses once teardown
 * has begun, so a benchmark still running after SIGINT cannot recreate a removed temp dir.
 */
export function makeLogDir(path: string): void {
  if (interrupted()) throw new Error('interrupted');
  mkdirSync(path, { recursive: true });
}

/** Two random /24s can collide; draw the peer's again until it differs from crisp's. */
function distinctNetwork(confDir: string, dir: string, taken: TestNetwork[]): TestNetwork {
  for (;;) {
    const net = writeTestNetwork(confDir, dir);
    if (!taken.some((t) => t.subnet === net.subnet || t.bridge === net.bridge)) return net;
  }
}

type Teardown = () => Promise<void>;

function networkCleanup(owner: string, network: TestNetwork, log: (m: string) => void): void {
  removeBridge(network.bridge);
  const left = removeIptablesRules([subnetNeedle(network), network.name]);
  if (left.length) log(`${owner} network ${network.subnet}: iptables rules left after cleanup:\n${left.join('\n')}`);
}

/** With CRISP_BENCH_LOGS=<dir>, daemon logs are copied there before their temp dirs go (for bug reports). */
function keepLogs(name: string, file: string): void {
  const dir = process.env.CRISP_BENCH_LOGS;
  if (!dir) return;
  try {
    mkdirSync(dir, { recursive: true });
    copyFileSync(file, join(dir, name));
  } catch (err) {
    console.error(`[bench] keeping ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function startEnv(opts: BenchEnvOptions, undo: Teardown[], log: (m: string) => void): Promise<BenchEnv> {
  const run = uniqueId();
  const registry = await startRegistry({});
  undo.push(() => registry.stop());
  const busybox = benchBusyboxImage();
  const pause = pauseImage();
  await registry.push(busybox, 'bench/busybox', 'v1');
  await registry.push(pause, 'bench/pause', 'v1');
  const busyboxRef = `${registry.host}/bench/busybox:v1`;
  const pauseRef = `${registry.host}/bench/pause:v1`;
  const env: BenchEnv = { run, registry, busyboxRef, pauseRef, sides: [] };
  const networks: TestNetwork[] = [];
  const pull = opts.pullImages ?? true;

  if (opts.crisp ?? true) {
    // CRISP_BENCH_CRISP_CONFIG='{"key": value}' adds crispd config keys (A/B runs of one setting).
    const fromEnv = JSON.parse(process.env.CRISP_BENCH_CRISP_CONFIG ?? '{}') as Record<string, unknown>;
    const d = new TestCrispd({ config: { log_level: 'info', ...opts.crispConfig, ...fromEnv }, sourceMaps: false });
    const ctdSocket = join(d.state, 'containerd', 'containerd.sock');
    const network = distinctNetwork(d.cniConfDir, d.dir, networks);
    networks.push(network);
    // Undo runs in reverse: the daemon (which may still be in a CNI ADD) stops before its network goes.
    undo.push(async () => networkCleanup('crisp', network, log));
    undo.push(async () => {
      // TestCrispd.cleanup kills shims only; their containers would be orphaned, so take the trees first.
      await d.stop().catch(() => undefined);
      keepLogs('crispd.log', d.logFile);
      keepLogs('crisp-containerd.log', join(d.root, 'containerd', 'containerd.log'));
      for (const pid of pidsWhere((argv) => argv.includes(ctdSocket))) killTree(pid);
      await d.cleanup();
    });
    await d.start();
    env.crispd = d;
    env.crisp = makeSide({
      name: 'crisp',
      client: d.client,
      image: busyboxRef,
      run,
      logRoot: d.podLogRoot,
      network,
      containerdSocket: ctdSocket,
      contentBlobDir: join(d.root, 'containerd', 'io.containerd.content.v1.content', 'blobs', 'sha256'),
      daemonPids: () => {
        const out: { role: string; pid: number }[] = [];
        if (d.child?.pid) out.push({ role: 'crispd (node)', pid: d.child.pid });
        const ctd = d.containerdPid();
        if (ctd) out.push({ role: 'embedded containerd', pid: ctd });
        // crispd's command runner (native/crisp-spawner), from its first command on
        if (d.child?.pid) for (const pid of childrenNamed(d.child.pid, 'crisp-spawner')) out.push({ role: 'crisp-spawner', pid });
        return out;
      },
    });
    if (pull) await d.client.image.unary('PullImage', { image: { image: busyboxRef } });
    env.sides.push(env.crisp);
  }

  if (opts.peer ?? true) {
    const peerd = new PeerContainerd({ sandboxImage: pauseRef, plainHttpRegistries: [registry.host] });
    const network = distinctNetwork(peerd.cniConfDir, peerd.dir, networks);
    networks.push(network);
    undo.push(async () => networkCleanup('containerd', network, log));
    undo.push(async () => {
      await peerd.stop().catch(() => undefined);
      keepLogs('peer-containerd.log', peerd.logFile);
      await peerd.cleanup();
    });
    await peerd.start();
    env.peerd = peerd;
    env.peer = makeSide({
      name: 'containerd',
      client: peerd.client,
      image: busyboxRef,
      run,
      logRoot: peerd.podLogRoot,
      network,
      containerdSocket: peerd.socket,
      contentBlobDir: peerd.contentBlobDir,
      daemonPids: () => (peerd.pid ? [{ role: 'containerd (CRI plugin)', pid: peerd.pid }] : []),
    });
    if (pull) {
      await peerd.client.image.unary('PullImage', { image: { image: busyboxRef } });
      await peerd.client.image.unary('PullImage', { image: { image: pauseRef } });
    }
    env.sides.push(env.peer);
  }

  // Pods before daemons: CNI DEL needs the daemons, and removes the iptables rules properly.
  undo.push(async () => {
    for (const side of env.sides) await side.removeAllPods().catch((err: unknown) => log(`${side.name}: removing pods at teardown: ${String(err)}`));
  });
  await busybox.cleanup();
  await pause.cleanup();
  return env;
}

/**
 * Start the bench environment, run `body`, and tear down in reverse order whatever happened (also on
 * SIGINT/SIGTERM). The process exit code is 1 when body threw.
 */
export async function withBenchEnv(opts: BenchEnvOptions, body: (env: BenchEnv) => Promise<void>): Promise<void> {
  const undo: Teardown[] = [];
  const log = (m: string) => console.error(`[bench] ${m}`);
  let tornDown: Promise<void> | undefined;
  const teardown = () =>
    (tornDown ??= (async () => {
      for (const step of undo.reverse()) {
        try {
          await step();
        } catch (err) {
          log(`teardown step failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    markInterrupted();
    log(`${sig}: tearing down, no results written`);
    void teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await waitForQuiet(log);
    const env = await startEnv(opts, undo, log);
    await body(env);
  } catch (err) {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  } finally {
    await teardown();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/**
 * With CRISP_BENCH_MAX_LOAD=<x>, wait (at most CRISP_BENCH_MAX_LOAD_WAIT seconds, default 600) until the
 * 1-minute load average is at or below x, so other work on a shared machine does not skew the numbers.
 */
async function waitForQuiet(log: (m: string) => void): Promise<void> {
  const max = Number(process.env.CRISP_BENCH_MAX_LOAD ?? '');
  if (!Number.isFinite(max) || max <= 0) return;
  const waitS = Number(process.env.CRISP_BENCH_MAX_LOAD_WAIT ?? '600');
  const deadline = Date.now() + (Number.isFinite(waitS) ? waitS : 600) * 1000;
  let told = false;
  while (loadavg()[0]! > max && Date.now() < deadline && !interrupted()) {
    if (!told) log(`waiting for the 1-minute load average (${loadavg()[0]!.toFixed(2)}) to drop to ${max}`);
    told = true;
    await sleep(5000);
  }
  if (loadavg()[0]! > max) log(`load average still ${loadavg()[0]!.toFixed(2)}; starting anyway`);
}
