// The lean gRPC server (common/grpc-server.ts) against real clients on a temp unix socket: grpc-js for
// what a gRPC client sees, node:http2 for what is on the wire (trailers-only answers, refused requests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Encoded, GrpcServer, bindService, type CallInfo, type Handlers, type GrpcServerOptions } from '../../common/grpc-server.js';
import { encodeGrpcMessage, frameMessage, parseGrpcTimeout, unframeSingle } from '../../common/grpc-wire.js';
import { ServiceClient, unixChannel } from '../../common/grpc-client.js';
import { codecFor } from '../../common/proto-registry.js';
import { isGrpcError, CrispError } from '../../common/errors.js';
import type { Ping, ProberMethods } from '../../gen/crisp.test.js';
import { ProberName } from '../../gen/crisp.test.js';

const ping = codecFor<Ping>('crisp.test.Ping');

const toStatus = (err: unknown) =>
  err instanceof CrispError ? { code: err.grpcCode, details: err.message } : { code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) };

interface Env {
  sock: string;
  server: GrpcServer;
  client: ServiceClient<ProberMethods>;
  /** A grpc-js channel, for calls with metadata the typed client does not send. */
  channel: grpc.Client;
}

async function withServer(handlers: Partial<Handlers<ProberMethods>>, fn: (env: Env) => Promise<void>, options: GrpcServerOptions = {}): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-grpcsrv-'));
  const sock = join(dir, 's.sock');
  const server = new GrpcServer(options);
  const all: Handlers<ProberMethods> = { Echo: async (req) => ({ text: req.text }), Watch: async () => undefined, ...handlers };
  bindService(server, ProberName, all, (_call, _req, run) => run(), toStatus);
  await server.listen(sock);
  const typed = unixChannel(sock);
  const client = new ServiceClient<ProberMethods>(typed, ProberName, () => ({ metadata: {}, timeoutMs: 10_000 }));
  const channel = new grpc.Client(`unix://${sock}`, grpc.credentials.createInsecure());
  try {
    await fn({ sock, server, client, channel });
  } finally {
    typed.close();
    channel.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One raw HTTP/2 request: response headers, body bytes and trailers. */
async function rawCall(sock: string, headers: http2.OutgoingHttpHeaders, body: Buffer): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
  const session = http2.connect('http://localhost', { createConnection: () => connect(sock) });
  try {
    const req = session.request({ ':method': 'POST', ':path': `/${ProberName}/Echo`, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    const res = new Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      let h: http2.IncomingHttpHeaders = {};
      let t: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      req.on('response', (x) => (h = x));
      req.on('trailers', (x) => (t = x));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve({ headers: h, body: Buffer.concat(chunks), trailers: t }));
      req.on('error', reject);
    });
    req.end(body);
    return await res;
  } finally {
    session.close();
  }
}

test('framing: one message in, a malformed grpc-timeout refused, percent-encoding of grpc-message', () => {
  const framed = frameMessage(Buffer.from('abc'));
  assert.deepEqual([...framed.subarray(0, 5)], [0, 0, 0, 0, 3]);
  const one = unframeSingle(framed);
  assert.equal(one.kind, 'message');
  assert.equal(one.kind === 'message' && one.payload.toString(), 'abc');
  assert.equal(unframeSingle(Buffer.alloc(0)).kind, 'none');
  assert.equal(unframeSingle(framed.subarray(0, 6)).kind, 'truncated');
  assert.equal(unframeSingle(Buffer.concat([framed, framed])).kind, 'several');
  assert.equal(parseGrpcTimeout('5S'), 5000);
  assert.equal(parseGrpcTimeout('2H'), 7_200_000);
  assert.equal(parseGrpcTimeout('3M'), 180_000);
  assert.equal(parseGrpcTimeout('250m'), 250);
  assert.equal(parseGrpcTimeout('1500u'), 1.5);
  assert.equal(parseGrpcTimeout('99999999n'), 99.999999);
  assert.equal(parseGrpcTimeout('0m'), 0);
  const malformed = ['', '5', 'S', '123456789S', '5s', '-1S', '1.5S', '5 S', '+5S', '５S', '5SS', ' 5S'];
  for (const bad of malformed) assert.equal(parseGrpcTimeout(bad), undefined, bad);
  assert.equal(encodeGrpcMessage('plain text: ok'), 'plain text: ok');
  assert.equal(encodeGrpcMessage('100%'), '100%25');
  assert.equal(encodeGrpcMessage('a\nb'), 'a%0Ab');
  assert.equal(encodeGrpcMessage('naïve'), 'na%C3%AFve');
});

