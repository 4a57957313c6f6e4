// Applying NRI adjustments to OCI specs and NRI updates to OCI resources, one adjustment kind at a
// time, and the purity of both functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BLOCKIO_CLASS_ANNOTATION,
  CDI_ANNOTATION,
  applyContainerAdjustment,
  applyContainerUpdate,
  nriResourcesToOci,
} from '../../sandbox/containers/nri-adjust.js';
import { IOPrioClass, LinuxSchedulerFlag, LinuxSchedulerPolicy, MpolFlag, MpolMode } from '../../gen/nri.pkg.api.v1alpha1.js';
import type { OciSpecJson } from '../../sandbox/nri-hooks.js';

type Json = Record<string, unknown>;

function base(): OciSpecJson {
  return {
    ociVersion: '1.0.2-dev',
    process: {
      user: { uid: 0, gid: 0 },
      args: ['/bin/sh'],
      env: ['PATH=/bin', 'KEEP=1', 'DROP=1'],
      cwd: '/',
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    },
    root: { path: 'rootfs' },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs' },
      { destination: '/etc/hosts', type: 'bind', source: '/h', options: ['ro'] },
    ],
    annotations: { keep: 'yes', drop: 'yes' },
    linux: {
      cgroupsPath: '/kubepods/pod/ctr',
      namespaces: [{ type: 'network', path: '/run/netns/x' }, { type: 'mount' }, { type: 'pid' }],
      devices: [{ path: '/dev/old', type: 'c', major: 1, minor: 2 }],
      resources: { devices: [{ allow: false, access: 'rwm' }], cpu: { shares: 1024 }, memory: { limit: 100 } },
      sysctl: { 'net.ipv4.ip_forward': '0', 'kernel.shm_rmid_forced': '1' },
    },
  };
}

const proc = (s: OciSpecJson) => s.process as Json;
const linux = (s: OciSpecJson) => s.linux as Json;

test('no adjustment: an equal copy, and the input is never modified', () => {
  const spec = base();
  const before = structuredClone(spec);
  const out = applyContainerAdjustment(spec, { annotations: { x: '1' }, env: [{ key: 'DROP', value: '2' }], linux: { resources: { cpu: { shares: { value: 1 } } } } });
  assert.deepEqual(spec, before);
  assert.notEqual(out, spec);
  assert.deepEqual(applyContainerAdjustment(spec, null), before);
  assert.deepEqual(applyContainerAdjustment(spec, {}), before);
});

test('annotations: removals then additions', () => {
  const out = applyContainerAdjustment(base(), { annotations: { '-drop': '', added: 'a', '-keep': '', keep: 'replaced' } });
  assert.deepEqual(out.annotations, { keep: 'replaced', added: 'a' });
});

test('env: remove, replace in place, append', () => {
  const out = applyContainerAdjustment(base(), { env: [{ key: '-DROP' }, { key: 'KEEP', value: '2' }, { key: 'NEW', value: 'x=y' }] });
  assert.deepEqual(proc(out).env, ['PATH=/bin', 'KEEP=2', 'NEW=x=y']);
});

test('args: replaced; a leading "" is only a merge marker', () => {
  assert.deepEqual(proc(applyContainerAdjustment(base(), { args: ['/bin/app', '-v'] })).args, ['/bin/app', '-v']);
  assert.deepEqual(proc(applyContainerAdjustment(base(), { args: ['', '/bin/app'] })).args, ['/bin/app']);
});

test('hooks: appended per kind, with timeouts', () => {
  const spec = base();
  spec.hooks = { prestart: [{ path: '/bin/first' }] };
  const out = applyContainerAdjustment(spec, {
    hooks: { prestart: [{ path: '/bin/second', args: ['second', '-x'], env: ['A=1'], timeout: { value: 5 } }], createRuntime: [{ path: '/bin/cr' }], poststop: [{ path: '/bin/ps' }] },
  });
  assert.deepEqual(out.hooks, {
    prestart: [{ path: '/bin/first' }, { path: '/bin/second', args: ['second', '-x'], env: ['A=1'], timeout: 5 }],
    createRuntime: [{ path: '/bin/cr' }],
    poststop: [{ path: '/bin/ps' }],
  });
});

test('CDI devices: names carried in an annotation, merged without duplicates', () => {
  const once = applyContainerAdjustment(base(), { CDIDevices: [{ name: 'vendor.com/gpu=0' }, { name: 'vendor.com/gpu=1' }] });
  const twice = applyContainerAdjustment(once, { CDIDevices: [{ name: 'vendor.com/gpu=1' }, { name: 'vendor.com/nic=a' }] });
  assert.equal((twice.annotations as Json)[CDI_ANNOTATION], 'vendor.com/gpu=0,vendor.com/gpu=1,vendor.com/nic=a');
});

