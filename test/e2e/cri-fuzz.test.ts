// Hostile CRI input against a real crispd: a seeded fuzzer sends CRISP_FUZZ_REQUESTS (default 5000)
// requests over every RuntimeService and ImageService method: valid templates with fields replaced by
// boundary values, huge strings and maps, invalid UTF-8 (raw bytes on the wire), negative and huge
// numbers, unknown enum values, traversal and symlinks in every path-bearing field. crispd must not
// crash, every error must be a proper gRPC status (not INTERNAL/UNKNOWN, no stack trace), nothing may
// be created outside the test's roots, nothing may leak, and a normal pod starts afterwards.
// CRISP_FUZZ_SEED picks another sequence, CRISP_FUZZ_SECONDS (default 75) caps the sending time; a
// failure prints the seed and the request that broke.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startStack, type Stack } from './lib/stack.js';
import { mountsBelow, pidsWhere } from './lib/crispd.js';
import { CriFuzzer, Rng, encodeRaw, type PathTargets } from './lib/cri-fuzz.js';
import { codecFor, lookupService, lookupType } from '../../common/proto-registry.js';
import { ContainerdClient } from '../../backend/containerd/client.js';
import type { ContainerConfig, PodSandboxConfig } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';

const REQUESTS = Number(process.env.CRISP_FUZZ_REQUESTS ?? 5000);
const SEED = Number(process.env.CRISP_FUZZ_SEED ?? 0x5eed16);
/** CI's time budget for sending: the run stops at REQUESTS or after this long, whichever comes first. */
const SECONDS = Number(process.env.CRISP_FUZZ_SECONDS ?? 75);
const WORKERS = 6;
const CALL_DEADLINE_MS = 30_000;

/** Codes a hostile request may get; INTERNAL, UNKNOWN, UNAVAILABLE and DEADLINE_EXCEEDED are findings. */
const ACCEPTED = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.ALREADY_EXISTS,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.PERMISSION_DENIED,
]);


let s: Stack;
let base = '';
let targets: PathTargets;
let fixturePod = '';
let fixtureCtr = '';
let fixturePodConfig: Input<PodSandboxConfig>;

interface Counts {
  mounts: number;
  shims: number;
  ips: number;
  ctdContainers: number;
  snapshots: number;
  leases: number;
  podDirs: number;
  runDirs: number;
}

async function counts(): Promise<Counts> {
  const ctd = new ContainerdClient({ address: join(s.d.state, 'containerd', 'containerd.sock'), namespace: 'k8s.io', timeoutMs: 10_000 });
  try {
    const snapshots: string[] = [];
    for await (const res of ctd.snapshots.serverStream('List', { snapshotter: 'overlayfs', filters: [] })) for (const i of res.info) snapshots.push(i.name);
    const ctdSocket = join(s.d.state, 'containerd', 'containerd.sock');
    const ipDir = join(s.net.dataDir, s.net.name);
    const dirs = (p: string) => (existsSync(p) ? readdirSync(p).length : 0);
    return {
      mounts: mountsBelow(s.d.dir).length,
      shims: pidsWhere((argv) => argv.some((a) => a.includes('shim')) && argv.includes(ctdSocket)).length,
      ips: existsSync(ipDir) ? readdirSync(ipDir).filter((f) => /^\d/.test(f)).length : 0,
      ctdContainers: (await ctd.containers.unary('List', { filters: [] })).containers.length,
      snapshots: snapshots.length,
      leases: (await ctd.leases.unary('List', { filters: [] })).leases.length,
      podDirs: dirs(join(s.d.root, 'pods')),
      runDirs: dirs(join(s.d.state, 'pods')),
    };
  } finally {
    ctd.close();
  }
}

