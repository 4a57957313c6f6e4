// metrics_address against a running crispd: /metrics moves with a pod, a container, pulls (a success
// with bytes, a failure by reason), an exec session; /healthz is 200, turns 503 naming containerd while
// the embedded containerd is down and 200 again once crispd restarted it (counted as a restart); a failed
// call is one warn line; the operation metrics move: pod start phases, CNI ADD/DEL, calls to an NRI plugin
// (one of them timing out), streaming sessions by kind; an address that cannot be bound, or a native
// helper that is not there, stops a second daemon at start naming the key.
import { test, describe, before, after } from 'node:test';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { WebSocket } from 'ws';
import { startStack, type Stack } from './lib/stack.js';
import { TestCrispd } from './lib/crispd.js';
import { buildImage } from './fixtures/images.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SCRIPTED_PLUGIN_JS } from './fixtures/nri-plugins/scripted-plugin.js';
import { promSample } from '../lib/prom-sample.js';
import { nriTestDir } from './lib/nri-dir.js';

/** A sample's value in a scrape; 0 when absent. */
const sample = (text: string, name: string, labels: Record<string, string> = {}): number => promSample(text, name, labels) ?? 0;

describe('metrics and healthz on metrics_address', () => {
  let s: Stack;
  let address: string;
  let plugin: ChildProcess | undefined;
  const nriDir = `/tmp/crisp-e2e-metrics-nri-${process.pid}-${randomBytes(3).toString('hex')}`;
  const scrape = async () => {
    const res = await fetch(`http://${address}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return res.text();
  };
  const healthz = async () => {
    const res = await fetch(`http://${address}/healthz`);
    return { status: res.status, body: await res.text() };
  };

  before(async () => {
    // Port 0: the daemon binds a free port and logs it (no race with other tests for a fixed one).
    const nri = nriTestDir(nriDir);
    s = await startStack({ metrics_address: '127.0.0.1:0', ...nri.config, nri_request_timeout: 3 });
    // One external plugin that stalls past the request timeout on RemovePodSandbox only.
    const record = join(nriDir, 'plugin.jsonl');
    const script = { name: 'metrics', index: '10', socketPath: nri.socket, record, slowMs: { RemovePodSandbox: 10_000 } };
    plugin = spawn(process.execPath, [SCRIPTED_PLUGIN_JS, JSON.stringify(script)], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !(existsSync(record) && readFileSync(record, 'utf8').includes('"Synchronize"')); i++) await sleep(50);
    assert.ok(readFileSync(record, 'utf8').includes('"Synchronize"'), 'the NRI plugin synchronized');
    const line = s.d.logs
      .split('\n')
      .map((l) => {
        try {
          return JSON.parse(l) as { msg?: string; address?: string };
        } catch {
          return {};
        }
      })
      .find((l) => l.msg === 'metrics server listening');
    assert.ok(line?.address, `no "metrics server listening" line in:\n${s.d.logs.slice(-3000)}`);
    address = line.address;
    assert.match(address, /^127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    if (plugin && plugin.exitCode === null) plugin.kill('SIGKILL');
    const rules = await s?.teardown();
    rmSync(nriDir, { recursive: true, force: true });
    assert.deepEqual(rules ?? [], []);
  });

  test('/healthz: 200 with both checks passing', async () => {
    const h = await healthz();
    assert.equal(h.status, 200, h.body);
    assert.equal(h.body, '[+]cri ok\n[+]containerd ok\nhealthz check passed\n');
  });

  test('counters move with a pod, a container, pulls and an exec session', async () => {
    const rt = s.d.client.runtime;
    const before = await scrape();
    // The stack's own pull (before the test) already counted, with its bytes.
    assert.ok(sample(before, 'crisp_image_pulls_success_total') >= 1);
    assert.ok(sample(before, 'crisp_image_pulls_bytes_total') > 0);
    assert.equal(sample(before, 'crisp_containerd_up'), 1);
    assert.equal(sample(before, 'crisp_in_progress_image_pulls'), 0);
    assert.ok(sample(before, 'crisp_build_info') === 1);
    assert.ok(sample(before, 'crisp_process_resident_memory_bytes') > 0, 'process metrics, crisp_-prefixed');

    const pod = await s.runPod('metrics');
    const ctr = await s.runContainer(pod, 'sleeper', ['sleep', '3600']);
    // A pull that downloads a layer of its own, and one that fails.
    const img = buildImage([[{ type: 'file', path: 'data.bin', data: randomBytes(256 * 1024) }]]);
    await s.registry.push(img, 'e2e/metrics', 'v1');
    await s.d.client.image.unary('PullImage', { image: { image: `${s.registry.host}/e2e/metrics:v1` } });
    await assert.rejects(s.d.client.image.unary('PullImage', { image: { image: `${s.registry.host}/e2e/metrics:absent` } }), (err: unknown) =>
      isGrpcError(err, grpc.status.NOT_FOUND),
    );

    // An exec session open on the streaming server while we scrape.
    const { url } = await rt.unary('Exec', { containerId: ctr, cmd: ['sleep', '30'], stdout: true, stderr: true });
    const ws = new WebSocket(url, ['v5.channel.k8s.io']);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    let during: string;
    try {
      during = await scrape();
    } finally {
      ws.terminate();
    }

    const delta = (name: string, labels: Record<string, string> = {}) => sample(during, name, labels) - sample(before, name, labels);
    const rtLabels = { grpc_service: 'runtime.v1.RuntimeService', grpc_type: 'unary', grpc_code: 'OK' };
    assert.equal(delta('grpc_server_handled_total', { ...rtLabels, grpc_method: 'RunPodSandbox' }), 1);
    assert.equal(delta('grpc_server_handled_total', { ...rtLabels, grpc_method: 'CreateContainer' }), 1);
    assert.equal(delta('grpc_server_handled_total', { ...rtLabels, grpc_method: 'StartContainer' }), 1);
    assert.equal(delta('grpc_server_started_total', { grpc_service: 'runtime.v1.RuntimeService', grpc_method: 'RunPodSandbox' }), 1);
    assert.equal(delta('grpc_server_handling_seconds_count', { grpc_method: 'RunPodSandbox' }), 1);
    assert.equal(delta('grpc_server_handled_total', { grpc_service: 'runtime.v1.ImageService', grpc_method: 'PullImage', grpc_code: 'NOT_FOUND' }), 1);
    assert.equal(delta('crisp_cri_request_duration_seconds_count', { method: 'RunPodSandbox', code: 'OK' }), 1);
    assert.equal(delta('crisp_cri_request_duration_seconds_count', { method: 'PullImage', code: 'NOT_FOUND' }), 1);

    assert.equal(sample(during, 'crisp_pods', { state: 'ready' }), 1);
    assert.equal(sample(during, 'crisp_containers', { state: 'running' }), 1);
    assert.equal(delta('crisp_image_pulls_success_total'), 1);
    assert.equal(delta('crisp_image_pulls_failure_total', { error: 'NOT_FOUND' }), 1);
    const layerSize = img.layers[0]!.descriptor.size;
    assert.ok(delta('crisp_image_pulls_bytes_total') >= layerSize, `bytes moved by at least the new layer (${layerSize})`);
    assert.equal(delta('crisp_image_pull_duration_seconds_count', { status: 'success' }), 1);
    assert.equal(sample(during, 'crisp_in_progress_image_pulls'), 0);
    assert.equal(sample(during, 'crisp_streaming_sessions'), 1);
    assert.equal(sample(during, 'crisp_streaming_sessions_active', { kind: 'exec' }), 1);
    assert.equal(sample(during, 'crisp_streaming_sessions_active', { kind: 'attach' }), 0);
    assert.equal(delta('crisp_streaming_sessions_total', { kind: 'exec' }), 1);

    // Pod start phases: one observation each for this pod and its container.
    for (const phase of ['namespaces', 'cni', 'nri', 'containerd']) {
      assert.equal(delta('crisp_pod_start_phase_duration_seconds_count', { phase }), 1, phase);
      assert.ok(delta('crisp_pod_start_phase_duration_seconds_sum', { phase }) > 0, phase);
    }
    assert.equal(delta('crisp_cri_network_plugin_operations_total', { operation_type: 'ADD' }), 1);
    assert.equal(delta('crisp_cri_network_plugin_operations_duration_seconds_count', { operation_type: 'ADD' }), 1);
    assert.equal(delta('crisp_cri_network_plugin_operations_errors_total', { operation_type: 'ADD' }), 0);
    // The plugin: registered and synchronized before, saw RunPodSandbox and CreateContainer now.
    const nri = { plugin: '10-metrics' };
    assert.equal(sample(before, 'crisp_nri_plugin_calls_total', { ...nri, method: 'Configure', result: 'ok' }), 1);
    assert.ok(sample(before, 'crisp_nri_plugin_calls_total', { ...nri, method: 'Synchronize', result: 'ok' }) >= 1);
    assert.equal(delta('crisp_nri_plugin_calls_total', { ...nri, method: 'RunPodSandbox', result: 'ok' }), 1);
    assert.equal(delta('crisp_nri_plugin_calls_total', { ...nri, method: 'CreateContainer', result: 'ok' }), 1);
    assert.equal(delta('crisp_nri_plugin_call_duration_seconds_count', { ...nri, method: 'CreateContainer' }), 1);
    assert.equal(sample(during, 'crisp_nri_plugin_connected', nri), 1);

    // The failed pull is one warn line naming the method and the code.
    const warns = s.d.logs
      .split('\n')
      .filter((l) => l.includes('"cri request failed"'))
      .map((l) => JSON.parse(l) as { level: number; method: string; code: string; err: string })
      .filter((l) => l.method === 'PullImage' && l.code === 'NOT_FOUND');
    assert.equal(warns.length, 1);
    assert.equal(warns[0]!.level, 40);
    assert.match(warns[0]!.err, /e2e\/metrics:absent/);

    // Sessions end, pods go: the gauges follow at the next scrape.
    for (let i = 0; i < 50 && sample(await scrape(), 'crisp_streaming_sessions') !== 0; i++) await sleep(100);
    assert.equal(sample(await scrape(), 'crisp_streaming_sessions'), 0);
    await rt.unary('StopPodSandbox', { podSandboxId: pod });
    const after = await scrape();
    assert.equal(sample(after, 'crisp_pods', { state: 'notready' }), 1);
    assert.equal(sample(after, 'crisp_pods', { state: 'ready' }), 0);
    assert.equal(sample(after, 'crisp_containers', { state: 'running' }), 0);
    assert.equal(sample(after, 'crisp_cri_network_plugin_operations_total', { operation_type: 'DEL' }) - sample(before, 'crisp_cri_network_plugin_operations_total', { operation_type: 'DEL' }), 1);
    assert.equal(sample(after, 'crisp_cri_network_plugin_operations_duration_seconds_count', { operation_type: 'DEL' }) - sample(before, 'crisp_cri_network_plugin_operations_duration_seconds_count', { operation_type: 'DEL' }), 1);
    // The plugin stalls on RemovePodSandbox past nri_request_timeout: a timeout, and crisp drops it.
    await rt.unary('RemovePodSandbox', { podSandboxId: pod });
    const removed = await scrape();
    assert.equal(sample(removed, 'crisp_nri_plugin_calls_total', { ...nri, method: 'RemovePodSandbox', result: 'timeout' }), 1);
    assert.equal(sample(removed, 'crisp_nri_plugin_connected', nri), 0);
  });

  test('/healthz: 503 naming containerd while it is down, 200 again once crispd restarted it', async () => {
    const pid = s.d.containerdPid();
    assert.ok(pid, 'embedded containerd pid');
    process.kill(pid, 'SIGKILL');
    let down: { status: number; body: string } | undefined;
    for (let i = 0; i < 100 && !down; i++) {
      const h = await healthz();
      if (h.status === 503) down = h;
      else await sleep(50);
    }
    assert.ok(down, 'healthz never reported containerd down');
    assert.match(down.body, /^\[\+\]cri ok\n\[-\]containerd failed: .+\nhealthz check failed\n$/);
    assert.equal(sample(await scrape(), 'crisp_containerd_up'), 0);
    const restartsBefore = sample(await scrape(), 'crisp_containerd_restarts_total');
    const deadline = Date.now() + 30_000;
    let h = await healthz();
    while (h.status !== 200 && Date.now() < deadline) {
      await sleep(200);
      h = await healthz();
    }
    assert.equal(h.status, 200, h.body);
    // The gauge pings with a shorter timeout (1 s) than /healthz (2 s): a containerd still busy
    // recovering on a loaded machine may miss it once; it must come up, not necessarily at once.
    let restarted = await scrape();
    while (sample(restarted, 'crisp_containerd_up') !== 1 && Date.now() < deadline) {
      await sleep(200);
      restarted = await scrape();
    }
    assert.equal(sample(restarted, 'crisp_containerd_up'), 1);
    assert.equal(sample(restarted, 'crisp_containerd_restarts_total') - restartsBefore, 1);
  });

  test('with metrics_address the Node metrics are there; without it no lag monitor wakes an idle crispd', async () => {
    const text = await scrape();
    assert.ok(promSample(text, 'crisp_nodejs_eventloop_lag_seconds') !== undefined, 'event-loop lag served');
    // metrics_address off (the default): prom-client's 10 ms lag-sampling timer is not started, so an idle
    // daemon's main thread sleeps (with it: ~100 wake-ups a second).
    const idle = new TestCrispd();
    try {
      await idle.start();
      await sleep(2000);
      const switches = () => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${idle.child!.pid}/status`, 'utf8'))![1]);
      const first = switches();
      await sleep(3000);
      const woke = switches() - first;
      assert.ok(woke < 100, `crispd's main thread woke ${woke} times in 3 s of idling`);
    } finally {
      await idle.cleanup();
    }
  });

  test('an address that cannot be bound stops the daemon at start naming metrics_address', async () => {
    const other = new TestCrispd({ config: { metrics_address: address } });
    try {
      const { code, output } = other.runExpectingFailure();
      assert.equal(code, 1, output);
      assert.match(output, new RegExp(`crispd: config key "metrics_address": cannot listen on ${address.replace(/\./g, '\\.')}: .*EADDRINUSE`));
      assert.doesNotMatch(output, /embedded containerd/, 'refused before containerd was started');
    } finally {
      await other.cleanup();
    }
  });

  test('a native helper that is not there stops the daemon at start naming its key', async () => {
    const other = new TestCrispd({ config: { logger_path: '/nonexistent/crisp-logger' } });
    try {
      const { code, output } = other.runExpectingFailure();
      assert.notEqual(code, 0, output);
      assert.match(output, /config key "logger_path": crisp-logger at \/nonexistent\/crisp-logger is not an executable file: ENOENT/);
      assert.doesNotMatch(output, /embedded containerd/, 'refused before containerd was started');
    } finally {
      await other.cleanup();
    }
  });

  test('a bad metrics_address is refused before anything starts', async () => {
    const other = new TestCrispd({ config: { metrics_address: 'localhost' } });
    try {
      const { code, output } = other.runExpectingFailure();
      assert.equal(code, 2, output);
      assert.match(output, /config key "metrics_address": expected HOST:PORT/);
    } finally {
      await other.cleanup();
    }
  });
});
