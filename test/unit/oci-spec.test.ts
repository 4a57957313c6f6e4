import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildOciSpec,
  linuxResources,
  mergeLinuxResources,
  mergeResourceUpdate,
  dropUnsupportedHugepages,
  normaliseSignal,
  processArgs,
  signalNumberOf,
  stopSignalFor,
  DEFAULT_MASKED_PATHS,
  DEFAULT_READONLY_PATHS,
  type OciHostFeatures,
  type OciSpecInput,
} from '../../sandbox/containers/oci-spec.js';
import { hugetlbPresent } from '../../sandbox/host-features.js';
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES, capabilitiesFromMask, computeCapabilities, type CapabilityRequest } from '../../sandbox/containers/capabilities.js';
import { ALWAYS_DENIED, loadLocalhostProfile, parseSeccompProfile, runtimeDefaultSeccomp } from '../../sandbox/containers/seccomp-default.js';
import type { LinuxSeccomp, OciMount, OciSpec } from '../../sandbox/containers/oci-types.js';
import type { ContainerSecurity, ContainerSpec, MountSpec, ResourceSpec } from '../../sandbox/containers/types.js';
import type { PodRecord } from '../../sandbox/pods/types.js';
import type { ImageConfig } from '../../backend/registry/oci.js';
import { isCrispError, type ErrorKind } from '../../common/errors.js';

// ---- fixtures -------------------------------------------------------------------------------------

const POD_ID = 'p'.repeat(64);
const CTR_ID = 'c'.repeat(64);

function fakePod(over: Partial<PodRecord> = {}, specOver: Partial<PodRecord['spec']> = {}): PodRecord {
  return {
    id: POD_ID,
    spec: {
      metadata: { name: 'web', uid: 'uid-1', namespace: 'default', attempt: 0 },
      hostname: 'web-host',
      logDirectory: '/var/log/pods/x',
      portMappings: [],
      labels: {},
      annotations: {},
      cgroupParent: '/kubepods',
      sysctls: {},
      namespaces: { network: 'pod', pid: 'container', ipc: 'pod' },
      runtimeHandler: '',
      privileged: false,
      shmSize: 64 << 20,
      ...specOver,
    },
    state: 'ready',
    createdAt: 0,
    dir: '/var/lib/crisp/pods/p',
    runDir: '/run/crisp/pods/p',
    pins: { net: '/run/crisp/pods/p/ns/net', ipc: '/run/crisp/pods/p/ns/ipc', uts: '/run/crisp/pods/p/ns/uts' },
    shmPath: '/run/crisp/pods/p/shm',
    files: { hostname: '/var/lib/crisp/pods/p/hostname', hosts: '/var/lib/crisp/pods/p/hosts', resolvConf: '/var/lib/crisp/pods/p/resolv.conf' },
    ips: [],
    networkAttached: true,
    cgroup: { path: '/kubepods/podx', created: true },
    ...over,
  };
}

const noResources = (): ResourceSpec => ({
  cpuPeriod: 0,
  cpuQuota: 0,
  cpuShares: 0,
  memoryLimitInBytes: 0,
  memorySwapLimitInBytes: 0,
  oomScoreAdj: 0,
  cpusetCpus: '',
  cpusetMems: '',
  hugepageLimits: [],
  unified: {},
});

const security = (over: Partial<ContainerSecurity> = {}): ContainerSecurity => ({
  capabilities: { add: [], drop: [], addAmbient: [] },
  privileged: false,
  runAsUsername: '',
  readonlyRootfs: false,
  supplementalGroups: [],
  supplementalGroupsPolicy: 'merge',
  noNewPrivs: false,
  pidMode: 'container',
  targetId: '',
  ...over,
});

function fakeSpec(over: Partial<ContainerSpec> = {}, sec: Partial<ContainerSecurity> = {}): ContainerSpec {
  return {
    metadata: { name: 'app', attempt: 0 },
    image: 'docker.io/library/busybox:latest',
    command: [],
    args: [],
    workingDir: '',
    envs: [],
    mounts: [],
    devices: [],
    labels: {},
    annotations: {},
    logPath: '',
    stdin: false,
    stdinOnce: false,
    tty: false,
    resources: noResources(),
    security: security(sec),
    stopSignal: '',
    cdiDevices: [],
    ...over,
  };
}

const fakeImage = (config: ImageConfig['config'] = { Cmd: ['sh'], Env: ['PATH=/bin'] }): ImageConfig => ({
  architecture: 'amd64',
  os: 'linux',
  config,
  rootfs: { type: 'layers', diff_ids: [] },
});

const HOST: OciHostFeatures = { apparmor: false, selinux: false, daemonOomScoreAdj: -999, cgroupV2: false, arch: 'x64' };

function input(over: Partial<OciSpecInput> = {}): OciSpecInput {
  return {
    id: CTR_ID,
    spec: fakeSpec(),
    pod: fakePod(),
    image: fakeImage(),
    user: { uid: 0, gid: 0, additionalGids: [], username: 'root', home: '/root' },
    cgroupsPath: '/kubepods/podx/' + CTR_ID,
    host: HOST,
    ...over,
  };
}

const build = (over: Partial<OciSpecInput> = {}): OciSpec => buildOciSpec(input(over));
const mount = (spec: OciSpec, dest: string): OciMount | undefined => spec.mounts?.find((m) => m.destination === dest);

function fails(kind: ErrorKind, fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isCrispError(err, kind), `expected ${kind}, got ${String(err)}`);
    return err.message;
  }
  assert.fail('no error');
}

const criMount = (containerPath: string, over: Partial<MountSpec> = {}): MountSpec => ({
  containerPath,
  hostPath: `/host${containerPath}`,
  readonly: false,
  recursiveReadOnly: false,
  propagation: 'private',
  selinuxRelabel: false,
  uidMappings: [],
  gidMappings: [],
  ...over,
});

