// `crisp play` and the crictl-like CLI against a real crispd: a Pod manifest runs, the CLI sees it,
// logs come back, and `play --down` removes it all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync } from 'node:fs';
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

test('crisp play runs a Pod manifest; the CLI lists, inspects, execs and shows logs; --down removes it', async () => {
  const manifest = join(s.d.dir, 'pod.yaml');
  writeFileSync(
    manifest,
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
  const flags = ['--log-root', s.d.podLogRoot, '--state', s.d.root];
  const up = crisp('play', manifest, ...flags);
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
  const down = crisp('play', '--down', manifest, ...flags);
  assert.equal(down.code, 0, down.err);
  assert.equal(crisp('pods', '-q').out.trim(), '');
  assert.equal(existsSync(join(s.d.root, 'play', 'e2e_played')), false);
});

test('CLI errors are one clear line and a non-zero exit', () => {
  const r = crisp('inspect', 'f'.repeat(64));
  assert.equal(r.code, 1);
  assert.match(r.err, /^crisp: .*not found/m);
});
