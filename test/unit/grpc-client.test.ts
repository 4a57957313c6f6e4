// The node:http2 gRPC client (common/grpc-channel.ts behind ServiceClient) against real HTTP/2 servers
// in this process: our GrpcServer for the service paths, and a raw node:http2 server where the test
// needs to shape the answer itself (trailers-only, percent-encoded messages, bidi, a dropped socket).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GrpcServer, bindService, type Handlers } from '../../common/grpc-server.js';
import { ServiceClient, unixChannel } from '../../common/grpc-client.js';
import type { GrpcChannel } from '../../common/grpc-channel.js';
import { status } from '../../common/grpc-types.js';
import { decodeGrpcMessage, encodeGrpcMessage, formatGrpcTimeout, frameMessage, parseGrpcTimeout } from '../../common/grpc-wire.js';
import { codecFor } from '../../common/proto-registry.js';
import { isGrpcError, notFound } from '../../common/errors.js';
import { toStatus } from '../../cri/instrument.js';
import { ProberName, type Ping, type ProberMethods } from '../../gen/crisp.test.js';
import {
  ContentName,
  type ContentMethods,
  type WriteContentRequest,
  type WriteContentResponse,
} from '../../gen/containerd.services.content.v1.js';

const ping = codecFor<Ping>('crisp.test.Ping');
const writeReq = codecFor<WriteContentRequest>('containerd.services.content.v1.WriteContentRequest');
const writeRes = codecFor<WriteContentResponse>('containerd.services.content.v1.WriteContentResponse');

function tempSocket(): { sock: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-grpcc-'));
  return { sock: join(dir, 's.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function startProber(sock: string, handlers: Partial<Handlers<ProberMethods>> = {}): Promise<GrpcServer> {
  const server = new GrpcServer();
  const all: Handlers<ProberMethods> = {
    Echo: async (req) => {
      if (req.text === 'missing') throw notFound(`ping "${req.text}" not found: 100% ✓`);
      return { text: req.text.toUpperCase(), n: req.n + 1 };
    },
    Watch: async (req, stream) => {
      for (let i = 0; i < req.n; i++) await stream.write({ text: `${req.text}${i}` });
    },
    ...handlers,
  };
  bindService(server, ProberName, all, (_call, _req, run) => run(), toStatus);
  await server.listen(sock);
  return server;
}

/** Messages of a request body (5-byte prefix each). */
function unframeAll(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const n = body.readUInt32BE(at + 1);
    out.push(body.subarray(at + 5, at + 5 + n));
    at += 5 + n;
  }
  return out;
}

/** A raw HTTP/2 server on `sock`; `onStream` answers each request as the test needs. */
async function withRaw(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, server: http2.Http2Server) => void,
  fn: (channel: GrpcChannel) => Promise<void>,
): Promise<void> {
  const { sock, cleanup } = tempSocket();
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => sessions.add(s.once('close', () => sessions.delete(s))));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined); // resets the test provokes
    onStream(stream, headers, server);
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  const channel = unixChannel(sock);
  try {
    await fn(channel);
  } finally {
    channel.close();
    // A test that failed half-way can leave a stream open: do not wait for it.
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    cleanup();
  }
}

const proberOn = (channel: GrpcChannel, timeoutMs = 5000, metadata: Record<string, string> = {}) =>
  new ServiceClient<ProberMethods>(channel, ProberName, () => ({ metadata, timeoutMs }));

test('grpc-wire: grpc-timeout and grpc-message round-trip', () => {
  for (const ms of [0, 1, 1500, 99_999_999, 100_000_000, 30 * 24 * 3600 * 1000]) {
    const v = formatGrpcTimeout(ms);
    assert.match(v, /^\d{1,8}[mSMH]$/);
    assert.ok(parseGrpcTimeout(v)! >= ms, `${v} covers ${ms} ms`);
  }
  for (const text of ['plain', 'pod "naïve" 100% not found\nsecond ✓', '', '%', '%zz']) {
    assert.equal(decodeGrpcMessage(encodeGrpcMessage(text)), text);
  }
  assert.equal(decodeGrpcMessage('50%25 done %'), '50% done %');
});