// ---- process --------------------------------------------------------------------------------------

test('entrypoint / cmd table (Kubernetes semantics)', () => {
  const img = { Entrypoint: ['/entry'], Cmd: ['--default'] };
  const cases: { command: string[]; args: string[]; image: ImageConfig['config']; want: string[] }[] = [
    { command: [], args: [], image: img, want: ['/entry', '--default'] },
    { command: [], args: ['--mine'], image: img, want: ['/entry', '--mine'] },
    { command: ['/bin/x'], args: [], image: img, want: ['/bin/x'] },
    { command: ['/bin/x'], args: ['a', 'b'], image: img, want: ['/bin/x', 'a', 'b'] },
    { command: [], args: [], image: { Cmd: ['sh', '-c', 'true'] }, want: ['sh', '-c', 'true'] },
    { command: [], args: ['echo'], image: { Cmd: ['sh'] }, want: ['echo'] },
    { command: [], args: [], image: { Entrypoint: null, Cmd: ['top'] }, want: ['top'] },
  ];
  for (const c of cases) assert.deepEqual(processArgs(c, c.image), c.want, JSON.stringify(c));
  assert.deepEqual(build({ spec: fakeSpec({ args: ['x'] }), image: fakeImage(img) }).process?.args, ['/entry', 'x']);
  assert.match(fails('INVALID_ARGUMENT', () => build({ image: fakeImage({}) })), /container app \(cccccccccccc\): building the OCI spec: no command specified/);
  assert.match(fails('INVALID_ARGUMENT', () => processArgs({ command: [], args: [] }, undefined)), /no command specified/);
});

test('env: image then CRI (CRI wins in place), defaults only when missing', () => {
  const spec = build({
    spec: fakeSpec({ envs: [{ key: 'A', value: 'cri' }, { key: 'NEW', value: '1' }], tty: true }),
    image: fakeImage({ Cmd: ['sh'], Env: ['A=image', 'B=image', 'PATH=/img/bin'] }),
  });
  assert.deepEqual(spec.process?.env, ['A=cri', 'B=image', 'PATH=/img/bin', 'NEW=1', 'HOSTNAME=web-host', 'HOME=/root', 'TERM=xterm']);
  assert.equal(spec.process?.terminal, true);

  const defaults = build({ image: fakeImage({ Cmd: ['sh'] }), user: { uid: 5, gid: 5, additionalGids: [] } });
  assert.deepEqual(defaults.process?.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME=web-host'], 'no HOME when the user has none');

  const overridden = build({ spec: fakeSpec({ envs: [{ key: 'HOSTNAME', value: 'mine' }, { key: 'HOME', value: '/h' }] }) });
  assert.ok(overridden.process?.env?.includes('HOSTNAME=mine'));
  assert.ok(overridden.process?.env?.includes('HOME=/h'));
  assert.equal(overridden.process?.env?.filter((e) => e.startsWith('HOSTNAME=')).length, 1);
});

test('cwd, user, rlimits, noNewPrivileges, root', () => {
  assert.equal(build().process?.cwd, '/');
  assert.equal(build({ image: fakeImage({ Cmd: ['x'], WorkingDir: '/srv' }) }).process?.cwd, '/srv');
  assert.equal(build({ spec: fakeSpec({ workingDir: '/work' }), image: fakeImage({ Cmd: ['x'], WorkingDir: '/srv' }) }).process?.cwd, '/work');
  assert.match(fails('INVALID_ARGUMENT', () => build({ spec: fakeSpec({ workingDir: 'rel' }) })), /working_dir "rel" is not an absolute path/);

  const s = build({ spec: fakeSpec({}, { noNewPrivs: true, readonlyRootfs: true }), user: { uid: 1000, gid: 1000, additionalGids: [10, 44] } });
  assert.deepEqual(s.process?.user, { uid: 1000, gid: 1000, additionalGids: [1000, 10, 44] }, 'primary gid also supplementary');
  assert.equal(s.process?.noNewPrivileges, true);
  assert.deepEqual(s.process?.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }]);
  assert.deepEqual(build({ host: { ...HOST, maxNofile: 20000 } }).process?.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 20000, soft: 20000 }], 'clamped to the daemon hard limit');
  assert.deepEqual(s.root, { path: 'rootfs', readonly: true });
  assert.equal(build({ rootfsPath: '/abs/rootfs' }).root?.path, '/abs/rootfs');
  assert.equal(s.ociVersion, '1.0.2-dev');
  assert.equal(s.linux?.cgroupsPath, '/kubepods/podx/' + CTR_ID);
  assert.equal(s.linux?.sysctl, undefined, 'sysctls live in the pod namespaces');
});

test('oom_score_adj is clamped to the daemon own value and to 1000', () => {
  const oom = (v: number, daemon: number) =>
    build({ spec: fakeSpec({ resources: { ...noResources(), oomScoreAdj: v } }), host: { ...HOST, daemonOomScoreAdj: daemon } }).process?.oomScoreAdj;
  assert.equal(oom(-997, -500), -500);
  assert.equal(oom(-997, -999), -997);
  assert.equal(oom(1000, 0), 1000);
  assert.equal(oom(1500, 0), 1000);
  assert.equal(oom(0, 0), 0);
});

