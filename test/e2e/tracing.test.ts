// Tracing against a real crispd: tracing_endpoint points at an OTLP/HTTP receiver on loopback, and a
// pull, a pod (CNI, an NRI plugin) and a container produce spans: one per CRI call (continuing the
// traceparent the test sends as kubelet would), with containerd calls, CNI plugin execs, NRI plugin
// calls and pull phases as children; ids as attributes; a secret env value never exported. A bad
// tracing_endpoint stops the daemon at start naming the key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { startStack, type Stack } from './lib/stack.js';
import { TestCrispd } from './lib/crispd.js';
import { OtlpReceiver, type ReceivedSpan } from './fixtures/otlp-receiver.js';
import { SCRIPTED_PLUGIN_JS } from './fixtures/nri-plugins/scripted-plugin.js';
import { sleep } from '../../common/time.js';
import { nriTestDir } from './lib/nri-dir.js';

const SECRET = `tracing-secret-${randomBytes(6).toString('hex')}`;
let s: Stack;
let receiver: OtlpReceiver;
let nriDir: string;
let plugin: ChildProcess | undefined;

const traceparent = (traceId: string, spanId: string) => `00-${traceId}-${spanId}-01`;
const childrenOf = (parent: ReceivedSpan) => receiver.spans.filter((x) => x.parentSpanId === parent.spanId && x.traceId === parent.traceId);

before(async () => {
  receiver = new OtlpReceiver();
  await receiver.start();
  nriDir = `/tmp/crisp-e2e-tracing-nri-${process.pid}-${Date.now().toString(36)}`;
  const { socket, config } = nriTestDir(nriDir);
  s = await startStack({ tracing_endpoint: receiver.endpoint, ...config });
  const record = join(nriDir, 'plugin.jsonl');
  plugin = spawn(process.execPath, [SCRIPTED_PLUGIN_JS, JSON.stringify({ index: '10', name: 'tracer', socketPath: socket, record })], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !(existsSync(record) && readFileSync(record, 'utf8').includes('"Synchronize"')); i++) await sleep(50);
});
after(async () => {
  if (plugin?.exitCode === null) plugin.kill('SIGKILL');
  const rules = (await s?.teardown()) ?? [];
  await receiver?.stop();
  rmSync(nriDir, { recursive: true, force: true });
  assert.deepEqual(rules, []);
});

test('PullImage: a root span with resolve, fetch and unpack per layer, and containerd calls, as children', async () => {
  const pull = await receiver.waitFor((x) => x.name === 'runtime.v1.ImageService/PullImage', 'PullImage');
  assert.equal(pull.parentSpanId, '', 'no traceparent sent: a root span');
  assert.equal(pull.kind, 2, 'SERVER');
  assert.equal(pull.attributes['cri.image'], s.image);
  assert.equal(pull.attributes['cri.image_ref'], s.imageId);
  assert.equal(pull.attributes['rpc.grpc.status_code'], 0);
  assert.equal(pull.resource['service.name'], 'crispd');
  await receiver.waitFor((x) => x.name === 'pull.unpack' && x.traceId === pull.traceId, 'pull.unpack');
  const names = childrenOf(pull).map((x) => x.name);
  for (const n of ['pull.resolve', 'pull.fetch', 'pull.unpack', 'containerd.services.leases.v1.Leases/Create']) assert.ok(names.includes(n), `${n} under PullImage: ${names.join(', ')}`);
  const fetch = childrenOf(pull).find((x) => x.name === 'pull.fetch')!;
  assert.match(String(fetch.attributes['oci.layer.digest']), /^sha256:[0-9a-f]{64}$/);
  assert.ok(Number(fetch.attributes['oci.layer.size']) > 0);
  // A containerd call inside a phase hangs under that phase.
  assert.ok(childrenOf(fetch).some((x) => x.name.startsWith('containerd.services.') && x.kind === 3), 'CLIENT spans under pull.fetch');
});

