// A pod cgroup that still holds something when its pod is removed: a container cgroup runc left behind
// (containerd restarted in the middle of a create, as the containerd-dies e2e provokes) with a process
// in it. RemovePodSandbox takes the leftover cgroup away, kills what is in it and succeeds, instead of
// failing with EBUSY from rmdir forever.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, type Stack } from './lib/stack.js';
import { uniqueId } from './lib/crispd.js';
import { cgroupMounts, cgroupExists } from '../../sandbox/cgroups.js';

describe('pod cgroup removal', () => {
  let s: Stack | undefined;
  after(async () => {
    if (s) assert.deepEqual(await s.teardown(), []);
  });

  test('a leftover child cgroup with a process in it is killed and removed with the pod', async () => {
    const cgroupParent = `/crisp-e2e-${uniqueId()}`;
    s = await startStack({ cgroup_parent: cgroupParent });
    const pod = await s.runPod('cg-leftover');
    await s.runContainer(pod, 'idle', ['sleep', '3600']);
    const podCgroup = `${cgroupParent}/crisp-${pod}`;
    assert.ok(await cgroupExists(podCgroup), `pod cgroup ${podCgroup}`);

    const stray = spawn('sleep', ['600'], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => stray.once('exit', (_code, signal) => resolve(signal)));
    try {
      const leftover = join(podCgroup, `leftover-${uniqueId()}`);
      let joined = 0;
      for (const m of cgroupMounts()) {
        const dir = join(m, leftover);
        if (!existsSync(join(m, podCgroup))) continue;
        mkdirSync(dir);
        try {
          writeFileSync(join(dir, 'cgroup.procs'), `${stray.pid}\n`);
          joined++;
        } catch {
          // cpuset (v1) refuses members until cpus and mems are set: the other hierarchies suffice.
        }
      }
      assert.ok(joined > 0, 'the stray process joined the leftover cgroup in some hierarchy');

      await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
      await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
      assert.equal(await exited, 'SIGKILL', 'the process left in the pod cgroup was killed');
      assert.equal(await cgroupExists(podCgroup), false, 'the pod cgroup is gone in every hierarchy');
      assert.match(s.d.logs, /killed processes left in the pod cgroup/);
    } finally {
      if (stray.exitCode === null && stray.signalCode === null) stray.kill('SIGKILL');
    }
  });
});