test('apparmor only where the host has it', () => {
  const aa = (sec: Partial<ContainerSecurity>, apparmor: boolean) => build({ spec: fakeSpec({}, sec), host: { ...HOST, apparmor } }).process?.apparmorProfile;
  assert.equal(aa({}, false), undefined);
  assert.equal(aa({ apparmor: { kind: 'runtime-default', localhostRef: '' } }, false), undefined);
  assert.equal(aa({ apparmor: { kind: 'unconfined', localhostRef: '' } }, false), undefined);
  assert.match(
    fails('INVALID_ARGUMENT', () => aa({ apparmor: { kind: 'localhost', localhostRef: 'localhost/my-prof' } }, false)),
    /AppArmor profile "my-prof" was requested, but AppArmor is not available on this host/,
  );
  assert.equal(aa({}, true), 'crisp-default');
  assert.equal(aa({ apparmor: { kind: 'runtime-default', localhostRef: '' } }, true), 'crisp-default');
  assert.equal(aa({ privileged: true }, true), undefined);
  assert.equal(aa({ apparmor: { kind: 'unconfined', localhostRef: '' } }, true), 'unconfined');
  assert.equal(aa({ apparmor: { kind: 'localhost', localhostRef: 'localhost/my-prof' } }, true), 'my-prof');
  // A default profile that could not be loaded is never named (runc would fail the start).
  const notLoaded = build({ spec: fakeSpec({}, {}), host: { ...HOST, apparmor: true, apparmorDefaultLoaded: false } }).process?.apparmorProfile;
  assert.equal(notLoaded, undefined);
  const s = build({ host: { ...HOST, selinux: false } });
  assert.equal(s.process?.selinuxLabel, undefined);
  assert.equal(s.linux?.mountLabel, undefined);
});

// ---- capabilities ---------------------------------------------------------------------------------

const capReq = (add: string[] = [], drop: string[] = [], addAmbient: string[] = [], privileged = false): CapabilityRequest => ({
  capabilities: { add, drop, addAmbient },
  privileged,
});

test('capabilities: default, add/drop, ALL, prefixes and case, ambient, privileged', () => {
  const bounding = (r: CapabilityRequest, available?: string[]) => computeCapabilities(r, available).bounding;
  assert.deepEqual(new Set(bounding(capReq())), new Set(DEFAULT_CAPABILITIES));
  assert.equal(DEFAULT_CAPABILITIES.length, 14);

  const added = bounding(capReq(['net_admin', 'CAP_SYS_TIME', 'Sys_Ptrace']));
  for (const c of ['CAP_NET_ADMIN', 'CAP_SYS_TIME', 'CAP_SYS_PTRACE', 'CAP_CHOWN']) assert.ok(added?.includes(c), c);

  const dropped = bounding(capReq([], ['chown', 'CAP_KILL']));
  assert.ok(!dropped?.includes('CAP_CHOWN') && !dropped?.includes('CAP_KILL'));
  assert.equal(dropped?.length, 12);

  assert.deepEqual(bounding(capReq(['ALL'])), [...ALL_CAPABILITIES]);
  assert.deepEqual(bounding(capReq(['all'], ['CHOWN'])), ALL_CAPABILITIES.filter((c) => c !== 'CAP_CHOWN'));
  assert.deepEqual(bounding(capReq(['NET_ADMIN'], ['ALL'])), ['CAP_NET_ADMIN']);
  assert.deepEqual(bounding(capReq([], ['all'])), []);
  assert.ok(!bounding(capReq(['NET_ADMIN'], ['net_admin']))?.includes('CAP_NET_ADMIN'), 'drop wins over add');
  assert.deepEqual(bounding(capReq(['ALL'], [], [], false), ['CAP_CHOWN', 'CAP_KILL']), ['CAP_CHOWN', 'CAP_KILL'], 'ALL = what the daemon holds');

  const amb = computeCapabilities(capReq([], ['ALL'], ['net_bind_service']));
  assert.deepEqual(amb, {
    bounding: ['CAP_NET_BIND_SERVICE'],
    effective: ['CAP_NET_BIND_SERVICE'],
    permitted: ['CAP_NET_BIND_SERVICE'],
    inheritable: ['CAP_NET_BIND_SERVICE'],
    ambient: ['CAP_NET_BIND_SERVICE'],
  });
  assert.deepEqual(computeCapabilities(capReq()).inheritable, [], 'no inheritable without ambient');

  assert.deepEqual(bounding(capReq([], ['ALL'], [], true)), [...ALL_CAPABILITIES], 'privileged ignores drops');
  const hostCaps = ALL_CAPABILITIES.filter((c) => c !== 'CAP_SYS_RESOURCE');
  assert.deepEqual(build({ spec: fakeSpec({}, { privileged: true }), host: { ...HOST, capabilities: hostCaps } }).process?.capabilities?.bounding, hostCaps);

  const unknown = (r: CapabilityRequest) => fails('INVALID_ARGUMENT', () => computeCapabilities(r));
  assert.match(unknown(capReq(['NET_FOO'])), /unknown capability "NET_FOO"/);
  assert.match(unknown(capReq([], ['cap_bogus'])), /unknown capability "cap_bogus"/);
  assert.match(unknown(capReq([], [], ['ALL'])), /ALL/);
});

test('capabilitiesFromMask decodes /proc/self/status masks', () => {
  assert.deepEqual(capabilitiesFromMask('0000000000000003'), ['CAP_CHOWN', 'CAP_DAC_OVERRIDE']);
  const all = capabilitiesFromMask('000001ffffffffff');
  assert.equal(all.length, 41);
  assert.ok(!capabilitiesFromMask('000001fffeffffff').includes('CAP_SYS_RESOURCE'));
});

// ---- namespaces -----------------------------------------------------------------------------------