before(async () => {
  base = `/tmp/crisp-e2e-fuzz-${process.pid}-${Date.now().toString(36)}`;
  mkdirSync(base, { recursive: true });
  const outside = join(base, 'outside');
  mkdirSync(outside);
  // info, not debug: debug logs every request, and 10k-label requests make that the test's cost.
  s = await startStack({ log_level: 'info', pod_log_root: join(base, 'logs'), cdi_spec_dirs: [join(base, 'cdi')] });
  const logRoot = join(base, 'logs');
  mkdirSync(logRoot, { recursive: true });
  mkdirSync(join(base, 'cdi'));
  writeFileSync(join(base, 'cdi', 'fuzz.json'), JSON.stringify({ cdiVersion: '0.6.0', kind: 'fuzz.example/dev', devices: [{ name: 'null', containerEdits: { env: ['FUZZ_CDI=1'] } }] }));
  // Every link leads into the test's own directory: a crisp that followed one must not write on the host.
  const links = [join(logRoot, 'to-outside'), join(logRoot, 'to-outside-2'), join(base, 'profile-link')];
  mkdirSync(join(outside, '..', 'outside-profile'));
  writeFileSync(join(outside, '..', 'outside-profile', 'profile.json'), '{"defaultAction":"SCMP_ACT_ALLOW"}');
  symlinkSync(outside, links[0]!);
  symlinkSync(join(outside, '.'), links[1]!);
  symlinkSync(join(outside, '..', 'outside-profile', 'profile.json'), links[2]!);
  targets = { logRoot, outside, symlinks: links };
  fixturePodConfig = { ...s.podConfig('fuzz-fixture'), logDirectory: join(logRoot, `fixture-${s.run}`) };
  fixturePod = (await s.d.client.runtime.unary('RunPodSandbox', { config: fixturePodConfig })).podSandboxId;
  fixtureCtr = (await s.d.client.runtime.unary('CreateContainer', { podSandboxId: fixturePod, config: s.containerConfig('fixture', ['sleep', '3600']), sandboxConfig: fixturePodConfig })).containerId;
  await s.d.client.runtime.unary('StartContainer', { containerId: fixtureCtr });
});

after(async () => {
  const rules = (await s?.teardown()) ?? [];
  if (base) rmSync(base, { recursive: true, force: true });
  assert.deepEqual(rules, []);
});

interface Outcome {
  method: string;
  code: grpc.status;
  details: string;
  fields: string[];
  response?: Buffer;
}