test('unary round trip with metadata (-bin too) under a client deadline', async () => {
  let seen: { trace?: unknown; bin?: unknown; user?: unknown } = {};
  await withServer(
    {
      Echo: async (req, call: CallInfo) => {
        seen = { trace: call.metadata.get('traceparent')[0], bin: call.metadata.get('x-blob-bin')[0], user: call.metadata.get('content-type')[0] };
        return { text: req.text.toUpperCase(), n: req.n + 1 };
      },
    },
    async ({ channel }) => {
      const md = new grpc.Metadata();
      md.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
      md.set('x-blob-bin', Buffer.from([0, 1, 2, 255]));
      const res = await new Promise<Ping>((resolve, reject) =>
        channel.makeUnaryRequest(`/${ProberName}/Echo`, (v: Ping) => ping.encode(v), (b: Buffer) => ping.decode(b), { text: 'hi', n: 41 } as Ping, md, { deadline: Date.now() + 10_000 }, (err, v) =>
          err ? reject(err) : resolve(v!),
        ),
      );
      assert.equal(res.text, 'HI');
      assert.equal(res.n, 42);
      assert.equal(seen.trace, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
      assert.deepEqual(seen.bin, Buffer.from([0, 1, 2, 255]));
      assert.equal(seen.user, undefined, 'content-type is HTTP/2 framing, not metadata');
    },
  );
});

test('a handler may answer with bytes already encoded (Encoded): they go out as the message', async () => {
  await withServer({ Echo: async (req) => new Encoded<Ping>(ping.encode({ text: `${req.text}!`, n: 7 })) }, async ({ client }) => {
    const res = await client.unary('Echo', { text: 'pre', n: 1 });
    assert.equal(res.text, 'pre!');
    assert.equal(res.n, 7);
  });
  // One Encoded answering every call (a constant answer, framed once) and one written in its frame.
  const constant = new Encoded<Ping>(ping.encode({ text: 'same', n: 3 }));
  const room = Buffer.alloc(5 + ping.encode({ text: 'framed' }).length);
  ping.encode({ text: 'framed' }).forEach((b, i) => (room[5 + i] = b));
  const inFrame = Encoded.inFrame<Ping>(room);
  assert.deepEqual(inFrame.frame(), frameMessage(ping.encode({ text: 'framed' })));
  await withServer({ Echo: async (req) => (req.text === 'framed' ? inFrame : constant) }, async ({ client }) => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => client.unary('Echo', { text: i % 2 ? 'framed' : 'x' })));
    for (const [i, res] of answers.entries()) assert.deepEqual([res.text, res.n], i % 2 ? ['framed', 0] : ['same', 3]);
  });
});

