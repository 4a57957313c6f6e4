import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { GrpcServer, bindService, type Handlers } from '../../common/grpc-server.js';
import { ServiceClient, unixChannel } from '../../common/grpc-client.js';
import { codecFor } from '../../common/proto-registry.js';
import { notFound, isGrpcError } from '../../common/errors.js';
import type { Ping, ProberMethods } from '../../gen/crisp.test.js';
import { ProberName } from '../../gen/crisp.test.js';

test('codec keeps int64, maps, oneofs and defaults', () => {
  const codec = codecFor<Ping>('crisp.test.Ping');
  const bytes = codec.encode({ text: 'x', n: 2 ** 61 + 2 ** 9, labels: { a: 'b' }, b: 7 });
  const back = codec.decode(bytes);
  assert.equal(back.text, 'x');
  assert.equal(back.n, 2 ** 61 + 2 ** 9);
  assert.deepEqual(back.labels, { a: 'b' });
  assert.equal(back.b, 7);
  assert.equal(back.a, undefined);
  assert.deepEqual(back.children, []);
  assert.equal(back.at, null);
});

test('typed server and client round-trip unary, stream and errors over a unix socket', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-grpc-'));
  const sock = join(dir, 's.sock');
  const server = new GrpcServer();
  const handlers: Handlers<ProberMethods> = {
    Echo: async (req) => {
      if (req.text === 'missing') throw notFound('ping "missing" not found');
      return { text: req.text.toUpperCase(), n: req.n + 1 };
    },
    Watch: async (req, stream) => {
      for (let i = 0; i < req.n; i++) await stream.write({ text: `${req.text}${i}` });
    },
  };
  bindService(server, ProberName, handlers, (_call, _req, run) => run(), (err) => ({
    code: err instanceof Error && 'grpcCode' in err ? (err as { grpcCode: number }).grpcCode : grpc.status.INTERNAL,
    details: err instanceof Error ? err.message : String(err),
  }));
  await server.listen(sock);
  const channel = unixChannel(sock);
  const client = new ServiceClient<ProberMethods>(channel, ProberName, () => ({ metadata: { 'x-test': '1' }, timeoutMs: 5000 }));
  try {
    const res = await client.unary('Echo', { text: 'hi', n: 41 });
    assert.equal(res.text, 'HI');
    assert.equal(res.n, 42);
    const got: string[] = [];
    for await (const m of client.serverStream('Watch', { text: 'w', n: 3 })) got.push(m.text);
    assert.deepEqual(got, ['w0', 'w1', 'w2']);
    await assert.rejects(client.unary('Echo', { text: 'missing' }), (err: unknown) => {
      assert.ok(isGrpcError(err, grpc.status.NOT_FOUND));
      assert.match(err.details, /missing/);
      return true;
    });
  } finally {
    channel.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a call signal aborts when the client cancels a running call, and stays quiet once the call has finished', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-grpc-'));
  const sock = join(dir, 's.sock');
  const server = new GrpcServer();
  const finishedSignals: AbortSignal[] = [];
  let abortedReason: unknown;
  let running: () => void = () => undefined;
  const started = new Promise<void>((res) => (running = res));
  const handlers: Handlers<ProberMethods> = {
    Echo: async (req, call) => {
      if (req.text !== 'hang') {
        finishedSignals.push(call.signal);
        return { text: req.text };
      }
      running();
      await new Promise<void>((res) => call.signal.addEventListener('abort', () => res(), { once: true }));
      abortedReason = call.signal.reason;
      return { text: 'late' };
    },
    Watch: async () => undefined,
  };
  bindService(server, ProberName, handlers, (_call, _req, run) => run(), () => ({ code: grpc.status.INTERNAL }));
  await server.listen(sock);
  const channel = unixChannel(sock);
  const client = new ServiceClient<ProberMethods>(channel, ProberName, () => ({ metadata: {}, timeoutMs: 5000 }));
  try {
    for (let i = 0; i < 3; i++) assert.equal((await client.unary('Echo', { text: `x${i}` })).text, `x${i}`);
    const ac = new AbortController();
    const hung = client.unary('Echo', { text: 'hang' }, { signal: ac.signal });
    await started;
    ac.abort();
    await assert.rejects(hung, (err: unknown) => isGrpcError(err, grpc.status.CANCELLED));
    for (let i = 0; i < 50 && abortedReason === undefined; i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(String(abortedReason), /Echo: cancelled by client/);
    assert.equal(finishedSignals.length, 3);
    for (const s of finishedSignals) assert.equal(s.aborted, false, 'a finished call is not reported as cancelled');
  } finally {
    channel.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});