test(`up to ${REQUESTS} hostile CRI requests in ${SECONDS} s (seed ${SEED}): no crash, proper statuses, nothing outside the roots, no leak`, { timeout: 600_000 }, async () => {
  const rng = new Rng(SEED);
  const fuzz = new CriFuzzer(rng, targets);
  const channel = new grpc.Client(s.d.endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  const victimPods: string[] = [];
  const victimCtrs: string[] = [];
  let serial = 0;
  const podConfig = (): Input<PodSandboxConfig> => {
    const name = `fz${serial++}`;
    return { ...s.podConfig(name), logDirectory: join(targets.logRoot, `${name}-${s.run}`) };
  };
  const containerConfig = (): Input<ContainerConfig> => ({
    ...s.containerConfig(`c${serial++}`, ['sleep', '3600']),
    CDIDevices: [{ name: 'fuzz.example/dev=null' }],
  });
  const victim = (list: string[]) => (list.length > 0 && rng.chance(0.7) ? rng.pick(list) : 'f'.repeat(64));
  const image = s.image;
  const imageRefs = [image, `${s.registry.host}/e2e/absent:v1`, `${s.registry.host}/e2e/busybox@sha256:${'0'.repeat(64)}`, `${s.registry.host}/e2e/BUSYBOX:v1`, `${s.registry.host}/../../etc:v1`, `${s.registry.host}/e2e/busybox:${'t'.repeat(200)}`, `${s.registry.host}/e2e/busybox:v1\0x`];

  // Calls that stop, remove or start what they name only ever get ids of things the fuzzer made.
  const templates: Record<string, () => Record<string, unknown>> = {
    Version: () => ({ version: 'v1' }),
    RunPodSandbox: () => ({ config: podConfig(), runtimeHandler: '' }),
    StopPodSandbox: () => ({ podSandboxId: victim(victimPods) }),
    RemovePodSandbox: () => ({ podSandboxId: victim(victimPods) }),
    PodSandboxStatus: () => ({ podSandboxId: fixturePod, verbose: true }),
    ListPodSandbox: () => ({ filter: { labelSelector: { run: s.run } } }),
    CreateContainer: () => ({ podSandboxId: rng.chance(0.8) ? fixturePod : victim(victimPods), config: containerConfig(), sandboxConfig: fixturePodConfig }),
    StartContainer: () => ({ containerId: victim(victimCtrs) }),
    StopContainer: () => ({ containerId: victim(victimCtrs), timeout: 0 }),
    RemoveContainer: () => ({ containerId: victim(victimCtrs) }),
    ListContainers: () => ({ filter: { podSandboxId: fixturePod } }),
    ContainerStatus: () => ({ containerId: fixtureCtr, verbose: true }),
    UpdateContainerResources: () => ({ containerId: rng.chance(0.5) ? fixtureCtr : victim(victimCtrs), linux: { cpuShares: 512, memoryLimitInBytes: 256 << 20 } }),
    ReopenContainerLog: () => ({ containerId: fixtureCtr }),
    ExecSync: () => ({ containerId: fixtureCtr, cmd: ['true'], timeout: 5 }),
    Exec: () => ({ containerId: fixtureCtr, cmd: ['sh'], stdin: true, stdout: true }),
    Attach: () => ({ containerId: fixtureCtr, stdout: true }),
    PortForward: () => ({ podSandboxId: fixturePod, port: [80] }),
    ContainerStats: () => ({ containerId: fixtureCtr }),
    ListContainerStats: () => ({ filter: { podSandboxId: fixturePod } }),
    PodSandboxStats: () => ({ podSandboxId: fixturePod }),
    ListPodSandboxStats: () => ({ filter: { id: fixturePod } }),
    UpdateRuntimeConfig: () => ({ runtimeConfig: { networkConfig: { podCidr: '10.99.0.0/16' } } }),
    Status: () => ({ verbose: true }),
    CheckpointContainer: () => ({ containerId: victim(victimCtrs), location: join(targets.outside, 'ckpt.tar'), timeout: 5 }),
    ListMetricDescriptors: () => ({}),
    ListPodSandboxMetrics: () => ({}),
    RuntimeConfig: () => ({}),
    UpdatePodSandboxResources: () => ({ podSandboxId: rng.chance(0.5) ? fixturePod : victim(victimPods), resources: { cpuShares: 512 } }),
    ListImages: () => ({ filter: { image: { image } } }),
    ImageStatus: () => ({ image: { image }, verbose: true }),
    PullImage: () => ({ image: { image: rng.pick(imageRefs) }, sandboxConfig: fixturePodConfig }),
    RemoveImage: () => ({ image: { image: `${s.registry.host}/e2e/absent:v1` } }),
    ImageFsInfo: () => ({}),
  };
  /** Fields whose hostile values would leave the loopback registry (a pull from the Internet). */
  const keep = (method: string) => (path: string) => method === 'PullImage' && path.startsWith('image.image');

  const methods = [
    ...lookupService('runtime.v1.RuntimeService').methodsArray.map((m) => ({ service: 'runtime.v1.RuntimeService', m })),
    ...lookupService('runtime.v1.ImageService').methodsArray.map((m) => ({ service: 'runtime.v1.ImageService', m })),
  ].filter(({ m }) => !m.responseStream);
  for (const { m } of methods) assert.ok(templates[m.name], `a template for ${m.name}`);

  const findings: string[] = [];
  const distinct = new Map<string, number>();
  let sent = 0;
  let succeeded = 0;
  const rawCall = (path: string, body: Buffer) =>
    new Promise<Outcome & { ok: boolean }>((resolve) => {
      channel.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (err, value) => {
        if (err) resolve({ ok: false, method: '', code: err.code, details: err.details, fields: [] });
        else resolve({ ok: true, method: '', code: grpc.status.OK, details: '', fields: [], response: value as Buffer });
      });
    });

  const one = async () => {
    const { service, m } = rng.pick(methods);
    const typeName = m.resolvedRequestType!.fullName.slice(1);
    const type = lookupType(typeName);
    let request: Record<string, unknown>;
    let fields: string[];
    const kind = rng.int(10);
    fuzz.nextRequest();
    if (kind === 0) {
      request = fuzz.randomMessage(type, '', 3);
      fields = ['(all made up)'];
    } else {
      request = templates[m.name]!();
      fields = fuzz.mutate(type, request, 1 + rng.int(3), keep(m.name));
    }
    if (m.name === 'PullImage' && kind !== 0) {
      // Always one of the loopback references: any other name would be a pull from the Internet.
      const spec = (request.image && typeof request.image === 'object' ? request.image : {}) as Record<string, unknown>;
      request.image = { ...spec, image: rng.pick(imageRefs) };
    }
    if (m.name === 'PullImage' && kind === 0) request.image = { image: rng.pick(imageRefs) };
    let body: Buffer;
    if (kind === 1) {
      // Not protobuf at all, or a truncated one.
      // (Random bytes could decode to a PullImageRequest naming some registry on the Internet.)
      body = rng.chance(0.5) && m.name !== 'PullImage' ? rng.bytes(1 + rng.int(200)) : encodeRaw(typeName, request).subarray(0, 3);
      fields = ['(garbage bytes)'];
    } else {
      body = encodeRaw(typeName, request);
    }
    const res = await rawCall(`/${service}/${m.name}`, body);
    sent++;
    if (res.ok) {
      succeeded++;
      if (m.name === 'RunPodSandbox') victimPods.push(codecFor<{ podSandboxId: string }>('runtime.v1.RunPodSandboxResponse').decode(res.response!).podSandboxId);
      if (m.name === 'CreateContainer') victimCtrs.push(codecFor<{ containerId: string }>('runtime.v1.CreateContainerResponse').decode(res.response!).containerId);
      return;
    }
    const key = `${m.name} ${grpc.status[res.code]}: ${res.details.slice(0, 160).replace(/\d+/g, 'N')}`;
    distinct.set(key, (distinct.get(key) ?? 0) + 1);
    if (!ACCEPTED.has(res.code) || /\n\s+at /.test(res.details)) {
      const shown = JSON.stringify(request, (_k, v: unknown) => (typeof v === 'string' && v.length > 200 ? `${v.slice(0, 40)}…(${v.length})` : Array.isArray(v) && v.length > 20 ? `[${v.length} items]` : v));
      findings.push(`${m.name} [${fields.join(', ')}] → ${grpc.status[res.code]}: ${res.details.slice(0, 400)}\n    request: ${shown.slice(0, 600)}`);
    }
  };

  const cleanupVictims = async () => {
    for (const id of victimCtrs.splice(0)) await s.d.client.runtime.unary('RemoveContainer', { containerId: id }).catch(() => undefined);
    for (const id of victimPods.splice(0)) {
      await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: id }).catch(() => undefined);
      await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: id }).catch(() => undefined);
    }
  };

  const baseline = await counts();
  const started = Date.now();
  let issued = 0;
  const worker = async () => {
    while (issued < REQUESTS && Date.now() - started < SECONDS * 1000) {
      issued++;
      // A fuzzer bug must not leave the other workers creating pods while the test tears down.
      await one().catch((err: unknown) => findings.push(`fuzzer error: ${(err as Error).stack ?? String(err)}`));
      if (victimPods.length + victimCtrs.length > 30 && issued % 50 === 0) await cleanupVictims();
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));
  const seconds = (Date.now() - started) / 1000;
  channel.close();

  // The daemon is still the same process and answers.
  assert.equal(s.d.child?.exitCode, null, 'crispd is alive');
  // Everything the fuzzer created is removed through the CRI; then the node looks as before.
  for (const p of (await s.d.client.runtime.unary('ListPodSandbox', {})).items) if (p.id !== fixturePod) victimPods.push(p.id);
  for (const c of (await s.d.client.runtime.unary('ListContainers', {})).containers) if (c.id !== fixtureCtr) victimCtrs.push(c.id);
  await cleanupVictims();
  const afterCounts = await counts();
  const outsideEntries = readdirSync(targets.outside);

  const summary = [...distinct.entries()].sort((a, b) => b[1] - a[1]);
  process.stdout.write(
    `# cri-fuzz seed=${SEED} sent=${sent} ok=${succeeded} distinct-errors=${summary.length} in ${seconds.toFixed(1)} s\n` +
      summary.map(([k, n]) => `#   ${n}× ${k}`).join('\n') +
      '\n',
  );
  assert.deepEqual(findings.slice(0, 20), [], `seed ${SEED}: ${findings.length} improper answers`);
  assert.deepEqual(outsideEntries, [], 'nothing was created through traversal or symlinks outside the roots');
  assert.deepEqual(afterCounts, baseline, 'mounts, shims, IPs, containerd containers/snapshots/leases and pod dirs as before');

  // A normal pod and container still start, and the fixture container still runs commands.
  const pod = await s.runPod('after-fuzz', { logDirectory: join(targets.logRoot, `after-${s.run}`) });
  const ctr = await s.runContainer(pod, 'after', ['sleep', '60']);
  const out = await s.d.client.runtime.unary('ExecSync', { containerId: ctr, cmd: ['echo', 'alive'], timeout: 10 });
  assert.equal(out.stdout.toString().trim(), 'alive');
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
});

test('every path of the fuzzer in log_directory: refused or kept below the pod log root, nothing made outside', async () => {
  const fuzz = new CriFuzzer(new Rng(SEED), targets);
  const paths = new Set<string>();
  for (let i = 0; i < 400; i++) paths.add(fuzz.hostilePath());
  const outcomes: string[] = [];
  for (const [i, logDirectory] of [...paths].entries()) {
    const config = { ...s.podConfig(`path-${i}`), logDirectory };
    try {
      const id = (await s.d.client.runtime.unary('RunPodSandbox', { config })).podSandboxId;
      outcomes.push(`ok ${logDirectory}`);
      await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: id });
      await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: id });
    } catch (err) {
      assert.ok(err instanceof Error && (err as grpc.ServiceError).code === grpc.status.INVALID_ARGUMENT, `${logDirectory}: ${String(err)}`);
      assert.match((err as grpc.ServiceError).details, /config\.log_directory/);
    }
  }
  process.stdout.write(`# log_directory: ${paths.size} paths, accepted: ${outcomes.join(', ') || 'none'}\n`);
  assert.deepEqual(readdirSync(targets.outside), [], 'nothing created outside the pod log root');
});
