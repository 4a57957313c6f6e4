// The package's tree as `npm run package` stages it, run for real: crispd from /usr/lib/crisp's copy
// (its own production node_modules, no @kubernetes/client-node, no build tree) with nshelper_path and
// logger_path naming the staged /usr/libexec/crisp helpers (the test may not install into /usr). A
// pod started with the staged `crisp play` runs, the shim's logger is the staged binary, logs come back,
// and `play --down` removes the pod.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startStack, type Stack } from './lib/stack.js';
import { REPO } from './lib/crispd.js';

interface PackageScript {
  PREFIX: string;
  LIBEXEC: string;
  stage(opts: { stageDir: string }): Promise<unknown>;
  removeTree(dir: string): void;
}

const dir = mkdtempSync('/tmp/crisp-e2e-pkg-');
const stageDir = join(dir, 'stage');
let p: PackageScript;
let s: Stack | undefined;
let cli = '';
let libexec = '';

before(async () => {
  p = (await import(pathToFileURL(join(REPO, 'scripts', 'package.mjs')).href)) as PackageScript;
  await p.stage({ stageDir });
  cli = join(stageDir, p.PREFIX, 'dist', 'cli', 'main.js');
  libexec = join(stageDir, p.LIBEXEC);
  s = await startStack({ nshelper_path: join(libexec, 'crisp-nshelper'), logger_path: join(libexec, 'crisp-logger') }, { cli });
});
after(async () => {
  const rules = (await s?.teardown()) ?? [];
  p?.removeTree(dir);
  assert.deepEqual(rules, []);
});

function crisp(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [cli, '-e', s!.d.endpoint, ...args], { encoding: 'utf8', timeout: 60_000, cwd: '/' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Pids whose executable is `path`. */
function pidsRunning(path: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/exe`) === path) pids.push(Number(name));
    } catch {
      // gone meanwhile, or a kernel thread: not ours
    }
  }
  return pids;
}

test('the staged crispd and crisp play run a pod whose logger is the staged helper', async () => {
  const d = s!.d;
  // crispd runs from the staged tree and resolved the helpers from its config.
  const cmdline = readFileSync(`/proc/${d.child!.pid}/cmdline`, 'utf8').split('\0');
  assert.ok(cmdline.includes(cli), cmdline.join(' '));
  const helpers = d.logs
    .split('\n')
    .filter((l) => l.includes('"native helpers"'))
    .map((l) => (JSON.parse(l) as { helpers: { nshelper: string; logger: string } }).helpers);
  assert.deepEqual(helpers, [{ nshelper: join(libexec, 'crisp-nshelper'), logger: join(libexec, 'crisp-logger') }]);

  const file = join(d.dir, 'pod.yaml');
  writeFileSync(
    file,
    `apiVersion: v1
kind: Pod
metadata: {name: packaged, namespace: e2e}
spec:
  containers:
  - name: main
    image: ${s!.image}
    command: [sh, -c, "echo hello-from-the-package; sleep 60"]
`,
  );
  const flags = ['--log-root', d.podLogRoot, '--state', d.root];
  const up = crisp('play', file, ...flags);
  assert.equal(up.code, 0, up.err);
  assert.match(up.out, /pod e2e\/packaged is running/);
  const id = crisp('ps', '-q', '--name', 'main').out.trim();
  assert.match(id, /^[0-9a-f]{64}$|^[0-9a-f]{13}$/, 'one container id');
  // The shim started the staged logger (binary:// URI from logger_path), and it writes the CRI log.
  assert.ok(pidsRunning(join(libexec, 'crisp-logger')).length >= 1, 'a crisp-logger from the staged libexec runs');
  let logs = '';
  for (let i = 0; i < 50 && !logs.includes('hello-from-the-package'); i++) {
    logs = crisp('logs', id).out;
    if (!logs.includes('hello-from-the-package')) await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(logs, /hello-from-the-package/);

  const down = crisp('play', '--down', file, ...flags);
  assert.equal(down.code, 0, down.err);
  assert.equal(crisp('pods', '-q').out.trim(), '');
});
