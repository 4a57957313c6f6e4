// examples/nri-ulimit-policy: reading the annotations (limits, environment, pod-wide vs per-container,
// the plugin's maximums) and the command line. The plugin against a real crispd: test/e2e/nri-ulimit-policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { containerPolicy, parseEnv, parseMaximums, parseUlimits, rlimitType, PolicyError } from '../../examples/nri-ulimit-policy/policy.js';

const MAIN = fileURLToPath(new URL('../../examples/nri-ulimit-policy/main.js', import.meta.url));
const A = 'ulimits.nri.crisp.io/container.app';

test('ulimits: TYPE=SOFT[:HARD] by ulimit or RLIMIT_ name, commas or newlines between entries', () => {
  assert.deepEqual(parseUlimits('nofile=1024:4096, nproc=512\n RLIMIT_CORE = 0 : 1000 ,', A), [
    { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 },
    { type: 'RLIMIT_NPROC', soft: 512, hard: 512 },
    { type: 'RLIMIT_CORE', soft: 0, hard: 1000 },
  ]);
  assert.deepEqual(parseUlimits('', A), []);
  assert.equal(rlimitType('rlimit_memlock'), 'RLIMIT_MEMLOCK');
  assert.equal(rlimitType('files'), undefined);
});

test('ulimits that cannot be applied are errors naming the annotation and the entry', () => {
  const cases: [string, RegExp][] = [
    ['files=10', /"files=10": unknown limit "files"/],
    ['nofile=4096:1024', /"nofile=4096:1024": soft limit 4096 is above the hard limit 1024/],
    ['nofile=unlimited', /"unlimited" is not supported/],
    ['nofile=-1', /"-1" is not a non-negative integer/],
    ['nofile=1.5', /"1.5" is not a non-negative integer/],
    ['nofile=99999999999999999999', /is too large/],
    ['nofile=1, nofile=2', /nofile is given twice/],
    ['nofile 1024', /expected TYPE=SOFT\[:HARD\]/],
  ];
  for (const [value, why] of cases) {
    assert.throws(
      () => parseUlimits(value, A),
      (err: unknown) => err instanceof PolicyError && err.message.startsWith(`annotation ${A}: `) && why.test(err.message),
      value,
    );
  }
});

test('env: one KEY=VALUE per line, values kept verbatim (=, spaces), comments and blank lines skipped', () => {
  assert.deepEqual(parseEnv('A=1\n\n# note\nB= two words = yes\r\nA=3', 'env.nri.crisp.io/pod'), [
    { key: 'A', value: '3' },
    { key: 'B', value: ' two words = yes' },
  ]);
  assert.throws(() => parseEnv('1BAD=x', 'env.nri.crisp.io/pod'), /annotation env\.nri\.crisp\.io\/pod: "1BAD=x": expected KEY=VALUE/);
  assert.throws(() => parseEnv('NOEQUALS', 'env.nri.crisp.io/pod'), /expected KEY=VALUE/);
});

test('pod-wide entries apply to every container; a container\'s own ones replace them type by type', () => {
  const annotations = {
    'ulimits.nri.crisp.io/pod': 'nofile=1024:2048, nproc=100',
    'ulimits.nri.crisp.io/container.app': 'nofile=4096',
    'env.nri.crisp.io/pod': 'STAGE=pod\nSHARED=pod',
    'env.nri.crisp.io/container.app': 'SHARED=app',
    'unrelated.example.com/x': 'y',
  };
  assert.deepEqual(containerPolicy(annotations, 'app'), {
    rlimits: [
      { type: 'RLIMIT_NOFILE', soft: 4096, hard: 4096 },
      { type: 'RLIMIT_NPROC', soft: 100, hard: 100 },
    ],
    env: [
      { key: 'STAGE', value: 'pod' },
      { key: 'SHARED', value: 'app' },
    ],
  });
  assert.deepEqual(containerPolicy(annotations, 'sidecar')?.rlimits.map((r) => r.soft), [1024, 100]);
  assert.equal(containerPolicy({ 'ulimits.nri.crisp.io/container.app': 'nofile=1' }, 'ap'), undefined, 'names match exactly');
  assert.equal(containerPolicy({}, 'app'), undefined);
});

test('the plugin\'s maximums (--max) bound the hard limit an annotation may ask for', () => {
  const max = parseMaximums(['nofile=65536', 'RLIMIT_NPROC=10']);
  assert.deepEqual([...max], [['RLIMIT_NOFILE', 65536], ['RLIMIT_NPROC', 10]]);
  assert.equal(containerPolicy({ [A]: 'nofile=1024:65536' }, 'app', max)?.rlimits[0]?.hard, 65536);
  assert.throws(() => containerPolicy({ [A]: 'nofile=1024:65537' }, 'app', max), /annotation ulimits\.nri\.crisp\.io\/container\.app: RLIMIT_NOFILE hard limit 65537 is above the plugin's maximum 65536/);
  assert.throws(() => containerPolicy({ 'ulimits.nri.crisp.io/pod': 'nproc=11' }, 'app', max), /annotation ulimits\.nri\.crisp\.io\/pod: RLIMIT_NPROC hard limit 11/);
  assert.equal(containerPolicy({ 'ulimits.nri.crisp.io/pod': 'core=0:11' }, 'app', max)?.rlimits[0]?.hard, 11, 'types without a maximum are not bounded');
  assert.throws(() => parseMaximums(['files=1']), /--max files=1: expected TYPE=N/);
});

test('command line: a bad flag exits 2 with the usage; an absent socket exits 1 naming it', () => {
  const bad = spawnSync(process.execPath, [MAIN, '--max', 'bogus'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^nri-ulimit-policy: --max bogus: expected TYPE=N/);
  assert.match(bad.stderr, /usage: nri-ulimit-policy/);
  const unknown = spawnSync(process.execPath, [MAIN, '--frobnicate'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  const sock = `/tmp/crisp-nri-ulimit-absent-${process.pid}.sock`;
  const absent = spawnSync(process.execPath, [MAIN, '--socket', sock], { encoding: 'utf8' });
  assert.equal(absent.status, 1);
  assert.match(absent.stderr, new RegExp(`connecting to NRI socket ${sock}`));
});
