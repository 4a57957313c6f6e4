// `crisp play` and the crictl-like CLI against a real crispd: a Pod manifest runs, the CLI sees it,
// logs come back, and `play --down` removes it all (log directory included). Init containers run in
// order to completion first; the pod's namespace options reach every container; every play gets a new
// pod uid; --watch restarts containers as restartPolicy says; bad input is one line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startStack, type Stack } from './lib/stack.js';
import { CLI } from './lib/crispd.js';
import { sleep } from '../../common/time.js';

let s: Stack;
before(async () => {
  s = await startStack();
});
after(async () => {
  assert.deepEqual((await s?.teardown()) ?? [], []);
});

function crisp(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, '-e', s.d.endpoint, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const flags = () => ['--log-root', s.d.podLogRoot, '--state', s.d.root];

function manifest(name: string, text: string): string {
  const path = join(s.d.dir, `${name}.yaml`);
  writeFileSync(path, text);
  return path;
}

/** The pod log directories of `namespace_name` under the log root. */
const logDirs = (namespace: string, name: string) => readdirSync(s.d.podLogRoot).filter((d) => d.startsWith(`${namespace}_${name}_`));

test('crisp play runs a Pod manifest; the CLI lists, inspects, execs and shows logs; --down removes it', async () => {
  const file = manifest(
    'pod',
    `apiVersion: v1
kind: Pod
metadata: {name: played, namespace: e2e}
spec:
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: main
    image: ${s.image}
    command: [sh, -c]
    args: ["echo hello-from-play; echo $GREETING > /scratch/greeting; sleep 60"]
    env: [{name: GREETING, value: hi}]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    resources: {limits: {memory: 32Mi}}
`,
  );
  const up = crisp('play', file, ...flags());
  assert.equal(up.code, 0, up.err);
  assert.match(up.out, /pod e2e\/played is running/);
  const pods = crisp('pods');
  assert.match(pods.out, /played\s+e2e/);
  const ps = crisp('ps', '-q');
  const id = ps.out.trim().split('\n')[0]!;
  assert.match(id, /^[0-9a-f]{64}$/);
  let greeting = '';
  for (let i = 0; i < 50 && greeting !== 'hi\n'; i++) {
    await sleep(100);
    greeting = crisp('exec', id, 'cat', '/scratch/greeting').out;
  }
  assert.equal(greeting, 'hi\n');
  assert.match(crisp('logs', id).out, /hello-from-play/);
  assert.match(crisp('inspect', id).out, /"memoryLimitInBytes": 33554432/);
  const again = crisp('play', file, ...flags());
  assert.equal(again.code, 1);
  assert.match(again.err, /^crisp: pod e2e\/played already exists \([0-9a-f]{13}\): remove it with crisp play --down first\n$/);
  assert.equal(logDirs('e2e', 'played').length, 1);

  const down = crisp('play', '--down', file, ...flags());
  assert.equal(down.code, 0, down.err);
  assert.equal(crisp('pods', '-q').out.trim(), '');
  assert.equal(existsSync(join(s.d.root, 'play', 'e2e_played')), false);
  assert.deepEqual(logDirs('e2e', 'played'), [], 'the log directory went with the pod');
  const downAgain = crisp('play', '--down', file, ...flags());
  assert.equal(downAgain.code, 1);
  assert.match(downAgain.err, /^crisp: pod e2e\/played not found/);

  // A replay is a new pod: a new uid, a fresh log directory, no old output in its logs.
  assert.equal(crisp('play', file, ...flags()).code, 0);
  const [dir] = logDirs('e2e', 'played');
  const replayed = crisp('ps', '-q').out.trim();
  assert.notEqual(replayed, id);
  await sleep(300);
  assert.equal(crisp('logs', replayed).out.match(/hello-from-play/g)?.length, 1, 'only this run\'s output');
  assert.equal(crisp('play', '--down', file, ...flags()).code, 0);
  assert.equal(existsSync(join(s.d.podLogRoot, dir!)), false);
});

test('init containers run in order to completion first; shareProcessNamespace and hostPID reach every container', () => {
  const file = manifest(
    'init',
    `kind: Pod
metadata: {name: ordered, namespace: e2e}
spec:
  shareProcessNamespace: true
  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - {name: first, image: ${s.image}, command: [sh, -c, 'sleep 1; echo first >> /shared/order'], volumeMounts: [{name: shared, mountPath: /shared}]}
  - {name: second, image: ${s.image}, command: [sh, -c, 'echo second >> /shared/order'], volumeMounts: [{name: shared, mountPath: /shared}]}
  containers:
  - {name: app, image: ${s.image}, command: [sh, -c, 'echo app >> /shared/order; exec sleep 600'], volumeMounts: [{name: shared, mountPath: /shared}]}
  - {name: peer, image: ${s.image}, command: [sleep, '601']}
`,
  );
  const up = crisp('play', file, ...flags());
  assert.equal(up.code, 0, up.err);
  assert.match(up.out, /^init container first completed \([0-9a-f]{13}\)\ninit container second completed \([0-9a-f]{13}\)\nstarted app .*\nstarted peer .*\npod e2e\/ordered is running: [0-9a-f]{64}\n$/);
  const app = crisp('ps', '-q', '--name', '^app$').out.trim();
  const order = crisp('exec', app, 'cat', '/shared/order').out;
  assert.ok(order.startsWith('first\nsecond\n'), order);
  // One pid namespace for the pod: each container sees the other's process.
  const procs = crisp('exec', app, 'ps', '-o', 'args').out;
  assert.match(procs, /sleep 601/);
  assert.match(procs, /sleep 600/);
  const states = JSON.parse(crisp('ps', '-a', '-o', 'json', '--label', 'io.crisp.play=e2e_ordered').out) as { containers: { metadata: { name: string }; state: string }[] };
  assert.deepEqual(
    states.containers.map((c) => `${c.metadata.name}:${c.state}`).sort(),
    ['app:CONTAINER_RUNNING', 'first:CONTAINER_EXITED', 'peer:CONTAINER_RUNNING', 'second:CONTAINER_EXITED'],
  );
  assert.equal(crisp('play', '--down', file, ...flags()).code, 0);

  const host = manifest(
    'hostpid',
    `kind: Pod
metadata: {name: hostpid, namespace: e2e}
spec:
  hostPID: true
  containers: [{name: c, image: ${s.image}, command: [sleep, '600']}]
`,
  );
  assert.equal(crisp('play', host, ...flags()).code, 0);
  const c = crisp('ps', '-q', '--label', 'io.crisp.play=e2e_hostpid').out.trim();
  const seen = crisp('exec', c, 'sh', '-c', `test -d /proc/${process.pid} && echo host-pid-visible`);
  assert.equal(seen.out, 'host-pid-visible\n', seen.err);
  assert.equal(crisp('play', '--down', host, ...flags()).code, 0);
});

test('a failing init container fails the play with one line and leaves nothing behind', () => {
  const file = manifest(
    'initfail',
    `kind: Pod
metadata: {name: initfail, namespace: e2e}
spec:
  initContainers: [{name: setup, image: ${s.image}, command: [sh, -c, 'echo no config found >&2; exit 3']}]
  containers: [{name: app, image: ${s.image}, command: [sleep, '600']}]
`,
  );
  const r = crisp('play', file, ...flags());
  assert.equal(r.code, 1);
  assert.equal(r.err, 'crisp: init container "setup" failed: exit code 3 (Error); last output: "no config found"\n');
  assert.equal(crisp('pods', '-q', '--label', 'io.crisp.play=e2e_initfail').out, '');
  assert.deepEqual(logDirs('e2e', 'initfail'), []);
  assert.equal(existsSync(join(s.d.root, 'play', 'e2e_initfail')), false);
});

test('--watch restarts an exited container as restartPolicy says and ends when the pod is done', () => {
  const file = manifest(
    'watch',
    `kind: Pod
metadata: {name: flaky, namespace: e2e}
spec:
  restartPolicy: OnFailure
  volumes: [{name: s, emptyDir: {}}]
  containers:
  - name: job
    image: ${s.image}
    command: [sh, -c, 'n=$(cat /s/n 2>/dev/null || echo 0); echo $((n+1)) > /s/n; echo run-$n; [ $n -ge 1 ]']
    volumeMounts: [{name: s, mountPath: /s}]
`,
  );
  const r = crisp('play', '--watch', file, ...flags());
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /restarted job \(attempt 1, [0-9a-f]{13}\) after exit code 1\n/);
  assert.match(r.out, /job exited with code 0 \(Completed\); restartPolicy OnFailure: not restarted\n/);
  assert.match(r.out, /pod e2e\/flaky finished: all containers succeeded/);
  const attempts = JSON.parse(crisp('ps', '-a', '-o', 'json', '--label', 'io.crisp.play=e2e_flaky').out) as { containers: { id: string; metadata: { attempt: number } }[] };
  assert.deepEqual(attempts.containers.map((c) => c.metadata.attempt).sort(), [0, 1]);
  const second = attempts.containers.find((c) => c.metadata.attempt === 1)!;
  assert.equal(crisp('logs', second.id).out, 'run-1\n', 'attempt 1 logs to its own file');
  assert.equal(crisp('play', '--down', file, ...flags()).code, 0);
});

test('bad manifests and missing files are one line, no stack trace', () => {
  const cases: [string, RegExp][] = [
    [join(s.d.dir, 'missing.yaml'), /^crisp: cannot read pod manifest \S+missing\.yaml: no such file or directory\n$/],
    [manifest('bad', 'kind: Pod\nmetadata: {name: [\n'), /^crisp: bad YAML: [^\n]+\n$/],
    [manifest('deploy', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n'), /^crisp: no "kind: Pod" document found \(kinds: Deployment\); crisp play runs Pods only\n$/],
    [manifest('noname', 'kind: Pod\nspec: {containers: [{name: a, image: b}]}\n'), /^crisp: metadata.name is required\n$/],
    [manifest('cm', `kind: Pod\nmetadata: {name: cm}\nspec: {volumes: [{name: c, configMap: {name: x}}], containers: [{name: a, image: b}]}\n`), /^crisp: volume "c": only hostPath and emptyDir/],
  ];
  for (const [file, pattern] of cases) {
    const r = crisp('play', file, ...flags());
    assert.equal(r.code, 1, file);
    assert.equal(r.out, '');
    assert.match(r.err, pattern);
  }
  assert.equal(crisp('pods', '-q').out, '');
});
