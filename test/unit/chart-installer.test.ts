// charts/crisp/files/install.sh (the DaemonSet's init container) run against a fake node: nsenter,
// apt-get, dpkg-query, dpkg-deb and systemctl are stand-ins that log their calls and keep the node's
// package state in a temp dir; the config check is the real one (node + this build's
// daemon/config.js), the config is the chart's (rendered by the test renderer). Checks what it installs,
// when it restarts crisp.service, that a refused or failing config never stays, and what it leaves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HelmChart } from '../lib/helm-render.js';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);
const SCRIPT = join(REPO, 'charts', 'crisp', 'files', 'install.sh');

let dir: string;
let chart: HelmChart;

const FAKES: Record<string, string> = {
  // host() runs `nsenter --target 1 --mount -- CMD...`: here CMD runs as it is (same filesystem).
  nsenter: 'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"',
  test: '[ -e "$NODE/no-systemd" ] && exit 1; exit 0',
  'dpkg-deb': '[ "$1" = --field ] && [ "$3" = Version ] || exit 2; cat "$NODE/image-version"',
  'dpkg-query': '[ -e "$NODE/installed" ] || { echo "dpkg-query: no packages found matching crisp" >&2; exit 1; }; printf "installed %s" "$(cat "$NODE/installed")"',
  'apt-get': [
    'echo "apt-get $*" >> "$NODE/calls"',
    'case " $* " in *" install "*) ;; *) exit 0 ;; esac',
    'for a; do deb=$a; done',
    '[ -f "$deb" ] || { echo "E: $deb missing" >&2; exit 100; }',
    '[ -e "$NODE/refuse-install" ] && { echo "E: Packages were downgraded and -y was used without --allow-downgrades." >&2; exit 100; }',
    // what the package's postinst does on a first install: the commented example config, start the unit
    '[ -e "$CONFIG_DIR/config.toml" ] || printf "# every key commented out\\n# socket = \\"/run/crisp/crisp.sock\\"\\n" > "$CONFIG_DIR/config.toml"',
    'cp "$NODE/image-version" "$NODE/installed"',
    'echo "postinst start crisp.service" >> "$NODE/calls"',
  ].join('\n'),
  systemctl: [
    'echo "systemctl $*" >> "$NODE/calls"',
    // crispd refuses to come up when the config says log_level = "trace" (stands for any start failure)
    '[ "$1" = restart ] && grep -q "log_level = \\"trace\\"" "$CONFIG_DIR/config.toml" && exit 1',
    'exit 0',
  ].join('\n'),
};

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  calls: string[];
}

function runInstaller(config: string | undefined, extraEnv: Record<string, string> = {}): Run {
  writeFileSync(join(dir, 'chart-config.toml'), config ?? '');
  writeFileSync(join(dir, 'calls'), '');
  const res = spawnSync('sh', [SCRIPT], {
    encoding: 'utf8',
    env: {
      PATH: `${join(dir, 'bin')}:${process.env.PATH}`,
      NODE: dir,
      CRISP_DEB: join(dir, 'image', 'crisp_*.deb'),
      STAGE_DIR: join(dir, 'stage'),
      HOST_STAGE_DIR: join(dir, 'stage'),
      CONFIG_DIR: join(dir, 'etc-crisp'),
      CONFIG_SOURCE: config === undefined ? '' : join(dir, 'chart-config.toml'),
      HOST_CRISP_LIB: join(REPO),
      APT_UPDATE: '1',
      APT_LOCK_TIMEOUT: '7',
      ...extraEnv,
    },
  });
  const calls = readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter(Boolean);
  return { status: res.status, stdout: res.stdout, stderr: res.stderr, calls };
}

const nodeConfig = () => readFileSync(join(dir, 'etc-crisp', 'config.toml'), 'utf8');
const chartConfig = (config: Record<string, unknown> = {}) => chart.include('crisp.configToml', { values: { config } });

