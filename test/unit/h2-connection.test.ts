// The HTTP/2 server connection (common/h2/server-connection.ts) frame by frame, through a raw client
// on a temp unix socket: settings and PING, header blocks split over CONTINUATION, flow control of
// answers both ways, resets, and protocol errors that end one connection (GOAWAY) and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerConnection, type ServerStream } from '../../common/h2/server-connection.js';
import { RawPeer as RawClient, type Frame } from './lib/raw-h2-peer.js';
import { ACK, ErrorCode, Flag, FrameType, PREFACE, Setting, frame, settingsFrame, windowUpdateFrame } from '../../common/h2/frames.js';
import { HpackDecoder, encodeHeaderBlock } from '../../common/h2/hpack.js';

const REQUEST = encodeHeaderBlock([
  [':method', 'POST'],
  [':path', '/x'],
  [':scheme', 'http'],
  ['content-type', 'application/grpc'],
]);

interface Env {
  client(): Promise<RawClient>;
  /** Streams the server saw, with what their listener got. */
  seen: { stream: ServerStream; body: Buffer[]; ended: boolean; closed: boolean }[];
}

/** A server that answers every request with `answer(stream)` once its body has ended. */
async function withConnection(answer: (stream: ServerStream) => void, fn: (env: Env) => Promise<void>, maxUnread?: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-h2-'));
  const sock = join(dir, 's.sock');
  const seen: Env['seen'] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    new ServerConnection(socket, {
      onStream: (stream) => {
        const entry = { stream, body: [] as Buffer[], ended: false, closed: false };
        seen.push(entry);
        stream.listener = {
          data: (c) => entry.body.push(c),
          end: () => {
            entry.ended = true;
            answer(stream);
          },
          close: () => (entry.closed = true),
        };
      },
      onClose: () => sockets.delete(socket),
      maxUnread,
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  const clients: RawClient[] = [];
  try {
    await fn({
      seen,
      client: async () => {
        const s = connect(sock);
        await new Promise((r) => s.once('connect', r));
        const c = new RawClient(s);
        clients.push(c);
        return c;
      },
    });
  } finally {
    for (const c of clients) c.socket.destroy();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
}

const echo = (stream: ServerStream) => {
  stream.respond(encodeHeaderBlock([[':status', '200']]), false);
  stream.write(Buffer.from('hello'));
  stream.end(encodeHeaderBlock([['grpc-status', '0']]));
};

async function handshake(c: RawClient, settings: [Setting, number][] = []): Promise<void> {
  c.send(PREFACE, settingsFrame(settings));
  const s = await c.next((f) => f.type === FrameType.SETTINGS && (f.flags & ACK) === 0, 'server SETTINGS');
  assert.equal(s.stream, 0);
  c.send(frame(FrameType.SETTINGS, ACK, 0));
  await c.next((f) => f.type === FrameType.SETTINGS && (f.flags & ACK) !== 0, 'SETTINGS ACK');
}

const goawayCode = (f: Frame) => f.payload.readUInt32BE(4);

test('handshake, PING answered with its payload, one request answered with headers, data and trailers', async () => {
  await withConnection(echo, async ({ client, seen }) => {
    const c = await client();
    await handshake(c);
    c.send(frame(FrameType.PING, 0, 0, Buffer.from('12345678')));
    const pong = await c.next((f) => f.type === FrameType.PING, 'PING ACK');
    assert.equal(pong.flags & ACK, ACK);
    assert.equal(pong.payload.toString(), '12345678');
    c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, REQUEST), frame(FrameType.DATA, Flag.END_STREAM, 1, Buffer.from('req')));
    const dec = new HpackDecoder();
    const headers = await c.next((f) => f.type === FrameType.HEADERS && f.stream === 1, 'response HEADERS');
    assert.equal(dec.decode(headers.payload).headers[':status'], '200');
    const data = await c.next((f) => f.type === FrameType.DATA && f.stream === 1, 'DATA');
    assert.equal(data.payload.toString(), 'hello');
    const trailers = await c.next((f) => f.type === FrameType.HEADERS && f.stream === 1, 'trailers');
    assert.equal(trailers.flags & Flag.END_STREAM, Flag.END_STREAM);
    assert.equal(dec.decode(trailers.payload).headers['grpc-status'], '0');
    assert.equal(Buffer.concat(seen[0]!.body).toString(), 'req');
    assert.ok(seen[0]!.closed);
  });
});

test('a header block over HEADERS (padded, with priority) and CONTINUATION is one request', async () => {
  await withConnection(echo, async ({ client, seen }) => {
    const c = await client();
    await handshake(c);
    const half = Math.floor(REQUEST.length / 2);
    const padded = Buffer.concat([Buffer.from([3]), Buffer.from([0, 0, 0, 0, 16]), REQUEST.subarray(0, half), Buffer.alloc(3)]);
    c.send(
      frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY | Flag.END_STREAM, 3, padded),
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 3, REQUEST.subarray(half)),
    );
    await c.next((f) => f.type === FrameType.HEADERS && f.stream === 3 && (f.flags & Flag.END_STREAM) !== 0, 'trailers');
    assert.equal(seen[0]!.stream.headers[':path'], '/x');
    assert.ok(seen[0]!.ended);
  });
});

