// The metrics endpoint without a daemon: address parsing and the config key, /metrics and /healthz over
// real HTTP on a loopback port, scrape-time gauges, image pull counters around a fake puller, the
// per-RPC metrics and the one warn line per failed call of cri/instrument.ts.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { MetricsServer, registerRuntimeMetrics, instrumentImagePulls } from '../../daemon/metrics-server.js';
import { parseListenAddress } from '../../daemon/listen-address.js';
import { resolveConfig, defaultConfigToml, DEFAULT_CONFIG } from '../../daemon/config.js';
import { createInstrument } from '../../cri/instrument.js';
import { CrispError, notFound } from '../../common/errors.js';
import type { PullOptions, PullResult } from '../../backend/images/pull.js';
import type { NriPluginInfo } from '../../nri/host/index.js';
import { captureLog } from '../lib/capture-log.js';
import { promSample } from '../lib/prom-sample.js';
import { CallMetadata } from '../../common/grpc-server.js';

const silent = pino({ level: 'silent' });

async function get(address: string, path: string): Promise<{ status: number; body: string; type: string }> {
  const res = await fetch(`http://${address}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? '' };
}

const sample = promSample;

describe('metrics_address', () => {
  test('HOST:PORT, [v6]:PORT and :PORT parse; anything else names the key', () => {
    assert.deepEqual(parseListenAddress('metrics_address', '127.0.0.1:9099'), { host: '127.0.0.1', port: 9099 });
    assert.deepEqual(parseListenAddress('metrics_address', '[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListenAddress('metrics_address', ':9099'), { host: '', port: 9099 });
    assert.deepEqual(parseListenAddress('metrics_address', 'localhost:1'), { host: 'localhost', port: 1 });
    for (const bad of ['9099', '127.0.0.1', '127.0.0.1:99999', '127.0.0.1:x', '::1:9099', 'a b:1', 'http://127.0.0.1:9099']) {
      assert.throws(() => parseListenAddress('metrics_address', bad), /config key "metrics_address": expected HOST:PORT/, bad);
    }
  });

  test('config: off by default, documented, validated at config time', () => {
    assert.equal(DEFAULT_CONFIG.metrics_address, '');
    assert.match(defaultConfigToml(), /# HOST:PORT serving Prometheus \/metrics and \/healthz.*\nmetrics_address = ""\n/);
    assert.equal(resolveConfig({ metrics_address: '127.0.0.1:9099' }).metrics_address, '127.0.0.1:9099');
    assert.throws(() => resolveConfig({ metrics_address: 'nonsense' }), /config key "metrics_address"/);
    assert.throws(() => resolveConfig({ metrics_address: 9099 }), /config key "metrics_address": expected a string/);
  });
});

describe('metrics server', () => {
  test('/metrics in the Prometheus text format; /healthz 503 until armed, then per check; 404 and 405 otherwise', async () => {
    const registry = new Registry();
    registerRuntimeMetrics(registry, {
      version: '9.9.9',
      pods: () => [{ state: 'ready' }, { state: 'ready' }, { state: 'notready' }],
      containers: () => [{ state: 'running' }, { state: 'exited' }],
      containerdPing: async () => undefined,
      streamingSessions: () => 3,
    });
    const server = new MetricsServer({ address: '127.0.0.1:0', registry, log: silent, healthTimeoutMs: 200 });
    const address = await server.start();
    assert.match(address, /^127\.0\.0\.1:\d+$/);
    try {
      const m = await get(address, '/metrics');
      assert.equal(m.status, 200);
      assert.match(m.type, /^text\/plain; version=0\.0\.4/);
      assert.equal(sample(m.body, 'crisp_pods', { state: 'ready' }), 2);
      assert.equal(sample(m.body, 'crisp_pods', { state: 'notready' }), 1);
      assert.equal(sample(m.body, 'crisp_containers', { state: 'running' }), 1);
      assert.equal(sample(m.body, 'crisp_containers', { state: 'created' }), 0, 'every state is listed, 0 included');
      assert.equal(sample(m.body, 'crisp_containerd_up'), 1);
      assert.equal(sample(m.body, 'crisp_streaming_sessions'), 3);
      assert.equal(sample(m.body, 'crisp_build_info', { version: '9.9.9' }), 1);
      assert.match(m.body, /# TYPE crisp_pods gauge/);

      let h = await get(address, '/healthz');
      assert.equal(h.status, 503, 'not armed yet: crispd is starting');
      assert.match(h.body, /healthz check failed/);

      let containerdUp = true;
      server.setHealthChecks([
        { name: 'cri', check: async () => undefined },
        {
          name: 'containerd',
          check: async () => {
            if (!containerdUp) throw new Error('connect ECONNREFUSED\n/run/x.sock');
          },
        },
      ]);
      h = await get(address, '/healthz');
      assert.equal(h.status, 200);
      assert.equal(h.body, '[+]cri ok\n[+]containerd ok\nhealthz check passed\n');
      containerdUp = false;
      h = await get(address, '/healthz');
      assert.equal(h.status, 503);
      assert.equal(h.body, '[+]cri ok\n[-]containerd failed: connect ECONNREFUSED /run/x.sock\nhealthz check failed\n');

      // A check that hangs is a failure, not a hung probe.
      server.setHealthChecks([{ name: 'cri', check: () => new Promise(() => undefined) }]);
      const started = Date.now();
      h = await get(address, '/healthz');
      assert.equal(h.status, 503);
      assert.match(h.body, /\[-\]cri failed: cri check timed out/);
      assert.ok(Date.now() - started < 2000);

      assert.equal((await get(address, '/nope')).status, 404);
      assert.equal((await fetch(`http://${address}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await server.stop();
    }
    await assert.rejects(fetch(`http://${address}/metrics`), 'stopped: nothing listens');
  });

  test('an address that cannot be bound fails naming metrics_address', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const server = new MetricsServer({ address: `127.0.0.1:${port}`, registry: new Registry(), log: silent });
      await assert.rejects(server.start(), (err: Error) => {
        assert.ok(err instanceof CrispError);
        assert.match(err.message, new RegExp(`^config key "metrics_address": cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
        return true;
      });
    } finally {
      blocker.close();
    }
  });

  test('NRI plugins: connected per plugin, failures as a counter; containerd down is 0', async () => {
    const registry = new Registry();
    const plugins: NriPluginInfo[] = [
      { name: 'logger', index: '10', kind: 'external', events: [], health: 'ready', connectedAt: new Date().toISOString(), failures: 0, required: false },
      { name: 'limits', index: '20', kind: 'launched', events: [], health: 'restarting', connectedAt: null, failures: 2, required: true },
    ];
    registerRuntimeMetrics(registry, {
      version: '1',
      pods: () => [],
      containers: () => [],
      nriPlugins: () => plugins,
      containerdPing: async () => {
        throw new Error('down');
      },
      streamingSessions: () => 0,
    });
    const text = await registry.metrics();
    assert.equal(sample(text, 'crisp_nri_plugin_connected', { plugin: '10-logger', kind: 'external', required: 'false' }), 1);
    assert.equal(sample(text, 'crisp_nri_plugin_connected', { plugin: '20-limits', kind: 'launched', required: 'true' }), 0);
    assert.equal(sample(text, 'crisp_nri_plugin_failures_total', { plugin: '20-limits' }), 2);
    assert.match(text, /# TYPE crisp_nri_plugin_failures_total counter/);
    assert.equal(sample(text, 'crisp_containerd_up'), 0);
    plugins.pop();
    const again = await registry.metrics();
    assert.equal(sample(again, 'crisp_nri_plugin_connected', { plugin: '20-limits' }), undefined, 'a plugin crisp forgot is no longer listed');
  });
});

describe('image pull metrics', () => {
  test('successes, failures by gRPC code, bytes received, in progress, duration; progress still reaches the caller', async () => {
    const registry = new Registry();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fake = {
      async pull(reference: string, options: PullOptions = {}): Promise<PullResult> {
        const p = { reference, done: 0, total: 300, layers: [], bytesPerSecond: 0, startedAt: 0, updatedAt: 0 };
        if (reference.endsWith(':missing')) throw notFound(`image "${reference}" not found`);
        if (reference.endsWith(':broken')) throw new Error('socket hang up');
        options.onProgress?.({ ...p, done: 100, received: 100 });
        await gate;
        options.onProgress?.({ ...p, done: 300, received: 250 });
        options.onProgress?.({ ...p, done: 300, received: 250 });
        return { id: 'sha256:abc', repoDigest: `${reference}@sha256:def` };
      },
    };
    const images = instrumentImagePulls(fake, registry);
    assert.equal(images, fake);
    const seen: number[] = [];
    const running = images.pull('r/a:1', { onProgress: (p) => seen.push(p.done) });
    await new Promise((r) => setImmediate(r));
    let text = await registry.metrics();
    assert.equal(sample(text, 'crisp_in_progress_image_pulls'), 1);
    assert.equal(sample(text, 'crisp_image_pulls_bytes_total'), 100, 'bytes count as they arrive');
    release();
    assert.deepEqual(await running, { id: 'sha256:abc', repoDigest: 'r/a:1@sha256:def' });
    assert.deepEqual(seen, [100, 300, 300]);
    await assert.rejects(images.pull('r/a:missing'), /not found/);
    await assert.rejects(images.pull('r/a:broken'), /socket hang up/);
    text = await registry.metrics();
    assert.equal(sample(text, 'crisp_in_progress_image_pulls'), 0);
    assert.equal(sample(text, 'crisp_image_pulls_success_total'), 1);
    assert.equal(sample(text, 'crisp_image_pulls_failure_total', { error: 'NOT_FOUND' }), 1);
    assert.equal(sample(text, 'crisp_image_pulls_failure_total', { error: 'INTERNAL' }), 1);
    assert.equal(sample(text, 'crisp_image_pulls_bytes_total'), 250, 'each byte once');
    assert.equal(sample(text, 'crisp_image_pull_duration_seconds_count', { status: 'success' }), 1);
    assert.equal(sample(text, 'crisp_image_pull_duration_seconds_count', { status: 'failure' }), 2);
  });
});

describe('per-RPC metrics and logs (cri/instrument.ts)', () => {
  const call = (method: string, service = 'runtime.v1.RuntimeService') => ({
    path: `/${service}/${method}`,
    method,
    metadata: new CallMetadata(),
    signal: new AbortController().signal,
  });

  test("containerd's grpc_server_* names, crisp's latency by method and code, one warn line per failed call", async () => {
    const registry = new Registry();
    const { log, lines } = captureLog();
    const inst = createInstrument(log, registry);
    await inst.intercept(call('Version'), {}, async () => 'ok');
    await inst.intercept(call('PullImage', 'runtime.v1.ImageService'), {}, async () => 'ok');
    await assert.rejects(
      inst.intercept(call('CreateContainer'), {}, async () => {
        throw new CrispError('FAILED_PRECONDITION', 'NRI plugin 10-deny refused CreateContainer: not allowed');
      }),
    );
    await assert.rejects(
      inst.intercept(call('StopContainer'), {}, async () => {
        throw new Error('boom');
      }),
    );
    const text = await registry.metrics();
    const rt = { grpc_service: 'runtime.v1.RuntimeService', grpc_type: 'unary' };
    assert.equal(sample(text, 'grpc_server_started_total', { ...rt, grpc_method: 'Version' }), 1);
    assert.equal(sample(text, 'grpc_server_handled_total', { ...rt, grpc_method: 'Version', grpc_code: 'OK' }), 1);
    assert.equal(sample(text, 'grpc_server_handled_total', { grpc_service: 'runtime.v1.ImageService', grpc_method: 'PullImage', grpc_code: 'OK' }), 1);
    assert.equal(sample(text, 'grpc_server_handled_total', { ...rt, grpc_method: 'CreateContainer', grpc_code: 'FAILED_PRECONDITION' }), 1);
    assert.equal(sample(text, 'grpc_server_handled_total', { ...rt, grpc_method: 'StopContainer', grpc_code: 'INTERNAL' }), 1);
    assert.equal(sample(text, 'grpc_server_handling_seconds_count', { ...rt, grpc_method: 'Version' }), 1);
    assert.equal(sample(text, 'crisp_cri_request_duration_seconds_count', { method: 'CreateContainer', code: 'FAILED_PRECONDITION' }), 1);
    assert.equal(sample(text, 'crisp_cri_requests_in_flight'), 0);

    const failed = lines.filter((l) => l.msg === 'cri request failed');
    assert.equal(failed.length, 2, 'one line per failed call');
    assert.deepEqual(
      failed.map((l) => [l.level, l.method, l.code]),
      [
        [40, 'CreateContainer', 'FAILED_PRECONDITION'],
        [50, 'StopContainer', 'INTERNAL'],
      ],
    );
    assert.match(String(failed[0]!.err), /NRI plugin 10-deny refused CreateContainer/);
  });

  test('GetContainerEvents counts as a server stream', async () => {
    const registry = new Registry();
    const inst = createInstrument(silent, registry);
    await inst.intercept(call('GetContainerEvents'), {}, async () => undefined);
    const text = await registry.metrics();
    assert.equal(sample(text, 'grpc_server_handled_total', { grpc_method: 'GetContainerEvents', grpc_type: 'server_stream', grpc_code: 'OK' }), 1);
  });
});
