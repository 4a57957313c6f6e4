// cri/call-metrics.ts: bound counters and histograms print exactly what prom-client's Counter and
// Histogram print for the same observations (names, label order, cumulative buckets, +Inf, _sum, _count).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { BoundCounter, BoundHistogram } from '../../cri/call-metrics.js';

const BOUNDS = [0.001, 0.01, 0.1, 1];
const OBSERVED: [string, string, number][] = [
  ['Version', 'OK', 0.0004],
  ['Version', 'OK', 0.001],
  ['Version', 'OK', 0.05],
  ['Status', 'NOT_FOUND', 2.5],
  ['Status', 'NOT_FOUND', 0.2],
];

function promClient(): Registry {
  const registry = new Registry();
  const h = new Histogram({ name: 'h_seconds', help: 'h help', labelNames: ['method', 'code'], buckets: BOUNDS, registers: [registry] });
  const c = new Counter({ name: 'c_total', help: 'c help', labelNames: ['method', 'code'], registers: [registry] });
  for (const [method, code, v] of OBSERVED) {
    h.observe({ method, code }, v);
    c.inc({ method, code });
  }
  return registry;
}

function bound(): { registry: Registry; h: BoundHistogram; c: BoundCounter } {
  const registry = new Registry();
  const h = new BoundHistogram('h_seconds', 'h help', ['method', 'code'], BOUNDS, registry);
  const c = new BoundCounter('c_total', 'c help', ['method', 'code'], registry);
  for (const [method, code, v] of OBSERVED) {
    // labels given in another order than labelNames: the series is the same
    h.observe(h.bind({ code, method }), v);
    c.bind({ method, code }).value++;
  }
  return { registry, h, c };
}

test('bound metrics print what prom-client prints for the same observations', async () => {
  assert.equal(await bound().registry.metrics(), await promClient().metrics());
});

test('one series per label set; reset zeroes the series and keeps them', async () => {
  const { registry, h, c } = bound();
  assert.equal(h.bind({ method: 'Version', code: 'OK' }), h.bind({ code: 'OK', method: 'Version' }));
  assert.notEqual(c.bind({ method: 'Version', code: 'OK' }), c.bind({ method: 'Status', code: 'OK' }));
  registry.resetMetrics();
  const text = await registry.metrics();
  assert.match(text, /^h_seconds_count\{method="Version",code="OK"\} 0$/m);
  assert.match(text, /^h_seconds_bucket\{le="\+Inf",method="Status",code="NOT_FOUND"\} 0$/m);
  assert.match(text, /^c_total\{method="Version",code="OK"\} 0$/m);
});