test('errors: status and a non-ASCII message survive the trailers; unknown method and compressed requests are UNIMPLEMENTED', async () => {
  const details = 'pod "naïve" 100% not found\nsecond line ✓';
  await withServer({ Echo: async () => Promise.reject(new CrispError('NOT_FOUND', details)) }, async ({ client, sock }) => {
    await assert.rejects(client.unary('Echo', { text: 'x' }), (err: unknown) => isGrpcError(err, grpc.status.NOT_FOUND) && err.details === details);
    const unknown = new grpc.Client(`unix://${sock}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        unknown.makeUnaryRequest(`/${ProberName}/Nope`, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), {}, (e) => resolve(e)),
      );
      assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
      assert.match(err?.details ?? '', /Nope/);
    } finally {
      unknown.close();
    }
    const gzip = new grpc.Client(`unix://${sock}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        gzip.makeUnaryRequest(`/${ProberName}/Echo`, (v: Ping) => ping.encode(v), (b: Buffer) => b, { text: 'x'.repeat(2000) } as Ping, new grpc.Metadata(), {}, (e) => resolve(e)),
      );
      assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
      assert.match(err?.details ?? '', /identity/);
    } finally {
      gzip.close();
    }
  });
});

test('on the wire: an error is a trailers-only response, a success has headers, one message and grpc-status 0 trailers', async () => {
  await withServer({ Echo: async (req) => (req.text === 'fail' ? Promise.reject(new CrispError('INVALID_ARGUMENT', 'bad text')) : { text: req.text }) }, async ({ sock }) => {
    const failed = await rawCall(sock, {}, frameMessage(ping.encode({ text: 'fail' })));
    assert.equal(failed.headers[':status'], 200);
    assert.equal(failed.headers['grpc-status'], String(grpc.status.INVALID_ARGUMENT));
    assert.equal(failed.headers['grpc-message'], 'bad text');
    assert.equal(failed.body.length, 0);
    const ok = await rawCall(sock, {}, frameMessage(ping.encode({ text: 'fine' })));
    assert.equal(ok.headers['content-type'], 'application/grpc');
    assert.equal(ok.headers['grpc-status'], undefined);
    // As grpc-go's servers: no date header (node's respond() adds one unless told not to).
    assert.equal(ok.headers.date, undefined);
    assert.equal(failed.headers.date, undefined);
    assert.equal(ok.trailers['grpc-status'], '0');
    const msg = unframeSingle(ok.body);
    assert.equal(msg.kind === 'message' && ping.decode(msg.payload).text, 'fine');
    const badTimeout = await rawCall(sock, { 'grpc-timeout': '5 seconds' }, frameMessage(ping.encode({ text: 'x' })));
    assert.equal(badTimeout.headers['grpc-status'], String(grpc.status.INTERNAL));
    assert.match(String(badTimeout.headers['grpc-message']), /grpc-timeout/);
    const two = frameMessage(ping.encode({ text: 'x' }));
    const twoMessages = await rawCall(sock, {}, Buffer.concat([two, two]));
    assert.equal(twoMessages.headers['grpc-status'], String(grpc.status.INTERNAL));
    assert.match(String(twoMessages.headers['grpc-message']), /more than one request message/);
    const noMessage = await rawCall(sock, {}, Buffer.alloc(0));
    assert.equal(noMessage.headers['grpc-status'], String(grpc.status.INTERNAL));
    const compressedFlag = frameMessage(ping.encode({ text: 'x' }));
    compressedFlag[0] = 1;
    const compressed = await rawCall(sock, {}, compressedFlag);
    assert.equal(compressed.headers['grpc-status'], String(grpc.status.UNIMPLEMENTED));
    const notGrpc = await rawCall(sock, { 'content-type': 'application/json' }, Buffer.from('{}'));
    assert.equal(notGrpc.headers[':status'], 415);
  });
});

test('a request over the receive limit is RESOURCE_EXHAUSTED and the connection keeps serving', async () => {
  await withServer(
    {},
    async ({ client }) => {
      await assert.rejects(client.unary('Echo', { text: 'x'.repeat(4096) }), (err: unknown) => isGrpcError(err, grpc.status.RESOURCE_EXHAUSTED));
      assert.equal((await client.unary('Echo', { text: 'small' })).text, 'small');
    },
    { maxReceiveMessageLength: 1024 },
  );
});

