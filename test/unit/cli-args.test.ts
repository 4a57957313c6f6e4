// Command-line parsing of the crisp CLI: exec passes everything after the container id through,
// -e works before and after the command, --version is `crisp version`, and commander's own errors
// are one `crisp: …` line. Actions are replaced by recorders: nothing talks to a daemon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Command } from 'commander';
import { buildProgram, oneLine, rewriteArgs } from '../../cli/program.js';
import { endpointOf } from '../../cli/client-context.js';
import { execCommand, parseTail } from '../../cli/container-commands.js';

interface Parsed {
  args: unknown[];
  opts: Record<string, unknown>;
  endpoint: string;
}

function allCommands(c: Command): Command[] {
  return [c, ...c.commands.flatMap(allCommands)];
}

/** Parses `argv` with `name`'s action replaced by a recorder; commander errors become exceptions. */
async function parse(name: string, argv: string[]): Promise<Parsed> {
  const program = buildProgram();
  let err = '';
  for (const c of allCommands(program)) c.exitOverride().configureOutput({ writeErr: (s) => (err += s), writeOut: () => undefined });
  const cmd = allCommands(program).find((c) => c.name() === name)!;
  let parsed: Parsed | undefined;
  cmd.action((...a: unknown[]) => {
    const self = a[a.length - 1] as Command;
    parsed = { args: a.slice(0, -2), opts: self.opts(), endpoint: endpointOf(program) };
  });
  try {
    await program.parseAsync(rewriteArgs(argv), { from: 'user' });
  } catch (e) {
    throw new Error(err || (e as Error).message);
  }
  assert.ok(parsed, `${name} ran`);
  return parsed;
}

test('exec: everything after the container id is the command, options before it still count', async () => {
  const plain = await parse('exec', ['exec', 'abc', 'sh', '-c', 'echo hi; ls -t /']);
  assert.deepEqual(plain.args, ['abc', ['sh', '-c', 'echo hi; ls -t /']]);
  assert.deepEqual(plain.opts, {timeout: '0'});

  const it = await parse('exec', ['exec', '-it', 'abc', 'sh', '-c', 'x']);
  assert.deepEqual(it.args, ['abc', ['sh', '-c', 'x']]);
  assert.equal(it.opts.stdin, true);
  assert.equal(it.opts.tty, true);

  // The old spelling with -- keeps working.
  const dashed = await parse('exec', ['exec', '-i', 'abc', '--', 'ls', '-t', '/']);
  assert.deepEqual(execCommand(dashed.args[1] as string[]), ['ls', '-t', '/']);
  assert.equal(dashed.opts.tty, undefined, '-t after the id belongs to ls');

  const timed = await parse('exec', ['exec', '--timeout', '5', 'abc', 'date', '--timeout', '9']);
  assert.equal(timed.opts.timeout, '5');
  assert.deepEqual(timed.args[1], ['date', '--timeout', '9']);
  assert.throws(() => execCommand(['--']), /no command given/);
});

test('-e/--endpoint before or after the command; CRISP_ENDPOINT and the default otherwise', async () => {
  assert.equal((await parse('ps', ['-e', 'unix:///a.sock', 'ps'])).endpoint, 'unix:///a.sock');
  assert.equal((await parse('ps', ['ps', '-e', 'unix:///b.sock'])).endpoint, 'unix:///b.sock');
  assert.equal((await parse('ps', ['--endpoint', 'unix:///a.sock', 'ps', '--endpoint', 'unix:///c.sock'])).endpoint, 'unix:///c.sock');
  assert.equal((await parse('plugins', ['nri', 'plugins', '-e', 'unix:///d.sock'])).endpoint, 'unix:///d.sock');
  const saved = process.env.CRISP_ENDPOINT;
  delete process.env.CRISP_ENDPOINT;
  try {
    assert.equal((await parse('ps', ['ps'])).endpoint, 'unix:///run/crisp/crisp.sock');
  } finally {
    if (saved !== undefined) process.env.CRISP_ENDPOINT = saved;
  }
});

test('--version and -v are `crisp version`, also after a global -e', async () => {
  assert.deepEqual(rewriteArgs(['--version']), ['version']);
  assert.deepEqual(rewriteArgs(['-v']), ['version']);
  assert.deepEqual(rewriteArgs(['-e', 'unix:///x', '--version']), ['-e', 'unix:///x', 'version']);
  assert.deepEqual(rewriteArgs(['--endpoint=unix:///x', '-v']), ['--endpoint=unix:///x', 'version']);
  assert.deepEqual(rewriteArgs(['logs', '--version']), ['logs', '--version'], 'only in the command position');
  assert.deepEqual(rewriteArgs(['exec', 'abc', 'node', '-v']), ['exec', 'abc', 'node', '-v']);
  const v = await parse('version', ['-e', 'unix:///x', '--version']);
  assert.equal(v.endpoint, 'unix:///x');
});

test('list options: repeatable --label, state, output, logs flags', async () => {
  const ps = await parse('ps', ['ps', '--label', 'a=b', '--label', 'c=d=e', '-s', 'exited', '--name', '^web', '-o', 'yaml', '-n', '2']);
  assert.deepEqual(ps.opts.label, ['a=b', 'c=d=e']);
  assert.equal(ps.opts.state, 'exited');
  assert.equal(ps.opts.output, 'yaml');
  assert.equal(ps.opts.last, '2');
  const pods = await parse('pods', ['pods', '--namespace', 'kube-.*', '--state', 'ready', '-q']);
  assert.equal(pods.opts.namespace, 'kube-.*');
  assert.deepEqual(pods.opts.label, []);
  const logs = await parse('logs', ['logs', '--tail', '5', '--since', '10m', '-t', '-f', 'abc']);
  assert.deepEqual(logs.args, ['abc']);
  assert.deepEqual({ ...logs.opts, endpoint: undefined }, { tail: '5', since: '10m', timestamps: true, follow: true, stream: 'all', endpoint: undefined });
  assert.equal(parseTail('-1'), undefined);
  assert.equal(parseTail('0'), 0);
  assert.throws(() => parseTail('x'), /bad --tail "x"/);
});

test("commander's errors are one crisp: line", async () => {
  await assert.rejects(parse('ps', ['ps', '--bogus']), (e: Error) => e.message === "crisp: unknown option '--bogus'\n");
  await assert.rejects(parse('exec', ['exec']), (e: Error) => e.message === "crisp: missing required argument 'id'\n");
  await assert.rejects(parse('ps', ['bogus']), (e: Error) => /^crisp: unknown command 'bogus'[^\n]*\n$/.test(e.message));
  assert.equal(oneLine("unknown command 'lgs'\n(Did you mean logs?)\n"), "unknown command 'lgs' (Did you mean logs?)");
});

test('every client command takes -e; daemon, config default and completion do not', () => {
  const program = buildProgram();
  for (const c of allCommands(program)) {
    if (c === program || c.commands.length > 0) continue;
    const hasEndpoint = c.options.some((o) => o.long === '--endpoint');
    assert.equal(hasEndpoint, !['daemon', 'default', 'completion'].includes(c.name()), c.name());
  }
});
