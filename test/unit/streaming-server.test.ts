// The streaming server with a fake runtime: routing and tokens, the SPDY upgrade handshake (400/403 and
// protocol negotiation), an exec over SPDY streams and over WebSocket, port-forward stream pairing by
// requestID, the idle timeout, and shutdown ending live sessions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { pino } from 'pino';
import { StreamingServer } from '../../cri/streaming/server.js';
import { SpdySession, type SpdyStream } from '../../cri/streaming/spdy/session.js';
import type { StreamIO, StreamingRuntime } from '../../sandbox/streaming.js';

const log = pino({ level: 'silent' });
const aborted: string[] = [];
const forwarded: number[] = [];

const runtime: StreamingRuntime = {
  async exec(_id: string, cmd: string[], io: StreamIO): Promise<number> {
    if (cmd[0] === 'hang') {
      await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve()));
      aborted.push(cmd.join(' '));
      return 137;
    }
    if (cmd[0] === 'cat' && io.stdin) {
      for await (const chunk of io.stdin) io.stdout?.write(chunk as Buffer);
      return 0;
    }
    io.stdout?.write(`out:${cmd.join(' ')}`);
    io.stderr?.write('err');
    return Number(cmd[1] ?? 0);
  },
  async attach(): Promise<void> {},
  async portForward(_pod: string, port: number, stream: Duplex): Promise<void> {
    forwarded.push(port);
    if (port === 9) throw new Error('connect: connection refused');
    stream.write(`port ${port} says hi`);
    stream.end();
  },
};

let server: StreamingServer;
before(async () => {
  server = new StreamingServer({ address: '127.0.0.1', port: 0, idleTimeoutMs: 400, tokenTtlMs: 30_000, streamCreationTimeoutMs: 1000, runtime, log });
  await server.start();
});
after(async () => {
  await server.stop();
});

const exec = (cmd: string[], o: { stdin?: boolean; tty?: boolean } = {}) =>
  server.urlFor({ kind: 'exec', containerId: 'c1', cmd, tty: o.tty ?? false, stdin: o.stdin ?? false, stdout: true, stderr: !o.tty });

/** Sends a raw HTTP upgrade request and returns the socket with the response head read. */
async function rawUpgrade(url: string, headers: Record<string, string>): Promise<{ socket: Socket; head: string; rest: Buffer }> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  await new Promise((r) => socket.once('connect', r));
  socket.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
  let buf = Buffer.alloc(0);
  for (;;) {
    const chunk = await new Promise<Buffer | null>((resolve) => {
      socket.once('data', resolve);
      socket.once('end', () => resolve(null));
    });
    if (chunk) buf = Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end >= 0 || !chunk) {
      socket.removeAllListeners('data');
      socket.removeAllListeners('end');
      return { socket, head: buf.subarray(0, end).toString(), rest: buf.subarray(end + 4) };
    }
  }
}

const spdyHeaders = (protocols: string) => ({ Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': protocols });

function collect(s: SpdyStream): Promise<string> {
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString()));
  return new Promise((resolve) => s.on('end', () => resolve(text)));
}

test('URLs are /kind/token on the listening address; tokens are single use and expire', async () => {
  const url = exec(['true']);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]{43}$/);
  const first = await fetch(url, { method: 'POST' });
  assert.equal(first.status, 400);
  // A plain request does not use the token up: only an upgrade does.
  assert.equal((await fetch(url, { method: 'POST' })).status, 400);
  const up = await rawUpgrade(url, spdyHeaders('v4.channel.k8s.io'));
  assert.match(up.head, /^HTTP\/1\.1 101/);
  up.socket.destroy();
  const again = await fetch(url, { method: 'POST' });
  assert.equal(again.status, 404);
  assert.equal(await again.text(), '');
  assert.equal((await fetch(exec(['true']).replace('/exec/', '/nope/'), { method: 'POST' })).status, 404);
});

test('a URL expires after its TTL', async () => {
  // Its own server with a short TTL, so the other tests' URLs cannot expire on a loaded machine.
  const short = new StreamingServer({ address: '127.0.0.1', port: 0, idleTimeoutMs: 400, tokenTtlMs: 100, runtime, log });
  await short.start();
  try {
    const late = short.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: true });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await fetch(late, { method: 'POST' })).status, 404);
  } finally {
    await short.stop();
  }
});

test('SPDY handshake: X-Stream-Protocol-Version is required and must match', async () => {
  const missing = await rawUpgrade(exec(['true']), { Connection: 'Upgrade', Upgrade: 'SPDY/3.1' });
  assert.match(missing.head, /^HTTP\/1\.1 400/);
  missing.socket.destroy();
  const bad = await rawUpgrade(exec(['true']), spdyHeaders('v9.channel.k8s.io'));
  assert.match(bad.head, /^HTTP\/1\.1 403/);
  assert.match(bad.head, /X-Accepted-Stream-Protocol-Versions: v4\.channel\.k8s\.io/);
  bad.socket.destroy();
  const noUpgrade = await rawUpgrade(exec(['true']), { Connection: 'Upgrade', Upgrade: 'h2c' });
  assert.match(noUpgrade.head, /^HTTP\/1\.1 (400|404)/);
  noUpgrade.socket.destroy();
});

