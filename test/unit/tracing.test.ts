// Tracing without a daemon: the settings from config keys and OTEL_* variables (bad values named), spans
// of cri/instrument.ts and their children reaching a loopback OTLP/HTTP receiver as JSON (a caller's
// traceparent continued, ids as attributes, no secrets), and a collector that refuses or never answers
// neither delays nor fails calls: spans beyond the bounded queue are dropped and counted.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { resolveConfig, defaultConfigToml } from '../../daemon/config.js';
import { resolveTracingSettings, tracesUrl } from '../../daemon/tracing-settings.js';
import { startOtelTracing } from '../../common/tracing-otel.js';
import { setTracer, traced, tracer } from '../../common/tracing.js';
import { createInstrument } from '../../cri/instrument.js';
import { CrispError } from '../../common/errors.js';
import { OtlpReceiver } from '../e2e/fixtures/otlp-receiver.js';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { CallMetadata } from '../../common/grpc-server.js';

const silent = pino({ level: 'silent' });

function call(method: string, traceparent?: string) {
  const metadata = new CallMetadata();
  if (traceparent) metadata.add('traceparent', traceparent);
  return { path: `/runtime.v1.RuntimeService/${method}`, method, metadata, signal: new AbortController().signal };
}

function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('tracing settings', () => {
  const config = (extra: Record<string, unknown> = {}) => resolveConfig(extra);

  test('off by default; tracing_endpoint gets /v1/traces; the rate samples new traces, callers decide theirs', () => {
    assert.equal(resolveTracingSettings(config(), {}), undefined);
    const s = resolveTracingSettings(config({ tracing_endpoint: 'http://otel.example:4318', tracing_sampling_rate_per_million: 250_000 }), {});
    assert.deepEqual(s, { url: 'http://otel.example:4318/v1/traces', sampler: { root: 'ratio', ratio: 0.25, parentBased: true }, serviceName: 'crispd' });
    assert.equal(tracesUrl('k', 'https://c:4318/otlp/'), 'https://c:4318/otlp/v1/traces');
    assert.equal(tracesUrl('k', 'http://c:4318/v1/traces'), 'http://c:4318/v1/traces');
    assert.match(defaultConfigToml(), /^tracing_endpoint = ""$/m);
    assert.match(defaultConfigToml(), /^tracing_sampling_rate_per_million = 1000000$/m);
    assert.match(defaultConfigToml(), /^log_format = "json"$/m);
  });

  test('OTEL_* variables override the keys', () => {
    const c = config({ tracing_endpoint: 'http://from-config:4318', tracing_sampling_rate_per_million: 0 });
    assert.equal(resolveTracingSettings(c, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://from-env:4318' })?.url, 'http://from-env:4318/v1/traces');
    const full = resolveTracingSettings(c, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:2/custom' });
    assert.equal(full?.url, 'http://b:2/custom', 'the signal-specific variable is the whole URL');
    const env = { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5', OTEL_SERVICE_NAME: 'node-7-crisp' };
    assert.deepEqual(resolveTracingSettings(c, env), {
      url: 'http://from-config:4318/v1/traces',
      sampler: { root: 'ratio', ratio: 0.5, parentBased: false },
      serviceName: 'node-7-crisp',
    });
    assert.deepEqual(resolveTracingSettings(c, { OTEL_TRACES_SAMPLER: 'parentbased_always_off' })?.sampler, { root: 'always_off', ratio: 1, parentBased: true });
    assert.equal(resolveTracingSettings(c, { OTEL_SDK_DISABLED: 'true' }), undefined);
    assert.equal(resolveTracingSettings(config(), { OTEL_EXPORTER_OTLP_ENDPOINT: '' }), undefined, 'empty means unset');
  });

  test('bad values name the key or variable', () => {
    assert.throws(() => config({ tracing_endpoint: 'collector:4318' }), /config key "tracing_endpoint": expected an http:\/\/ or https:\/\/ URL/);
    assert.throws(() => config({ tracing_endpoint: 'not a url' }), /config key "tracing_endpoint"/);
    assert.throws(() => config({ tracing_endpoint: 'http://c:4318/?x=1' }), /config key "tracing_endpoint": a collector URL has no query/);
    assert.throws(() => config({ tracing_sampling_rate_per_million: 2_000_000 }), /"tracing_sampling_rate_per_million": expected a whole number from 0 to 1000000/);
    assert.throws(() => config({ tracing_sampling_rate_per_million: -1 }), /"tracing_sampling_rate_per_million": must be at least 0/);
    assert.throws(() => config({ tracing_sampling_rate_per_million: 0.5 }), /"tracing_sampling_rate_per_million"/);
    assert.throws(() => config({ log_format: 'xml' }), /config key "log_format": "xml" is not one of json, text/);
    const c = config();
    assert.throws(() => resolveTracingSettings(c, { OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://c:4317' }), /^CrispError.*OTEL_EXPORTER_OTLP_ENDPOINT: expected an http/);
    assert.throws(() => resolveTracingSettings(c, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '::' }), /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT/);
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' };
    assert.throws(() => resolveTracingSettings(c, { ...on, OTEL_TRACES_SAMPLER: 'jaeger_remote' }), /OTEL_TRACES_SAMPLER: "jaeger_remote" is not one of/);
    assert.throws(() => resolveTracingSettings(c, { ...on, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }), /OTEL_TRACES_SAMPLER_ARG: expected a ratio from 0 to 1/);
  });
});

test('tracing off: the daemon loads no OpenTelemetry SDK module; on: the SDK comes with startTracing', () => {
  // In a fresh process: the packages are CommonJS, so whatever got loaded is in require.cache. (The API
  // package, @opentelemetry/api, is not counted: prom-client has always loaded it for its exemplars.)
  const dist = resolve(new URL('../..', import.meta.url).pathname);
  const script = `
    import { createRequire } from 'node:module';
    const cache = createRequire(import.meta.url).cache;
    const loaded = () => Object.keys(cache).filter((k) => k.includes('/@opentelemetry/') && !k.includes('/@opentelemetry/api/')).length;
    await import('${dist}/daemon/crispd.js');
    await import('${dist}/cli/daemon-command.js');
    const { startTracing } = await import('${dist}/daemon/tracing.js');
    const { resolveConfig } = await import('${dist}/daemon/config.js');
    const { Registry } = await import('prom-client');
    const { pino } = await import('pino');
    const deps = { log: pino({ level: 'silent' }), registry: new Registry() };
    const off = await startTracing(resolveConfig({}), {}, deps);
    const whenOff = loaded();
    const stop = await startTracing(resolveConfig({ tracing_endpoint: 'http://127.0.0.1:9' }), {}, deps);
    console.log(JSON.stringify({ off: off === undefined, whenOff, whenOn: loaded() }));
    await stop();`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: resolve(dist, '..'), encoding: 'utf8' });
  const r = JSON.parse(out) as { off: boolean; whenOff: number; whenOn: number };
  assert.deepEqual({ off: r.off, whenOff: r.whenOff }, { off: true, whenOff: 0 });
  assert.ok(r.whenOn > 10, `SDK modules once on: ${r.whenOn}`);
});

describe('spans of CRI calls reach an OTLP/HTTP receiver', () => {
  test('server span continuing the caller, children under it, ids and codes as attributes, no secrets', async () => {
    const receiver = new OtlpReceiver();
    await receiver.start();
    const registry = new Registry();
    const tracing = startOtelTracing(
      { url: `${receiver.endpoint}/v1/traces`, sampler: { root: 'always_on', ratio: 1, parentBased: true }, serviceName: 'crispd-unit' },
      { log: silent, registry, version: '0.0.0-test', limits: { intervalMs: 20 } },
    );
    setTracer(tracing.tracer);
    try {
      const inst = createInstrument(silent, registry);
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parentId = '00f067aa0ba902b7';
      const request = { podSandboxId: 'pod-1', config: { metadata: { name: 'c1' }, envs: [{ key: 'TOKEN', value: 'unit-secret-value-93' }] } };
      const created = await inst.intercept(call('CreateContainer', `00-${traceId}-${parentId}-01`), request, () =>
        traced('pull.resolve', { 'cri.image': 'r/a:1' }, async () => ({ containerId: 'ctr-1' })),
      );
      assert.deepEqual(created, { containerId: 'ctr-1' });
      await assert.rejects(inst.intercept(call('ContainerStatus'), { containerId: 'gone' }, async () => Promise.reject(new CrispError('NOT_FOUND', 'container gone'))));
      await assert.rejects(inst.intercept(call('StopContainer'), { containerId: 'c2' }, async () => Promise.reject(new Error('boom'))));
      // Outside any call: no span, just the work.
      assert.equal(await traced('pull.fetch', {}, async () => 7), 7);

      const server = await receiver.waitFor((s) => s.name === 'runtime.v1.RuntimeService/CreateContainer', 'CreateContainer');
      const child = await receiver.waitFor((s) => s.name === 'pull.resolve', 'pull.resolve');
      const notFound = await receiver.waitFor((s) => s.name === 'runtime.v1.RuntimeService/ContainerStatus', 'ContainerStatus');
      const failed = await receiver.waitFor((s) => s.name === 'runtime.v1.RuntimeService/StopContainer', 'StopContainer');
      assert.equal(server.traceId, traceId);
      assert.equal(server.parentSpanId, parentId, 'the caller span is the parent');
      assert.equal(server.kind, 2, 'SERVER');
      assert.equal(child.traceId, traceId);
      assert.equal(child.parentSpanId, server.spanId);
      assert.deepEqual(
        {
          pod: server.attributes['cri.pod_sandbox_id'],
          ctr: server.attributes['cri.container_id'],
          name: server.attributes['k8s.container.name'],
          code: server.attributes['rpc.grpc.status_code'],
          method: server.attributes['rpc.method'],
          system: server.attributes['rpc.system'],
        },
        { pod: 'pod-1', ctr: 'ctr-1', name: 'c1', code: 0, method: 'CreateContainer', system: 'grpc' },
      );
      assert.equal(server.resource['service.name'], 'crispd-unit');
      assert.equal(notFound.parentSpanId, '', 'no traceparent: a root span');
      assert.equal(notFound.attributes['rpc.grpc.status_code'], 5);
      assert.equal(notFound.statusCode, 0, "NOT_FOUND is the caller's business: status unset");
      assert.equal(failed.attributes['rpc.grpc.status_code'], 13);
      assert.equal(failed.statusCode, 2, 'INTERNAL: an error span');
      assert.equal(receiver.spans.filter((s) => s.name === 'pull.fetch').length, 0);
      assert.ok(!receiver.bodies.some((b) => b.includes('unit-secret-value-93')), 'an env value never leaves');
      assert.deepEqual(receiver.rejected, []);
      // Counted once the receiver's answer is back, a moment after it has the spans.
      let exported = 0;
      for (let i = 0; i < 100 && exported < 4; i++, await new Promise((r) => setTimeout(r, 20))) {
        exported = sample(await registry.metrics(), 'crisp_tracing_spans_exported_total');
      }
      assert.ok(exported >= 4, `exported ${exported}`);
    } finally {
      setTracer(undefined);
      await tracing.shutdown(1000);
      await receiver.stop();
    }
  });
});

describe('an unreachable collector never slows or fails a call', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  after(() => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
  });

  /** A port nothing listens on (refused), or a listener that accepts and never answers (hung). */
  async function collector(kind: 'refused' | 'hung'): Promise<string> {
    const server = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    if (kind === 'refused') await new Promise<void>((resolve) => server.close(() => resolve()));
    else servers.push(server);
    return `http://127.0.0.1:${port}/v1/traces`;
  }

  /** Milliseconds for `n` CRI calls through the instrument layer, each with two child spans. */
  async function calls(n: number): Promise<{ totalMs: number; maxMs: number }> {
    const inst = createInstrument(silent, new Registry());
    let maxMs = 0;
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      const out = await inst.intercept(call('ContainerStatus'), { containerId: `c${i}` }, async () => {
        await traced('a', {}, async () => undefined);
        return traced('b', {}, async () => i);
      });
      assert.equal(out, i);
      maxMs = Math.max(maxMs, performance.now() - t);
    }
    return { totalMs: performance.now() - start, maxMs };
  }

  for (const kind of ['refused', 'hung'] as const) {
    test(`collector ${kind}: no call waits for it; the overflow is counted; stop is bounded`, async (t) => {
      const baseline = await calls(1500);
      const registry = new Registry();
      const tracing = startOtelTracing(
        { url: await collector(kind), sampler: { root: 'always_on', ratio: 1, parentBased: true }, serviceName: 'crispd-unit' },
        { log: silent, registry, version: '0.0.0-test', limits: { maxQueue: 100, maxBatch: 50, intervalMs: 5, exportTimeoutMs: 5000 } },
      );
      setTracer(tracing.tracer);
      let traced1500: { totalMs: number; maxMs: number };
      try {
        assert.ok(tracer);
        traced1500 = await calls(1500);
      } finally {
        setTracer(undefined);
      }
      const stopStart = performance.now();
      await tracing.shutdown(300);
      const stopMs = performance.now() - stopStart;
      t.diagnostic(`1500 calls: ${baseline.totalMs.toFixed(0)} ms untraced, ${traced1500.totalMs.toFixed(0)} ms traced (slowest ${traced1500.maxMs.toFixed(1)} ms); stop ${stopMs.toFixed(0)} ms`);
      const text = await registry.metrics();
      const dropped =
        sample(text, 'crisp_tracing_spans_dropped_total', 'reason="queue_full"') +
        sample(text, 'crisp_tracing_spans_dropped_total', 'reason="export_failed"') +
        sample(text, 'crisp_tracing_spans_dropped_total', 'reason="shutdown"');
      // 1500 calls × 3 spans, none delivered: every one is counted as dropped, most for the full queue.
      assert.equal(dropped, 4500, text);
      assert.ok(sample(text, 'crisp_tracing_spans_dropped_total', 'reason="queue_full"') >= 4000, text);
      assert.equal(sample(text, 'crisp_tracing_spans_exported_total'), 0);
      // An export waits up to 5 s on a hung collector (retries within that): a call that waited for one
      // would take seconds. The time spans themselves cost is in the diagnostic above.
      assert.ok(traced1500.maxMs < 1000, `slowest call ${traced1500.maxMs.toFixed(1)} ms`);
      assert.ok(stopMs < 1500, `stop took ${stopMs.toFixed(0)} ms`);
    });
  }
});
