// Merging adjustments and updates from several plugins: ownership, conflicts naming both plugins,
// removal markers, accumulated hooks, the args take-over, ignore_failure and the update rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdjustmentMerger, UpdateMerger } from '../../nri/host/merge.js';
import { ConflictError, Field, Ownership } from '../../nri/host/owners.js';

const ID = 'ctr-1';

function conflictOf(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConflictError, `expected a ConflictError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a conflict');
}

test('annotations: set, conflict, removal markers and remove-then-set by the same plugin', () => {
  const m = new AdjustmentMerger(ID);
  m.add({ annotations: { a: '1', b: '2' } }, '10-one');
  assert.equal(conflictOf(() => m.add({ annotations: { a: 'x' } }, '20-two')), 'plugins "20-two" and "10-one" both tried to set Annotations a');

  const r = new AdjustmentMerger(ID);
  r.add({ annotations: { keep: '1', gone: '2' } }, '10-one');
  // Removing never conflicts; the remover becomes the owner.
  r.add({ annotations: { '-gone': '' } }, '20-two');
  assert.deepEqual(r.merged.annotations, { keep: '1', '-gone': '' });
  assert.equal(r.owners.owner(ID, { field: Field.Annotations, key: 'gone' }), '-20-two');
  // A third plugin may not set what another one removed...
  assert.equal(conflictOf(() => r.add({ annotations: { gone: 'x' } }, '30-three')), 'plugins "30-three" and "20-two" both tried to set Annotations gone');

  // ...but the remover may set it again in the same reply (the logger's -set-annotation does this).
  const s = new AdjustmentMerger(ID);
  s.add({ annotations: { '-note': '', note: 'new' } }, '10-logger');
  assert.deepEqual(s.merged.annotations, { '-note': '', note: 'new' });
  assert.equal(s.owners.owner(ID, { field: Field.Annotations, key: 'note' }), '10-logger');
});

test('keyed lists: mounts, env, devices, namespaces, rlimits, CDI devices', () => {
  const m = new AdjustmentMerger(ID);
  m.add(
    {
      mounts: [{ destination: '/a', source: '/x', type: 'bind' }],
      env: [{ key: 'A', value: '1' }],
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 10, soft: 10 }],
      CDIDevices: [{ name: 'vendor.com/gpu=0' }],
      linux: { devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }], namespaces: [{ type: 'network', path: '/n' }] },
    },
    '10-one',
  );
  m.add(
    {
      mounts: [{ destination: '-/a' }, { destination: '/b', source: '/y' }],
      env: [{ key: '-A' }, { key: 'B', value: '2' }],
      rlimits: [{ type: 'RLIMIT_NPROC', hard: 5, soft: 5 }],
      linux: { devices: [{ path: '-/dev/fuse' }], namespaces: [{ type: '-network' }] },
    },
    '20-two',
  );
  assert.deepEqual(m.merged.mounts.map((x) => x.destination), ['-/a', '/b']);
  assert.deepEqual(m.merged.env.map((x) => x.key), ['-A', 'B']);
  assert.deepEqual(m.merged.rlimits.map((x) => x.type), ['RLIMIT_NOFILE', 'RLIMIT_NPROC']);
  assert.deepEqual(m.merged.linux!.devices.map((d) => d.path), ['-/dev/fuse']);
  assert.deepEqual(m.merged.linux!.namespaces.map((n) => n.type), ['-network']);
  assert.equal(conflictOf(() => m.add({ env: [{ key: 'B', value: '3' }] }, '30-three')), 'plugins "30-three" and "20-two" both tried to set Env B');
  assert.equal(conflictOf(() => m.add({ mounts: [{ destination: '/b' }] }, '30-three')), 'plugins "30-three" and "20-two" both tried to set Mounts /b');
  assert.equal(conflictOf(() => m.add({ CDIDevices: [{ name: 'vendor.com/gpu=0' }] }, '30-three')), 'plugins "30-three" and "10-one" both tried to set CdiDevices vendor.com/gpu=0');
  assert.equal(
    conflictOf(() => m.add({ rlimits: [{ type: 'RLIMIT_NPROC' }] }, '30-three')),
    'plugins "30-three" and "20-two" both tried to set Rlimits RLIMIT_NPROC',
  );
});

test('the same plugin claiming one entry twice in a reply conflicts with itself', () => {
  const m = new AdjustmentMerger(ID);
  const msg = conflictOf(() =>
    m.add(
      {
        env: [
          { key: 'X', value: '1' },
          { key: 'X', value: '2' },
        ],
      },
      '10-one',
    ),
  );
  assert.equal(msg, 'plugins "10-one" and "10-one" both tried to set Env X');
});

test('hooks accumulate in plugin order and record every contributor', () => {
  const m = new AdjustmentMerger(ID);
  m.add({ hooks: { prestart: [{ path: '/bin/a' }] } }, '10-one');
  m.add({ hooks: { prestart: [{ path: '/bin/b' }], poststop: [{ path: '/bin/c' }] } }, '20-two');
  assert.deepEqual(m.merged.hooks!.prestart.map((h) => h.path), ['/bin/a', '/bin/b']);
  assert.deepEqual(m.merged.hooks!.poststop.map((h) => h.path), ['/bin/c']);
  assert.equal(m.owners.owner(ID, { field: Field.OciHooks }), '10-one,20-two');
});

test('args: a leading "" takes them over, otherwise a second plugin conflicts', () => {
  const m = new AdjustmentMerger(ID);
  m.add({ args: ['/bin/one'] }, '10-one');
  m.add({ args: ['', '/bin/two', '-v'] }, '20-two');
  assert.deepEqual(m.merged.args, ['/bin/two', '-v']);
  assert.equal(conflictOf(() => m.add({ args: ['/bin/three'] }, '30-three')), 'plugins "30-three" and "20-two" both tried to set Args');
});

test('simple linux fields and resources: presence claims, even for zero values', () => {
  const m = new AdjustmentMerger(ID);
  m.add(
    {
      linux: {
        oomScoreAdj: { value: 0 },
        cgroupsPath: '/custom',
        resources: { memory: { limit: { value: 100 } }, unified: { 'memory.high': '90' }, devices: [{ allow: true, type: 'c', access: 'r' }] },
      },
    },
    '10-one',
  );
  assert.deepEqual(m.merged.linux!.oomScoreAdj, { value: 0 });
  assert.equal(conflictOf(() => m.add({ linux: { oomScoreAdj: { value: 5 } } }, '20-two')), 'plugins "20-two" and "10-one" both tried to set OomScoreAdj');
  assert.equal(conflictOf(() => m.add({ linux: { cgroupsPath: '/x' } }, '20-two')), 'plugins "20-two" and "10-one" both tried to set CgroupsPath');
  assert.equal(conflictOf(() => m.add({ linux: { resources: { memory: { limit: { value: 1 } } } } }, '20-two')), 'plugins "20-two" and "10-one" both tried to set MemLimit');
  assert.equal(
    conflictOf(() => m.add({ linux: { resources: { unified: { 'memory.high': '1' } } } }, '20-two')),
    'plugins "20-two" and "10-one" both tried to set CgroupsUnified memory.high',
  );
  // Other unified keys, other fields and device rules do not conflict.
  m.add({ linux: { resources: { unified: { 'cpu.weight': '50' }, cpu: { shares: { value: 2 } }, devices: [{ allow: true, type: 'b', access: 'w' }] } } }, '20-two');
  assert.deepEqual(m.merged.linux!.resources!.unified, { 'memory.high': '90', 'cpu.weight': '50' });
  assert.equal(m.merged.linux!.resources!.devices.length, 2);
  assert.equal(m.merged.linux!.resources!.cpu!.shares!.value, 2);
  assert.equal(m.merged.linux!.resources!.memory!.limit!.value, 100);
});

test('rdt: remove clears ownership for the remover, parts are owned separately', () => {
  const m = new AdjustmentMerger(ID);
  m.add({ linux: { rdt: { closId: { value: 'gold' } } } }, '10-one');
  assert.equal(conflictOf(() => m.add({ linux: { rdt: { closId: { value: 'x' } } } }, '20-two')), 'plugins "20-two" and "10-one" both tried to set RdtClosID');
  m.add({ linux: { rdt: { schemata: { value: ['L3:0=f'] } } } }, '20-two');
  const r = new AdjustmentMerger(ID);
  r.add({ linux: { rdt: { remove: true, closId: { value: 'silver' } } } }, '10-one');
  assert.equal(r.merged.linux!.rdt!.remove, true);
  assert.equal(r.merged.linux!.rdt!.closId!.value, 'silver');
});

test('updates: merged per container, ignore_failure is an AND, conflicts are dropped only when ignorable', () => {
  const owners = new Ownership();
  const u = new UpdateMerger(owners, { creating: 'new' });
  u.add([{ containerId: 'c1', ignoreFailure: true, linux: { resources: { cpu: { shares: { value: 1 } } } } }], '10-one');
  u.add([{ containerId: 'c1', ignoreFailure: false, linux: { resources: { memory: { limit: { value: 2 } } } } }], '20-two');
  const c1 = u.get('c1')!;
  assert.equal(c1.ignoreFailure, false);
  assert.equal(c1.linux!.resources!.cpu!.shares!.value, 1);
  assert.equal(c1.linux!.resources!.memory!.limit!.value, 2);

  // Conflicting and ignorable: dropped and reported.
  u.add([{ containerId: 'c1', ignoreFailure: true, linux: { resources: { cpu: { shares: { value: 9 } } } } }], '30-three');
  assert.equal(u.get('c1')!.linux!.resources!.cpu!.shares!.value, 1);
  assert.deepEqual(u.ignored, [{ plugin: '30-three', containerId: 'c1', reason: 'plugins "30-three" and "10-one" both tried to set CPUShares' }]);
  // Conflicting and not ignorable: fails.
  assert.throws(() => u.add([{ containerId: 'c1', linux: { resources: { memory: { limit: { value: 3 } } } } }], '30-three'), /both tried to set MemLimit/);
  // Updating the container being created is an error.
  assert.throws(() => u.add([{ containerId: 'new' }], '40-four'), /plugin "40-four" tried to update container new while it is being created/);
  assert.deepEqual(u.list().map((x) => x.containerId), ['c1']);
  assert.deepEqual(u.list('c1'), []);
});

test('ownership encodes as OwningPlugins', () => {
  const m = new AdjustmentMerger(ID);
  m.add({ annotations: { a: '1' }, linux: { resources: { memory: { limit: { value: 1 } } } } }, '10-one');
  assert.deepEqual(m.owners.toProto(), {
    owners: { [ID]: { simple: { [String(Field.MemLimit)]: '10-one' }, compound: { [String(Field.Annotations)]: { owners: { a: '10-one' } } } } },
  });
});
