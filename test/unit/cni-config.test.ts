import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverNetwork, listConfigFiles, notReadyMessage, parseNetworkConfig, compareCniVersions } from '../../cni/config.js';
import { defaultConflist, writeConflist } from '../../cni/default-conflist.js';
import { isCrispError } from '../../common/errors.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'crisp-unit-cni-config-'));
}

const list = (name: string, extra: object = {}) => JSON.stringify({ cniVersion: '1.0.0', name, plugins: [{ type: 'bridge' }], ...extra });

function parseError(file: string, text: string): string {
  try {
    parseNetworkConfig(file, text);
  } catch (err) {
    assert.ok(isCrispError(err, 'INVALID_ARGUMENT'));
    return err.message;
  }
  assert.fail(`${file} was accepted`);
}

test('validation errors name the file and the field', () => {
  assert.match(parseError('/d/a.conflist', '{"name":"n","plugins":[{"type":"x"}]}'), /^\/d\/a\.conflist: field "cniVersion" is missing$/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"x"}]}'), /a\.conflist: field "cniVersion": version "0\.2\.0" is not supported \(supported: 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}'), /a\.conflist: field "name" is missing/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"1.0.0","name":"bad name","plugins":[{"type":"x"}]}'), /field "name": "bad name" is not a valid network name/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"1.0.0","name":"n"}'), /a\.conflist: field "plugins" must be a non-empty array/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"1.0.0","name":"n","plugins":[]}'), /field "plugins" must be a non-empty array/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x"},{"mtu":1}]}'), /a\.conflist: field "plugins\[1\]\.type" is missing/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}'), /field "plugins\[0\]\.type": "\.\.\/\.\.\/bin\/sh" is not a valid plugin name/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x","capabilities":{"portMappings":"yes"}}]}'), /plugins\[0\]\.capabilities" must be an object of booleans/);
  assert.match(parseError('/d/a.conflist', '{"cniVersion":'), /^\/d\/a\.conflist: invalid JSON: /);
  assert.match(parseError('/d/a.conflist', '[]'), /a\.conflist: top level must be a JSON object/);
  assert.match(parseError('/d/b.conf', '{"cniVersion":"0.4.0","name":"n"}'), /b\.conf: field "\(top level\)\.type" is missing/);
});

test('a single-plugin .conf is wrapped into a list; list keys pass through', () => {
  const l = parseNetworkConfig('/d/10-x.conf', '{"cniVersion":"0.3.1","name":"n","type":"bridge","bridge":"br9"}');
  assert.deepEqual(l, { cniVersion: '0.3.1', name: 'n', plugins: [{ cniVersion: '0.3.1', name: 'n', type: 'bridge', bridge: 'br9' }] });
  const l2 = parseNetworkConfig('/d/10-x.conflist', list('n', { disableCheck: true }));
  assert.equal(l2.disableCheck, true);
});