test('SPDY exec (v4): streams by streamtype, output then FIN, Status on the error stream', async () => {
  const up = await rawUpgrade(exec(['run', '5']), spdyHeaders('v5.channel.k8s.io, v4.channel.k8s.io'));
  assert.match(up.head, /^HTTP\/1\.1 101/);
  assert.match(up.head, /X-Stream-Protocol-Version: v4\.channel\.k8s\.io/);
  const client = new SpdySession(up.socket, { role: 'client', head: up.rest });
  const goaway = new Promise((r) => client.once('goaway', r));
  const error = await client.createStream({ streamtype: ['error'] });
  error.end();
  const stdout = await client.createStream({ streamtype: ['stdout'] });
  stdout.end();
  const stderr = await client.createStream({ streamtype: ['stderr'] });
  stderr.end();
  const [out, err, status] = await Promise.all([collect(stdout), collect(stderr), collect(error)]);
  assert.equal(out, 'out:run 5');
  assert.equal(err, 'err');
  assert.deepEqual(JSON.parse(status).details.causes, [{ reason: 'ExitCode', message: '5' }]);
  await goaway;
  client.destroy();
});

test('SPDY exec (v2): stdin stream half-close ends input; status is text only on failure', async () => {
  const up = await rawUpgrade(exec(['cat'], { stdin: true }), spdyHeaders('v2.channel.k8s.io'));
  const client = new SpdySession(up.socket, { role: 'client', head: up.rest });
  const error = await client.createStream({ streamtype: ['error'] });
  const stdin = await client.createStream({ streamtype: ['stdin'] });
  const stdout = await client.createStream({ streamtype: ['stdout'] });
  const stderr = await client.createStream({ streamtype: ['stderr'] });
  const out = collect(stdout);
  const status = collect(error);
  void collect(stderr);
  stdin.end('echoed through spdy');
  assert.equal(await out, 'echoed through spdy');
  assert.equal(await status, '');
  client.destroy();
});

test('WebSocket exec: empty hello on stdout, output, JSON status, normal close', async () => {
  const ws = new WebSocket(exec(['run', '0']), ['v4.channel.k8s.io']);
  const msgs: Buffer[] = [];
  ws.on('message', (d: Buffer) => msgs.push(d));
  const code = await new Promise<number>((r) => ws.on('close', r));
  assert.equal(code, 1000);
  assert.deepEqual([...msgs[0]!], [1]);
  assert.equal(Buffer.concat(msgs.filter((m) => m[0] === 1).map((m) => m.subarray(1))).toString(), 'out:run 0');
  assert.equal(msgs.find((m) => m[0] === 3)!.subarray(1).toString(), '{"metadata":{},"status":"Success"}');
});

test('SPDY port-forward: (error, data) pairs by requestID, ports limited to the request', async () => {
  const url = server.urlFor({ kind: 'portforward', podId: 'p1', ports: [80, 9] });
  const up = await rawUpgrade(url, spdyHeaders('portforward.k8s.io'));
  assert.match(up.head, /X-Stream-Protocol-Version: portforward\.k8s\.io/);
  const client = new SpdySession(up.socket, { role: 'client', head: up.rest });
  const open = async (port: number, id: string) => {
    const error = await client.createStream({ streamtype: ['error'], port: [String(port)], requestid: [id] });
    error.end();
    const data = await client.createStream({ streamtype: ['data'], port: [String(port)], requestid: [id] });
    return { error: collect(error), data: collect(data) };
  };
  const [a, b] = await Promise.all([open(80, '0'), open(9, '1')]);
  assert.equal(await a.data, 'port 80 says hi');
  assert.equal(await a.error, '');
  assert.match(await b.error, /error forwarding port 9 to pod p1: connect: connection refused/);
  const refused = await client.createStream({ streamtype: ['data'], port: ['22'], requestid: ['2'] });
  const reset = await new Promise<number>((r) => refused.on('reset', r));
  assert.equal(reset, 3); // REFUSED_STREAM
  client.destroy();
});

test('an idle session is closed after the idle timeout, and the runtime sees the abort', async () => {
  const ws = new WebSocket(exec(['hang', 'idle']), ['v5.channel.k8s.io']);
  const started = Date.now();
  await new Promise((r) => ws.on('close', r));
  assert.ok(Date.now() - started >= 350, 'not before the timeout');
  for (let i = 0; i < 20 && !aborted.includes('hang idle'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(aborted.includes('hang idle'));
});

test('stop() ends live sessions', async () => {
  const other = new StreamingServer({ address: '127.0.0.1', port: 0, idleTimeoutMs: 60_000, runtime, log });
  await other.start();
  const ws = new WebSocket(other.urlFor({ kind: 'exec', containerId: 'c', cmd: ['hang', 'stop'], tty: false, stdin: false, stdout: true, stderr: false }), ['v5.channel.k8s.io']);
  await new Promise((r) => ws.on('open', r));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(other.activeSessions, 1);
  const closed = new Promise((r) => ws.on('close', r));
  await other.stop();
  await closed;
  assert.ok(aborted.includes('hang stop'));
  void forwarded;
});
