// crisp's AppArmor default profile: the kernel's loaded list is parsed right, and a parser that is
// missing or fails leaves RuntimeDefault without a profile instead of naming one that is not loaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import { defaultProfileText, ensureDefaultProfile, parseLoadedProfiles } from '../../sandbox/apparmor.js';
import { createLogger } from '../../common/logger.js';

test('the kernel profiles list: names with their modes stripped', () => {
  const loaded = parseLoadedProfiles('crisp-default (enforce)\n/usr/bin/man (complain)\nmy profile with spaces (enforce)\n\n');
  assert.deepEqual([...loaded], ['crisp-default', '/usr/bin/man', 'my profile with spaces']);
});

test('the default profile names itself and denies mounts and /proc, /sys writes', () => {
  const text = defaultProfileText('p1');
  assert.match(text, /^profile p1 flags=\(attach_disconnected,mediate_deleted\) \{$/m);
  assert.match(text, /deny mount,/);
  assert.match(text, /deny @\{PROC\}\/sysrq-trigger rwklx,/);
  assert.match(text, /signal \(send,receive\) peer=p1,/);
});

test('a parser that fails or is missing: not loaded, and a warning says why', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-aa-'));
  try {
    const failing = join(dir, 'parser');
    writeFileSync(failing, '#!/bin/sh\ncat >/dev/null\necho "cannot load" >&2\nexit 1\n', { mode: 0o755 });
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const log = createLogger('warn', sink);
    assert.equal(await ensureDefaultProfile(log, failing), false);
    assert.equal(await ensureDefaultProfile(log, join(dir, 'absent')), false);
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /could not be loaded/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