test('discovery: sorted by name across extensions, lowest valid wins, invalid ones reported', async () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir, '05-broken.conflist'), '{ nope');
    writeFileSync(join(dir, '10-old.conflist'), JSON.stringify({ cniVersion: '0.1.0', name: 'old', plugins: [{ type: 'bridge' }] }));
    writeFileSync(join(dir, '20-good.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'good', type: 'bridge' }));
    writeFileSync(join(dir, '30-later.conflist'), list('later'));
    writeFileSync(join(dir, '00-ignored.txt'), list('txt'));
    writeFileSync(join(dir, '01-ignored.conflist.bak'), list('bak'));
    mkdirSync(join(dir, '02-dir.conflist'));

    assert.deepEqual(
      (await listConfigFiles(dir)).map((f) => f.slice(dir.length + 1)),
      ['05-broken.conflist', '10-old.conflist', '20-good.conf', '30-later.conflist'],
    );
    const d = await discoverNetwork(dir);
    assert.equal(d.network?.file, join(dir, '20-good.conf'));
    assert.equal(d.network?.list.name, 'good');
    assert.deepEqual(d.skipped.map((s) => s.file), [join(dir, '05-broken.conflist'), join(dir, '10-old.conflist')]);
    assert.match(d.skipped[0]!.reason, /05-broken\.conflist: invalid JSON/);
    assert.match(d.skipped[1]!.reason, /10-old\.conflist: field "cniVersion": version "0\.1\.0" is not supported/);

    // .json files count too, and byte order puts upper case first.
    writeFileSync(join(dir, '20-A.json'), list('json'));
    assert.equal((await discoverNetwork(dir)).network?.list.name, 'json');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('discovery: nothing valid gives a not-ready message listing why', async () => {
  const dir = tempDir();
  try {
    const none = await discoverNetwork(join(dir, 'missing'));
    assert.equal(none.network, undefined);
    assert.equal(notReadyMessage(none), `cni config uninitialized: no valid network config in ${join(dir, 'missing')}`);
    writeFileSync(join(dir, 'a.conflist'), '{"cniVersion":"1.0.0","name":"n","plugins":[]}');
    const d = await discoverNetwork(dir);
    assert.equal(d.network, undefined);
    assert.match(notReadyMessage(d), /no valid network config in .*\(skipped: .*a\.conflist: field "plugins" must be a non-empty array\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('versions compare numerically', () => {
  assert.ok(compareCniVersions('0.4.0', '0.3.1') > 0);
  assert.ok(compareCniVersions('0.10.0', '0.4.0') > 0);
  assert.equal(compareCniVersions('1.0.0', '1.0.0'), 0);
  assert.ok(compareCniVersions('1.0.0', '1.1.0') < 0);
});

test('default conflist: static subnet, or pod CIDR through ipRanges; never both', () => {
  const s = defaultConflist({ bridge: 'cni0abc', subnet: '10.201.3.0/24', dataDir: '/tmp/x' });
  assert.equal(s.cniVersion, '1.0.0');
  assert.equal(s.name, 'crisp');
  const [bridge, portmap] = s.plugins;
  assert.equal(bridge?.type, 'bridge');
  assert.equal(bridge?.bridge, 'cni0abc');
  assert.equal(bridge?.isGateway, true);
  assert.equal(bridge?.ipMasq, true);
  assert.equal(bridge?.hairpinMode, true);
  assert.equal(bridge?.capabilities, undefined);
  assert.deepEqual(bridge?.ipam, { type: 'host-local', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.201.3.0/24' }]], dataDir: '/tmp/x' });
  assert.deepEqual(portmap, { type: 'portmap', capabilities: { portMappings: true }, snat: true });
  assert.equal(s.plugins.length, 2);

  const d = defaultConflist({ bridge: 'cni1', name: 'pods', bandwidth: true, subnet: ['10.1.0.0/24', 'fd00::/64'] });
  assert.deepEqual((d.plugins[0]?.ipam as { routes: unknown }).routes, [{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
  assert.deepEqual(d.plugins[2], { type: 'bandwidth', capabilities: { bandwidth: true } });

  const r = defaultConflist({ bridge: 'cni2' });
  assert.deepEqual(r.plugins[0]?.capabilities, { ipRanges: true });
  assert.equal((r.plugins[0]?.ipam as { ranges?: unknown }).ranges, undefined);

  assert.throws(() => defaultConflist({ bridge: 'a-much-too-long-bridge' }), /bridge name/);
  assert.throws(() => defaultConflist({ bridge: 'ok', name: 'no spaces' }), /\(default conflist\): field "name"/);
});

test('writeConflist writes atomically a file discovery accepts', async () => {
  const dir = tempDir();
  try {
    const file = join(dir, 'net.d', '10-crisp.conflist');
    await writeConflist(file, defaultConflist({ bridge: 'cni9', subnet: '10.9.0.0/24' }));
    await writeConflist(file, defaultConflist({ bridge: 'cni9', subnet: '10.9.1.0/24' }));
    assert.deepEqual(readdirSync(join(dir, 'net.d')), ['10-crisp.conflist']);
    assert.equal(statSync(file).mode & 0o777, 0o644);
    assert.match(readFileSync(file, 'utf8'), /10\.9\.1\.0\/24/);
    const d = await discoverNetwork(join(dir, 'net.d'));
    assert.equal(d.network?.list.plugins[0]?.bridge, 'cni9');
    await assert.rejects(writeConflist(join(dir, 'x.conf'), defaultConflist({ bridge: 'b' })), /must end in \.conflist/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
