// Pod start as kubelet sees it: a real kubelet (standalone, static pods, no API server) is pointed at each
// runtime in turn and given N pod manifests at once; the time runs from the manifests' arrival until
// kubelet's own pod status says every container is running. kubelet is not part of this repository:
// build it outside (README, "Conformance") and pass its path.
//   node dist/bench/kubelet-pods.js --kubelet /path/to/kubelet [--pods 20] [--rounds 6]
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { withBenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { saveBenchmark } from './lib/results.js';
import { performance } from './lib/timing.js';
import { sleep } from '../common/time.js';

const opts = parseOptions('kubelet-pods', {
  kubelet: { kind: 'string', default: '/opt/kubelet/bin/kubelet', doc: 'kubelet binary (built outside this repository)' },
  pods: { kind: 'number', default: 20, min: 1, doc: 'static pods given to kubelet at once' },
  rounds: { kind: 'number', default: 6, min: 1, doc: 'rounds per runtime, alternated' },
});
if (!existsSync(opts.kubelet)) throw new Error(`no kubelet at ${opts.kubelet}: build one outside the repository and pass --kubelet`);

const READ_ONLY = 'http://127.0.0.1:10255/pods';

/** The node's first non-loopback IPv4 address (kubelet refuses a loopback --node-ip). */
function nodeIp(): string {
  const ip = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  if (!ip) throw new Error('no non-loopback IPv4 address for kubelet --node-ip');
  return ip;
}

interface KubeletPod {
  status?: { containerStatuses?: { state?: { running?: unknown } }[] };
}

async function kubeletPods(): Promise<KubeletPod[] | undefined> {
  try {
    return ((await (await fetch(READ_ONLY)).json()) as { items?: KubeletPod[] }).items ?? [];
  } catch {
    return undefined; // not listening yet
  }
}

function kubeletConfig(endpoint: string, manifests: string): string {
  return [
    'apiVersion: kubelet.config.k8s.io/v1beta1',
    'kind: KubeletConfiguration',
    `staticPodPath: ${manifests}`,
    'fileCheckFrequency: 1s',
    'cgroupDriver: cgroupfs',
    `containerRuntimeEndpoint: unix://${endpoint}`,
    'failSwapOn: false',
    'failCgroupV1: false',
    'address: 127.0.0.1',
    'readOnlyPort: 10255',
    'authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}',
    'authorization: {mode: AlwaysAllow}',
    'evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}',
    'imageGCHighThresholdPercent: 100',
    'imageGCLowThresholdPercent: 99',
    '',
  ].join('\n');
}

const manifest = (i: number, image: string) =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: kp-${i}, namespace: default}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: ${image}\n    imagePullPolicy: IfNotPresent\n    command: ["sleep", "3600"]\n`;

/** kubelet may leave pod cgroups it had no time to remove; the next kubelet would spend its first seconds on them. */
function removePodCgroups(): void {
  execFileSync('sh', ['-c', 'for h in /sys/fs/cgroup/*/kubepods; do [ -d "$h" ] && find "$h" -mindepth 1 -depth -type d -exec rmdir {} \\; 2>/dev/null; done; true']);
}

async function round(side: Side, endpoint: string, rec: Recorder): Promise<void> {
  const dir = mkdtempSync(`/tmp/crisp-bench-kubelet-${side.name}-`);
  const manifests = join(dir, 'manifests');
  const staged = join(dir, 'staged');
  mkdirSync(manifests);
  mkdirSync(staged);
  writeFileSync(join(dir, 'config.yaml'), kubeletConfig(endpoint, manifests));
  // --node-ip: kubelet otherwise looks its node name up in DNS at every pod admission, which on a
  // closed network stalls its sync loop for the resolver's timeout (it refuses a loopback address).
  const kubelet = spawn(opts.kubelet, [`--config=${dir}/config.yaml`, `--root-dir=${dir}/root`, `--cert-dir=${dir}/pki`, '--hostname-override=crisp-bench', `--node-ip=${nodeIp()}`, '--v=1'], {
    stdio: 'ignore',
  });
  try {
    for (let i = 0; i < 300 && !(await kubeletPods()); i++) await sleep(100);
    await sleep(3000); // kubelet's runtime and PLEG settle
    for (let i = 0; i < opts.pods; i++) writeFileSync(join(staged, `kp-${i}.yaml`), manifest(i, side.image));
    const t0 = performance.now();
    for (let i = 0; i < opts.pods; i++) renameSync(join(staged, `kp-${i}.yaml`), join(manifests, `kp-${i}.yaml`));
    for (;;) {
      const running = ((await kubeletPods()) ?? []).filter((p) => (p.status?.containerStatuses ?? []).some((c) => c.state?.running)).length;
      if (running >= opts.pods) break;
      if (performance.now() - t0 > 120_000) throw new Error(`${side.name}: ${running} of ${opts.pods} pods running after 120 s`);
      await sleep(50);
    }
    rec.add(`${opts.pods} pods: manifests given → all running (kubelet status)`, side.name, performance.now() - t0);
    for (const f of readdirSync(manifests)) rmSync(join(manifests, f));
    for (let i = 0; i < 600 && ((await kubeletPods()) ?? []).length > 0; i++) await sleep(100);
  } finally {
    kubelet.kill('SIGTERM');
    await new Promise((resolve) => (kubelet.exitCode === null ? kubelet.once('exit', resolve) : resolve(undefined)));
    await side.removeAllPods();
    // kubelet mounts its root dir on itself.
    try {
      execFileSync('umount', [join(dir, 'root')], { stdio: 'ignore' });
    } catch {
      // not mounted: kubelet exited before it got that far
    }
    removePodCgroups();
    rmSync(dir, { recursive: true, force: true });
  }
}

const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  const rec = new Recorder('ms');
  const endpoints: Record<string, string> = { crisp: env.crispd!.socket, containerd: env.peerd!.socket };
  for (let r = 0; r < opts.rounds; r++) {
    // Alternate which runtime goes first, so what one round leaves on the machine hits both alike.
    const order = r % 2 === 0 ? env.sides : [...env.sides].reverse();
    for (const side of order) await round(side, endpoints[side.name]!, rec);
  }
  const version = execFileSync(opts.kubelet, ['--version']).toString().trim();
  saveBenchmark('kubelet-pods', {
    title: `Pod start through a real kubelet (${version}, standalone)`,
    peer: 'containerd',
    startedAt,
    params: { pods: opts.pods, rounds: opts.rounds },
    rows: rec.rows(),
    samples: rec.samples(),
    notes: [
      `${version} in standalone mode (static pods from a directory, no API server), cgroupfs driver, one kubelet per round pointed at one runtime's CRI socket; the manifests (busybox \`sleep 3600\`, image already pulled) are moved into its static pod directory at once.`,
      "The time ends when kubelet's read-only /pods shows every pod's container running: kubelet learns of started containers through its PLEG relist (every second), so both runtimes' times are rounded up by up to that second.",
      'Rounds alternate the order of the runtimes; pods and kubelet pod cgroups are removed between rounds.',
    ],
  });
});
