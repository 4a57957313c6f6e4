// crispd under a stand-in service manager: a test-owned AF_UNIX datagram socket as NOTIFY_SOCKET (python3
// receives with SO_PASSCRED, as systemd does). READY=1 arrives once the CRI socket answers, sent with
// crispd's pid (what NotifyAccess=main would also accept); the embedded containerd, which speaks
// sd_notify itself, sends nothing (crispd keeps NOTIFY_SOCKET from its children); STOPPING=1 on SIGTERM.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TestCrispd } from './lib/crispd.js';
import { CriClient } from '../../cri/client.js';
import { sleep } from '../../common/time.js';

interface Datagram {
  pid: number;
  fields: string[];
}

const python = spawnSync('python3', ['-c', 'import socket; socket.SO_PASSCRED'], { encoding: 'utf8' }).status === 0;
const notify = spawnSync('systemd-notify', ['--help'], { encoding: 'utf8' }).status === 0;

describe('sd_notify from a real crispd', { skip: python && notify ? false : 'needs python3 and systemd-notify (package systemd)' }, () => {
  const dir = mkdtempSync('/tmp/crisp-e2e-notify-');
  const socket = join(dir, 'notify.sock');
  const received = join(dir, 'received.jsonl');
  let receiver: ChildProcess | undefined;
  const d = new TestCrispd();
  after(async () => {
    delete process.env.NOTIFY_SOCKET;
    await d.cleanup();
    if (receiver?.pid) receiver.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const datagrams = (): Datagram[] =>
    existsSync(received)
      ? readFileSync(received, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Datagram)
      : [];
  const waitFor = async (what: string, pred: (g: Datagram) => boolean, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = datagrams().find(pred);
      if (hit) return hit;
      await sleep(50);
    }
    throw new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(datagrams())}\n${d.logs.slice(-3000)}`);
  };

  test('READY=1 from crispd once CRI answers, nothing from containerd, STOPPING=1 on SIGTERM', async () => {
    const script = [
      'import json, socket, struct',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      's.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)',
      `s.bind(${JSON.stringify(socket)})`,
      'print("bound", flush=True)',
      'while True:',
      '    data, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(64))',
      '    pid = -1',
      '    for level, kind, cdata in anc:',
      '        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:',
      '            pid = struct.unpack("iII", cdata[:12])[0]',
      '    fields = [f for f in data.decode("utf8", "replace").split("\\n") if f]',
      `    with open(${JSON.stringify(received)}, "a") as f: f.write(json.dumps({"pid": pid, "fields": fields}) + "\\n")`,
    ].join('\n');
    const r = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    receiver = r;
    await new Promise<void>((resolve, reject) => {
      r.stdout!.once('data', () => resolve());
      r.once('exit', (code) => reject(new Error(`receiver exited ${code}`)));
    });

    process.env.NOTIFY_SOCKET = socket;
    try {
      await d.start();
    } finally {
      delete process.env.NOTIFY_SOCKET;
    }
    const crispdPid = d.child!.pid!;
    const ready = await waitFor('READY=1', (g) => g.fields.includes('READY=1'));
    assert.equal(ready.pid, crispdPid, 'sent with crispd\'s pid, not systemd-notify\'s');
    assert.ok(ready.fields.some((f) => f.startsWith('STATUS=serving CRI on ')), JSON.stringify(ready));
    // By the time READY=1 was sent the socket answered; it still does.
    const client = new CriClient(d.endpoint, 5000);
    try {
      assert.equal((await client.runtime.unary('Version', { version: 'v1' })).runtimeName, 'crisp');
    } finally {
      client.close();
    }
    const containerdPid = d.containerdPid();
    assert.ok(containerdPid);
    assert.deepEqual(
      datagrams().filter((g) => g.pid !== crispdPid && !g.fields.some((f) => f.startsWith('BARRIER='))),
      [],
      'only crispd notifies (the embedded containerd never saw NOTIFY_SOCKET)',
    );
    assert.ok(!readFileSync(`/proc/${containerdPid}/environ`, 'utf8').split('\0').some((e) => e.startsWith('NOTIFY_SOCKET=')));

    assert.equal(await d.stop(), 0);
    const stopping = await waitFor('STOPPING=1', (g) => g.fields.includes('STOPPING=1'), 5000);
    assert.equal(stopping.pid, crispdPid);
  });
});
