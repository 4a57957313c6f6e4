// common/operation-metrics.ts: what each observation function counts (results, failures, phases) as
// crispd's registry serves it; known label sets start at 0 so a dashboard sees them before traffic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import {
  registerOperationMetrics,
  startPodStartPhase,
  timeNetworkOperation,
  timeNriCall,
  timePodStartPhase,
  trackStreamingSession,
} from '../../common/operation-metrics.js';

const registry = new Registry();
registerOperationMetrics(registry);
test('known label sets are served at 0 before any traffic', async () => {
  const text = await registry.metrics();
  for (const phase of ['namespaces', 'cni', 'nri', 'containerd']) assert.match(text, new RegExp(`^crisp_pod_start_phase_duration_seconds_count\\{phase="${phase}"\\} 0$`, 'm'));
  for (const op of ['ADD', 'DEL']) assert.match(text, new RegExp(`^crisp_cri_network_plugin_operations_errors_total\\{operation_type="${op}"\\} 0$`, 'm'));
  assert.match(text, /^crisp_streaming_sessions_active\{kind="portforward"\} 0$/m);
  assert.match(text, /^crisp_containerd_restarts_total 0$/m);
});

test('network operations: every call counted and timed, failures counted and rethrown', async () => {
  assert.equal(await timeNetworkOperation('ADD', async () => 'ok'), 'ok');
  await assert.rejects(timeNetworkOperation('ADD', async () => Promise.reject(new Error('no IPs left'))), /no IPs left/);
  const text = await registry.metrics();
  assert.match(text, /^crisp_cri_network_plugin_operations_total\{operation_type="ADD"\} 2$/m);
  assert.match(text, /^crisp_cri_network_plugin_operations_errors_total\{operation_type="ADD"\} 1$/m);
  assert.match(text, /^crisp_cri_network_plugin_operations_duration_seconds_count\{operation_type="ADD"\} 2$/m);
});

test('NRI calls: ok, error and timeout told apart per plugin and method', async () => {
  const timeout = Object.assign(new Error('deadline'), { timedOut: true });
  const isTimeout = (err: unknown) => (err as { timedOut?: boolean }).timedOut === true;
  await timeNriCall('10-a', 'CreateContainer', async () => undefined, isTimeout);
  await assert.rejects(timeNriCall('10-a', 'CreateContainer', async () => Promise.reject(new Error('refused')), isTimeout));
  await assert.rejects(timeNriCall('10-a', 'StopPodSandbox', async () => Promise.reject(timeout), isTimeout));
  const text = await registry.metrics();
  assert.match(text, /^crisp_nri_plugin_calls_total\{plugin="10-a",method="CreateContainer",result="ok"\} 1$/m);
  assert.match(text, /^crisp_nri_plugin_calls_total\{plugin="10-a",method="CreateContainer",result="error"\} 1$/m);
  assert.match(text, /^crisp_nri_plugin_calls_total\{plugin="10-a",method="StopPodSandbox",result="timeout"\} 1$/m);
  assert.match(text, /^crisp_nri_plugin_call_duration_seconds_count\{plugin="10-a",method="CreateContainer"\} 2$/m);
});

test('pod start phases count successes only; streaming sessions are active until done settles', async () => {
  await timePodStartPhase('cni', async () => undefined);
  await assert.rejects(timePodStartPhase('cni', async () => Promise.reject(new Error('x'))));
  const end = startPodStartPhase('containerd');
  end();
  let finish!: () => void;
  trackStreamingSession('attach', new Promise<void>((resolve) => (finish = resolve)));
  let text = await registry.metrics();
  assert.match(text, /^crisp_pod_start_phase_duration_seconds_count\{phase="cni"\} 1$/m);
  assert.match(text, /^crisp_pod_start_phase_duration_seconds_count\{phase="containerd"\} 1$/m);
  assert.match(text, /^crisp_streaming_sessions_active\{kind="attach"\} 1$/m);
  finish();
  await new Promise((r) => setImmediate(r));
  text = await registry.metrics();
  assert.match(text, /^crisp_streaming_sessions_active\{kind="attach"\} 0$/m);
  assert.match(text, /^crisp_streaming_sessions_total\{kind="attach"\} 1$/m);
});