test('unary: answer, metadata and deadline header on the wire, status and percent-decoded message of a failure', async () => {
  const { sock, cleanup } = tempSocket();
  let seen: Record<string, unknown> = {};
  const server = await startProber(sock, {
    Echo: async (req, call) => {
      seen = { ns: call.metadata.get('containerd-namespace')[0], lease: call.metadata.get('containerd-lease')[0] };
      if (req.text === 'missing') throw notFound('ping "naïve" 100% not found\nsecond ✓');
      return { text: req.text.toUpperCase(), n: req.n + 1 };
    },
  });
  const channel = unixChannel(`unix://${sock}`);
  try {
    const client = proberOn(channel, 5000, { 'containerd-namespace': 'k8s.io' });
    const res = await client.unary('Echo', { text: 'hi', n: 2 ** 40 }, { metadata: { 'containerd-lease': 'l1' } });
    assert.equal(res.text, 'HI');
    assert.equal(res.n, 2 ** 40 + 1);
    assert.deepEqual(seen, { ns: 'k8s.io', lease: 'l1' });
    await assert.rejects(client.unary('Echo', { text: 'missing' }), (err: unknown) => {
      assert.ok(isGrpcError(err, status.NOT_FOUND));
      assert.equal(err.details, 'ping "naïve" 100% not found\nsecond ✓');
      assert.match(err.message, /^5 NOT_FOUND: /);
      return true;
    });
    // Many calls at once share the one session.
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => client.unary('Echo', { text: `c${i}` })));
    assert.deepEqual(many.map((r) => r.text), Array.from({ length: 50 }, (_, i) => `C${i}`));
  } finally {
    channel.close();
    server.forceShutdown();
    cleanup();
  }
});

test('unary: headers the client sends, a trailers-only failure, an HTTP error, a reset stream', async () => {
  let headersSeen: http2.IncomingHttpHeaders = {};
  await withRaw(
    (stream, headers) => {
      const path = headers[':path'];
      if (path === `/${ProberName}/Echo`) {
        headersSeen = headers;
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const req = ping.decode(unframeAll(Buffer.concat(chunks))[0]!);
          if (req.text === 'trailers-only') {
            const only = { 'grpc-status': '9', 'grpc-message': encodeGrpcMessage('not now ✓') };
            stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...only }, { endStream: true });
          } else if (req.text === 'http') {
            stream.respond({ ':status': 503 }, { endStream: true });
          } else if (req.text === 'reset') {
            stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
          } else if (req.text === 'calm') {
            stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
          } else if (req.text === 'no-status') {
            stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
            stream.end(frameMessage(ping.encode({ text: 'x' })));
          } else {
            stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
            stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
            stream.end(frameMessage(ping.encode({ text: `re:${req.text}` })));
          }
        });
      }
    },
    async (channel) => {
      const client = proberOn(channel, 60_000, { 'x-test': 'yes' });
      assert.equal((await client.unary('Echo', { text: 'a' })).text, 're:a');
      assert.equal(headersSeen['content-type'], 'application/grpc');
      assert.equal(headersSeen.te, 'trailers');
      assert.equal(headersSeen['x-test'], 'yes');
      assert.equal(headersSeen['grpc-timeout'], '60000m');
      const code = (text: string) =>
        client.unary('Echo', { text }).then(() => status.OK, (err: unknown) => (isGrpcError(err) ? [err.code, err.details] : err));
      assert.deepEqual(await code('trailers-only'), [status.FAILED_PRECONDITION, 'not now ✓']);
      assert.equal((await code('http') as [number])[0], status.UNAVAILABLE);
      assert.equal((await code('reset') as [number])[0], status.UNAVAILABLE);
      assert.equal((await code('calm') as [number])[0], status.RESOURCE_EXHAUSTED);
      assert.equal((await code('no-status') as [number])[0], status.INTERNAL);
      assert.equal((await client.unary('Echo', { text: 'after' })).text, 're:after', 'failed calls leave the session usable');
    },
  );
});