before(() => {
  chart = new HelmChart(join(REPO, 'charts', 'crisp'));
  dir = mkdtempSync('/tmp/crisp-chart-installer-');
  for (const d of ['bin', 'image', 'stage', 'etc-crisp/certs.d/registry.example']) mkdirSync(join(dir, d), { recursive: true });
  for (const [name, body] of Object.entries(FAKES)) {
    writeFileSync(join(dir, 'bin', name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, 'bin', name), 0o755);
  }
  writeFileSync(join(dir, 'image', 'crisp_0.1.0_amd64.deb'), 'not really a deb');
  writeFileSync(join(dir, 'image-version'), '0.1.0');
  writeFileSync(join(dir, 'etc-crisp', 'certs.d', 'registry.example', 'hosts.toml'), 'server = "https://registry.example"\n');
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('a node without crisp: apt-get installs the staged package, the chart config replaces the example (kept), one restart', () => {
  const r = runInstaller(chartConfig());
  assert.equal(r.status, 0, r.stderr);
  const stage = join(dir, 'stage');
  assert.deepEqual(r.calls, [
    'apt-get -o DPkg::Lock::Timeout=7 update -qq',
    `apt-get -o DPkg::Lock::Timeout=7 install -y --no-install-recommends ${stage}/crisp_0.1.0.deb`,
    'postinst start crisp.service',
    'systemctl restart crisp.service',
  ]);
  assert.equal(nodeConfig(), chartConfig());
  assert.match(readFileSync(join(dir, 'etc-crisp', 'config.toml.before-chart'), 'utf8'), /every key commented out/);
  assert.deepEqual(readdirSync(stage), [], 'the staged package and config copies are gone');
  assert.match(r.stdout, /crisp-installer: installing crisp 0\.1\.0 \(node has: nothing\)/);
});

test('the same version and config again: nothing installed, nothing restarted (start is a no-op on a running unit)', () => {
  const r = runInstaller(chartConfig());
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.calls, ['systemctl start crisp.service']);
  assert.match(r.stdout, /crisp 0\.1\.0 is installed/);
  assert.match(r.stdout, /config\.toml is up to date/);
});

test('a new config restarts crisp once; the node\'s original file stays in config.toml.before-chart', () => {
  const r = runInstaller(chartConfig({ log_level: 'debug' }));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.calls, ['systemctl restart crisp.service']);
  assert.match(nodeConfig(), /^log_level = "debug"$/m);
  assert.match(readFileSync(join(dir, 'etc-crisp', 'config.toml.before-chart'), 'utf8'), /every key commented out/);
});

test('a config the node\'s crisp refuses is never put in place and nothing restarts', () => {
  const before = nodeConfig();
  const r = runInstaller(chartConfig({ cgroup_driver: 'cgroupv3' }));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /config key "cgroup_driver": "cgroupv3" is not one of cgroupfs, systemd/);
  assert.match(r.stderr, /the node's crisp refuses the chart's config/);
  assert.deepEqual(r.calls, []);
  assert.equal(nodeConfig(), before);
  assert.deepEqual(readdirSync(join(dir, 'stage')), []);
});

test('a config crisp.service does not start with is rolled back and crisp restarted with the previous one', () => {
  const before = nodeConfig();
  const r = runInstaller(chartConfig({ log_level: 'trace' }));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /crisp\.service did not start with the new config; the previous config\.toml is back/);
  assert.deepEqual(r.calls, ['systemctl restart crisp.service', 'systemctl restart crisp.service']);
  assert.equal(nodeConfig(), before);
  assert.deepEqual(readdirSync(join(dir, 'stage')), []);
});

test('a refused package (e.g. a downgrade) fails the pod and leaves no staged file; writeConfig off leaves the config alone', () => {
  writeFileSync(join(dir, 'image-version'), '0.0.9');
  writeFileSync(join(dir, 'refuse-install'), '');
  const before = nodeConfig();
  const r = runInstaller(undefined, { APT_UPDATE: '0' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /apt-get install of crisp 0\.0\.9 failed on the node/);
  assert.deepEqual(readdirSync(join(dir, 'stage')), []);
  assert.equal(readFileSync(join(dir, 'installed'), 'utf8'), '0.1.0');
  rmSync(join(dir, 'refuse-install'));
  writeFileSync(join(dir, 'image-version'), '0.1.0');
  const ok = runInstaller(undefined);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(nodeConfig(), before);
});

test('a node without systemd or with two packages in the image is refused before anything is touched; other files under /etc/crisp stay', () => {
  writeFileSync(join(dir, 'no-systemd'), '');
  const r = runInstaller(chartConfig({ log_level: 'warn' }));
  rmSync(join(dir, 'no-systemd'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /the node does not run systemd/);
  writeFileSync(join(dir, 'image', 'crisp_0.2.0_amd64.deb'), '');
  const two = runInstaller(chartConfig({ log_level: 'warn' }));
  rmSync(join(dir, 'image', 'crisp_0.2.0_amd64.deb'));
  assert.equal(two.status, 1);
  assert.match(two.stderr, /expected one package matching .*crisp_\*\.deb in the image/);
  assert.deepEqual(two.calls, []);
  assert.doesNotMatch(nodeConfig(), /warn/);
  assert.ok(existsSync(join(dir, 'etc-crisp', 'certs.d', 'registry.example', 'hosts.toml')));
});
