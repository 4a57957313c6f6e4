// The crisp CLI as a person uses it, against a real crispd: exec without `--`, logs --tail/--since/
// --timestamps, -o json|yaml|table, ps/pods filters, "not found" for rm/rmp/stopp/rmi/stop, pull's
// result line, --version, completion, and one-line errors (unreachable daemon included).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { parse as parseYaml } from 'yaml';
import { startStack, type Stack } from './lib/stack.js';
import { CLI, uniqueId } from './lib/crispd.js';
import { buildImage } from './fixtures/images.js';

let s: Stack;
let pod: string;
let web: string;
let job: string;

before(async () => {
  s = await startStack();
  pod = await s.runPod('cli-a', { labels: { run: s.run, app: 'cli-a', tier: 'front' } });
  web = await s.runContainer(pod, 'web', ['sleep', '600']);
  job = await s.runContainer(pod, 'job', ['sh', '-c', 'for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2']);
  await s.waitExited(job);
});
after(async () => {
  assert.deepEqual((await s?.teardown()) ?? [], []);
});

function crisp(args: string[], opts: { endpoint?: string | null; input?: string } = {}): { code: number | null; out: string; err: string } {
  const endpoint = opts.endpoint === undefined ? s.d.endpoint : opts.endpoint;
  const r = spawnSync(process.execPath, [CLI, ...(endpoint ? ['-e', endpoint] : []), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    input: opts.input ?? '',
    env: { ...process.env, CRISP_ENDPOINT: '' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Exactly one `crisp: …` line on stderr, nothing on stdout, exit 1. */
function assertOneLineError(r: { code: number | null; out: string; err: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit 1: ${r.err}`);
  assert.equal(r.out, '');
  const lines = r.err.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `one line: ${r.err}`);
  assert.match(lines[0]!, /^crisp: /);
  assert.match(lines[0]!, pattern);
}

test('an unreachable daemon is one line naming the endpoint', () => {
  const endpoint = `unix:///tmp/crisp-e2e-nothing-${uniqueId()}.sock`;
  assertOneLineError(crisp(['ps'], { endpoint }), new RegExp(`^crisp: cannot reach crispd at ${endpoint}: is it running\\?$`));
  assertOneLineError(crisp(['rm', 'abc', 'def'], { endpoint }), /cannot reach crispd/);
  assertOneLineError(crisp(['play', '--down', '/nonexistent.yaml'], { endpoint }), /^crisp: cannot read pod manifest \/nonexistent.yaml: no such file or directory$/);
});

test('exec: the command follows the container id without --; options before the id', () => {
  const r = crisp(['exec', web.slice(0, 12), 'sh', '-c', 'echo "$0 $1"; ls -d /proc >&2; exit 3', 'a', '-t']);
  assert.equal(r.out, 'a -t\n');
  assert.equal(r.err, '/proc\n');
  assert.equal(r.code, 3);
  const dashed = crisp(['exec', '--timeout', '10', web, '--', 'echo', '-n', 'x']);
  assert.equal(dashed.out, 'x');
  assert.equal(dashed.code, 0, dashed.err);
  const piped = crisp(['exec', '-i', web, 'sh', '-c', 'cat; exit 4'], { input: 'through stdin\n' });
  assert.equal(piped.out, 'through stdin\n');
  assert.equal(piped.code, 4, piped.err);
});

test('logs: --tail, --since, --timestamps, --stream', () => {
  assert.equal(crisp(['logs', job]).out, 'line-1\nline-2\nline-3\nline-4\nline-5\noops\n');
  assert.equal(crisp(['logs', '--tail', '2', '--stream', 'stdout', job]).out, 'line-4\nline-5\n');
  assert.equal(crisp(['logs', '--tail', '0', job]).out, '');
  assert.equal(crisp(['logs', '--stream', 'stderr', job]).out, 'oops\n');
  const stamped = crisp(['logs', '-t', '--tail', '1', job]).out;
  assert.match(stamped, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}) oops\n$/);
  assert.equal(crisp(['logs', '--since', '1h', job]).out.split('\n').length, 7);
  assert.equal(crisp(['logs', '--since', new Date(Date.now() + 3_600_000).toISOString(), job]).out, '');
  const firstStamp = crisp(['logs', '-t', '--tail', '6', job]).out.split(' ')[0]!;
  assert.equal(crisp(['logs', '--since', firstStamp, job]).out.split('\n').length, 7, 'from the first line on');
  assertOneLineError(crisp(['logs', '--since', 'whenever', job]), /bad --since "whenever"/);
  assertOneLineError(crisp(['logs', '--tail', 'x', job]), /bad --tail "x"/);
});

test('ps: state, name, label and pod filters; -o json, yaml and table', () => {
  assert.deepEqual(crisp(['ps', '-q']).out.split('\n').filter(Boolean), [web], 'running only by default');
  assert.deepEqual(crisp(['ps', '-aq']).out.split('\n').filter(Boolean).sort(), [web, job].sort());
  assert.deepEqual(crisp(['ps', '-q', '--state', 'exited']).out.trim(), job);
  assert.deepEqual(crisp(['ps', '-aq', '--name', '^jo']).out.trim(), job);
  assert.deepEqual(crisp(['ps', '-aq', '--label', 'container=web', '--label', `run=${s.run}`]).out.trim(), web);
  assert.equal(crisp(['ps', '-aq', '--label', 'container=none']).out, '');
  assert.deepEqual(crisp(['ps', '-aq', '-p', pod.slice(0, 10)]).out.split('\n').filter(Boolean).sort(), [web, job].sort());
  assert.equal(crisp(['ps', '-aq', '-p', 'f'.repeat(12)]).out, '');
  assert.equal(crisp(['ps', '-a', '-q', '--latest']).out.trim(), job);

  const json = JSON.parse(crisp(['ps', '-a', '-o', 'json']).out) as { containers: { id: string; state: string; metadata: { name: string } }[] };
  const byName = Object.fromEntries(json.containers.map((c) => [c.metadata.name, c]));
  assert.equal(byName.web?.state, 'CONTAINER_RUNNING');
  assert.equal(byName.job?.state, 'CONTAINER_EXITED');
  const yaml = parseYaml(crisp(['ps', '-a', '-o', 'yaml']).out) as typeof json;
  assert.deepEqual(yaml.containers.map((c) => c.id).sort(), json.containers.map((c) => c.id).sort());
  const table = crisp(['ps', '-a']).out.split('\n');
  assert.match(table[0]!, /^CONTAINER\s+IMAGE\s+CREATED\s+STATE\s+NAME\s+ATTEMPT\s+POD ID\s+POD$/);
  assert.ok(table.some((l) => l.startsWith(web.slice(0, 13)) && /Running\s+web\s+0\s+\S+\s+cli-a$/.test(l)), table.join('\n'));
  assertOneLineError(crisp(['ps', '-o', 'xml']), /unknown output format "xml"/);
  assertOneLineError(crisp(['ps', '--state', 'dead']), /bad --state "dead"/);
});

test('pods: name, namespace, label and state filters; output formats; inspect and inspectp formats', () => {
  assert.equal(crisp(['pods', '-q', '--name', '^cli-a$']).out.trim(), pod);
  assert.equal(crisp(['pods', '-q', '--namespace', '^e2e$', '--label', 'tier=front']).out.trim(), pod);
  assert.equal(crisp(['pods', '-q', '--namespace', '^kube-system$']).out, '');
  assert.equal(crisp(['pods', '-q', '--state', 'notready']).out, '');
  assert.equal(crisp(['pods', '-q', '--state', 'Ready', '--id', pod.slice(0, 8)]).out.trim(), pod);
  const json = JSON.parse(crisp(['pods', '-o', 'json']).out) as { items: { id: string; state: string; metadata: { name: string } }[] };
  assert.deepEqual(json.items.map((p) => [p.id, p.state, p.metadata.name]), [[pod, 'SANDBOX_READY', 'cli-a']]);
  assert.match(crisp(['pods']).out, /^POD ID\s+CREATED\s+STATE\s+NAME\s+NAMESPACE\s+ATTEMPT\s+RUNTIME\n\S+\s+.+\s+Ready\s+cli-a\s+e2e\s+0\s+runc\n$/);

  const inspect = parseYaml(crisp(['inspect', '-o', 'yaml', web]).out) as { status: { id: string; state: string; createdAt: string }; info: Record<string, unknown> };
  assert.equal(inspect.status.id, web);
  assert.equal(inspect.status.state, 'CONTAINER_RUNNING');
  assert.match(inspect.status.createdAt, /^\d{4}-\d{2}-\d{2}T/);
  assert.ok(Object.keys(inspect.info).length > 0, 'verbose info');
  assert.match(crisp(['inspect', '-o', 'table', job]).out, /^ID:\s+[0-9a-f]{64}\nName:\s+job\n(.*\n)*State:\s+Exited\n(.*\n)*Exit code:\s+0\n(.*\n)*Reason:\s+Completed\n/);
  assert.match(crisp(['inspectp', '-o', 'table', pod]).out, /Name:\s+cli-a\nNamespace:\s+e2e\n/);
  const podDoc = JSON.parse(crisp(['inspectp', pod]).out) as { status: { state: string } };
  assert.equal(podDoc.status.state, 'SANDBOX_READY');
});

test('images: -o json/yaml, a repository filter, inspecti formats', () => {
  const json = JSON.parse(crisp(['images', '-o', 'json']).out) as { images: { id: string; repoTags: string[] }[] };
  assert.ok(json.images.some((i) => i.id === s.imageId && i.repoTags.includes(s.image)));
  const repo = s.image.slice(0, s.image.lastIndexOf(':'));
  assert.deepEqual(crisp(['images', '-q', repo]).out.trim(), s.imageId);
  assert.equal(crisp(['images', '-q', `${repo}:nope`]).out, '');
  assert.match(crisp(['images', '--digests']).out, /^IMAGE\s+TAG\s+DIGEST\s+IMAGE ID\s+SIZE/);
  const yaml = parseYaml(crisp(['inspecti', '-o', 'yaml', s.image]).out) as { status: { id: string } };
  assert.equal(yaml.status.id, s.imageId);
  assert.match(crisp(['inspecti', '-o', 'table', s.image]).out, new RegExp(`^ID:\\s+${s.imageId}\\n`));
});

test('rm, stop, rmp, stopp, rmi: what does not exist is "not found" and exit 1; the rest is done', async () => {
  const missing = 'f'.repeat(64);
  assertOneLineError(crisp(['rm', missing]), new RegExp(`^crisp: container "${missing}" not found$`));
  assertOneLineError(crisp(['stop', missing]), /container "f+" not found/);
  assertOneLineError(crisp(['rmp', missing]), new RegExp(`^crisp: pod sandbox "${missing}" not found$`));
  assertOneLineError(crisp(['stopp', missing]), /pod sandbox "f+" not found/);
  assertOneLineError(crisp(['inspect', missing]), /container "f+" not found/);
  assertOneLineError(crisp(['rmi', `${s.registry.host}/e2e/none:v0`]), /^crisp: image ".*\/e2e\/none:v0" not found$/);

  // A mix: the existing one goes, the missing one is named, exit 1.
  const extra = await s.runContainer(pod, 'extra', ['sleep', '600']);
  const mixed = crisp(['rm', missing, extra.slice(0, 16)]);
  assert.equal(mixed.code, 1);
  assert.equal(mixed.out, `${extra.slice(0, 16)}\n`);
  assert.equal(mixed.err, `crisp: container "${missing}" not found\n`);
  assert.equal(crisp(['ps', '-aq', '--name', '^extra$']).out, '');

  const other = await s.runPod('cli-b');
  const stopped = crisp(['stopp', other]);
  assert.equal(stopped.code, 0, stopped.err);
  assert.equal(stopped.out, `Stopped sandbox ${other}\n`);
  const removed = crisp(['rmp', other.slice(0, 12)]);
  assert.equal(removed.out, `Removed sandbox ${other.slice(0, 12)}\n`);
  assertOneLineError(crisp(['rmp', other]), /not found/);
});

test('pull: "Image is up to date" only when nothing was downloaded', async () => {
  const present = crisp(['pull', '--state', s.d.state, s.image]);
  assert.equal(present.code, 0, present.err);
  assert.equal(present.out, `Image is up to date for ${s.imageId}\n`);

  const repo = `e2e/cli-pull-${s.run}`;
  const ref = `${s.registry.host}/${repo}:v1`;
  const first = buildImage([[{ type: 'file', path: 'one', data: Buffer.from(uniqueId()) }]]);
  await s.registry.push(first, repo, 'v1');
  const fresh = crisp(['pull', '--state', s.d.state, ref]);
  assert.equal(fresh.out, `Downloaded ${ref}: ${first.manifest.config.digest}\n`);
  assert.equal(crisp(['pull', '--state', s.d.state, ref]).out, `Image is up to date for ${first.manifest.config.digest}\n`);
  const second = buildImage([[{ type: 'file', path: 'two', data: Buffer.from(uniqueId()) }]]);
  await s.registry.push(second, repo, 'v1');
  assert.equal(crisp(['pull', '--state', s.d.state, ref]).out, `Downloaded newer image for ${ref}: ${second.manifest.config.digest}\n`);

  const rmi = crisp(['rmi', ref]);
  assert.equal(rmi.out, `Deleted: ${ref}\n`);
  assert.equal(rmi.code, 0, rmi.err);
});

test('--version is `crisp version`; completion scripts', () => {
  for (const flag of ['--version', '-v', 'version']) {
    const v = crisp([flag]);
    assert.equal(v.code, 0, v.err);
    assert.match(v.out, /^Client: {2}crisp \d+\.\d+\.\d+\nRuntime: crisp \S+ \(CRI API v1\)\n$/, flag);
  }
  const bash = crisp(['completion', 'bash'], { endpoint: null });
  assert.equal(bash.code, 0);
  assert.equal(spawnSync('bash', ['-n'], { input: bash.out }).status, 0);
  assert.match(crisp(['completion', 'zsh'], { endpoint: null }).out, /^#compdef crisp/);
  assertOneLineError(crisp(['completion', 'fish'], { endpoint: null }), /no completion for shell "fish"/);
});