test('a deadline aborts the signal of a handler that waits on it; the client gets DEADLINE_EXCEEDED', async () => {
  let reason: unknown;
  await withServer(
    {
      Echo: async (_req, call) => {
        await new Promise<void>((resolve) => call.signal.addEventListener('abort', () => resolve(), { once: true }));
        reason = call.signal.reason;
        return { text: 'late' };
      },
    },
    async ({ client }) => {
      await assert.rejects(client.unary('Echo', { text: 'x' }, { timeoutMs: 200 }), (err: unknown) => isGrpcError(err, grpc.status.DEADLINE_EXCEEDED));
      for (let i = 0; i < 100 && reason === undefined; i++) await new Promise((r) => setTimeout(r, 20));
      assert.match(String(reason), /Echo: (deadline exceeded|cancelled by client)/);
    },
  );
});

test('a deadline longer than a node timer holds (grpc-timeout 99999999H) does not cancel a handler that reads its signal', async () => {
  await withServer(
    {
      Echo: async (req, call) => {
        const signal = call.signal;
        await new Promise((r) => setTimeout(r, 50));
        return { text: signal.aborted ? 'aborted' : req.text };
      },
    },
    async ({ sock }) => {
      const res = await rawCall(sock, { 'grpc-timeout': '99999999H' }, frameMessage(ping.encode({ text: 'alive' })));
      assert.equal(res.trailers['grpc-status'], '0');
      const msg = unframeSingle(res.body);
      assert.equal(msg.kind === 'message' && ping.decode(msg.payload).text, 'alive');
    },
  );
});

test('a server stream waits on flow control and ends its handler when the client cancels', async () => {
  let written = 0;
  let handlerDone = false;
  await withServer(
    {
      Watch: async (_req, stream, call) => {
        try {
          const big = 'y'.repeat(64 * 1024);
          while (!call.signal.aborted) {
            await stream.write({ text: big, n: written });
            written++;
          }
        } finally {
          handlerDone = true;
        }
      },
    },
    async ({ client }) => {
      const ac = new AbortController();
      let got = 0;
      await assert.rejects(
        (async () => {
          for await (const m of client.serverStream('Watch', { text: 'w' }, { signal: ac.signal })) {
            assert.equal(m.n, got);
            if (++got === 3) {
              // Not reading on: the server fills the flow-control windows and waits for drain.
              await new Promise((r) => setTimeout(r, 300));
              ac.abort();
            }
          }
        })(),
        (err: unknown) => isGrpcError(err, grpc.status.CANCELLED),
      );
      for (let i = 0; i < 100 && !handlerDone; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(handlerDone, 'the handler ended after the cancel');
      assert.ok(written < 1000, `back-pressure held the writer (${written} messages written)`);
    },
  );
});

test('tryShutdown: GOAWAY refuses new calls, a running call finishes, then the callback runs', async () => {
  let release: () => void = () => undefined;
  let started: () => void = () => undefined;
  const running = new Promise<void>((r) => (started = r));
  await withServer(
    {
      Echo: async (req) => {
        if (req.text === 'slow') {
          started();
          await new Promise<void>((r) => (release = r));
        }
        return { text: req.text };
      },
    },
    async ({ client, server, sock }) => {
      const slow = client.unary('Echo', { text: 'slow' });
      await running;
      let shutDown = false;
      const stopped = new Promise<void>((r) =>
        server.tryShutdown(() => {
          shutDown = true;
          r();
        }),
      );
      const late = unixChannel(sock);
      try {
        const lateClient = new ServiceClient<ProberMethods>(late, ProberName, () => ({ metadata: {}, timeoutMs: 2000 }));
        await assert.rejects(lateClient.unary('Echo', { text: 'late' }), (err: unknown) => isGrpcError(err) && err.code !== grpc.status.OK);
      } finally {
        late.close();
      }
      assert.equal(shutDown, false, 'a running call holds the shutdown');
      release();
      assert.equal((await slow).text, 'slow');
      await stopped;
    },
  );
});
