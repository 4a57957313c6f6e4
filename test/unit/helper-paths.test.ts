// Where crispd finds crisp-nshelper and crisp-logger: config key, else the source checkout's
// native/build/, else the package's /usr/libexec/crisp/; a missing or non-executable helper stops the
// start naming its key.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkHelper, defaultHelperPath, helperPath, useHelperPath } from '../../native/helper-paths.js';
import { resolveConfig } from '../../daemon/config.js';
import { isCrispError } from '../../common/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-helpers-'));
after(() => {
  useHelperPath('crisp-nshelper', '');
  rmSync(dir, { recursive: true, force: true });
});

test('default: the build tree when it has the helper, else /usr/libexec/crisp', () => {
  const moduleDir = '/src/crisp/dist/native';
  assert.equal(defaultHelperPath('crisp-logger', (p) => p === '/src/crisp/native/build/crisp-logger', moduleDir), '/src/crisp/native/build/crisp-logger');
  // Running from the sources (native/): native/build next to them.
  assert.equal(defaultHelperPath('crisp-nshelper', (p) => p === '/src/crisp/native/build/crisp-nshelper', '/src/crisp/native'), '/src/crisp/native/build/crisp-nshelper');
  // The installed layout: /usr/lib/crisp/dist/native has no native/build beside it.
  assert.equal(defaultHelperPath('crisp-logger', () => false, '/usr/lib/crisp/dist/native'), '/usr/libexec/crisp/crisp-logger');
  assert.equal(defaultHelperPath('crisp-nshelper', () => false, '/usr/lib/crisp/dist/native'), '/usr/libexec/crisp/crisp-nshelper');
  assert.equal(defaultHelperPath('crisp-untar', () => false, '/usr/lib/crisp/dist/native'), '/usr/libexec/crisp/crisp-untar');
  assert.equal(defaultHelperPath('crisp-untar', (p) => p === '/src/crisp/native/build/crisp-untar', moduleDir), '/src/crisp/native/build/crisp-untar');
});

test('a configured path wins; "" goes back to the default; relative paths are refused naming the key', () => {
  useHelperPath('crisp-nshelper', '/opt/crisp/nsh');
  assert.equal(helperPath('crisp-nshelper'), '/opt/crisp/nsh');
  useHelperPath('crisp-nshelper', '');
  assert.equal(helperPath('crisp-nshelper'), defaultHelperPath('crisp-nshelper'));
  assert.throws(() => useHelperPath('crisp-nshelper', 'nsh'), /config key "nshelper_path": must be an absolute path/);
  assert.throws(() => resolveConfig({ logger_path: 'build/crisp-logger' }), (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && /"logger_path"/.test(err.message));
  assert.equal(resolveConfig({ logger_path: '/usr/local/libexec/crisp-logger' }).logger_path, '/usr/local/libexec/crisp-logger');
  assert.equal(resolveConfig({}).nshelper_path, '');
});

test('checkHelper: an executable file passes; missing, non-executable or a directory fails naming the key', () => {
  const exe = join(dir, 'crisp-logger');
  writeFileSync(exe, '#!/bin/sh\n');
  chmodSync(exe, 0o755);
  assert.equal(checkHelper('crisp-logger', exe), exe);
  const plain = join(dir, 'plain');
  writeFileSync(plain, '');
  chmodSync(plain, 0o644);
  // root passes access(X_OK) only when some execute bit is set, so 0644 fails for root too.
  assert.throws(() => checkHelper('crisp-logger', plain), /config key "logger_path": crisp-logger at .*plain is not an executable file: EACCES/);
  assert.throws(() => checkHelper('crisp-nshelper', join(dir, 'absent')), /config key "nshelper_path": .* ENOENT/);
  assert.throws(() => checkHelper('crisp-nshelper', dir), /config key "nshelper_path": .*not a regular file/);
});
