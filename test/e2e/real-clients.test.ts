// Regressions found by real CRI clients (critest v1.29 and master, crictl, kubelet) against crisp's default
// config. Each test is the request shape the client sent, so CI keeps what they found fixed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { hostname as nodeHostname } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from './lib/stack.js';
import { mountsBelow } from './lib/crispd.js';
import { sleep } from '../../common/time.js';
import { ContainerEventType, ContainerState, type ContainerEventResponse } from '../../gen/runtime.v1.js';
import { hugetlbPresent } from '../../sandbox/host-features.js';
import { isGrpcError } from '../../common/errors.js';
import { status as grpcStatus } from '@grpc/grpc-js';

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

  let cdiDir: string;

  before(async () => {
    // Not below any pod log root: critest and crictl put pod logs wherever they like.
    elsewhere = mkdtempSync('/tmp/crisp-e2e-podlogs-');
    cdiDir = join(elsewhere, 'cdi');
    mkdirSync(join(cdiDir, 'share'), { recursive: true });
    writeFileSync(join(cdiDir, 'share', 'hello'), 'from-cdi\n');
    writeFileSync(
      join(cdiDir, 'crisp-test.yaml'),
      [
        'cdiVersion: 0.6.0',
        'kind: crisp.test/dev',
        'containerEdits:',
        '  env: ["CDI_SPEC_LEVEL=1"]',
        'devices:',
        '  - name: null0',
        '    containerEdits:',
        '      env: ["CDI_INJECTED=yes"]',
        '      deviceNodes: [{ path: /dev/crisp-null, hostPath: /dev/null }]',
        `      mounts: [{ hostPath: ${join(cdiDir, 'share')}, containerPath: /cdi-share, options: [ro, rbind] }]`,
        '',
      ].join('\n'),
    );
    s = await startStack({ cdi_spec_dirs: [cdiDir] });
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
  test('recursive read-only mounts work on runc 1.1: submounts are read-only too, and Status says so', async () => {
    const handlers = (await s.d.client.runtime.unary('Status', {})).runtimeHandlers;
    assert.ok(handlers.every((h) => h.features?.recursiveReadOnlyMounts), 'advertised for every handler');
    const host = mkdtempSync(join(elsewhere, 'rro-'));
    mkdirSync(join(host, 'tmpfs'));
    execFileSync('mount', ['-t', 'tmpfs', 'none', join(host, 'tmpfs')]);
    try {
      const pod = await s.runPod('rro');
      const mount = (recursiveReadOnly: boolean) => ({ hostPath: host, containerPath: '/mnt', readonly: true, recursiveReadOnly });
      const rro = await s.runContainer(pod, 'rro', ['sleep', '3600'], { mounts: [mount(true)] });
      const plain = await s.runContainer(pod, 'plain', ['sleep', '3600'], { mounts: [mount(false)] });
      const touch = async (id: string) => s.d.client.runtime.unary('ExecSync', { containerId: id, cmd: ['touch', '/mnt/tmpfs/file'], timeout: 10 });
      const denied = await touch(rro);
      assert.notEqual(denied.exitCode, 0);
      assert.match(denied.stderr.toString(), /Read-only file system/);
      assert.equal((await touch(plain)).exitCode, 0, 'without rro the submount stays writable (plain ro is not recursive)');
      await assert.rejects(
        s.runContainer(pod, 'rro-rw', ['true'], { mounts: [{ ...mount(true), readonly: false }] }),
        /recursive_read_only needs readonly/,
      );
      assert.deepEqual(mountsBelow(join(s.d.state, 'containers', rro, 'mounts')), [], 'the host copy is gone once the container has its own');
      // critest's clean-up while the container runs: unmount the submount, remove the host dir.
      execFileSync('umount', ['-l', join(host, 'tmpfs')]);
      rmSync(host, { recursive: true });
      await removePod(pod);
      assert.equal(existsSync(join(s.d.state, 'containers', rro)), false, 'the container run dir goes with the container');
    } finally {
      if (existsSync(join(host, 'tmpfs'))) execFileSync('umount', ['-l', join(host, 'tmpfs')]);
    }
  });

  test('image volumes: the image read-only at a path, a sub path, its id in the status; bad input refused', async () => {
    const pod = await s.runPod('image-volume');
    const volume = (extra: Record<string, unknown> = {}) => ({ containerPath: '/mnt/image', readonly: true, image: { image: s.image }, ...extra });
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600'], { mounts: [volume(), { ...volume({ imageSubPath: 'bin' }), containerPath: '/mnt/bin' }] });
    const run = (cmd: string[]) => s.d.client.runtime.unary('ExecSync', { containerId: ctr, cmd, timeout: 10 });
    assert.equal((await run(['/mnt/image/bin/busybox', 'true'])).exitCode, 0, 'binaries in the volume run (not noexec)');
    assert.notEqual((await run(['touch', '/mnt/image/x'])).exitCode, 0, 'read-only');
    assert.equal((await run(['ls', '/mnt/bin/busybox'])).exitCode, 0, 'the sub path is the root of the second mount');
    const st = (await s.d.client.runtime.unary('ContainerStatus', { containerId: ctr })).status!;
    const m = st.mounts.find((x) => x.containerPath === '/mnt/image');
    assert.equal(m?.image?.imageRef, s.imageId, 'ContainerStatus reports the image id PullImage returned');
    assert.equal(st.mounts.find((x) => x.containerPath === '/mnt/bin')?.imageSubPath, 'bin');
    await assert.rejects(s.runContainer(pod, 'rw', ['true'], { mounts: [volume({ readonly: false })] }), /mounts\[0\]\.readonly: an image volume is always read-only/);
    await assert.rejects(s.runContainer(pod, 'missing', ['true'], { mounts: [volume({ imageSubPath: 'no/such/dir' })] }), /image_sub_path: "no\/such\/dir" does not exist/);
    await assert.rejects(s.runContainer(pod, 'escape', ['true'], { mounts: [volume({ imageSubPath: '../..' })] }), /image_sub_path/);
    assert.deepEqual(mountsBelow(join(s.d.state, 'containers', ctr, 'mounts')), [], 'no host copy once the container runs');
    await removePod(pod);
    assert.deepEqual(mountsBelow(join(s.d.state, 'containers')), [], 'no image volume left mounted');
    const known = new Set((await s.d.client.runtime.unary('ListContainers', {})).containers.map((c) => c.id));
    const runDirs = readdirSync(join(s.d.state, 'containers')).filter((id) => !known.has(id));
    assert.deepEqual(runDirs, [], 'no run dir outlives its container, also after a refused create');
  });
  test('CRI metrics: cadvisor descriptors, and values for a running container and its pod network', async () => {
    const descs = (await s.d.client.runtime.unary('ListMetricDescriptors', {})).descriptors;
    const byName = new Map(descs.map((d) => [d.name, d]));
    for (const name of ['container_cpu_usage_seconds_total', 'container_memory_working_set_bytes', 'container_network_receive_bytes_total', 'container_fs_usage_bytes', 'container_threads']) {
      assert.ok(byName.get(name)?.help, `${name} described`);
    }
    const pod = await s.runPod('metrics');
    const ctr = await s.runContainer(pod, 'main', ['sh', '-c', 'while true; do echo x > /tmp/f; sleep 0.1; done']);
    const all = (await s.d.client.runtime.unary('ListPodSandboxMetrics', {})).podMetrics;
    const mine = all.find((m) => m.podSandboxId === pod);
    assert.ok(mine, 'the pod is listed');
    const metrics = [...mine.metrics, ...mine.containerMetrics.flatMap((c) => c.metrics)];
    for (const m of metrics) assert.equal(m.labelValues.length, byName.get(m.name)?.labelKeys.length, `${m.name}: one value per label key`);
    const value = (name: string) => metrics.find((m) => m.name === name)?.value?.value;
    assert.ok(Number(value('container_memory_usage_bytes')) > 0, 'memory usage read from the cgroup');
    assert.ok(Number(value('container_processes')) >= 1);
    assert.ok(Number(value('container_threads')) >= 1);
    assert.ok(metrics.some((m) => m.name === 'container_network_receive_bytes_total' && m.labelValues[2] === 'eth0'), 'pod network from the pinned netns');
    assert.equal(mine.containerMetrics[0]?.containerId, ctr);
    await removePod(pod);
  });
  test('PullImage honours a configured image.runtime_handler and refuses an unknown one; user_specified_image survives', async () => {
    const ok = await s.d.client.image.unary('PullImage', { image: { image: s.image, runtimeHandler: 'runc' } });
    assert.equal(ok.imageRef, s.imageId);
    await assert.rejects(s.d.client.image.unary('PullImage', { image: { image: s.image, runtimeHandler: 'no-such-handler' } }), /image\.runtime_handler: "no-such-handler" is not configured/);
    const pod = await s.runPod('user-image');
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600'], { image: { image: s.imageId, userSpecifiedImage: 'busybox:as-typed' } });
    const st = (await s.d.client.runtime.unary('ContainerStatus', { containerId: ctr })).status!;
    assert.equal(st.image?.userSpecifiedImage, 'busybox:as-typed');
    await removePod(pod);
  });
  test('CDI devices from CDI_devices and cdi.k8s.io annotations are applied; unknown names refused', async () => {
    const pod = await s.runPod('cdi');
    const check = async (id: string) => {
      const out = await exec(id, ['sh', '-c', 'env; ls -l /dev/crisp-null; cat /cdi-share/hello']);
      assert.match(out, /^CDI_INJECTED=yes$/m);
      assert.match(out, /^CDI_SPEC_LEVEL=1$/m);
      assert.match(out, /^c.* \/dev\/crisp-null$/m, 'the device node is there');
      assert.match(out, /^from-cdi$/m, 'the mount is there');
    };
    await check(await s.runContainer(pod, 'by-field', ['sleep', '3600'], { CDIDevices: [{ name: 'crisp.test/dev=null0' }] }));
    await check(await s.runContainer(pod, 'by-annotation', ['sleep', '3600'], { annotations: { 'cdi.k8s.io/test': 'crisp.test/dev=null0' } }));
    await assert.rejects(s.runContainer(pod, 'unknown', ['true'], { CDIDevices: [{ name: 'crisp.test/dev=nope' }] }), /CDI_devices\[0\]\.name: CDI device "crisp\.test\/dev=nope" is not defined/);
    await assert.rejects(s.runContainer(pod, 'unqualified', ['true'], { CDIDevices: [{ name: 'null0' }] }), /not a fully qualified CDI device name/);
    await removePod(pod);
  });
  test('at debug level the log never shows env values or exec arguments', async () => {
    const pod = await s.runPod('secrets');
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600'], { envs: [{ key: 'API_TOKEN', value: Buffer.from('tok-e2e-3f9a7c') }] });
    assert.equal((await exec(ctr, ['sh', '-c', 'echo $API_TOKEN; true arg-e2e-81bd2e'])).trim(), 'tok-e2e-3f9a7c');
    await removePod(pod);
    assert.match(s.d.logs, /"method":"CreateContainer"/, 'requests are logged at debug');
    assert.doesNotMatch(s.d.logs, /tok-e2e-3f9a7c/);
    assert.doesNotMatch(s.d.logs, /arg-e2e-81bd2e/);
  });
  test('a pod with host network and host IPC (nothing of its own to pin) runs', async () => {
    const pod = await s.runPod('host-ns', { linux: { securityContext: { namespaceOptions: { network: 2, ipc: 2 } } } });
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600']);
    assert.equal((await exec(ctr, ['cat', '/proc/sys/kernel/hostname'])).trim(), nodeHostname());
    await removePod(pod);
  });
  test("kubelet's resources: a hugepage limit for every page size the machine has, hugetlb controller or not", async () => {
    // kubelet 1.36 sends one entry per size in /sys/kernel/mm/hugepages (limit 0 where the pod asked for
    // none); runc failed every start ("cannot set hugetlb limit") on a host without the controller.
    const sizes = readdirSync('/sys/kernel/mm/hugepages').map((d) => Number(/^hugepages-(\d+)kB$/.exec(d)?.[1] ?? 0)).filter((kb) => kb > 0);
    const pageSize = (kb: number) => (kb >= 1 << 20 ? `${kb >> 20}GB` : kb >= 1024 ? `${kb >> 10}MB` : `${kb}KB`);
    const hugepageLimits = (sizes.length > 0 ? sizes : [2048]).map((kb) => ({ pageSize: pageSize(kb), limit: 0 }));
    const resources = { cpuPeriod: 100000, cpuQuota: 20000, cpuShares: 51, memoryLimitInBytes: 64 << 20, oomScoreAdj: 999, hugepageLimits };
    const pod = await s.runPod('hugepages');
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600'], { linux: { resources } });
    const st = (await s.d.client.runtime.unary('ContainerStatus', { containerId: ctr })).status!;
    assert.equal(st.state, ContainerState.CONTAINER_RUNNING);
    await s.d.client.runtime.unary('UpdateContainerResources', { containerId: ctr, linux: { ...resources, cpuQuota: 30000 } });
    const cgroupV2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
    const controllers = cgroupV2 ? readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8') : '';
    if (hugetlbPresent(cgroupV2, readFileSync('/proc/self/mountinfo', 'utf8'), controllers)) {
      const file = cgroupV2 ? `hugetlb.${hugepageLimits[0]!.pageSize}.max` : `hugetlb/hugetlb.${hugepageLimits[0]!.pageSize}.limit_in_bytes`;
      assert.equal((await exec(ctr, ['cat', `/sys/fs/cgroup/${file}`])).trim(), '0', 'the limit is applied where the controller exists');
    } else {
      assert.match(s.d.logs, /no hugetlb cgroup controller on this host/);
    }
    await removePod(pod);
  });
  test('crictl update with only a memory limit keeps the CPU quota set at create: cgroup, status and stored spec agree', async () => {
    // `crictl update --memory N` sends every other field as zero ("not set"). The cgroup kept its CPU
    // quota, but ContainerStatus reported the update's zeros as the container's resources.
    const pod = await s.runPod('partial-update');
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600'], { linux: { resources: { cpuPeriod: 100000, cpuQuota: 50000, memoryLimitInBytes: 64 << 20 } } });
    await s.d.client.runtime.unary('UpdateContainerResources', { containerId: ctr, linux: { memoryLimitInBytes: 128 << 20 } });
    const st = await s.d.client.runtime.unary('ContainerStatus', { containerId: ctr, verbose: true });
    const linux = st.status!.resources!.linux!;
    assert.deepEqual([linux.cpuPeriod, linux.cpuQuota, linux.memoryLimitInBytes], [100000, 50000, 128 << 20]);
    const info = JSON.parse(st.info.info!) as { cgroupsPath: string; runtimeSpec: { linux: { resources: { cpu?: { quota?: number; period?: number }; memory?: { limit?: number } } } } };
    assert.deepEqual(info.runtimeSpec.linux.resources.cpu, { quota: 50000, period: 100000 });
    assert.equal(info.runtimeSpec.linux.resources.memory?.limit, 128 << 20);
    if (!existsSync('/sys/fs/cgroup/cgroup.controllers')) {
      assert.equal(readFileSync(join('/sys/fs/cgroup/cpu', info.cgroupsPath, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
      assert.equal(readFileSync(join('/sys/fs/cgroup/memory', info.cgroupsPath, 'memory.limit_in_bytes'), 'utf8').trim(), String(128 << 20));
    } else {
      assert.equal(readFileSync(join('/sys/fs/cgroup', info.cgroupsPath, 'cpu.max'), 'utf8').trim(), '50000 100000');
    }
    await removePod(pod);
  });
  test('kubelet creates containers by image id: the statuses name the image by its tag, as containerd reports it', async () => {
    // kubelet showed `image: sha256:…` in every pod's containerStatuses.
    const pod = await s.runPod('by-image-id');
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600'], { image: { image: s.imageId, userSpecifiedImage: s.image } });
    const st = (await s.d.client.runtime.unary('ContainerStatus', { containerId: ctr })).status!;
    assert.equal(st.image?.image, s.image);
    assert.equal(st.imageId, s.imageId);
    const podStatus = await s.d.client.runtime.unary('PodSandboxStatus', { podSandboxId: pod });
    assert.equal(podStatus.containersStatuses.find((c) => c.id === ctr)?.image?.image, s.image);
    // ListContainers keeps the image the container was created with, as containerd's does.
    const listed = (await s.d.client.runtime.unary('ListContainers', { filter: { id: ctr } })).containers[0];
    assert.equal(listed?.image?.image, s.imageId);
    await removePod(pod);
  });
  test('mount propagation the host mount cannot give is refused at CreateContainer, naming the field', async () => {
    // kubelet's Bidirectional volume on a private host mount: runc made the mount, nothing propagated,
    // nobody was told. containerd's CRI refuses it ("… is not a shared mount").
    const base = mkdtempSync('/tmp/crisp-e2e-propagation-');
    const own = join(base, 'own');
    const peer = join(base, 'peer');
    mkdirSync(own);
    mkdirSync(peer);
    const mount = (...args: string[]) => execFileSync('mount', args);
    const pod = await s.runPod('propagation');
    const create = (name: string, hostPath: string, propagation: number) =>
      s.d.client.runtime.unary('CreateContainer', { podSandboxId: pod, config: s.containerConfig(name, ['sleep', '3600'], { mounts: [{ containerPath: '/vol', hostPath, propagation }] }) });
    const refused = (pattern: RegExp) => (err: unknown) => isGrpcError(err, grpcStatus.FAILED_PRECONDITION) && /config\.mounts\[0\]\.propagation/.test(err.details) && pattern.test(err.details);
    try {
      mount('--bind', own, own);
      mount('--make-private', own);
      await assert.rejects(create('bidir-private', own, 2), refused(/Bidirectional \(rshared\) needs a shared mount/));
      await assert.rejects(create('h2c-private', own, 1), refused(/HostToContainer \(rslave\) needs a shared or slave mount/));
      await create('private-private', own, 0);
      // A slave of a shared mount: HostToContainer works, Bidirectional still needs it shared.
      mount('--make-shared', own);
      mount('--bind', own, peer);
      mount('--make-slave', peer);
      await create('h2c-slave', peer, 1);
      await assert.rejects(create('bidir-slave', peer, 2), refused(/needs a shared mount/));
      await create('bidir-shared', own, 2);
      await create('h2c-shared', own, 1);
    } finally {
      await removePod(pod);
      // Whichever of the two got mounted before a failure (spawnSync: one not mounted is no error here).
      for (const dir of [peer, own]) spawnSync('umount', ['-l', dir]);
      rmSync(base, { recursive: true, force: true });
    }
  });
});
