import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCdiRegistry } from '../../sandbox/containers/cdi.js';
import { isCrispError } from '../../common/errors.js';

test('CDI specs are read from JSON and YAML files (yaml loads on the first YAML spec)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-cdi-'));
  try {
    writeFileSync(join(dir, 'a.json'), JSON.stringify({ cdiVersion: '0.6.0', kind: 'vendor.test/json', devices: [{ name: 'd0', containerEdits: { env: ['J=1'] } }] }));
    writeFileSync(
      join(dir, 'b.yaml'),
      ['cdiVersion: 0.6.0', 'kind: vendor.test/yaml', 'containerEdits:', '  env: [COMMON=1]', 'devices:', '  - name: d1', '    containerEdits:', '      env: [Y=1]', ''].join('\n'),
    );
    const registry = await loadCdiRegistry([dir, join(dir, 'absent')]);
    assert.deepEqual([...registry.keys()].sort(), ['vendor.test/json=d0', 'vendor.test/yaml=d1']);
    const y = registry.get('vendor.test/yaml=d1')!;
    assert.equal(y.file, join(dir, 'b.yaml'));
    assert.deepEqual(y.spec, { env: ['COMMON=1'] });
    assert.deepEqual(y.device, { env: ['Y=1'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a YAML CDI spec that does not parse is INVALID_ARGUMENT naming the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-cdi-'));
  try {
    writeFileSync(join(dir, 'bad.yml'), 'kind: [unclosed\n');
    await assert.rejects(loadCdiRegistry([dir]), (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && err.message.includes(join(dir, 'bad.yml')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
