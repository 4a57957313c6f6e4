// argv building and output parsing of the nshelper wrapper; no helper binary, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  idmapMountArgs,
  isNsHelperError,
  parseHelperFailure,
  parseIdmapSupport,
  parsePidnsOutput,
  parsePinOutput,
  pidnsArgs,
  pidnsStopArgs,
  pinArgs,
  probeIdmapArgs,
  sysctlArgs,
  unpinArgs,
  type IdMapping,
} from '../../native/nshelper.js';
import { isCrispError } from '../../common/errors.js';

const isInvalid = (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT');

test('pinArgs: plain namespaces with hostname', () => {
  assert.deepEqual(pinArgs({ dir: '/run/p/1', net: true, ipc: true, uts: true, hostname: 'web-0' }), [
    'pin', '--dir', '/run/p/1', '--net', '--ipc', '--uts', '--hostname', 'web-0',
  ]);
  assert.deepEqual(pinArgs({ dir: '/run/p/1', net: true }), ['pin', '--dir', '/run/p/1', '--net']);
});

test('pinArgs: shm asks the helper to mount the pod /dev/shm with a byte size', () => {
  assert.deepEqual(pinArgs({ dir: '/d', ipc: true, shm: { path: '/run/p/shm', sizeBytes: 67108864 } }), [
    'pin', '--dir', '/d', '--ipc', '--shm', '/run/p/shm', '--shm-size', '67108864',
  ]);
  assert.throws(() => pinArgs({ dir: '/d', ipc: true, shm: { path: 'rel', sizeBytes: 1 } }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', ipc: true, shm: { path: '/s', sizeBytes: 0 } }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', ipc: true, shm: { path: '/s', sizeBytes: 1.5 } }), isInvalid);
});

test('pinArgs: loopbackUp asks the helper to set lo up, and needs a net namespace', () => {
  assert.deepEqual(pinArgs({ dir: '/d', net: true, loopbackUp: true }), ['pin', '--dir', '/d', '--net', '--lo-up']);
  assert.throws(() => pinArgs({ dir: '/d', ipc: true, loopbackUp: true }), isInvalid);
});

test('pinArgs: user namespace maps become "C H L,C H L"', () => {
  const uid: IdMapping[] = [
    { containerId: 0, hostId: 100000, length: 65536 },
    { containerId: 65536, hostId: 300000, length: 1 },
  ];
  const gid: IdMapping[] = [{ containerId: 0, hostId: 200000, length: 65536 }];
  assert.deepEqual(pinArgs({ dir: '/d', net: true, user: { uidMappings: uid, gidMappings: gid } }), [
    'pin', '--dir', '/d', '--user', '--uid-map', '0 100000 65536,65536 300000 1', '--gid-map', '0 200000 65536', '--net',
  ]);
  // a user namespace alone is a valid request
  assert.deepEqual(pinArgs({ dir: '/d', user: { uidMappings: gid, gidMappings: gid } }).slice(3, 4), ['--user']);
});

test('pinArgs: refuses what the helper would refuse, before running it', () => {
  const ok: IdMapping = { containerId: 0, hostId: 100000, length: 65536 };
  const user = (r: IdMapping[]) => ({ uidMappings: r, gidMappings: [ok] });
  assert.throws(() => pinArgs({ dir: 'relative', net: true }), isInvalid);
  assert.throws(() => pinArgs({ dir: '', net: true }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d' }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', net: true, hostname: 'h' }), isInvalid, 'hostname without uts');
  assert.throws(() => pinArgs({ dir: '/d', uts: true, hostname: '' }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', uts: true, hostname: 'x'.repeat(65) }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', user: user([]) }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', user: user([{ ...ok, length: 0 }]) }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', user: user([{ ...ok, hostId: -1 }]) }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', user: user([{ ...ok, hostId: 1.5 }]) }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', user: user([{ ...ok, hostId: 2 ** 32 - 10 }]) }), isInvalid);
  assert.throws(() => pinArgs({ dir: '/d', user: user(Array(341).fill(ok)) }), isInvalid);
  assert.throws(
    () => pinArgs({ dir: '/d', user: { uidMappings: [ok], gidMappings: [{ ...ok, containerId: NaN }] } }),
    (err: unknown) => isInvalid(err) && /gidMappings/.test((err as Error).message),
  );
});

test('unpinArgs, idmapMountArgs, probeIdmapArgs', () => {
  assert.deepEqual(unpinArgs('/run/p/1'), ['unpin', '--dir', '/run/p/1']);
  assert.throws(() => unpinArgs('p/1'), isInvalid);
  assert.deepEqual(idmapMountArgs({ userns: '/p/user', src: '/a', dst: '/b' }), [
    'idmap-mount', '--userns', '/p/user', '--src', '/a', '--dst', '/b',
  ]);
  assert.deepEqual(idmapMountArgs({ userns: '/p/user', src: '/a', dst: '/b', recursive: true }).at(-1), '--recursive');
  assert.throws(() => idmapMountArgs({ userns: '/p/user', src: 'a', dst: '/b' }), isInvalid);
  assert.deepEqual(probeIdmapArgs('/var/lib/crisp/tmp'), ['probe-idmap', '--dir', '/var/lib/crisp/tmp']);
});