test('deadline and cancellation end the call and reset its stream with CANCEL', async () => {
  const resets: number[] = [];
  await withRaw(
    (stream) => {
      stream.on('data', () => undefined);
      stream.on('close', () => resets.push(stream.rstCode));
    },
    async (channel) => {
      const client = proberOn(channel, 100);
      await assert.rejects(client.unary('Echo', { text: 'slow' }), (err: unknown) => isGrpcError(err, status.DEADLINE_EXCEEDED));
      const ac = new AbortController();
      const pending = client.unary('Echo', { text: 'slow' }, { timeoutMs: 0, signal: ac.signal });
      setImmediate(() => ac.abort());
      await assert.rejects(pending, (err: unknown) => isGrpcError(err, status.CANCELLED));
      const aborted = AbortSignal.abort();
      await assert.rejects(client.unary('Echo', { text: 'x' }, { signal: aborted }), (err: unknown) => isGrpcError(err, status.CANCELLED));
      const stream = client.serverStream('Watch', { text: 'w', n: 1 });
      const next = stream[Symbol.asyncIterator]().next();
      stream.cancel();
      await assert.rejects(next, (err: unknown) => isGrpcError(err, status.CANCELLED));
      while (resets.length < 3) await new Promise((r) => setImmediate(r));
      const { NGHTTP2_CANCEL } = http2.constants;
      assert.deepEqual(resets.slice(0, 3), [NGHTTP2_CANCEL, NGHTTP2_CANCEL, NGHTTP2_CANCEL]);
    },
  );
});

test('server stream: every message then the end; an early break cancels; a failure after messages', async () => {
  const { sock, cleanup } = tempSocket();
  let cancelled = 0;
  const server = await startProber(sock, {
    Watch: async (req, stream, call) => {
      if (req.text === 'forever') {
        for (let i = 0; ; i++) {
          if (call.signal.aborted) return void cancelled++;
          await stream.write({ text: `f${i}` });
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      for (let i = 0; i < req.n; i++) await stream.write({ text: `${req.text}${i}`, n: i });
      if (req.text === 'fail') throw notFound('gone mid-stream');
    },
  });
  const channel = unixChannel(sock);
  try {
    const client = proberOn(channel);
    const got: string[] = [];
    for await (const m of client.serverStream('Watch', { text: 'w', n: 200 })) got.push(m.text);
    assert.equal(got.length, 200);
    assert.equal(got[199], 'w199');
    const first: string[] = [];
    for await (const m of client.serverStream('Watch', { text: 'forever' })) {
      first.push(m.text);
      if (first.length === 3) break;
    }
    assert.deepEqual(first, ['f0', 'f1', 'f2']);
    const partial: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const m of client.serverStream('Watch', { text: 'fail', n: 2 })) partial.push(m.text);
      })(),
      (err: unknown) => isGrpcError(err, status.NOT_FOUND) && /gone mid-stream/.test(err.details),
    );
    assert.deepEqual(partial, ['fail0', 'fail1']);
    while (cancelled === 0) await new Promise((r) => setTimeout(r, 10));
  } finally {
    channel.close();
    server.forceShutdown();
    cleanup();
  }
});

test('bidi stream (content Write): interleaved writes and reads, half-close, and a message over the size limit', async () => {
  await withRaw(
    (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      let pending = Buffer.alloc(0);
      let total = 0;
      stream.on('data', (c: Buffer) => {
        pending = Buffer.concat([pending, c]);
        while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
          const n = pending.readUInt32BE(1);
          const req = writeReq.decode(pending.subarray(5, 5 + n));
          pending = pending.subarray(5 + n);
          total += req.data.length;
          const digest = req.ref === 'big' ? 'd'.repeat(2000) : req.ref;
          stream.write(frameMessage(writeRes.encode({ action: req.action, offset: total, digest })));
        }
      });
      stream.on('end', () => stream.end());
    },
    async (channel) => {
      const content = new ServiceClient<ContentMethods>(channel, ContentName, () => ({ metadata: {}, timeoutMs: 5000 }));
      const call = content.duplex('Write');
      for (let i = 1; i <= 5; i++) {
        await call.write({ action: 1, ref: `r${i}`, data: Buffer.alloc(100_000 * i) });
        const res = await call.read();
        assert.equal(res?.digest, `r${i}`);
        assert.equal(res?.offset, (100_000 * i * (i + 1)) / 2);
      }
      call.end();
      assert.equal(await call.read(), undefined);

      const small = unixChannel(channel.path, { maxMessageBytes: 1000 });
      try {
        const limited = new ServiceClient<ContentMethods>(small, ContentName, () => ({ metadata: {}, timeoutMs: 5000 }));
        const over = limited.duplex('Write');
        await assert.rejects(over.write({ data: Buffer.alloc(2000) }), (err: unknown) => isGrpcError(err, status.RESOURCE_EXHAUSTED));
        const answerTooBig = limited.duplex('Write');
        await answerTooBig.write({ ref: 'big', data: Buffer.alloc(1) });
        const tooLarge = (err: unknown) => isGrpcError(err, status.RESOURCE_EXHAUSTED) && /larger than max/.test(err.details);
        await assert.rejects(answerTooBig.read(), tooLarge);
      } finally {
        small.close();
      }
    },
  );
});