test('namespaces: pod, host network/ipc, pid modes, user namespace with mappings', () => {
  const nsOf = (s: OciSpec) => s.linux?.namespaces;
  assert.deepEqual(nsOf(build()), [
    { type: 'network', path: '/run/crisp/pods/p/ns/net' },
    { type: 'ipc', path: '/run/crisp/pods/p/ns/ipc' },
    { type: 'uts', path: '/run/crisp/pods/p/ns/uts' },
    { type: 'pid' },
    { type: 'mount' },
  ]);
  assert.equal(build().hostname, 'web-host');

  const hostNet = build({ pod: fakePod({ pins: { ipc: '/i' } }, { namespaces: { network: 'node', pid: 'container', ipc: 'pod' } }) });
  assert.deepEqual(nsOf(hostNet), [{ type: 'ipc', path: '/i' }, { type: 'pid' }, { type: 'mount' }]);
  assert.equal(hostNet.hostname, undefined, 'host network: the host uts and hostname');

  const hostIpc = build({ pod: fakePod({ pins: { net: '/n', uts: '/u' }, shmPath: undefined }, { namespaces: { network: 'pod', pid: 'container', ipc: 'node' } }) });
  assert.ok(!nsOf(hostIpc)?.some((n) => n.type === 'ipc'));

  const pid = (pidMode: ContainerSecurity['pidMode'], over: Partial<OciSpecInput> = {}) =>
    nsOf(build({ spec: fakeSpec({}, { pidMode, targetId: 't' }), ...over }))?.find((n) => n.type === 'pid');
  assert.deepEqual(pid('container'), { type: 'pid' });
  assert.equal(pid('node'), undefined);
  assert.deepEqual(pid('pod', { pod: fakePod({ pins: { ...fakePod().pins, pid: '/run/p/pid' } }) }), { type: 'pid', path: '/run/p/pid' });
  assert.match(fails('FAILED_PRECONDITION', () => pid('pod')), /no shared pid namespace/);
  assert.deepEqual(pid('target', { targetPidNsPath: '/proc/42/ns/pid' }), { type: 'pid', path: '/proc/42/ns/pid' });
  assert.match(fails('INVALID_ARGUMENT', () => pid('target')), /pid namespace target "t" was not resolved/);

  assert.deepEqual(nsOf(build({ host: { ...HOST, cgroupV2: true } }))?.at(-1), { type: 'cgroup' });

  const userns = { uids: [{ containerId: 0, hostId: 100000, length: 65536 }], gids: [{ containerId: 0, hostId: 200000, length: 65536 }] };
  const u = build({ pod: fakePod({ pins: { ...fakePod().pins, user: '/run/p/user' } }, { namespaces: { network: 'pod', pid: 'container', ipc: 'pod', userns } }) });
  assert.deepEqual(u.linux?.namespaces?.[0], { type: 'user', path: '/run/p/user' });
  assert.deepEqual(u.linux?.uidMappings, [{ containerID: 0, hostID: 100000, size: 65536 }]);
  assert.deepEqual(u.linux?.gidMappings, [{ containerID: 0, hostID: 200000, size: 65536 }]);
  assert.equal(build().linux?.uidMappings, undefined);
  assert.match(fails('FAILED_PRECONDITION', () => build({ pod: fakePod({ pins: { user: '/u' } }) })), /no uid\/gid mappings/);
});

// ---- mounts ---------------------------------------------------------------------------------------

