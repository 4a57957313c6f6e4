// `crisp completion bash|zsh`: the scripts are valid, and bash's completes commands, options, option
// values and ids (from a stand-in `crisp` that answers like the real one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildProgram } from '../../cli/program.js';
import { bashCompletion, zshCompletion } from '../../cli/completion.js';

const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

/** Completions bash offers for `line` (the last word is the one being completed). */
function complete(script: string, words: string[]): string[] {
  const dir = mkdtempSync('/tmp/crisp-completion-');
  try {
    writeFileSync(join(dir, 'completion.bash'), script);
    const harness = `
crisp() {
  case "$*" in
    *"ps -aq") printf '%s\\n' aaaa1111 aaaa2222 bbbb3333 ;;
    *"pods -q") printf '%s\\n' pod0001 pod0002 ;;
    *images) printf 'IMAGE TAG IMAGE ID SIZE\\nbusybox 1.36 0123 1MB\\nnginx <none> 4567 9MB\\n' ;;
  esac
  echo "$*" >> "${dir}/calls"
}
source "${dir}/completion.bash"
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
_crisp
printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync('bash', ['-c', harness], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('bash: the script parses and completes commands, options, values and ids', () => {
  const script = bashCompletion(buildProgram());
  assert.equal(spawnSync('bash', ['-n'], { input: script }).status, 0, 'bash -n');
  assert.match(script, /complete -F _crisp crisp/);
  assert.deepEqual(complete(script, ['crisp', 'p']), ['play', 'pods', 'port-forward', 'ps', 'pull']);
  assert.ok(complete(script, ['crisp', '']).includes('completion'));
  assert.deepEqual(complete(script, ['crisp', 'ps', '--la']), ['--label', '--last', '--latest']);
  assert.deepEqual(complete(script, ['crisp', 'ps', '-o', '']), ['json', 'table', 'yaml']);
  assert.deepEqual(complete(script, ['crisp', 'ps', '--state', '']), ['created', 'exited', 'running', 'unknown']);
  assert.deepEqual(complete(script, ['crisp', 'pods', '--state', '']), ['notready', 'ready']);
  assert.deepEqual(complete(script, ['crisp', 'logs', '--stream', 's']), ['stderr', 'stdout']);
  assert.deepEqual(complete(script, ['crisp', 'logs', 'aaaa']), ['aaaa1111', 'aaaa2222']);
  assert.deepEqual(complete(script, ['crisp', 'rm', 'aaaa1111', 'b']), ['bbbb3333'], 'every id of a variadic argument');
  assert.deepEqual(complete(script, ['crisp', '-e', 'unix:///x.sock', 'exec', '-it', '']), ['aaaa1111', 'aaaa2222', 'bbbb3333']);
  assert.deepEqual(complete(script, ['crisp', 'exec', 'aaaa1111', 's']), [], 'the command inside the container is not guessed');
  assert.deepEqual(complete(script, ['crisp', 'stopp', '']), ['pod0001', 'pod0002']);
  assert.deepEqual(complete(script, ['crisp', 'rmi', '']), ['busybox:1.36']);
  assert.deepEqual(complete(script, ['crisp', 'completion', '']), ['bash', 'zsh']);
  assert.deepEqual(complete(script, ['crisp', 'nri', '']), ['plugins']);
  assert.deepEqual(complete(script, ['crisp', 'daemon', '--cgroup-driver', '']), ['cgroupfs', 'systemd']);
  assert.deepEqual(complete(script, ['crisp', 'create', 'pod0001', '/nonexistent-dir/x']), [], 'a file argument completes files');
  assert.deepEqual(complete(script, ['crisp', 'play', '--log-root', '/nonexistent-dir/']), []);
});

test('zsh: a #compdef script naming every command; valid zsh where zsh is installed', (t) => {
  const program = buildProgram();
  const script = zshCompletion(program);
  assert.match(script, /^#compdef crisp\n/);
  for (const c of program.commands) assert.ok(script.includes(`    '${c.name()}:`), c.name());
  assert.match(script, /exec\)\n\s+_arguments -S -A '-\*'/, 'exec: no options after the container id');
  if (!has('zsh')) return t.skip('zsh is not installed');
  const r = spawnSync('zsh', ['-n'], { input: script, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const dir = mkdtempSync('/tmp/crisp-completion-');
  try {
    writeFileSync(join(dir, '_crisp'), script);
    const load = spawnSync('zsh', ['-f', '-c', `autoload -U compinit; compinit -u -D; source ${dir}/_crisp; print -r -- $_comps[crisp]`], { encoding: 'utf8' });
    assert.equal(load.stdout.trim(), '_crisp', load.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
