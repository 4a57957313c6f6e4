// Regressions found by real CRI clients (critest v1.29 and master, crictl) against crisp's default
// config. Each test is the request shape the client sent, so CI keeps what they found fixed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname as nodeHostname } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from './lib/stack.js';
import { sleep } from '../../common/time.js';
import { ContainerEventType, ContainerState, type ContainerEventResponse } from '../../gen/runtime.v1.js';

describe('what real CRI clients send', () => {
  let s: Stack;
  let elsewhere: string;
  const exec = async (id: string, cmd: string[]) => {
    const r = await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd, timeout: 10 });
    return r.stdout.toString();
  };
  const removePod = async (id: string) => {
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: id });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: id });
  };

  before(async () => {
    s = await startStack();
    // Not below any pod log root: critest and crictl put pod logs wherever they like.
    elsewhere = mkdtempSync('/tmp/crisp-e2e-podlogs-');
  });
  after(async () => {
    try {
      await s.teardown();
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  test('critest pod: no hostname, a long name with capitals, logs in any absolute directory', async () => {
    // critest names pods "PodSandbox-for-…-<uuid>" (up to 78 characters) and never sets a hostname.
    const name = `PodSandbox-for-create-container-with-log-${s.run}-0123456789abcdef0123456789`;
    const logDir = join(elsewhere, 'critest-pod');
    const pod = await s.runPod(name, { hostname: '', logDirectory: logDir });
    const ctr = await s.runContainer(pod, 'main', ['sh', '-c', 'echo hello-log; sleep 3600'], { logPath: 'main.log' });
    assert.equal((await exec(ctr, ['hostname'])).trim(), nodeHostname(), 'empty hostname means the node hostname');
    assert.match(await exec(ctr, ['cat', '/etc/hostname']), new RegExp(`^${nodeHostname()}$`, 'm'));
    let log = '';
    for (let i = 0; i < 50 && !log.includes('hello-log'); i++) {
      await sleep(100);
      log = existsSync(join(logDir, 'main.log')) ? readFileSync(join(logDir, 'main.log'), 'utf8') : '';
    }
    assert.match(log, /stdout F hello-log/);
    await removePod(pod);
  });

  test('an explicit hostname is checked only against the kernel limit (64 bytes)', async () => {
    const ok = 'Host_Name.With-Capitals_' + 'x'.repeat(40);
    const pod = await s.runPod('hostname-64', { hostname: ok });
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600']);
    assert.equal((await exec(ctr, ['hostname'])).trim(), ok);
    await removePod(pod);
    await assert.rejects(s.runPod('hostname-65', { hostname: 'x'.repeat(65) }), /config\.hostname: .* at most 64/);
  });

  test('Stop and Remove of unknown ids succeed (critest Idempotence)', async () => {
    const unknown = 'f'.repeat(64);
    await s.d.client.runtime.unary('StopContainer', { containerId: unknown, timeout: 0 });
    await s.d.client.runtime.unary('RemoveContainer', { containerId: unknown });
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: unknown });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: unknown });
    await s.d.client.image.unary('RemoveImage', { image: { image: 'registry.invalid/none:missing' } });
  });

  test('PodSandboxStatus carries the container statuses and a timestamp (Evented PLEG)', async () => {
    const pod = await s.runPod('pleg');
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600']);
    const st = await s.d.client.runtime.unary('PodSandboxStatus', { podSandboxId: pod });
    assert.deepEqual(st.containersStatuses.map((c) => [c.id, c.state]), [[ctr, ContainerState.CONTAINER_RUNNING]]);
    assert.ok(st.timestamp > 0);
    await removePod(pod);
  });

  test('GetContainerEvents reports the pod sandbox lifecycle with the pod id', async () => {
    const events: ContainerEventResponse[] = [];
    const stream = s.d.client.runtime.serverStream('GetContainerEvents', {});
    const reading = (async () => {
      try {
        for await (const e of stream) events.push(e);
      } catch {
        // the stream is cancelled below
      }
    })();
    await sleep(200);
    const pod = await s.runPod('pod-events');
    await removePod(pod);
    for (let i = 0; i < 50 && events.filter((e) => e.containerId === pod).length < 4; i++) await sleep(50);
    stream.cancel();
    await reading;
    const mine = events.filter((e) => e.containerId === pod);
    assert.deepEqual(
      mine.map((e) => e.containerEventType),
      [
        ContainerEventType.CONTAINER_CREATED_EVENT,
        ContainerEventType.CONTAINER_STARTED_EVENT,
        ContainerEventType.CONTAINER_STOPPED_EVENT,
        ContainerEventType.CONTAINER_DELETED_EVENT,
      ],
    );
    assert.equal(mine[0]!.podSandboxStatus?.id, pod);
  });
});