test('default mounts, shm and /etc files', () => {
  const s = build();
  assert.deepEqual(
    s.mounts?.map((m) => m.destination),
    ['/proc', '/dev', '/sys', '/dev/pts', '/dev/mqueue', '/dev/shm', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/sys/fs/cgroup'],
  );
  assert.deepEqual(mount(s, '/dev/pts')?.options, ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']);
  assert.ok(mount(s, '/sys')?.options?.includes('ro'));
  assert.deepEqual(mount(s, '/sys/fs/cgroup'), { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
  assert.deepEqual(mount(s, '/dev/shm'), { destination: '/dev/shm', type: 'bind', source: '/run/crisp/pods/p/shm', options: ['rbind', 'rprivate', 'rw'] });
  assert.deepEqual(mount(s, '/etc/hosts'), { destination: '/etc/hosts', type: 'bind', source: '/var/lib/crisp/pods/p/hosts', options: ['rbind', 'rprivate', 'rw'] });
  assert.equal(s.linux?.rootfsPropagation, undefined);

  const priv = build({ spec: fakeSpec({}, { privileged: true }) });
  assert.ok(mount(priv, '/sys')?.options?.includes('rw'));
  assert.ok(mount(priv, '/sys/fs/cgroup')?.options?.includes('rw'));

  const ro = build({ spec: fakeSpec({}, { readonlyRootfs: true }) });
  for (const f of ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf']) assert.ok(mount(ro, f)?.options?.includes('ro'), f);
  assert.ok(mount(ro, '/dev/shm')?.options?.includes('rw'));

  assert.equal(mount(build({ etcFiles: false }), '/etc/hosts'), undefined);

  const noShm = build({ pod: fakePod({ shmPath: undefined }) });
  assert.deepEqual(mount(noShm, '/dev/shm'), { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
  const hostIpc = build({ pod: fakePod({ shmPath: undefined }, { namespaces: { network: 'pod', pid: 'container', ipc: 'node' } }) });
  assert.equal(mount(hostIpc, '/dev/shm')?.source, '/dev/shm', 'hostIPC shares the host /dev/shm');
});

test('CRI mounts: options, overrides, order, propagation, rro, idmap', () => {
  const s = build({
    spec: fakeSpec({
      mounts: [
        criMount('/data/sub/deeper'),
        criMount('/etc/hosts', { readonly: true }),
        criMount('/data/'),
        criMount('/var/lib/x', { propagation: 'rslave', readonly: true }),
        criMount('/dev/shm'),
      ],
    }),
  });
  const dests = s.mounts?.map((m) => m.destination) ?? [];
  assert.equal(dests.filter((d) => d === '/etc/hosts').length, 1, 'CRI /etc/hosts replaces the pod file');
  assert.equal(mount(s, '/etc/hosts')?.source, '/host/etc/hosts');
  assert.equal(mount(s, '/dev/shm')?.source, '/host/dev/shm');
  assert.ok(dests.indexOf('/data') < dests.indexOf('/data/sub/deeper'), 'parents first');
  assert.ok(dests.indexOf('/dev') < dests.indexOf('/dev/shm'));
  for (let i = 1; i < dests.length; i++) assert.ok(dests[i - 1].split('/').length <= dests[i].split('/').length, `sorted by depth: ${dests.join(' ')}`);
  assert.deepEqual(mount(s, '/var/lib/x'), { destination: '/var/lib/x', type: 'bind', source: '/host/var/lib/x', options: ['rbind', 'rslave', 'ro'] });
  assert.deepEqual(mount(s, '/data')?.options, ['rbind', 'rprivate', 'rw']);
  assert.equal(s.linux?.rootfsPropagation, 'rslave');

  const shared = build({ spec: fakeSpec({ mounts: [criMount('/a', { propagation: 'rslave' }), criMount('/b', { propagation: 'rshared' })] }) });
  assert.equal(shared.linux?.rootfsPropagation, 'rshared', 'bidirectional needs a shared rootfs');

  const dev = build({ spec: fakeSpec({ mounts: [criMount('/dev')] }) });
  assert.deepEqual(dev.mounts?.filter((m) => m.destination.startsWith('/dev')).map((m) => m.source), ['/host/dev'], 'a CRI /dev replaces everything under /dev');

  const rro = criMount('/ro', { readonly: true, recursiveReadOnly: true });
  assert.match(fails('INVALID_ARGUMENT', () => build({ spec: fakeSpec({ mounts: [rro] }) })), /recursive read-only mounts are not supported by this runtime/);
  assert.deepEqual(mount(build({ spec: fakeSpec({ mounts: [rro] }), host: { ...HOST, rroSupported: true } }), '/ro')?.options, ['rbind', 'rprivate', 'ro', 'rro']);
  assert.match(fails('INVALID_ARGUMENT', () => build({ spec: fakeSpec({ mounts: [{ ...rro, readonly: false }] }), host: { ...HOST, rroSupported: true } })), /needs readonly/);
  assert.match(
    fails('INVALID_ARGUMENT', () => build({ spec: fakeSpec({ mounts: [{ ...rro, propagation: 'rslave' }] }), host: { ...HOST, rroSupported: true } })),
    /needs private propagation/,
  );
  assert.match(fails('INVALID_ARGUMENT', () => build({ spec: fakeSpec({ mounts: [criMount('rel')] }) })), /container_path must be absolute/);

  const idm = criMount('/vol', { uidMappings: [{ containerId: 0, hostId: 1000, length: 10 }], gidMappings: [{ containerId: 0, hostId: 2000, length: 10 }] });
  assert.match(fails('INVALID_ARGUMENT', () => build({ spec: fakeSpec({ mounts: [idm] }) })), /idmapped mounts/);
  const withIdmap = mount(build({ spec: fakeSpec({ mounts: [idm] }), host: { ...HOST, idmappedMounts: true } }), '/vol');
  assert.deepEqual(withIdmap?.uidMappings, [{ containerID: 0, hostID: 1000, size: 10 }]);
  assert.deepEqual(withIdmap?.gidMappings, [{ containerID: 0, hostID: 2000, size: 10 }]);
});

test('mount source overrides: pod files and CRI volumes bind the replacement path, nothing else moves', () => {
  const plain = build({ spec: fakeSpec({ mounts: [criMount('/vol'), criMount('/vol2', { hostPath: '/host/vol' })] }) });
  const s = build({
    spec: fakeSpec({ mounts: [criMount('/vol'), criMount('/vol2', { hostPath: '/host/vol' })] }),
    mountSourceOverrides: { '/var/lib/crisp/pods/p/hosts': '/run/crisp/pods/p/userns/etc/hosts', '/host/vol': '/run/crisp/containers/c/volumes/0', proc: '/nope' },
  });
  assert.equal(mount(s, '/etc/hosts')?.source, '/run/crisp/pods/p/userns/etc/hosts');
  assert.equal(mount(s, '/etc/hostname')?.source, '/var/lib/crisp/pods/p/hostname', 'files without an override stay');
  assert.equal(mount(s, '/vol')?.source, '/run/crisp/containers/c/volumes/0');
  assert.equal(mount(s, '/vol2')?.source, '/run/crisp/containers/c/volumes/0', 'one override serves every mount of a host path');
  assert.equal(mount(s, '/proc')?.source, 'proc', 'only bind mounts are replaced');
  assert.deepEqual(
    s.mounts?.map((m) => [m.destination, m.options]),
    plain.mounts?.map((m) => [m.destination, m.options]),
    'order and options unchanged',
  );
});

// ---- devices, resources ---------------------------------------------------------------------------

test('devices: deny by default, standard set, CRI devices, privileged allows all', () => {
  const fuse = { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0, permissions: 'rw' };
  const s = build({ devices: [fuse] });
  assert.deepEqual(s.linux?.devices, [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }]);
  const rules = s.linux?.resources?.devices ?? [];
  assert.deepEqual(rules[0], { allow: false, access: 'rwm' });
  assert.ok(rules.some((r) => r.allow && r.type === 'c' && r.major === 1 && r.minor === 3 && r.access === 'rwm'), '/dev/null');
  assert.ok(rules.some((r) => r.allow && r.type === 'c' && r.major === 136 && r.minor === undefined), '/dev/pts/*');
  assert.deepEqual(rules.at(-1), { allow: true, type: 'c', major: 10, minor: 229, access: 'rw' });

  const priv = build({ spec: fakeSpec({}, { privileged: true }), devices: [{ ...fuse, permissions: 'rwm' }] });
  assert.deepEqual(priv.linux?.resources?.devices, [{ allow: true, access: 'rwm' }]);
  assert.equal(priv.linux?.devices?.length, 1);
  assert.deepEqual(build().linux?.devices, []);
});

test('resources: cpu, memory/swap, hugepages, unified only on cgroup v2', () => {
  const res: ResourceSpec = {
    ...noResources(),
    cpuShares: 512,
    cpuQuota: 50000,
    cpuPeriod: 100000,
    cpusetCpus: '0-1',
    cpusetMems: '0',
    memoryLimitInBytes: 1 << 28,
    memorySwapLimitInBytes: 1 << 29,
    hugepageLimits: [{ pageSize: '2MB', limit: 1 << 21 }],
  };
  const r = build({ spec: fakeSpec({ resources: res }) }).linux?.resources;
  assert.deepEqual(r?.cpu, { shares: 512, quota: 50000, period: 100000, cpus: '0-1', mems: '0' });
  assert.deepEqual(r?.memory, { limit: 1 << 28, swap: 1 << 29 });
  assert.deepEqual(r?.hugepageLimits, [{ pageSize: '2MB', limit: 1 << 21 }]);
  assert.equal(r?.pids, undefined, 'no pids limit by default');

  assert.deepEqual(linuxResources(noResources(), { cgroupV2: false }), {});
  const limitOnly = { ...noResources(), memoryLimitInBytes: 100 };
  assert.deepEqual(linuxResources(limitOnly, { cgroupV2: false }).memory, { limit: 100 });
  assert.deepEqual(linuxResources(limitOnly, { cgroupV2: false, swapAccounting: true }).memory, { limit: 100, swap: 100 }, 'no swap use by default');
  assert.deepEqual(linuxResources({ ...res }, { cgroupV2: false, swapAccounting: false }).memory, { limit: 1 << 28 }, 'swap never set without accounting');
  assert.match(fails('INVALID_ARGUMENT', () => linuxResources({ ...limitOnly, memorySwapLimitInBytes: 50 }, { cgroupV2: false })), /below memory_limit_in_bytes/);
  assert.equal(linuxResources({ ...res }, { cgroupV2: false, hugetlb: false }).hugepageLimits, undefined, 'no hugepage limits without the hugetlb controller');
  assert.deepEqual(linuxResources({ ...res }, { cgroupV2: false, hugetlb: true }).hugepageLimits, [{ pageSize: '2MB', limit: 1 << 21 }]);
  const fromNri: Record<string, unknown> = { hugepageLimits: [{ pageSize: '2MB', limit: 0 }], cpu: { shares: 2 } };
  dropUnsupportedHugepages(fromNri, { hugetlb: true });
  assert.ok(fromNri.hugepageLimits, 'kept where the controller exists');
  dropUnsupportedHugepages(fromNri, { hugetlb: false });
  assert.deepEqual(fromNri, { cpu: { shares: 2 } }, "an NRI plugin's limits are dropped like the request's");

  const unified = { ...noResources(), unified: { 'memory.high': '100M' } };
  assert.match(fails('INVALID_ARGUMENT', () => build({ spec: fakeSpec({ resources: unified }) })), /unified cgroup settings \(memory\.high\) need cgroup v2/);
  assert.deepEqual(build({ spec: fakeSpec({ resources: unified }), host: { ...HOST, cgroupV2: true } }).linux?.resources?.unified, { 'memory.high': '100M' });
});

// ---- masked paths, seccomp, annotations -------------------------------------------------------------

test('masked and read-only paths: defaults, explicit, privileged', () => {
  const s = build();
  assert.deepEqual(s.linux?.maskedPaths, [...DEFAULT_MASKED_PATHS]);
  assert.deepEqual(s.linux?.readonlyPaths, [...DEFAULT_READONLY_PATHS]);
  assert.ok(s.linux?.maskedPaths?.includes('/proc/kcore') && s.linux.maskedPaths.includes('/sys/devices/virtual/powercap'));
  const explicit = build({ spec: fakeSpec({}, { maskedPaths: ['/proc/x'], readonlyPaths: [] }) });
  assert.deepEqual(explicit.linux?.maskedPaths, ['/proc/x']);
  assert.equal(explicit.linux?.readonlyPaths, undefined, 'explicitly none (Unmasked procMount)');
  const priv = build({ spec: fakeSpec({}, { privileged: true, maskedPaths: ['/proc/x'] }) });
  assert.equal(priv.linux?.maskedPaths, undefined);
  assert.equal(priv.linux?.readonlyPaths, undefined);
});

test('seccomp selection', () => {
  const sc = (sec: Partial<ContainerSecurity>, over: Partial<OciSpecInput> = {}) => build({ spec: fakeSpec({}, sec), ...over }).linux?.seccomp;
  assert.equal(sc({}), undefined, 'unset = unconfined');
  assert.equal(sc({ seccomp: { kind: 'unconfined', localhostRef: '' } }), undefined);
  const rd = sc({ seccomp: { kind: 'runtime-default', localhostRef: '' } });
  assert.equal(rd?.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(rd?.defaultErrnoRet, 1);
  assert.deepEqual(rd?.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  assert.equal(sc({ privileged: true, seccomp: { kind: 'runtime-default', localhostRef: '' } }), undefined, 'privileged: none');
  const mine: LinuxSeccomp = { defaultAction: 'SCMP_ACT_LOG' };
  assert.equal(sc({ seccomp: { kind: 'localhost', localhostRef: '/p.json' } }, { seccompProfile: mine }), mine);
  assert.match(fails('INVALID_ARGUMENT', () => sc({ seccomp: { kind: 'localhost', localhostRef: '/p.json' } })), /Localhost seccomp profile "\/p\.json" was not loaded/);
  // The profile follows the container's capabilities.
  const withAdmin = sc({ seccomp: { kind: 'runtime-default', localhostRef: '' }, capabilities: { add: ['SYS_ADMIN'], drop: [], addAmbient: [] } });
  assert.ok(allowedNames(withAdmin).has('mount'));
  assert.ok(!allowedNames(rd).has('mount'));
});

function allowedNames(p: LinuxSeccomp | undefined): Set<string> {
  return new Set((p?.syscalls ?? []).filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args).flatMap((s) => s.names));
}

test('RuntimeDefault profile policy', () => {
  const base = runtimeDefaultSeccomp({ capabilities: DEFAULT_CAPABILITIES, arch: 'arm64' });
  assert.deepEqual(base.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  assert.deepEqual(runtimeDefaultSeccomp({ arch: 'riscv64' }).architectures, []);
  const allowed = allowedNames(base);
  for (const n of ['read', 'write', 'openat', 'execve', 'futex', 'socket', 'ptrace']) assert.ok(allowed.has(n), n);
  for (const n of [...ALWAYS_DENIED, 'mount', 'umount2', 'pivot_root', 'unshare', 'clone', 'setns', 'open_by_handle_at']) assert.ok(!allowed.has(n), `${n} must not be allowed`);
  assert.ok(allowed.has('chroot'), 'SYS_CHROOT is a default capability');
  const clone = base.syscalls?.find((s) => s.names.includes('clone'));
  assert.deepEqual(clone?.args, [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
  const unshare = base.syscalls?.find((s) => s.names.includes('unshare'));
  assert.equal((unshare?.args?.[0].value ?? 0) & 0x10000000, 0x10000000, 'CLONE_NEWUSER is masked');
  assert.deepEqual(base.syscalls?.find((s) => s.names.includes('clone3')), { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  assert.equal(base.syscalls?.filter((s) => s.names.includes('personality')).length, 5);

  const admin = runtimeDefaultSeccomp({ capabilities: [...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'] });
  const adminAllowed = allowedNames(admin);
  for (const n of ['mount', 'umount2', 'unshare', 'clone', 'clone3', 'setns']) assert.ok(adminAllowed.has(n), n);
  for (const n of ALWAYS_DENIED) assert.ok(!adminAllowed.has(n), n);
  assert.ok(!admin.syscalls?.some((s) => s.args && s.names.includes('clone')));
  assert.ok(!allowedNames(runtimeDefaultSeccomp({ capabilities: [] })).has('chroot'));
});

test('Localhost seccomp profiles: Docker format, filters, validation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-seccomp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const docker = {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    archMap: [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    ],
    syscalls: [
      { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
      { name: 'getpid', action: 'SCMP_ACT_ALLOW' },
      { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }], excludes: { caps: ['CAP_SYS_ADMIN'] } },
      { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
      { names: ['ptrace'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
      { names: ['newer'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '99.0' } },
    ],
  };
  const file = join(dir, 'profile.json');
  writeFileSync(file, JSON.stringify(docker));
  const p = await loadLocalhostProfile(file, { arch: 'x64', kernel: '6.1.0-18-amd64', capabilities: ['CAP_CHOWN'] });
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  assert.deepEqual(p.syscalls?.map((s) => s.names.join(',')), ['read,write', 'getpid', 'clone', 'arch_prctl', 'ptrace']);
  assert.equal(p.defaultErrnoRet, 1);
  const arm = parseSeccompProfile(JSON.stringify(docker), 'x', { arch: 'arm64', kernel: '4.4', capabilities: ['CAP_SYS_ADMIN'] });
  assert.deepEqual(arm.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  assert.deepEqual(arm.syscalls?.map((s) => s.names.join(',')), ['read,write', 'getpid', 'mount']);

  const oci = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['reboot'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] };
  assert.deepEqual(parseSeccompProfile(JSON.stringify(oci), 'o'), oci);

  writeFileSync(join(dir, 'bad.json'), '{"defaultAction":');
  const bad = async (name: string, text?: string) => {
    if (text !== undefined) writeFileSync(join(dir, name), text);
    try {
      await loadLocalhostProfile(name.startsWith('/') || name.startsWith('rel') ? name : join(dir, name));
    } catch (err) {
      assert.ok(isCrispError(err, 'INVALID_ARGUMENT'), String(err));
      return err.message;
    }
    assert.fail(`${name} was accepted`);
  };
  assert.match(await bad('bad.json'), new RegExp(`seccomp profile ${join(dir, 'bad.json')}: invalid JSON`));
  assert.match(await bad('/nonexistent/crisp-profile.json'), /seccomp profile \/nonexistent\/crisp-profile\.json: cannot read it/);
  assert.match(await bad('relative.json'), /must be absolute/);
  assert.match(await bad('a.json', '{"defaultAction":"SCMP_ACT_NOPE"}'), /a\.json: defaultAction "SCMP_ACT_NOPE" is not a seccomp action/);
  assert.match(await bad('b.json', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":9,"value":0,"op":"SCMP_CMP_EQ"}]}]}'), /syscalls\[0\]\.args\[0\]\.index must be 0\.\.5/);
  assert.match(await bad('c.json', '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}'), /both set/);
  assert.match(await bad('d.json', '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}'), /SCMP_ARCH_Z80/);
  assert.match(await bad('e.json', '{"defaultAction":"SCMP_ACT_NOTIFY"}'), /listenerPath/);
  assert.match(await bad('f.json', '[]'), /top level must be a JSON object/);
});

test('annotations: CRI ones plus containerd keys (which cannot be spoofed)', () => {
  const s = build({
    spec: fakeSpec({ annotations: { 'example.com/a': '1', 'io.kubernetes.cri.sandbox-id': 'spoof' } }),
    imageName: 'docker.io/library/busybox@sha256:abc',
  });
  assert.deepEqual(s.annotations, {
    'example.com/a': '1',
    'io.kubernetes.cri.container-type': 'container',
    'io.kubernetes.cri.container-name': 'app',
    'io.kubernetes.cri.sandbox-id': POD_ID,
    'io.kubernetes.cri.sandbox-name': 'web',
    'io.kubernetes.cri.sandbox-namespace': 'default',
    'io.kubernetes.cri.sandbox-uid': 'uid-1',
    'io.kubernetes.cri.image-name': 'docker.io/library/busybox@sha256:abc',
  });
  assert.equal(build().annotations?.['io.kubernetes.cri.image-name'], 'docker.io/library/busybox:latest');
});

test('the spec is plain JSON and the builder is pure', () => {
  const i = input({ spec: fakeSpec({ mounts: [criMount('/x')], envs: [{ key: 'A', value: 'b' }] }) });
  const before = JSON.stringify(i);
  const a = buildOciSpec(i);
  assert.equal(JSON.stringify(i), before, 'input untouched');
  assert.deepEqual(JSON.parse(JSON.stringify(a)), a);
  assert.deepEqual(buildOciSpec(i), a, 'deterministic');
});

// ---- stop signal ----------------------------------------------------------------------------------

test('stop signal: CRI, then image, then SIGTERM, normalised', () => {
  const img = fakeImage({ Cmd: ['x'], StopSignal: 'SIGQUIT' });
  assert.equal(stopSignalFor(fakeSpec({ stopSignal: 'int' }), img), 'SIGINT');
  assert.equal(stopSignalFor(fakeSpec(), img), 'SIGQUIT');
  assert.equal(stopSignalFor(fakeSpec(), img.config), 'SIGQUIT', 'accepts the config details too');
  assert.equal(stopSignalFor(fakeSpec(), fakeImage()), 'SIGTERM');
  assert.equal(stopSignalFor(fakeSpec(), undefined), 'SIGTERM');
  assert.equal(stopSignalFor(fakeSpec(), fakeImage({ StopSignal: '9' })), 'SIGKILL');
  assert.equal(normaliseSignal('rtmin+3'), 'SIGRTMIN+3');
  assert.equal(normaliseSignal('SIGRTMAX'), 'SIGRTMIN+30');
  assert.equal(normaliseSignal('37'), 'SIGRTMIN+3');
  assert.equal(normaliseSignal('SIGIOT'), 'SIGABRT');
  assert.equal(signalNumberOf('SIGRTMIN+3'), 37);
  assert.equal(signalNumberOf('term'), 15);
  assert.match(fails('INVALID_ARGUMENT', () => normaliseSignal('SIGNOPE')), /unknown signal "SIGNOPE"/);
  assert.match(fails('INVALID_ARGUMENT', () => normaliseSignal('0')), /unknown signal/);
  assert.match(fails('INVALID_ARGUMENT', () => normaliseSignal('SIGRTMIN+31')), /unknown signal/);
});

test('hugetlbPresent: a v1 hierarchy carrying hugetlb, or hugetlb among the v2 root controllers', () => {
  const line = (fs: string, point: string, opts: string) => `35 25 0:30 / ${point} rw,nosuid shared:9 - ${fs} cgroup ${opts}`;
  const hybridWithout = [
    line('cgroup', '/sys/fs/cgroup/memory', 'rw,memory'),
    line('cgroup', '/sys/fs/cgroup/systemd', 'rw,xattr,name=systemd'),
    line('cgroup2', '/sys/fs/cgroup/unified', 'rw,nsdelegate'),
  ].join('\n');
  assert.equal(hugetlbPresent(false, hybridWithout, ''), false);
  assert.equal(hugetlbPresent(false, `${hybridWithout}\n${line('cgroup', '/sys/fs/cgroup/hugetlb', 'rw,hugetlb')}`, ''), true);
  assert.equal(hugetlbPresent(false, line('tmpfs', '/sys/fs/cgroup/hugetlb', 'rw,hugetlb'), ''), false, 'only a cgroup mount counts');
  assert.equal(hugetlbPresent(true, '', 'cpuset cpu io memory hugetlb pids rdma misc\n'), true);
  assert.equal(hugetlbPresent(true, '', 'cpuset cpu io memory pids\n'), false);
});

test('an update sets what it names and keeps the rest (crictl update --memory sends the other fields as zero)', () => {
  const current: ResourceSpec = {
    ...noResources(),
    cpuPeriod: 100_000,
    cpuQuota: 50_000,
    memoryLimitInBytes: 64 << 20,
    oomScoreAdj: 500,
    cpusetCpus: '0',
    hugepageLimits: [{ pageSize: '2MB', limit: 0 }, { pageSize: '1GB', limit: 0 }],
    unified: { 'memory.high': '100' },
  };
  const merged = mergeResourceUpdate(current, { ...noResources(), memoryLimitInBytes: 128 << 20, cpuQuota: -1, oomScoreAdj: 0, hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }], unified: { 'cpu.idle': '1' } });
  assert.deepEqual(merged, {
    ...current,
    cpuQuota: -1, // -1 (no limit) is a value, not "unset"
    memoryLimitInBytes: 128 << 20,
    hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }, { pageSize: '1GB', limit: 0 }],
    unified: { 'memory.high': '100', 'cpu.idle': '1' },
  });
  assert.deepEqual(mergeResourceUpdate(current, noResources()), current);
});

test('the stored OCI resources take an update controller by controller', () => {
  const current = { devices: [{ allow: false, access: 'rwm' }], cpu: { quota: 50_000, period: 100_000 }, memory: { limit: 64 }, hugepageLimits: [{ pageSize: '2MB', limit: 0 }] };
  const merged = mergeLinuxResources(current, { cpu: { shares: 512 }, memory: { limit: 128 }, hugepageLimits: [{ pageSize: '1GB', limit: 0 }], pids: { limit: 10 } });
  assert.deepEqual(merged, {
    devices: [{ allow: false, access: 'rwm' }],
    cpu: { quota: 50_000, period: 100_000, shares: 512 },
    memory: { limit: 128 },
    hugepageLimits: [{ pageSize: '2MB', limit: 0 }, { pageSize: '1GB', limit: 0 }],
    pids: { limit: 10 },
  });
  assert.deepEqual(current.cpu, { quota: 50_000, period: 100_000 }, 'the current value is not changed in place');
});
