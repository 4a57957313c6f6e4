// NRI plugins misbehaving under load: five external plugins on crispd's NRI socket (two healthy, one
// that sleeps past nri_request_timeout, one that exits inside a call, one that writes garbage on its
// connection) while 20 pods with one container each are started. Every CRI call stays within a bound
// derived from the request timeout, the three bad plugins are dropped, and the two healthy plugins see
// every RunPodSandbox, CreateContainer and StartContainer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { type ChildProcess } from 'node:child_process';
import { startStack, type Stack } from './lib/stack.js';
import { type PluginScript } from './fixtures/nri-plugins/scripted-plugin.js';
import { recordedEvents, startScriptedPlugin } from './fixtures/nri-plugins/scripted-launch.js';
import { sleep } from '../../common/time.js';
import { nriTestDir } from './lib/nri-dir.js';

const PODS = 20;
/** Pods started with the healthy plugins alone, to learn what a call costs here. */
const BASELINE_PODS = 6;
const CONCURRENCY = 4;
/** nri_request_timeout, seconds. */
const REQUEST_TIMEOUT_S = 1;

let s: Stack;
let dir: string;
let socket: string;
const plugins: ChildProcess[] = [];

const startPlugin = (script: PluginScript, name: string) => startScriptedPlugin(script, name, { socket, recordDir: dir, children: plugins });
const events = recordedEvents;

interface PluginView {
  name: string;
  index: string;
  health: string;
  connectedAt: string | null;
  failures: number;
}

async function connectedPlugins(): Promise<PluginView[]> {
  const status = await s.d.client.runtime.unary('Status', { verbose: true });
  const info = JSON.parse(status.info.config ?? '{}') as { nri?: { plugins: PluginView[] } };
  return (info.nri?.plugins ?? []).filter((p) => p.connectedAt !== null);
}

before(async () => {
  dir = `/tmp/crisp-e2e-nri-bad-${process.pid}-${Date.now().toString(36)}`;
  const nri = nriTestDir(dir);
  socket = nri.socket;
  s = await startStack({
    ...nri.config,
    nri_request_timeout: REQUEST_TIMEOUT_S,
    nri_registration_timeout: 2,
  });
});

after(async () => {
  for (const p of plugins) if (p.exitCode === null) p.kill('SIGKILL');
  const rules = (await s?.teardown()) ?? [];
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(rules, []);
});

test(`${PODS} pods + containers with a slow, a crashing and a garbage-sending NRI plugin: bounded latency, bad plugins dropped, no event lost`, { timeout: 180_000 }, async () => {
  const healthy = [await startPlugin({ index: '10' }, 'healthy-a'), await startPlugin({ index: '90' }, 'healthy-b')];
  type Method = 'RunPodSandbox' | 'CreateContainer' | 'StartContainer';
  const rt = s.d.client.runtime;
  const podIds: string[] = [];
  /** Start `count` pods with a container each, CONCURRENCY at a time; returns the latencies by call. */
  const load = async (prefix: string, count: number) => {
    const latencies: Record<Method, number[]> = { RunPodSandbox: [], CreateContainer: [], StartContainer: [] };
    const timed = async <T>(method: Method, call: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await call();
      } finally {
        latencies[method].push(performance.now() - t0);
      }
    };
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < count) {
          const i = next++;
          const config = s.podConfig(`${prefix}-${i}`);
          const pod = await timed('RunPodSandbox', async () => (await rt.unary('RunPodSandbox', { config })).podSandboxId);
          podIds.push(pod);
          const { containerId } = await timed('CreateContainer', () => rt.unary('CreateContainer', { podSandboxId: pod, config: s.containerConfig(`ctr-${i}`, ['sleep', '60']), sandboxConfig: config }));
          await timed('StartContainer', () => rt.unary('StartContainer', { containerId }));
        }
      }),
    );
    return latencies;
  };
  const maxOf = (l: Record<Method, number[]>) => Math.max(...Object.values(l).flat());

  // The same load with the healthy plugins only: what a call costs on this machine right now.
  const baseline = await load('nri-base', BASELINE_PODS);
  const slow = await startPlugin({ index: '20', slowMs: { RunPodSandbox: 10_000, CreateContainer: 10_000, StartContainer: 10_000 } }, 'sleeper');
  const crasher = await startPlugin({ index: '30', crashOn: 'CreateContainer' }, 'crasher');
  const garbage = await startPlugin({ index: '40', misbehave: 'garbage-bytes', misbehaveAfterEvents: 3 }, 'garbler');
  assert.equal((await connectedPlugins()).length, 5, 'all five plugins registered');
  const started = performance.now();
  const latencies = await load('nri-load', PODS);
  const wall = (performance.now() - started) / 1000;
  const round = (l: Record<Method, number[]>, f: (v: number[]) => number) => Object.fromEntries(Object.entries(l).map(([m, v]) => [m, Math.round(f(v))]));
  const p50 = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  process.stdout.write(
    `# nri-misbehaving: baseline max ${Math.round(maxOf(baseline))} ms (p50 ${JSON.stringify(round(baseline, p50))}); ` +
      `${PODS} pods with bad plugins in ${wall.toFixed(1)} s, max ${JSON.stringify(round(latencies, (v) => Math.max(...v)))}, p50 ${JSON.stringify(round(latencies, p50))}\n`,
  );

  // A call waits for each bad plugin at most one request timeout, once, before it is dropped: the
  // bound is what the call costs without them (doubled: this machine is shared) plus one timeout per
  // bad plugin. The sleeper alone, were it not dropped, would add 10 s to every call.
  const bound = 2 * maxOf(baseline) + 3 * REQUEST_TIMEOUT_S * 1000 + 1000;
  for (const [m, l] of Object.entries(latencies)) assert.ok(Math.max(...l) < bound, `${m} max ${Math.round(Math.max(...l))} ms < ${Math.round(bound)} ms`);

  const left = (await connectedPlugins()).map((p) => `${p.index}-${p.name}`).sort();
  assert.deepEqual(left, ['10-healthy-a', '90-healthy-b'], 'the slow, crashing and garbage-sending plugins are dropped');
  assert.ok(events(slow).some((e) => e.ev === 'RunPodSandbox'), 'the sleeper was called');
  assert.ok(events(crasher).some((e) => e.ev === 'crash'), 'the crasher exited inside a call');
  assert.ok(events(garbage).some((e) => e.ev === 'misbehave'), 'the garbler sent its garbage');

  await sleep(300);
  for (const record of healthy) {
    const seen = events(record);
    for (const ev of ['RunPodSandbox', 'CreateContainer', 'StartContainer']) {
      const pods = new Set(seen.filter((e) => e.ev === ev).map((e) => e.pod));
      const expected = [...Array.from({ length: BASELINE_PODS }, (_, i) => `nri-base-${i}`), ...Array.from({ length: PODS }, (_, i) => `nri-load-${i}`)];
      const missing = expected.filter((p) => !pods.has(p));
      assert.deepEqual(missing, [], `${record}: ${ev} seen for every pod`);
    }
  }
  for (const id of podIds) {
    await rt.unary('StopPodSandbox', { podSandboxId: id });
    await rt.unary('RemovePodSandbox', { podSandboxId: id });
  }
});
