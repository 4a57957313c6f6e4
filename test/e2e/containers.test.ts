// Containers against the real stack: logs in CRI format, exit codes and reasons (a real OOM kill),
// stop semantics, the process identity and security seen from inside, mounts, shared pod namespaces,
// resource updates, exec, stats, events, log rotation, kill -9 recovery, and no leaks.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startStack, type Stack } from './lib/stack.js';
import { mountsBelow, pidsWhere } from './lib/crispd.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { ContainerEventType, MountPropagation, type ContainerEventResponse } from '../../gen/runtime.v1.js';
import { cgroupLayout } from '../../sandbox/cgroup-stats.js';

const LOG_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (stdout|stderr) [FP] .*$/;

function logLines(path: string): { stream: string; tag: string; msg: string }[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      assert.match(l, LOG_LINE);
      const [, stream, tag, ...rest] = l.split(' ');
      return { stream: stream!, tag: tag!, msg: rest.join(' ') };
    });
}

describe('containers', () => {
  let s: Stack;
  let pod: string;
  const hostDir = mkdtempSync('/tmp/crisp-e2e-hostpath-');

  before(async () => {
    s = await startStack();
    pod = await s.runPod('main');
    writeFileSync(join(hostDir, 'from-host.txt'), 'hello from the host\n');
    // A shared mount point, so propagation into containers can be observed.
    spawnSync('mount', ['--bind', hostDir, hostDir]);
    spawnSync('mount', ['--make-shared', hostDir]);
  });
  after(async () => {
    const rules = await s?.teardown();
    spawnSync('umount', ['-l', hostDir]);
    rmSync(hostDir, { recursive: true, force: true });
    assert.deepEqual(rules ?? [], []);
  });

  const exec = async (id: string, cmd: string[], timeout = 10) => {
    const r = await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd, timeout });
    return { out: r.stdout.toString(), err: r.stderr.toString(), code: r.exitCode };
  };
  const status = async (id: string) => (await s.d.client.runtime.unary('ContainerStatus', { containerId: id, verbose: true })).status!;
  const remove = (id: string) => s.d.client.runtime.unary('RemoveContainer', { containerId: id });

  test('output lands in the CRI log: streams, tags, long lines split into partial records', async () => {
    const id = await s.runContainer(pod, 'logs', ['sh', '-c', 'echo out-line; echo err-line >&2; head -c 40000 /dev/zero | tr "\\0" a; echo; printf no-newline']);
    assert.deepEqual(await s.waitExited(id), { exitCode: 0, reason: 'Completed' });
    const st = await status(id);
    await sleep(200);
    const lines = logLines(st.logPath);
    assert.ok(lines.some((l) => l.stream === 'stdout' && l.tag === 'F' && l.msg === 'out-line'));
    assert.ok(lines.some((l) => l.stream === 'stderr' && l.tag === 'F' && l.msg === 'err-line'));
    const long = lines.filter((l) => /^a+$/.test(l.msg));
    assert.deepEqual(long.map((l) => l.tag), ['P', 'P', 'F']);
    assert.equal(long.map((l) => l.msg).join('').length, 40000);
    // The unterminated tail: one F record, or (when the exit comes more than the logger's quiet time
    // after the printf, as on a loaded machine) a P record closed by an empty F at EOF.
    const tail = lines.slice(lines.lastIndexOf(long[long.length - 1]!) + 1).filter((l) => l.stream === 'stdout');
    const tailForms = [[['F', 'no-newline']], [['P', 'no-newline'], ['F', '']]].map((f) => JSON.stringify(f));
    assert.ok(tailForms.includes(JSON.stringify(tail.map((l) => [l.tag, l.msg]))), `tail records: ${JSON.stringify(tail)}`);
    await remove(id);
  });

  test('exit codes and reasons: Completed, Error, and a real OOMKilled', async () => {
    const bad = await s.runContainer(pod, 'exit3', ['sh', '-c', 'exit 3']);
    assert.deepEqual(await s.waitExited(bad), { exitCode: 3, reason: 'Error' });
    const oom = await s.runContainer(pod, 'oom', ['sh', '-c', 'x=a; while true; do x="$x$x"; done'], {
      linux: { resources: { memoryLimitInBytes: 16 * 1024 * 1024, memorySwapLimitInBytes: 16 * 1024 * 1024 } },
    });
    const r = await s.waitExited(oom, 60_000);
    assert.equal(r.reason, 'OOMKilled');
    assert.equal(r.exitCode, 137);
    await remove(bad);
    await remove(oom);
  });

  test('stop: SIGTERM within the grace period, SIGKILL after it', async () => {
    const polite = await s.runContainer(pod, 'polite', ['sh', '-c', 'trap "echo got-term; exit 0" TERM; while true; do sleep 0.1; done']);
    await sleep(300);
    await s.d.client.runtime.unary('StopContainer', { containerId: polite, timeout: 10 });
    const st = await status(polite);
    assert.equal(st.state, 2);
    assert.equal(st.exitCode, 0);
    await sleep(100);
    assert.ok(logLines(st.logPath).some((l) => l.msg === 'got-term'));

    const stubborn = await s.runContainer(pod, 'stubborn', ['sh', '-c', 'trap "" TERM; while true; do sleep 0.1; done']);
    await sleep(300);
    const t0 = Date.now();
    await s.d.client.runtime.unary('StopContainer', { containerId: stubborn, timeout: 1 });
    const took = Date.now() - t0;
    const st2 = await status(stubborn);
    assert.equal(st2.exitCode, 137);
    assert.ok(took >= 900, `waited the grace period (${took} ms)`);
    // Stopping again is fine.
    await s.d.client.runtime.unary('StopContainer', { containerId: stubborn, timeout: 1 });
    await remove(polite);
    await remove(stubborn);
  });

  test('env, args, workdir, user and groups as seen from inside', async () => {
    const id = await s.runContainer(pod, 'ident', ['sleep', '30'], {
      envs: [{ key: 'OVERRIDE', value: Buffer.from('cri') }, { key: 'EXTRA', value: Buffer.from('x y') }, { key: 'BINARY', value: Buffer.from([0x61, 0xff, 0x62]) }],
      workingDir: '/tmp',
      linux: { securityContext: { runAsUser: { value: 1000 }, runAsGroup: { value: 1000 }, supplementalGroups: [3000] } },
    });
    const env = (await exec(id, ['env'])).out;
    assert.match(env, /^FROM_IMAGE=yes$/m);
    assert.match(env, /^OVERRIDE=cri$/m);
    assert.match(env, /^EXTRA=x y$/m);
    assert.match(env, /^BINARY=a\uFFFDb$/m, 'a value that is not UTF-8 survives (as in containerd, invalid bytes become U+FFFD)');
    assert.match(env, /^HOSTNAME=main$/m);
    assert.equal((await exec(id, ['pwd'])).out.trim(), '/tmp');
    const idOut = (await exec(id, ['id'])).out;
    assert.match(idOut, /uid=1000\(app\) gid=1000\(app\)/);
    assert.match(idOut, /2000\(extra\)/, 'image groups merged');
    assert.match(idOut, /3000/, 'supplemental group');
    const st = await status(id);
    assert.equal(st.user?.linux?.uid, 1000);
    // The primary group is a supplementary group too, as /proc/<pid>/status and critest see it.
    assert.deepEqual([...(st.user?.linux?.supplementalGroups ?? [])].map(Number).sort((a, b) => a - b), [1000, 2000, 3000]);
    await remove(id);
  });

  test('args and command follow Kubernetes entrypoint semantics', async () => {
    const id = await s.runContainer(pod, 'argv', ['sh', '-c'], { args: ['echo "$0 $1"', 'first', 'second'] });
    await s.waitExited(id);
    await sleep(100);
    assert.ok(logLines((await status(id)).logPath).some((l) => l.msg === 'first second'));
    await remove(id);
  });

  test('readonly rootfs, capabilities and masked paths', async () => {
    const id = await s.runContainer(pod, 'secure', ['sleep', '30'], {
      linux: { securityContext: { readonlyRootfs: true, capabilities: { dropCapabilities: ['ALL'], addCapabilities: ['NET_BIND_SERVICE'] } } },
    });
    const touch = await exec(id, ['touch', '/should-fail']);
    assert.notEqual(touch.code, 0);
    assert.match(touch.err, /Read-only file system/);
    const caps = (await exec(id, ['grep', 'CapEff', '/proc/self/status'])).out;
    assert.match(caps, /CapEff:\s+0000000000000400/, 'only NET_BIND_SERVICE (bit 10)');
    assert.equal((await exec(id, ['cat', '/proc/kcore'])).code === 0 && (await exec(id, ['cat', '/proc/kcore'])).out.length > 0, false);
    await remove(id);
    const priv = await s.runContainer(pod, 'priv', ['sleep', '30'], { linux: { securityContext: { privileged: true } } });
    // Privileged means every capability crispd itself holds (this host withholds CAP_SYS_RESOURCE).
    const ours = /CapEff:\s+([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1];
    assert.match((await exec(priv, ['grep', 'CapEff', '/proc/self/status'])).out, new RegExp(`CapEff:\\s+${ours}`));
    await remove(priv);
  });

  test('host path mounts: read-write, read-only, propagation; missing host path is refused', async () => {
    const id = await s.runContainer(pod, 'mounts', ['sleep', '30'], {
      mounts: [
        { containerPath: '/data', hostPath: hostDir, propagation: MountPropagation.PROPAGATION_PRIVATE },
        { containerPath: '/ro', hostPath: hostDir, readonly: true, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER },
      ],
    });
    assert.equal((await exec(id, ['cat', '/data/from-host.txt'])).out, 'hello from the host\n');
    assert.equal((await exec(id, ['sh', '-c', 'echo written > /data/from-container.txt'])).code, 0);
    assert.equal(readFileSync(join(hostDir, 'from-container.txt'), 'utf8'), 'written\n');
    assert.notEqual((await exec(id, ['touch', '/ro/nope'])).code, 0);
    // Propagation: a mount made on the host later shows up under the rslave mount only.
    const sub = join(hostDir, 'sub');
    mkdirSync(sub, { recursive: true });
    spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'e2e-prop', sub]);
    try {
      writeFileSync(join(sub, 'late.txt'), 'late\n');
      assert.equal((await exec(id, ['cat', '/ro/sub/late.txt'])).out, 'late\n', 'rslave sees the later host mount');
      assert.notEqual((await exec(id, ['cat', '/data/sub/late.txt'])).code, 0, 'private does not');
    } finally {
      spawnSync('umount', ['-l', sub]);
    }
    await remove(id);
    await assert.rejects(
      s.d.client.runtime.unary('CreateContainer', {
        podSandboxId: pod,
        config: s.containerConfig('badmount', ['true'], { mounts: [{ containerPath: '/x', hostPath: join(hostDir, 'missing') }] }),
      }),
      (err: unknown) => isGrpcError(err, grpc.status.INVALID_ARGUMENT) && /mounts\[0\]\.host_path.*missing/.test(err.details),
    );
  });

  test('two containers of a pod share its network, IPC and UTS namespaces, and its /etc files', async () => {
    const a = await s.runContainer(pod, 'share-a', ['sleep', '30']);
    const b = await s.runContainer(pod, 'share-b', ['sleep', '30']);
    for (const ns of ['net', 'ipc', 'uts']) {
      const na = (await exec(a, ['readlink', `/proc/self/ns/${ns}`])).out;
      const nb = (await exec(b, ['readlink', `/proc/self/ns/${ns}`])).out;
      assert.equal(na, nb, `${ns} namespace shared`);
    }
    assert.notEqual((await exec(a, ['readlink', '/proc/self/ns/pid'])).out, (await exec(b, ['readlink', '/proc/self/ns/pid'])).out);
    const podIp = (await s.d.client.runtime.unary('PodSandboxStatus', { podSandboxId: pod })).status!.network!.ip;
    assert.match((await exec(a, ['ip', '-4', 'addr'])).out, new RegExp(podIp.replace(/\./g, '\\.')));
    assert.equal((await exec(b, ['hostname'])).out.trim(), 'main');
    assert.match((await exec(b, ['cat', '/etc/hosts'])).out, /main/);
    // IPC: a SysV message queue made in one is visible in the other.
    await exec(a, ['sh', '-c', 'echo x > /dev/shm/shared-marker']);
    assert.equal((await exec(b, ['cat', '/dev/shm/shared-marker'])).out, 'x\n');
    await remove(a);
    await remove(b);
  });

  test('UpdateContainerResources reaches the cgroup; stats move', async () => {
    const id = await s.runContainer(pod, 'res', ['sh', '-c', 'while true; do :; done'], { linux: { resources: { memoryLimitInBytes: 64 * 1024 * 1024 } } });
    await s.d.client.runtime.unary('UpdateContainerResources', { containerId: id, linux: { memoryLimitInBytes: 96 * 1024 * 1024, cpuShares: 512 } });
    const st = JSON.parse((await s.d.client.runtime.unary('ContainerStatus', { containerId: id, verbose: true })).info.info!) as { cgroupsPath: string };
    const layout = cgroupLayout();
    const memDir = layout.v2 ? join(layout.v2, st.cgroupsPath) : join(layout.v1.get('memory')!, st.cgroupsPath);
    const limitFile = layout.v2 ? 'memory.max' : 'memory.limit_in_bytes';
    assert.equal(readFileSync(join(memDir, limitFile), 'utf8').trim(), String(96 * 1024 * 1024));
    assert.equal((await status(id)).resources?.linux?.memoryLimitInBytes, 96 * 1024 * 1024);
    const s1 = (await s.d.client.runtime.unary('ContainerStats', { containerId: id })).stats!;
    await sleep(500);
    const s2 = (await s.d.client.runtime.unary('ContainerStats', { containerId: id })).stats!;
    assert.ok(s2.cpu!.usageCoreNanoSeconds!.value > s1.cpu!.usageCoreNanoSeconds!.value, 'cpu time grows');
    assert.ok((s2.cpu!.usageNanoCores?.value ?? 0) > 100_000_000, 'a busy loop uses a good part of a core');
    assert.ok(s2.memory!.workingSetBytes!.value > 0);
    const list = await s.d.client.runtime.unary('ListContainerStats', { filter: { podSandboxId: pod } });
    assert.ok(list.stats.some((x) => x.attributes?.id === id));
    const ps = (await s.d.client.runtime.unary('PodSandboxStats', { podSandboxId: pod })).stats!;
    assert.ok(ps.linux!.containers.some((c) => c.attributes?.id === id));
    assert.ok((ps.linux!.network?.defaultInterface?.rxBytes?.value ?? -1) >= 0);
    await remove(id);
  });

  test('ExecSync: exit code, stderr, timeout', async () => {
    const id = await s.runContainer(pod, 'exec', ['sleep', '60']);
    const r = await exec(id, ['sh', '-c', 'echo to-out; echo to-err >&2; exit 7']);
    assert.deepEqual(r, { out: 'to-out\n', err: 'to-err\n', code: 7 });
    const t0 = Date.now();
    await assert.rejects(exec(id, ['sleep', '30'], 1), (err: unknown) => isGrpcError(err, grpc.status.DEADLINE_EXCEEDED));
    assert.ok(Date.now() - t0 < 10_000);
    await remove(id);
    await assert.rejects(exec(id, ['true']), (err: unknown) => isGrpcError(err, grpc.status.NOT_FOUND));
  });

  test('GetContainerEvents streams created, started, stopped, deleted with pod status', async () => {
    const events: ContainerEventResponse[] = [];
    const stream = s.d.client.runtime.serverStream('GetContainerEvents', {});
    const reading = (async () => {
      try {
        for await (const e of stream) events.push(e);
      } catch {
        // cancelled
      }
    })();
    await sleep(200);
    const id = await s.runContainer(pod, 'evented', ['true']);
    await s.waitExited(id);
    await remove(id);
    for (let i = 0; i < 50 && events.filter((e) => e.containerId === id).length < 4; i++) await sleep(50);
    stream.cancel();
    await reading;
    const mine = events.filter((e) => e.containerId === id).map((e) => e.containerEventType);
    assert.deepEqual(mine, [
      ContainerEventType.CONTAINER_CREATED_EVENT,
      ContainerEventType.CONTAINER_STARTED_EVENT,
      ContainerEventType.CONTAINER_STOPPED_EVENT,
      ContainerEventType.CONTAINER_DELETED_EVENT,
    ]);
    assert.equal(events.find((e) => e.containerId === id)!.podSandboxStatus?.id, pod);
  });

  test('ReopenContainerLog after kubelet-style rotation: nothing lost', async () => {
    const id = await s.runContainer(pod, 'rotate', ['sh', '-c', 'i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.02; done']);
    const path = (await status(id)).logPath;
    await sleep(300);
    renameSync(path, `${path}.1`);
    await s.d.client.runtime.unary('ReopenContainerLog', { containerId: id });
    assert.ok(existsSync(path), 'a fresh log file is open');
    await sleep(300);
    await s.d.client.runtime.unary('StopContainer', { containerId: id, timeout: 0 });
    await sleep(100);
    const nums = [...logLines(`${path}.1`), ...logLines(path)].map((l) => Number(l.msg.replace('line-', '')));
    assert.ok(nums.length > 10);
    nums.forEach((n, i) => assert.equal(n, i, 'every line once, in order, across the rotation'));
    await remove(id);
  });

  test('bad input: unknown pod, duplicate name, missing image, escaping log path, stopped pod', async () => {
    const create = (podSandboxId: string, config: ReturnType<Stack['containerConfig']>) =>
      s.d.client.runtime.unary('CreateContainer', { podSandboxId, config });
    await assert.rejects(create('f'.repeat(64), s.containerConfig('x', ['true'])), (e: unknown) => isGrpcError(e, grpc.status.NOT_FOUND));
    const id = (await create(pod, s.containerConfig('dup', ['sleep', '10']))).containerId;
    await assert.rejects(create(pod, s.containerConfig('dup', ['sleep', '10'])), (e: unknown) => isGrpcError(e, grpc.status.ALREADY_EXISTS));
    await remove(id);
    await assert.rejects(
      create(pod, s.containerConfig('noimg', ['true'], { image: { image: `${s.registry.host}/e2e/missing:v0` } })),
      (e: unknown) => isGrpcError(e, grpc.status.NOT_FOUND) && /e2e\/missing/.test(e.details),
    );
    await assert.rejects(create(pod, s.containerConfig('esc', ['true'], { logPath: '../../escape.log' })), (e: unknown) =>
      isGrpcError(e, grpc.status.INVALID_ARGUMENT) && /log_path/.test(e.details),
    );
    const stoppedPod = await s.runPod('stopped');
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: stoppedPod });
    await assert.rejects(create(stoppedPod, s.containerConfig('late', ['true'])), (e: unknown) => isGrpcError(e, grpc.status.FAILED_PRECONDITION));
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: stoppedPod });
  });

  test('kill -9 of crispd: running containers keep running and logging; exits meanwhile are reported', async () => {
    const chatty = await s.runContainer(pod, 'chatty', ['sh', '-c', 'i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.05; done']);
    const shortLived = await s.runContainer(pod, 'short', ['sh', '-c', 'sleep 2; exit 5']);
    const logPath = (await status(chatty)).logPath;
    await sleep(300);
    await s.d.kill9();
    const before = logLines(logPath).length;
    await sleep(2500);
    const during = logLines(logPath).length;
    assert.ok(during > before + 10, `logs kept flowing while crispd was down (${before} → ${during})`);
    await s.d.start();
    assert.equal((await status(chatty)).state, 1, 'still running');
    assert.deepEqual(await s.waitExited(shortLived, 5000), { exitCode: 5, reason: 'Error' });
    const list = await s.d.client.runtime.unary('ListContainers', { filter: { podSandboxId: pod } });
    assert.ok(list.containers.some((c) => c.id === chatty));
    await remove(chatty);
    await remove(shortLived);
  });

  test('removing the pod removes its containers; nothing is left behind', async () => {
    const p = await s.runPod('leaky');
    const ids = [await s.runContainer(p, 'c1', ['sleep', '60']), await s.runContainer(p, 'c2', ['sleep', '60'])];
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: p });
    for (const id of ids) assert.equal((await status(id)).state, 2);
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: p });
    for (const id of ids) await assert.rejects(status(id), (e: unknown) => isGrpcError(e, grpc.status.NOT_FOUND));
    const shims = pidsWhere((argv) => argv.some((a) => ids.includes(a)));
    assert.deepEqual(shims, [], 'no shim or process of the removed containers');
    assert.deepEqual(readdirSync(join(s.d.root, 'containers')).filter((d) => ids.includes(d)), []);
    assert.deepEqual(mountsBelow(join(s.d.state, 'pods', p)), []);
  });
});