test('devices: removal, addition with its device cgroup rule', () => {
  const out = applyContainerAdjustment(base(), {
    linux: { devices: [{ path: '-/dev/old' }, { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: { value: 0o666 }, uid: { value: 0 }, gid: { value: 0 } }] },
  });
  assert.deepEqual(linux(out).devices, [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }]);
  assert.deepEqual((linux(out).resources as Json).devices, [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' },
  ]);
});

test('cgroups path, oom score (zero is a value), I/O priority, scheduler', () => {
  const out = applyContainerAdjustment(base(), {
    linux: {
      cgroupsPath: '/custom/ctr',
      oomScoreAdj: { value: 0 },
      ioPriority: { class: IOPrioClass.IOPRIO_CLASS_BE, priority: 4 },
      scheduler: { policy: LinuxSchedulerPolicy.SCHED_FIFO, priority: 10, flags: [LinuxSchedulerFlag.SCHED_FLAG_RESET_ON_FORK] },
    },
  });
  assert.equal(linux(out).cgroupsPath, '/custom/ctr');
  assert.equal(proc(out).oomScoreAdj, 0);
  assert.deepEqual(proc(out).ioPriority, { class: 'IOPRIO_CLASS_BE', priority: 4 });
  assert.deepEqual(proc(out).scheduler, { policy: 'SCHED_FIFO', priority: 10, flags: ['SCHED_FLAG_RESET_ON_FORK'] });
  // Class NONE / policy NONE drop the setting.
  const cleared = applyContainerAdjustment(out, { linux: { ioPriority: { class: IOPrioClass.IOPRIO_CLASS_NONE }, scheduler: { policy: LinuxSchedulerPolicy.SCHED_NONE } } });
  assert.equal(proc(cleared).ioPriority, undefined);
  assert.equal(proc(cleared).scheduler, undefined);
});

