// sd_notify through systemd-notify: NOTIFY_SOCKET leaves the environment (the embedded containerd must
// not announce readiness), the fields reach the sender, a failing sender is one warn line and never an
// error; and, where systemd-notify and python3 exist, a real datagram on a test-owned socket.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SdNotify } from '../../daemon/sd-notify.js';
import { sleep } from '../../common/time.js';
import { captureLog } from '../lib/capture-log.js';

const dir = mkdtempSync('/tmp/crisp-sdnotify-');
after(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in systemd-notify that records its arguments and NOTIFY_SOCKET. */
function fakeSender(name: string, exitCode = 0): { binary: string; calls: () => string[] } {
  const binary = join(dir, name);
  const out = join(dir, `${name}.calls`);
  writeFileSync(binary, `#!/bin/sh\nprintf '%s|%s\\n' "$NOTIFY_SOCKET" "$*" >> '${out}'\necho 'sender says no' >&2\nexit ${exitCode}\n`);
  chmodSync(binary, 0o755);
  return { binary, calls: () => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : []) };
}

describe('sd_notify', () => {
  test('takes NOTIFY_SOCKET out of the environment and sends READY=1 / STOPPING=1 with it', async () => {
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '/run/systemd/notify', PATH: '/usr/bin' };
    const fake = fakeSender('ok');
    const { log } = captureLog();
    const n = SdNotify.fromEnvironment(log, env, { binary: fake.binary });
    assert.equal(env.NOTIFY_SOCKET, undefined, 'children (the embedded containerd) must not inherit it');
    assert.equal(n.enabled, true);
    assert.equal(await n.ready('serving CRI on /run/crisp/crisp.sock'), true);
    assert.equal(await n.stopping(), true);
    assert.equal(await n.send(['STATUS=two\nlines']), true);
    assert.deepEqual(fake.calls(), [
      '/run/systemd/notify|READY=1 STATUS=serving CRI on /run/crisp/crisp.sock',
      '/run/systemd/notify|STOPPING=1 STATUS=stopping',
      '/run/systemd/notify|STATUS=two lines',
    ]);
  });

  test('without NOTIFY_SOCKET nothing is sent', async () => {
    const fake = fakeSender('unused');
    const n = SdNotify.fromEnvironment(captureLog().log, { PATH: '/usr/bin' }, { binary: fake.binary });
    assert.equal(n.enabled, false);
    assert.equal(await n.ready('x'), false);
    assert.deepEqual(fake.calls(), []);
  });

  test('a failing or missing sender is one warn line, never an exception', async () => {
    const failing = fakeSender('fails', 1);
    const { log, lines } = captureLog();
    assert.equal(await SdNotify.fromEnvironment(log, { NOTIFY_SOCKET: '/x' }, { binary: failing.binary }).ready('x'), false);
    assert.equal(await SdNotify.fromEnvironment(log, { NOTIFY_SOCKET: '/x' }, { binary: join(dir, 'absent') }).ready('x'), false);
    const warns = lines.filter((l) => l.level === 40);
    assert.equal(warns.length, 2);
    assert.match(String(warns[0]!.err), /sender says no/);
    assert.match(String(warns[1]!.msg), /sd_notify through .*absent failed/);
  });

  const python = spawnSync('python3', ['-c', 'import socket; socket.AF_UNIX'], { encoding: 'utf8' }).status === 0;
  const notify = spawnSync('systemd-notify', ['--help'], { encoding: 'utf8' }).status === 0;
  test('the real systemd-notify delivers READY=1 on a datagram socket', { skip: !python || !notify ? 'needs python3 and systemd-notify (package systemd)' : false }, async () => {
    const socket = join(dir, 'notify.sock');
    const received = join(dir, 'received');
    // Receives datagrams (systemd-notify also sends a BARRIER=1 with an fd and waits for it to close).
    const script = [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      `s.bind(${JSON.stringify(socket)})`,
      'print("bound", flush=True)',
      's.settimeout(10)',
      'while True:',
      '    data = s.recv(65536)',
      `    with open(${JSON.stringify(received)}, "ab") as f: f.write(data + b"\\n--\\n")`,
    ].join('\n');
    const receiver = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        receiver.stdout.once('data', () => resolve());
        receiver.once('exit', (code) => reject(new Error(`receiver exited ${code}`)));
      });
      const n = SdNotify.fromEnvironment(captureLog().log, { NOTIFY_SOCKET: socket });
      assert.equal(await n.ready('serving'), true);
      for (let i = 0; i < 50 && !existsSync(received); i++) await sleep(20);
      const got = readFileSync(received, 'utf8');
      assert.match(got, /^READY=1$/m);
      assert.match(got, /^STATUS=serving$/m);
    } finally {
      receiver.kill('SIGKILL');
    }
  });
});