test('a peer that drops the connection mid-call: UNAVAILABLE, and the next call connects again', async () => {
  let drop = true;
  await withRaw(
    (stream) => {
      stream.on('data', () => undefined);
      if (drop) {
        drop = false;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.write(frameMessage(ping.encode({ text: 'partial' })).subarray(0, 3), () => stream.session?.destroy());
        return;
      }
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(frameMessage(ping.encode({ text: 'again' })));
      });
    },
    async (channel) => {
      const client = proberOn(channel);
      await assert.rejects(client.unary('Echo', { text: 'x' }), (err: unknown) => isGrpcError(err, status.UNAVAILABLE));
      assert.equal((await client.unary('Echo', { text: 'x' })).text, 'again');
    },
  );
});

/** Retries `call` while it fails UNAVAILABLE (the channel's back-off after a failed connect is at most 5 s). */
async function untilAnswered<T>(call: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await call();
    } catch (err) {
      if (!isGrpcError(err, status.UNAVAILABLE) || i >= 60) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

test('no server, then a server, then a restarted server: UNAVAILABLE naming the cause, then calls succeed again', async () => {
  const { sock, cleanup } = tempSocket();
  const channel = unixChannel(sock);
  let server: GrpcServer | undefined;
  try {
    const client = proberOn(channel);
    const noSocket = (err: unknown) => isGrpcError(err, status.UNAVAILABLE) && /ENOENT/.test(err.details);
    await assert.rejects(client.unary('Echo', { text: 'x' }), noSocket);
    const cancelled = (err: unknown) => isGrpcError(err, status.CANCELLED);
    await assert.rejects(client.unary('Echo', { text: 'x' }, { signal: AbortSignal.abort() }), cancelled);
    // after a failed connect the channel backs off: calls fail at once, naming the cause and the wait
    const backingOff = (err: unknown) => isGrpcError(err, status.UNAVAILABLE) && /ENOENT/.test(err.details) && /next attempt in \d+ ms/.test(err.details);
    await assert.rejects(client.unary('Echo', { text: 'x' }), backingOff);
    server = await startProber(sock);
    assert.equal((await untilAnswered(() => client.unary('Echo', { text: 'one' }))).text, 'ONE');
    const watch = client.serverStream('Watch', { text: 'forever' });
    server.forceShutdown();
    await assert.rejects(
      (async () => {
        for await (const m of watch) void m;
      })(),
      (err: unknown) => isGrpcError(err) && err.code !== status.OK,
    );
    await assert.rejects(client.unary('Echo', { text: 'x' }), (err: unknown) => isGrpcError(err, status.UNAVAILABLE));
    server = await startProber(sock);
    assert.equal((await untilAnswered(() => client.unary('Echo', { text: 'two' }))).text, 'TWO');
  } finally {
    channel.close();
    server?.forceShutdown();
    cleanup();
  }
  const closed = (err: unknown) => isGrpcError(err, status.UNAVAILABLE) && /closed/.test(err.details);
  await assert.rejects(proberOn(channel).unary('Echo', { text: 'x' }), closed);
});

test('a peer that resets the stream (CANCEL) as the deadline passes ends the call DEADLINE_EXCEEDED', async () => {
  await withRaw(
    (stream, headers) => {
      // as grpc-go does at the deadline it read from grpc-timeout, a hair before the client's timer
      // (a long deadline gets the reset at once: a cancel by the peer)
      const ms = Number(String(headers['grpc-timeout']).replace(/m$/, ''));
      setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), ms >= 10_000 ? 0 : Math.max(ms - 10, 0));
    },
    async (channel) => {
      const client = proberOn(channel, 300);
      await assert.rejects(client.unary('Echo', { text: 'slow' }), (err: unknown) => isGrpcError(err, status.DEADLINE_EXCEEDED));
      // a reset well before the deadline is a cancel by the peer
      await assert.rejects(proberOn(channel, 60_000).unary('Echo', { text: 'x' }), (err: unknown) => isGrpcError(err, status.CANCELLED));
    },
  );
});
