// packaging/debian/{postinst,prerm,postrm} run for real against fakes: the scripts' absolute paths
// (/usr/bin/deb-systemd-*, /run/systemd/system, /etc/crisp, /usr/share/crisp) are rewritten into a temp
// dir and systemctl comes first on PATH, each fake recording its argv. What dpkg would see: a first
// install starts crispd, an upgrade only try-restarts it (KillMode=process keeps containers), a removal
// stops it, nothing ever deletes state, and the config file is created once and kept when edited.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);
const root = mkdtempSync('/tmp/crisp-unit-maint-');
after(() => rmSync(root, { recursive: true, force: true }));

const bin = join(root, 'bin');
const calls = join(root, 'calls');
const etc = join(root, 'etc', 'crisp');
const share = join(root, 'share', 'crisp');
const systemdRun = join(root, 'run-systemd');
const state = join(root, 'var-lib-crisp');
mkdirSync(bin);
mkdirSync(share, { recursive: true });
mkdirSync(systemdRun);
mkdirSync(state);
writeFileSync(join(state, 'pod-record'), 'kept');
writeFileSync(join(share, 'config.toml.example'), '# every key commented out\n# socket = "/run/crisp/crisp.sock"\n');
for (const name of ['systemctl', 'deb-systemd-helper', 'deb-systemd-invoke']) {
  // Every fake succeeds: was-enabled answers as on a first install.
  writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> '${calls}'\nexit 0\n`);
  chmodSync(join(bin, name), 0o755);
}

function script(name: string): string {
  const text = readFileSync(join(REPO, 'packaging', 'debian', name), 'utf8')
    .replaceAll('/usr/bin/deb-systemd-', `${bin}/deb-systemd-`)
    .replaceAll('/run/systemd/system', systemdRun)
    .replaceAll('/etc/crisp', etc)
    .replaceAll('/usr/share/crisp', share);
  const path = join(root, name);
  writeFileSync(path, text);
  chmodSync(path, 0o755);
  return path;
}

function run(name: string, ...args: string[]): string[] {
  rmSync(calls, { force: true });
  const r = spawnSync('sh', [script(name), ...args], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin` } });
  assert.equal(r.status, 0, `${name} ${args.join(' ')}: ${r.stderr}`);
  return existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : [];
}

const actions = (lines: string[]) => lines.filter((l) => l.startsWith('deb-systemd-invoke ')).map((l) => l.slice('deb-systemd-invoke '.length));

test('first install: config created from the example, unit enabled and started', () => {
  const lines = run('postinst', 'configure');
  assert.equal(readFileSync(join(etc, 'config.toml'), 'utf8'), readFileSync(join(share, 'config.toml.example'), 'utf8'));
  assert.ok(lines.includes('deb-systemd-helper enable crisp.service'), lines.join('\n'));
  assert.deepEqual(actions(lines), ['start crisp.service']);
});

test('upgrade: prerm stops nothing, postinst try-restarts, an edited config stays', () => {
  writeFileSync(join(etc, 'config.toml'), 'log_level = "debug"\n');
  assert.deepEqual(actions(run('prerm', 'upgrade', '0.2.0')), []);
  const lines = run('postinst', 'configure', '0.1.0');
  assert.deepEqual(actions(lines), ['try-restart crisp.service'], 'restarted only if running; KillMode=process keeps containers');
  assert.ok(!lines.some((l) => / (stop|restart) crisp/.test(l.replace('try-restart', ''))), lines.join('\n'));
  assert.equal(readFileSync(join(etc, 'config.toml'), 'utf8'), 'log_level = "debug"\n');
});

test('remove and purge: crispd stopped on remove only; state never touched; edited config kept', () => {
  assert.deepEqual(actions(run('prerm', 'remove')), ['stop crisp.service']);
  assert.deepEqual(actions(run('postrm', 'remove')), []);
  assert.deepEqual(actions(run('postrm', 'purge')), []);
  assert.equal(readFileSync(join(state, 'pod-record'), 'utf8'), 'kept');
  assert.ok(existsSync(join(etc, 'config.toml')), 'an edited config survives purge');
  // An untouched (all comments) config goes with purge.
  writeFileSync(join(etc, 'config.toml'), readFileSync(join(share, 'config.toml.example')));
  run('postrm', 'purge');
  assert.ok(!existsSync(join(etc, 'config.toml')));
  assert.equal(readFileSync(join(state, 'pod-record'), 'utf8'), 'kept');
});

test('without systemd running (a container image build): no systemctl call at all', () => {
  rmSync(systemdRun, { recursive: true });
  try {
    const lines = run('postinst', 'configure', '0.1.0');
    assert.deepEqual(actions(lines), []);
    assert.ok(!lines.some((l) => l.startsWith('systemctl ')), lines.join('\n'));
  } finally {
    mkdirSync(systemdRun);
  }
});
