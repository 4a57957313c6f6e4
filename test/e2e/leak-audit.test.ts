// Cycles of pod + container + ExecSync + streaming exec + attach + port-forward + remove: the resource
// census (shims, processes, mounts, namespaces, IPs, cgroups, exec dirs, containerd objects) ends where
// it started, crispd's open fds too, and its RSS stays within RSS_BOUND_MIB of where it was after a
// warm-up. crispd runs with its NRI host on, as by default. CI runs 25 cycles; CRISP_LEAK_CYCLES for more
// (the 200).
import { test, describe, before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { startStack, type Stack } from './lib/stack.js';
import { uniqueId } from './lib/crispd.js';
import { nriTestDir } from './lib/nri-dir.js';
import { takeCensus, censusDiff, processFootprint, type CensusTarget } from './lib/resource-census.js';
import { channelSession } from './lib/ws-channel.js';
import { envCount } from './lib/seeded-random.js';
import { sleep } from '../../common/time.js';

const CYCLES = envCount('CRISP_LEAK_CYCLES', 25);
const WARMUP = 3;
// V8 swings crispd's RSS by ±30 MiB between collections (96–129 MiB over 200 cycles, no trend).
const RSS_BOUND_MIB = 40;
/** Serves /tmp/index.html on 8080 (busybox httpd backgrounds itself), then ticks for attach. */
const WEB_CMD = ['sh', '-c', 'echo hello-from-pod > /tmp/index.html; httpd -p 8080 -h /tmp; i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.1; done'];

describe(`leak audit: ${CYCLES} cycles of pod, container, exec, attach, port-forward, remove`, () => {
  let s: Stack;
  const cgroupParent = `/crisp-e2e-${uniqueId()}`;
  // As configured by default: the NRI host on, here on a socket of its own, with no plugin connected.
  const nriDir = mkdtempSync(join(tmpdir(), 'crisp-e2e-nri-'));
  before(async () => {
    s = await startStack({ cgroup_parent: cgroupParent, ...nriTestDir(nriDir).config });
  });
  after(async () => {
    assert.deepEqual(await s.teardown(), []);
    rmSync(nriDir, { recursive: true, force: true });
  });

  const cycle = async (k: number) => {
    const rt = s.d.client.runtime;
    const pod = (await rt.unary('RunPodSandbox', { config: s.podConfig(`leak-${k}`) })).podSandboxId;
    const { containerId } = await rt.unary('CreateContainer', { podSandboxId: pod, config: s.containerConfig('web', WEB_CMD) });
    await rt.unary('StartContainer', { containerId });
    const sync = await rt.unary('ExecSync', { containerId, cmd: ['echo', `sync-${k}`], timeout: 10 });
    assert.equal(sync.stdout.toString(), `sync-${k}\n`);
    const exec = await channelSession((await rt.unary('Exec', { containerId, cmd: ['echo', `stream-${k}`], stdout: true, stderr: true })).url);
    assert.equal(exec.text(1), `stream-${k}\n`);
    const attach = await channelSession((await rt.unary('Attach', { containerId, stdout: true, stderr: true })).url, { until: (x) => /tick-\d+\n/.test(x.text(1)) });
    assert.match(attach.text(1), /tick-\d+\n/);
    // httpd may still be starting on the first try.
    let body = '';
    for (let i = 0; i < 20 && !body.includes('hello-from-pod'); i++) {
      const pf = await channelSession((await rt.unary('PortForward', { podSandboxId: pod, port: [8080] })).url, {
        protocol: 'v4.channel.k8s.io',
        send: [{ ch: 0, data: 'GET /index.html HTTP/1.0\r\n\r\n' }],
      });
      body = pf.channels.get(0)?.subarray(2).toString() ?? '';
      if (!body.includes('hello-from-pod')) await sleep(100);
    }
    assert.match(body, /hello-from-pod/, `cycle ${k}: port-forward reached httpd`);
    await rt.unary('StopPodSandbox', { podSandboxId: pod });
    await rt.unary('RemovePodSandbox', { podSandboxId: pod });
  };

  test('census, fds and RSS end where they started', { timeout: 60 * 60_000 }, async (t) => {
    const target: CensusTarget = { d: s.d, net: s.net, cgroupParent };
    const pid = s.d.child!.pid!;
    for (let k = 0; k < WARMUP; k++) await cycle(-1 - k);
    await sleep(1000);
    const census0 = await takeCensus(target);
    const start = processFootprint(pid);
    const samples: number[] = [];
    const t0 = Date.now();
    for (let k = 0; k < CYCLES; k++) {
      await cycle(k);
      if (k % 10 === 9) samples.push(Math.round(processFootprint(pid).rssKiB / 1024));
    }
    const ms = Date.now() - t0;
    // Exits, exec cleanup and GC settle within a few seconds.
    let diff: string[] = [];
    let end = processFootprint(pid);
    for (let i = 0; i < 40; i++) {
      diff = censusDiff(census0, await takeCensus(target));
      end = processFootprint(pid);
      if (diff.length === 0 && end.fds <= start.fds) break;
      await sleep(250);
    }
    t.diagnostic(
      `${CYCLES} cycles in ${(ms / 1000).toFixed(0)} s; crispd fds ${start.fds} → ${end.fds}, RSS ${(start.rssKiB / 1024).toFixed(1)} → ${(end.rssKiB / 1024).toFixed(1)} MiB ` +
        `(every 10 cycles: ${samples.join(', ')} MiB); census ${JSON.stringify(census0)}`,
    );
    assert.deepEqual(diff, [], 'census');
    assert.ok(end.fds <= start.fds, `crispd fds ${start.fds} → ${end.fds}`);
    assert.ok(end.rssKiB - start.rssKiB < RSS_BOUND_MIB * 1024, `crispd RSS ${start.rssKiB} → ${end.rssKiB} KiB (bound +${RSS_BOUND_MIB} MiB)`);
  });
});