test("a pod and a container: spans continue the caller's traceparent, with CNI, NRI and containerd children, never the env", async () => {
  const rt = s.d.client.runtime;
  const podTrace = randomBytes(16).toString('hex');
  const podParent = randomBytes(8).toString('hex');
  const { podSandboxId } = await rt.unary('RunPodSandbox', { config: s.podConfig('traced') }, { metadata: { traceparent: traceparent(podTrace, podParent) } });
  const ctrTrace = randomBytes(16).toString('hex');
  const ctrParent = randomBytes(8).toString('hex');
  const { containerId } = await rt.unary(
    'CreateContainer',
    { podSandboxId, config: s.containerConfig('traced-ctr', ['sleep', '60'], { envs: [{ key: 'API_TOKEN', value: Buffer.from(SECRET) }] }) },
    { metadata: { traceparent: traceparent(ctrTrace, ctrParent) } },
  );
  await rt.unary('StartContainer', { containerId });

  const run = await receiver.waitFor((x) => x.name === 'runtime.v1.RuntimeService/RunPodSandbox' && x.traceId === podTrace, 'RunPodSandbox in the sent trace');
  assert.equal(run.parentSpanId, podParent, 'the caller span is the parent');
  assert.equal(run.attributes['cri.pod_sandbox_id'], podSandboxId);
  assert.equal(run.attributes['k8s.pod.name'], 'traced');
  assert.equal(run.attributes['k8s.namespace.name'], 'e2e');
  await receiver.waitFor((x) => x.name === 'nri.RunPodSandbox' && x.parentSpanId === run.spanId, 'nri.RunPodSandbox under RunPodSandbox');
  const cniAdd = await receiver.waitFor((x) => x.name === 'cni.add' && x.parentSpanId === run.spanId, 'cni.add under RunPodSandbox');
  assert.equal(cniAdd.attributes['cni.command'], 'ADD');
  assert.equal(cniAdd.attributes['cri.pod_sandbox_id'], podSandboxId);
  assert.ok(typeof cniAdd.attributes['cni.plugin'] === 'string' && cniAdd.attributes['cni.plugin'] !== '');

  const create = await receiver.waitFor((x) => x.name === 'runtime.v1.RuntimeService/CreateContainer' && x.traceId === ctrTrace, 'CreateContainer');
  assert.equal(create.parentSpanId, ctrParent);
  assert.equal(create.attributes['cri.container_id'], containerId);
  assert.equal(create.attributes['cri.pod_sandbox_id'], podSandboxId);
  assert.equal(create.attributes['k8s.container.name'], 'traced-ctr');
  const nri = await receiver.waitFor((x) => x.name === 'nri.CreateContainer' && x.parentSpanId === create.spanId, 'nri.CreateContainer under CreateContainer');
  assert.equal(nri.attributes['nri.plugin'], '10-tracer');
  await receiver.waitFor((x) => x.name === 'containerd.services.containers.v1.Containers/Create' && x.parentSpanId === create.spanId, 'containerd Containers/Create');
  const start = await receiver.waitFor((x) => x.name === 'runtime.v1.RuntimeService/StartContainer', 'StartContainer');
  assert.equal(start.parentSpanId, '', 'sent without traceparent');
  await receiver.waitFor((x) => x.name === 'containerd.services.tasks.v1.Tasks/Start' && x.parentSpanId === start.spanId, 'Tasks/Start under StartContainer');

  // A failed call: its code on the span.
  await assert.rejects(rt.unary('ContainerStatus', { containerId: 'tracing-absent' }));
  const failed = await receiver.waitFor((x) => x.name === 'runtime.v1.RuntimeService/ContainerStatus' && x.attributes['cri.container_id'] === 'tracing-absent', 'failed ContainerStatus');
  assert.equal(failed.attributes['rpc.grpc.status_code'], 5);

  assert.ok(receiver.bodies.length > 0);
  assert.ok(!receiver.bodies.some((b) => b.includes(SECRET)), 'the env value is in no exported span');
  assert.ok(!s.d.logs.includes(SECRET), 'nor in the log');
  assert.deepEqual(receiver.rejected, []);
  await rt.unary('StopPodSandbox', { podSandboxId });
  await rt.unary('RemovePodSandbox', { podSandboxId });
});

test('a bad tracing_endpoint stops the daemon at start naming the key', async () => {
  const other = new TestCrispd({ config: { tracing_endpoint: 'collector:4318' } });
  try {
    const { code, output } = other.runExpectingFailure();
    assert.equal(code, 2, output);
    assert.match(output, /crispd: config key "tracing_endpoint": expected an http:\/\/ or https:\/\/ URL such as "http:\/\/127\.0\.0\.1:4318", got "collector:4318"/);
  } finally {
    await other.cleanup();
  }
});
