// packaging/crisp.service: the settings crisp relies on (readiness, what a stop kills, limits, OOM score)
// and `systemd-analyze verify` on it where systemd is installed (package systemd on Debian).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);
const UNIT = join(REPO, 'packaging', 'crisp.service');

/** section → key → values (a key may repeat), comments and blank lines dropped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      current = new Map();
      sections.set(s[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(kv && current, `not a unit line: ${line}`);
    current.set(kv[1]!, [...(current.get(kv[1]!) ?? []), kv[2]!]);
  }
  return sections;
}

describe('crisp.service', () => {
  const unit = parseUnit(readFileSync(UNIT, 'utf8'));
  const get = (section: string, key: string) => unit.get(section)?.get(key);

  test('ordering, readiness and what a stop or restart may kill', () => {
    assert.deepEqual(get('Unit', 'After')?.join(' ').split(/\s+/).includes('network-online.target'), true);
    assert.deepEqual(get('Unit', 'Wants'), ['network-online.target']);
    assert.deepEqual(get('Service', 'Type'), ['notify'], 'READY=1 once the CRI socket answers');
    assert.deepEqual(get('Service', 'NotifyAccess'), ['all'], 'systemd-notify sends on crispd\'s behalf');
    assert.deepEqual(get('Service', 'ExecStart'), ['/usr/bin/crisp daemon']);
    assert.deepEqual(get('Service', 'KillMode'), ['process'], 'containerd, shims and containers survive a crispd restart');
    assert.deepEqual(get('Service', 'Delegate'), ['yes']);
    assert.deepEqual(get('Service', 'Restart'), ['always']);
    assert.deepEqual(get('Install', 'WantedBy'), ['multi-user.target']);
  });

  test('limits and OOM score', () => {
    assert.deepEqual(get('Service', 'LimitNOFILE'), ['1048576']);
    assert.deepEqual(get('Service', 'LimitNPROC'), ['infinity']);
    assert.deepEqual(get('Service', 'LimitCORE'), ['infinity']);
    assert.deepEqual(get('Service', 'TasksMax'), ['infinity']);
    assert.deepEqual(get('Service', 'OOMScoreAdjust'), ['-999']);
  });

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;
  test('systemd-analyze verify accepts it', { skip: analyze ? false : 'systemd-analyze is not installed (apt-get install systemd)' }, () => {
    // verify also checks that ExecStart exists: point it at a test-owned stand-in for /usr/bin/crisp.
    const dir = mkdtempSync('/tmp/crisp-unit-');
    after(() => rmSync(dir, { recursive: true, force: true }));
    const bin = join(dir, 'usr', 'bin', 'crisp');
    mkdirSync(join(dir, 'usr', 'bin'), { recursive: true });
    writeFileSync(bin, '#!/bin/sh\nexit 0\n');
    chmodSync(bin, 0o755);
    const copy = join(dir, 'crisp.service');
    const text = readFileSync(UNIT, 'utf8');
    assert.ok(text.includes('ExecStart=/usr/bin/crisp daemon'));
    writeFileSync(copy, text.replace('ExecStart=/usr/bin/crisp ', `ExecStart=${bin} `));
    const res = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', cwd: dir });
    const output = `${res.stdout}${res.stderr}`;
    assert.equal(res.status, 0, output);
    assert.doesNotMatch(output, /crisp\.service/, `no warning about the unit:\n${output}`);
  });
});