test('seccomp policy replaces the profile', () => {
  const out = applyContainerAdjustment(base(), {
    linux: {
      seccompPolicy: {
        defaultAction: 'SCMP_ACT_ERRNO',
        defaultErrno: { value: 1 },
        architectures: ['SCMP_ARCH_X86_64'],
        syscalls: [
          { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
          { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
        ],
      },
    },
  });
  assert.deepEqual(linux(out).seccomp, {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [
      { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
      { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
    ],
  });
});

test('namespaces: removal by type, replacement by type, addition', () => {
  const out = applyContainerAdjustment(base(), { linux: { namespaces: [{ type: '-pid' }, { type: 'network', path: '/run/netns/y' }, { type: 'cgroup' }] } });
  assert.deepEqual(linux(out).namespaces, [{ type: 'mount' }, { type: 'network', path: '/run/netns/y' }, { type: 'cgroup' }]);
});

test('sysctl and net devices: removals and sets', () => {
  const out = applyContainerAdjustment(base(), {
    linux: { sysctl: { '-kernel.shm_rmid_forced': '', 'net.core.somaxconn': '1024' }, netDevices: { eth1: { name: 'net1' } } },
  });
  assert.deepEqual(linux(out).sysctl, { 'net.ipv4.ip_forward': '0', 'net.core.somaxconn': '1024' });
  assert.deepEqual(linux(out).netDevices, { eth1: { name: 'net1' } });
  const removed = applyContainerAdjustment(out, { linux: { netDevices: { '-eth1': {} } } });
  assert.deepEqual(linux(removed).netDevices, {});
});

test('memory policy', () => {
  const out = applyContainerAdjustment(base(), { linux: { memoryPolicy: { mode: MpolMode.MPOL_BIND, nodes: '0-1', flags: [MpolFlag.MPOL_F_STATIC_NODES] } } });
  assert.deepEqual(linux(out).memoryPolicy, { mode: 'MPOL_BIND', nodes: '0-1', flags: ['MPOL_F_STATIC_NODES'] });
});

test('resources: memory, cpu, hugepages, unified, device rules, pids', () => {
  const out = applyContainerAdjustment(base(), {
    linux: {
      resources: {
        memory: { limit: { value: 1 << 30 }, reservation: { value: 1 << 29 }, swap: { value: 2 << 30 }, swappiness: { value: 0 }, disableOomKiller: { value: true } },
        cpu: { shares: { value: 512 }, quota: { value: 20000 }, period: { value: 100000 }, cpus: '0-1', mems: '0' },
        hugepageLimits: [{ pageSize: '2MB', limit: 1 << 21 }],
        unified: { 'memory.high': '900000000' },
        devices: [{ allow: true, type: 'c', major: { value: 10 }, minor: { value: 200 }, access: 'rw' }],
        pids: { limit: 128 },
      },
    },
  });
  assert.deepEqual(linux(out).resources, {
    devices: [
      { allow: false, access: 'rwm' },
      { allow: true, type: 'c', major: 10, minor: 200, access: 'rw' },
    ],
    cpu: { shares: 512, quota: 20000, period: 100000, cpus: '0-1', mems: '0' },
    memory: { limit: 1 << 30, reservation: 1 << 29, swap: 2 << 30, swappiness: 0, disableOOMKiller: true },
    hugepageLimits: [{ pageSize: '2MB', limit: 1 << 21 }],
    unified: { 'memory.high': '900000000' },
    pids: { limit: 128 },
  });
});

test('block I/O class (annotation), RDT class and RDT settings', () => {
  const out = applyContainerAdjustment(base(), {
    linux: { resources: { blockioClass: { value: 'slow' }, rdtClass: { value: 'gold' } }, rdt: { schemata: { value: ['L3:0=ff'] }, enableMonitoring: { value: true } } },
  });
  assert.equal((out.annotations as Json)[BLOCKIO_CLASS_ANNOTATION], 'slow');
  assert.deepEqual(linux(out).intelRdt, { closID: 'gold', schemata: ['L3:0=ff'], enableMonitoring: true });
  const removed = applyContainerAdjustment(out, { linux: { rdt: { remove: true } } });
  assert.equal(linux(removed).intelRdt, undefined);
  const replaced = applyContainerAdjustment(out, { linux: { rdt: { remove: true, closId: { value: 'silver' } } } });
  assert.deepEqual(linux(replaced).intelRdt, { closID: 'silver' });
});

test('mounts: removal, replacement by destination, parents sorted before children', () => {
  const out = applyContainerAdjustment(base(), {
    mounts: [
      { destination: '-/etc/hosts' },
      { destination: '/data/cache', type: 'tmpfs', source: 'tmpfs' },
      { destination: '/data', type: 'bind', source: '/srv', options: ['rbind', 'rw'] },
      { destination: '/dev', type: 'devtmpfs', source: 'devtmpfs' },
    ],
  });
  assert.deepEqual(out.mounts, [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/data', type: 'bind', source: '/srv', options: ['rbind', 'rw'] },
    { destination: '/dev', type: 'devtmpfs', source: 'devtmpfs' },
    { destination: '/data/cache', type: 'tmpfs', source: 'tmpfs' },
  ]);
});

test('rlimits: replaced by type, else appended', () => {
  const out = applyContainerAdjustment(base(), { rlimits: [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 2048 }, { type: 'RLIMIT_NPROC', hard: 100, soft: 100 }] });
  assert.deepEqual(proc(out).rlimits, [
    { type: 'RLIMIT_NOFILE', hard: 4096, soft: 2048 },
    { type: 'RLIMIT_NPROC', hard: 100, soft: 100 },
  ]);
});

test('applyContainerUpdate: only the fields the update sets change; input untouched', () => {
  const res = { cpu: { shares: 1024, quota: 50000 }, memory: { limit: 100 }, hugepageLimits: [{ pageSize: '2MB', limit: 1 }] };
  const before = structuredClone(res);
  const out = applyContainerUpdate(res, {
    containerId: 'x',
    linux: { resources: { cpu: { shares: { value: 2 } }, hugepageLimits: [{ pageSize: '2MB', limit: 4 }, { pageSize: '1GB', limit: 8 }], unified: { 'cpu.max': 'max' }, pids: { limit: 5 } } },
  });
  assert.deepEqual(res, before);
  assert.deepEqual(out, {
    cpu: { shares: 2, quota: 50000 },
    memory: { limit: 100 },
    hugepageLimits: [
      { pageSize: '2MB', limit: 4 },
      { pageSize: '1GB', limit: 8 },
    ],
    unified: { 'cpu.max': 'max' },
    pids: { limit: 5 },
  });
  assert.deepEqual(applyContainerUpdate(res, { containerId: 'x' }), before);
  assert.deepEqual(nriResourcesToOci({ memory: { limit: { value: 0 } }, cpu: { cpus: '3' } }), { memory: { limit: 0 }, cpu: { cpus: '3' } });
});