test('answers wait for the client window and are cut to its SETTINGS_MAX_FRAME_SIZE; trailers follow the last byte', async () => {
  const big = Buffer.alloc(40_000, 7);
  await withConnection(
    (s) => {
      s.respond(encodeHeaderBlock([[':status', '200']]), false);
      s.write(big);
      s.end(encodeHeaderBlock([['grpc-status', '0']]));
    },
    async ({ client }) => {
      const c = await client();
      await handshake(c, [[Setting.INITIAL_WINDOW_SIZE, 10_000]]);
      c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, REQUEST));
      let got = 0;
      while (got < 10_000) got += (await c.next((f) => f.type === FrameType.DATA, 'DATA')).payload.length;
      assert.equal(got, 10_000);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(c.frames.filter((f) => f.type === FrameType.DATA && f.payload.length > 0).length, 0, 'nothing beyond the stream window');
      c.send(windowUpdateFrame(1, 100_000));
      const sizes: number[] = [];
      while (got < big.length) {
        const d = await c.next((f) => f.type === FrameType.DATA, 'DATA');
        sizes.push(d.payload.length);
        got += d.payload.length;
      }
      assert.ok(Math.max(...sizes) <= 16_384, `frames of at most 16384 octets (${sizes.join(',')})`);
      const trailers = await c.next((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0, 'trailers');
      assert.equal(trailers.stream, 1);
    },
  );
});

test('a client RST_STREAM closes the stream before any answer; the connection keeps serving', async () => {
  await withConnection(
    () => {
      // never answers
    },
    async ({ client, seen }) => {
      const c = await client();
      await handshake(c);
      c.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, REQUEST));
      const rst = Buffer.alloc(4);
      rst.writeUInt32BE(ErrorCode.CANCEL);
      c.send(frame(FrameType.RST_STREAM, 0, 1, rst));
      c.send(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
      await c.next((f) => f.type === FrameType.PING, 'PING ACK');
      assert.ok(seen[0]!.closed);
    },
  );
});

test('protocol errors end the connection with GOAWAY and their code', async () => {
  await withConnection(echo, async ({ client }) => {
    const cases: [string, (c: RawClient) => Promise<void> | void, ErrorCode][] = [
      ['a frame before the client SETTINGS', (c) => c.send(PREFACE, frame(FrameType.PING, 0, 0, Buffer.alloc(8))), ErrorCode.PROTOCOL_ERROR],
      ['a header block broken by another frame', async (c) => {
        await handshake(c);
        c.send(frame(FrameType.HEADERS, 0, 1, REQUEST.subarray(0, 2)), frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
      }, ErrorCode.PROTOCOL_ERROR],
      ['a header block that is not HPACK', async (c) => {
        await handshake(c);
        c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80])));
      }, ErrorCode.COMPRESSION_ERROR],
      ['a frame above 16384 octets', async (c) => {
        await handshake(c);
        c.send(frame(FrameType.DATA, 0, 1, Buffer.alloc(20_000)));
      }, ErrorCode.FRAME_SIZE_ERROR],
      ['a stream opened by an even id', async (c) => {
        await handshake(c);
        c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 2, REQUEST));
      }, ErrorCode.PROTOCOL_ERROR],
      ['DATA on a stream never opened', async (c) => {
        await handshake(c);
        c.send(frame(FrameType.DATA, 0, 5, Buffer.from('x')));
      }, ErrorCode.PROTOCOL_ERROR],
      ['a window grown past 2^31-1', async (c) => {
        await handshake(c);
        c.send(windowUpdateFrame(0, 2 ** 31 - 1));
      }, ErrorCode.FLOW_CONTROL_ERROR],
    ];
    for (const [what, act, code] of cases) {
      const c = await client();
      await act(c);
      const goaway = await c.next((f) => f.type === FrameType.GOAWAY, `GOAWAY for ${what}`);
      assert.equal(goawayCode(goaway), code, what);
      await c.closedSocket();
    }
    // the server is still there for a well-behaved client
    const ok = await client();
    await handshake(ok);
    ok.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, REQUEST));
    await ok.next((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0, 'trailers');
  });
});

test('not an HTTP/2 client: the socket is closed', async () => {
  await withConnection(echo, async ({ client }) => {
    const c = await client();
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await c.next((f) => f.type === FrameType.GOAWAY, 'GOAWAY');
    await c.closedSocket();
  });
});

test('an answer sent before the request body ended resets the rest (RST_STREAM NO_ERROR)', async () => {
  await withConnection(echo, async ({ client, seen }) => {
    const c = await client();
    await handshake(c);
    c.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, REQUEST), frame(FrameType.DATA, 0, 1, Buffer.from('part')));
    for (let i = 0; i < 150 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(Buffer.concat(seen[0]!.body).toString(), 'part');
    assert.equal(seen[0]!.ended, false);
    const stream = seen[0]!.stream;
    stream.respond(encodeHeaderBlock([[':status', '200'], ['grpc-status', '8']]), true);
    const rst = await c.next((f) => f.type === FrameType.RST_STREAM, 'RST_STREAM');
    assert.equal(rst.payload.readUInt32BE(0), ErrorCode.NO_ERROR);
    assert.ok(seen[0]!.closed);
  });
});

test('a client that sends without reading what it asked for is dropped once the unread answers pass the limit', async () => {
  await withConnection(
    echo,
    async ({ client }) => {
      const c = await client();
      await handshake(c);
      // stop reading: the PING acknowledgements pile up in the server's socket
      c.socket.pause();
      const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8));
      const burst = Buffer.concat(Array.from({ length: 4096 }, () => ping));
      for (let i = 0; i < 200 && !c.closed; i++) {
        c.socket.write(burst);
        await new Promise((r) => setImmediate(r));
      }
      c.socket.resume();
      await c.closedSocket();
    },
    256 * 1024,
  );
});