test('sysctlArgs: only given namespaces, KEY=VALUE in order, bad keys refused', () => {
  assert.deepEqual(
    sysctlArgs({ netns: '/p/net', utsns: '/p/uts' }, { 'net.ipv4.ip_forward': '1', 'kernel.domainname': 'x=y' }),
    ['sysctl', '--netns', '/p/net', '--utsns', '/p/uts', 'net.ipv4.ip_forward=1', 'kernel.domainname=x=y'],
  );
  assert.deepEqual(sysctlArgs({ ipcns: '/p/ipc' }, { 'kernel.shmmax': '1024' }), [
    'sysctl', '--ipcns', '/p/ipc', 'kernel.shmmax=1024',
  ]);
  assert.throws(() => sysctlArgs({}, { 'net.ipv4.ip_forward': '1' }), isInvalid);
  for (const key of ['net..ipv4', 'net/ipv4/ip_forward', '../x', 'net.ipv4.', 'kernel', 'a=b.c', ''])
    assert.throws(() => sysctlArgs({ netns: '/p/net' }, { [key]: '1' }), isInvalid, key);
  assert.throws(() => sysctlArgs({ netns: '/p/net' }, { 'net.a.b': 'x\0y' }), isInvalid);
});

test('parsePinOutput returns the asked paths and rejects incomplete output', () => {
  const opts = { dir: '/d', net: true, uts: true };
  assert.deepEqual(parsePinOutput('{"net":"/d/net","uts":"/d/uts"}\n', opts), { net: '/d/net', uts: '/d/uts' });
  const bad = (err: unknown) => isNsHelperError(err) && err.kind === 'INTERNAL' && err.subcommand === 'pin';
  assert.throws(() => parsePinOutput('{"net":"/d/net"}\n', opts), bad);
  assert.throws(() => parsePinOutput('', opts), bad);
  assert.throws(() => parsePinOutput('[1]', opts), bad);
});

test('parseIdmapSupport', () => {
  assert.deepEqual(parseIdmapSupport('{"idmap":true,"overlayOverIdmap":false,"reason":"mount overlay: Invalid argument"}\n'), {
    idmap: true,
    overlayOverIdmap: false,
    reason: 'mount overlay: Invalid argument',
  });
  assert.throws(() => parseIdmapSupport('{"idmap":"yes","overlayOverIdmap":false,"reason":""}'), isNsHelperError);
});

test('parseHelperFailure splits step and strerror at the last ": "', () => {
  assert.deepEqual(parseHelperFailure('crisp-nshelper: write uid_map: open /proc/7/uid_map: Permission denied\n'), {
    step: 'write uid_map: open /proc/7/uid_map',
    detail: 'Permission denied',
  });
  assert.deepEqual(parseHelperFailure('crisp-nshelper: usage: pin: --hostname needs --uts\n'), {
    step: 'usage',
    detail: 'pin: --hostname needs --uts',
  });
  assert.deepEqual(parseHelperFailure('noise\ncrisp-nshelper: unshare: Operation not permitted\n'), {
    step: 'unshare',
    detail: 'Operation not permitted',
  });
  assert.deepEqual(parseHelperFailure('Segmentation fault\n'), { step: 'Segmentation fault', detail: '' });
});

test('pidnsArgs: dir, optional userns and name', () => {
  assert.deepEqual(pidnsArgs({ dir: '/run/p/1' }), ['pidns', '--dir', '/run/p/1']);
  assert.deepEqual(pidnsArgs({ dir: '/run/p/1', userns: '/run/p/1/user', name: 'crisp-pidinit-3f2a' }), [
    'pidns', '--dir', '/run/p/1', '--userns', '/run/p/1/user', '--name', 'crisp-pidinit-3f2a',
  ]);
  assert.throws(() => pidnsArgs({ dir: 'p/1' }), isInvalid);
  assert.throws(() => pidnsArgs({ dir: '/p', userns: 'user' }), isInvalid);
  for (const name of ['', 'a b', 'x'.repeat(65), 'tab\t', 'é'])
    assert.throws(() => pidnsArgs({ dir: '/p', name }), isInvalid, JSON.stringify(name));
});

test('pidnsStopArgs: refuses pids that cannot be a pod init', () => {
  assert.deepEqual(pidnsStopArgs({ dir: '/run/p/1', pid: 4242 }), ['pidns-stop', '--dir', '/run/p/1', '--pid', '4242']);
  for (const pid of [1, 0, -5, 1.5, NaN, 2 ** 23])
    assert.throws(() => pidnsStopArgs({ dir: '/p', pid }), isInvalid, String(pid));
  assert.throws(() => pidnsStopArgs({ dir: 'p', pid: 42 }), isInvalid);
});

test('parsePidnsOutput', () => {
  assert.deepEqual(parsePidnsOutput('{"pid":4242,"path":"/p/pid"}\n'), { pid: 4242, path: '/p/pid' });
  const bad = (err: unknown) => isNsHelperError(err) && err.kind === 'INTERNAL' && err.subcommand === 'pidns';
  assert.throws(() => parsePidnsOutput('{"pid":"4242","path":"/p/pid"}'), bad);
  assert.throws(() => parsePidnsOutput('{"pid":1,"path":"/p/pid"}'), bad);
  assert.throws(() => parsePidnsOutput('{"pid":4242}'), bad);
  assert.throws(() => parsePidnsOutput(''), bad);
});
