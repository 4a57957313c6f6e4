// scripts/setup.sh's CNI step (--cni-only, CNI_CONF_DIR): a network is added only to a conf dir that
// has none, and no existing file is ever overwritten. The package and build steps are checked
// statically (dpkg lock wait, systemd only when missing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);
const SETUP = join(REPO, 'scripts', 'setup.sh');
const isRoot = process.getuid?.() === 0;

function runCniStep(files: Record<string, string | { symlink: string }>): { out: string; code: number | null; dir: string; listing: string[]; read: (f: string) => string } {
  const dir = mkdtempSync('/tmp/crisp-setup-cni-');
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === 'string') writeFileSync(join(dir, name), content);
    else symlinkSync(content.symlink, join(dir, name));
  }
  const r = spawnSync('bash', [SETUP, '--cni-only'], { encoding: 'utf8', env: { ...process.env, CNI_CONF_DIR: dir } });
  const listing = readdirSync(dir).sort();
  const contents = Object.fromEntries(listing.map((f) => [f, (() => { try { return readFileSync(join(dir, f), 'utf8'); } catch { return ''; } })()]));
  rmSync(dir, { recursive: true, force: true });
  return { out: r.stdout + r.stderr, code: r.status, dir, listing, read: (f) => contents[f] ?? '' };
}

test('setup.sh parses', () => {
  assert.equal(spawnSync('bash', ['-n', SETUP]).status, 0);
});

test('an empty conf dir gets the default network; a second run leaves it alone', { skip: !isRoot && 'setup.sh runs as root' }, () => {
  const first = runCniStep({});
  assert.equal(first.code, 0, first.out);
  assert.deepEqual(first.listing, ['10-crisp.conflist']);
  const conf = JSON.parse(first.read('10-crisp.conflist')) as { name: string; plugins: { type: string; bridge?: string }[] };
  assert.equal(conf.name, 'crisp');
  assert.deepEqual(conf.plugins.map((p) => p.type), ['bridge', 'portmap']);
  assert.match(first.out, /writing default CNI network/);
  const again = runCniStep({ '10-crisp.conflist': 'mine' });
  assert.equal(again.code, 0);
  assert.equal(again.read('10-crisp.conflist'), 'mine', 'never overwritten');
  assert.match(again.out, /already has a CNI network; not adding one/);
});

test('any *.conf, *.conflist or *.json is a network: nothing is added beside it', { skip: !isRoot && 'setup.sh runs as root' }, () => {
  for (const existing of ['87-flannel.conflist', '10-calico.conf', '99-other.json']) {
    const r = runCniStep({ [existing]: '{}' });
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(r.listing, [existing], existing);
    assert.equal(r.read(existing), '{}');
  }
  const dangling = runCniStep({ '10-crisp.conflist': { symlink: '/nonexistent/target' } });
  assert.deepEqual(dangling.listing, ['10-crisp.conflist'], 'a dangling symlink counts and is not written through');
  const unrelated = runCniStep({ README: 'x', 'net.conf.bak': 'y' });
  assert.deepEqual(unrelated.listing, ['10-crisp.conflist', 'README', 'net.conf.bak'], 'other names are not networks');
});

test('--no-cni writes nothing; unknown arguments are refused', { skip: !isRoot && 'setup.sh runs as root' }, () => {
  const dir = mkdtempSync('/tmp/crisp-setup-cni-');
  try {
    const r = spawnSync('bash', [SETUP, '--cni-only', '--no-cni'], { encoding: 'utf8', env: { ...process.env, CNI_CONF_DIR: dir } });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(dir), []);
    const bad = spawnSync('bash', [SETUP, '--bogus'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown argument --bogus/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('apt waits for the dpkg lock; systemd is among the packages installed only when missing', () => {
  const text = readFileSync(SETUP, 'utf8');
  const aptCalls = text.split('\n').filter((l) => /^\s*apt-get /.test(l));
  assert.equal(aptCalls.length, 2);
  for (const l of aptCalls) assert.match(l, /"\$\{apt_opts\[@\]\}"/, l);
  assert.match(text, /apt_opts=\(-o "DPkg::Lock::Timeout=\$apt_lock_timeout"\)/);
  assert.match(text, /packages=\([^)]*\bsystemd\)/s);
  assert.match(text, /dpkg-query -W -f='\$\{Status\}' "\$p"/, 'each package is checked with dpkg first');
  assert.doesNotMatch(text, /ls \/etc\/cni/, 'no ls glob check');
});
