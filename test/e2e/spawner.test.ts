// crisp-spawner against a real crispd: the commands crispd runs for a pod (CNI plugins, the nshelper,
// mount) are children of one crisp-spawner child of crispd, not forks of crispd; a killed spawner is
// replaced at the next command; a kill -9 of crispd ends its spawner too (no orphan left behind).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCrispd, childrenNamed, isAlive, uniqueId } from './lib/crispd.js';
import { writeTestNetwork, type TestNetwork } from './lib/network.js';
import { sleep } from '../../common/time.js';

async function waitUntil(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

describe('crisp-spawner runs the commands of crispd', () => {
  const binDir = join('/tmp', `crisp-e2e-spawner-bin-${uniqueId()}`);
  const parentsFile = join(binDir, 'parents');
  const d = new TestCrispd({ config: { cni_bin_dirs: [binDir, '/usr/lib/cni', '/opt/cni/bin'] } });
  let net: TestNetwork;
  const run = uniqueId();
  const runPod = async (name: string) =>
    (
      await d.client.runtime.unary('RunPodSandbox', {
        config: { metadata: { name, uid: `${name}-${run}`, namespace: 'e2e', attempt: 0 }, hostname: name, logDirectory: join(d.podLogRoot, `e2e_${name}_${run}`) },
      })
    ).podSandboxId;
  const removePod = async (id: string) => {
    await d.client.runtime.unary('StopPodSandbox', { podSandboxId: id });
    await d.client.runtime.unary('RemovePodSandbox', { podSandboxId: id });
  };

  before(async () => {
    // A chained CNI plugin that notes the name of its parent process and passes the result on.
    mkdirSync(binDir, { recursive: true });
    const probe = join(binDir, 'parent-probe');
    const script = [
      `#!${process.execPath}`,
      "const fs = require('node:fs');",
      "const conf = JSON.parse(fs.readFileSync(0, 'utf8'));",
      `const parent = fs.readFileSync('/proc/' + process.ppid + '/comm', 'utf8').trim();`,
      `fs.appendFileSync(${JSON.stringify(parentsFile)}, process.env.CNI_COMMAND + ' ' + parent + '\\n');`,
      "if (process.env.CNI_COMMAND === 'ADD') process.stdout.write(JSON.stringify(conf.prevResult));",
      "if (process.env.CNI_COMMAND === 'VERSION') process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0'] }));",
    ].join('\n');
    writeFileSync(probe, `${script}\n`);
    chmodSync(probe, 0o755);
    net = writeTestNetwork(d.cniConfDir, d.dir, [{ type: 'parent-probe' }]);
    await d.start();
  });
  after(async () => {
    try {
      await d.removeAllPods();
    } finally {
      await d.cleanup();
      rmSync(binDir, { recursive: true, force: true });
      assert.deepEqual(net.teardown(), [], 'no iptables rules left for the test subnet');
    }
  });

  test('CNI plugins run under crisp-spawner, which is a child of crispd', async () => {
    const id = await runPod('spawn-a');
    await removePod(id);
    const lines = readFileSync(parentsFile, 'utf8').trim().split('\n');
    assert.ok(lines.includes('ADD crisp-spawner'), lines.join('; '));
    assert.ok(lines.includes('DEL crisp-spawner'), lines.join('; '));
    assert.equal(childrenNamed(d.child!.pid!, 'crisp-spawner').length, 1, 'one spawner');
  });

  test("crispd's stdout and stderr stay non-blocking with the spawner running", () => {
    // An inherited stdio fd is made blocking by libuv in the child, for the shared file description:
    // crispd then blocked on its own log writes whenever its reader paused (play e2e hung on that).
    for (const fd of [1, 2]) {
      const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/${d.child!.pid!}/fdinfo/${fd}`, 'utf8'))![1]!;
      assert.ok((Number.parseInt(flags, 8) & 0o4000) !== 0, `fd ${fd} of crispd is O_NONBLOCK (flags ${flags})`);
    }
  });

  test('a killed spawner is replaced by the next command', async () => {
    const [spawner] = childrenNamed(d.child!.pid!, 'crisp-spawner');
    assert.ok(spawner);
    process.kill(spawner, 'SIGKILL');
    await waitUntil('the spawner is gone', () => !isAlive(spawner));
    const id = await runPod('spawn-b');
    const st = await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id });
    assert.ok(st.status?.network?.ip, 'the pod got its network through a new spawner');
    const now = childrenNamed(d.child!.pid!, 'crisp-spawner');
    assert.equal(now.length, 1);
    assert.notEqual(now[0], spawner);
    await removePod(id);
  });

  test('a kill -9 of crispd ends its spawner', async () => {
    const [spawner] = childrenNamed(d.child!.pid!, 'crisp-spawner');
    assert.ok(spawner);
    await d.kill9();
    await waitUntil('the orphaned spawner exits', () => !isAlive(spawner));
    await d.start();
  });
});
