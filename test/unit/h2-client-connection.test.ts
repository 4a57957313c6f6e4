// The HTTP/2 client connection (common/h2/client-connection.ts) frame by frame, against a raw server on a
// temp unix socket: the preface and request header blocks, answers in pieces, flow control of request
// bodies and of paced answers, the peer's stream limit, resets, GOAWAY, and a protocol error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientConnection, type ClientStream, type ResponseListener } from '../../common/h2/client-connection.js';
import { ACK, ErrorCode, Flag, FrameType, PREFACE, Setting, frame, goawayFrame, rstStreamFrame, settingsFrame, windowUpdateFrame } from '../../common/h2/frames.js';
import { HpackDecoder, encodeHeaderBlock, type HeaderMap } from '../../common/h2/hpack.js';
import { RawPeer } from './lib/raw-h2-peer.js';

/** What one stream's listener saw. */
class Seen implements ResponseListener {
  blocks: { headers: HeaderMap; end: boolean }[] = [];
  body: Buffer[] = [];
  closed = false;
  headers(headers: HeaderMap, end: boolean): void {
    this.blocks.push({ headers, end });
  }
  data(chunk: Buffer): void {
    this.body.push(chunk);
  }
  close(): void {
    this.closed = true;
  }
}

interface Env {
  conn: ClientConnection;
  server: RawPeer;
  closed: () => boolean;
  /** Sends the server's SETTINGS (and reads the client's ACK of them). */
  handshake(settings?: [Setting, number][]): Promise<void>;
}

async function withPeer(fn: (env: Env) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-h2c-'));
  const sock = join(dir, 's.sock');
  let accepted!: (s: Socket) => void;
  const serverSocket = new Promise<Socket>((r) => (accepted = r));
  const server = createServer((s) => accepted(s));
  await new Promise<void>((r) => server.listen(sock, r));
  let closed = false;
  const conn = new ClientConnection(connect(sock), { onClose: () => (closed = true) });
  const peer = new RawPeer(await serverSocket, { readsPreface: true });
  try {
    await fn({
      conn,
      server: peer,
      closed: () => closed,
      handshake: async (settings = []) => {
        peer.send(settingsFrame(settings));
        await peer.next((f) => f.type === FrameType.SETTINGS && (f.flags & ACK) !== 0, 'SETTINGS ACK');
      },
    });
  } finally {
    conn.destroy();
    peer.socket.destroy();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
}

const REQUEST = encodeHeaderBlock([
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', '/svc/Call'],
  [':authority', 'localhost'],
  ['content-type', 'application/grpc'],
]);
const RESPONSE = encodeHeaderBlock([
  [':status', '200'],
  ['content-type', 'application/grpc'],
]);
const TRAILERS = encodeHeaderBlock([['grpc-status', '0']]);

async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; i < 150 && !probe(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(probe(), what);
}

test('preface, SETTINGS, requests on odd ids; an answer in pieces reaches the listener; the stream closes at END_STREAM', async () => {
  await withPeer(async ({ conn, server, handshake }) => {
    await handshake();
    const settings = await server.next((f) => f.type === FrameType.SETTINGS && (f.flags & ACK) === 0, 'client SETTINGS');
    assert.ok(server.preface.equals(PREFACE), 'the client preface comes first');
    assert.ok(settings.payload.length % 6 === 0);
    const seen = [new Seen(), new Seen()];
    const a = conn.request(REQUEST, false, seen[0]!);
    const b = conn.request(REQUEST, true, seen[1]!);
    assert.deepEqual([a.id, b.id], [1, 3]);
    a.write(Buffer.from('body'));
    a.end();
    const decoder = new HpackDecoder();
    const ha = await server.next((f) => f.type === FrameType.HEADERS && f.stream === 1, 'HEADERS 1');
    assert.equal(decoder.decode(ha.payload).headers[':path'], '/svc/Call');
    assert.equal(ha.flags & Flag.END_STREAM, 0);
    const hb = await server.next((f) => f.type === FrameType.HEADERS && f.stream === 3, 'HEADERS 3');
    assert.ok(hb.flags & Flag.END_STREAM, 'a request without body ends with its HEADERS');
    const body = await server.next((f) => f.type === FrameType.DATA && f.stream === 1 && f.payload.length > 0, 'DATA 1');
    assert.equal(body.payload.toString(), 'body');
    await server.next((f) => f.type === FrameType.DATA && f.stream === 1 && (f.flags & Flag.END_STREAM) !== 0, 'END_STREAM 1');

    // The answer: headers split over CONTINUATION, data in two frames, trailers.
    server.send(frame(FrameType.HEADERS, 0, 1, RESPONSE.subarray(0, 3)), frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, RESPONSE.subarray(3)));
    server.send(frame(FrameType.DATA, 0, 1, Buffer.from('he')), frame(FrameType.DATA, Flag.PADDED, 1, Buffer.from([2, 0x6c, 0x6c, 0, 0])));
    server.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, TRAILERS));
    await until('stream 1 closed', () => seen[0]!.closed);
    assert.equal(seen[0]!.blocks[0]!.headers[':status'], '200');
    assert.equal(seen[0]!.blocks[1]!.headers['grpc-status'], '0');
    assert.deepEqual([seen[0]!.blocks[0]!.end, seen[0]!.blocks[1]!.end], [false, true]);
    assert.equal(Buffer.concat(seen[0]!.body).toString(), 'hell');
    // A trailers-only answer.
    server.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, encodeHeaderBlock([[':status', '200'], ['grpc-status', '5']])));
    await until('stream 3 closed', () => seen[1]!.closed);
    assert.equal(seen[1]!.blocks.length, 1);
    assert.equal(a.rstCode, undefined);
    // PING is answered.
    server.send(frame(FrameType.PING, 0, 0, Buffer.from('12345678')));
    const pong = await server.next((f) => f.type === FrameType.PING, 'PING ACK');
    assert.equal(pong.flags, ACK);
    assert.equal(pong.payload.toString(), '12345678');
  });
});

test('a request body waits for the server window; a paced answer gives back only what was consumed', async () => {
  await withPeer(async ({ conn, server, handshake }) => {
    await handshake([[Setting.INITIAL_WINDOW_SIZE, 100]]);
    const seen = new Seen();
    const s: ClientStream = conn.request(REQUEST, false, seen, true);
    assert.equal(s.write(Buffer.alloc(250, 1)), false, 'more than the stream window: queued');
    let drained = false;
    void s.drained().then(() => (drained = true));
    const first = await server.next((f) => f.type === FrameType.DATA && f.stream === 1, 'first DATA');
    assert.equal(first.payload.length, 100);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(
      server.frames.some((f) => f.type === FrameType.DATA),
      false,
      'nothing more before a WINDOW_UPDATE',
    );
    server.send(windowUpdateFrame(1, 200));
    const rest = await server.next((f) => f.type === FrameType.DATA && f.stream === 1, 'the rest');
    assert.equal(rest.payload.length, 150);
    await until('drained', () => drained);

    // The answer: 600 KiB in 16 KiB frames. A paced stream gives back nothing until consumed.
    server.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, RESPONSE));
    for (let i = 0; i < 600 / 16; i++) server.send(frame(FrameType.DATA, 0, 1, Buffer.alloc(16 * 1024, i)));
    await until('600 KiB received', () => Buffer.concat(seen.body).length >= 600 * 16 * 1024 / 16);
    await new Promise((r) => setTimeout(r, 50));
    const streamUpdates = () => server.frames.filter((f) => f.type === FrameType.WINDOW_UPDATE && f.stream === 1);
    assert.equal(streamUpdates().length, 0, 'no stream WINDOW_UPDATE before the owner consumed');
    assert.ok(
      server.frames.some((f) => f.type === FrameType.WINDOW_UPDATE && f.stream === 0),
      'the connection window is given back (other streams go on)',
    );
    s.consumed(300 * 1024);
    const update = await server.next((f) => f.type === FrameType.WINDOW_UPDATE && f.stream === 1, 'stream WINDOW_UPDATE');
    assert.equal(update.payload.readUInt32BE(0), 300 * 1024);
  });
});

test('the peer stream limit holds requests back until a stream closes; RST_STREAM closes a stream with its code', async () => {
  await withPeer(async ({ conn, server, handshake }) => {
    await handshake([[Setting.MAX_CONCURRENT_STREAMS, 1]]);
    const a = new Seen();
    const b = new Seen();
    const c = new Seen();
    const sa = conn.request(REQUEST, true, a);
    const sb = conn.request(REQUEST, false, b);
    sb.write(Buffer.from('queued'));
    sb.end();
    // A held request given up before it went: the server never hears of stream 5 (a reset of a stream it
    // never saw would be a protocol error).
    const sc = conn.request(REQUEST, true, c);
    sc.reset();
    assert.ok(c.closed);
    await server.next((f) => f.type === FrameType.HEADERS && f.stream === 1, 'HEADERS 1');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(
      server.frames.some((f) => f.stream === 3 || f.stream === 5),
      false,
      'the second request waits: nothing of stream 3 (or 5) went out',
    );
    server.send(rstStreamFrame(1, ErrorCode.REFUSED_STREAM));
    await until('stream 1 closed', () => a.closed);
    assert.equal(sa.rstCode, ErrorCode.REFUSED_STREAM);
    await server.next((f) => f.type === FrameType.HEADERS && f.stream === 3, 'HEADERS 3 after the close');
    const data = await server.next((f) => f.type === FrameType.DATA && f.stream === 3, 'DATA 3');
    assert.equal(data.payload.toString(), 'queued');
    // A request after the held ones goes once there is room, with the next id.
    const d = new Seen();
    const sd = conn.request(REQUEST, true, d);
    assert.equal(sd.id, 7);
    server.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, encodeHeaderBlock([[':status', '200'], ['grpc-status', '0']])));
    await server.next((f) => f.type === FrameType.HEADERS && f.stream === 7, 'HEADERS 7');
    assert.equal(
      server.frames.some((f) => f.stream === 5),
      false,
      'nothing of stream 5 ever went out',
    );
  });
});

test('GOAWAY: streams above its last id end refused, new requests are refused, the socket ends after the rest', async () => {
  await withPeer(async ({ conn, server, handshake, closed }) => {
    await handshake();
    const a = new Seen();
    const b = new Seen();
    const sa = conn.request(REQUEST, true, a);
    const sb = conn.request(REQUEST, true, b);
    await server.next((f) => f.type === FrameType.HEADERS && f.stream === 3, 'HEADERS 3');
    server.send(goawayFrame(1, ErrorCode.NO_ERROR));
    await until('stream 3 closed', () => b.closed);
    assert.equal(sb.rstCode, ErrorCode.REFUSED_STREAM);
    assert.equal(sa.closed, false, 'stream 1 goes on');
    assert.equal(conn.usable, false);
    assert.throws(() => conn.request(REQUEST, true, new Seen()), /closing/);
    server.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, encodeHeaderBlock([[':status', '200'], ['grpc-status', '0']])));
    await until('stream 1 closed', () => a.closed);
    await until('the socket closed', () => closed());
  });
});

test('a protocol error from the server (DATA on a stream never opened) ends the connection with GOAWAY', async () => {
  await withPeer(async ({ conn, server, handshake, closed }) => {
    await handshake();
    const a = new Seen();
    conn.request(REQUEST, true, a);
    server.send(frame(FrameType.DATA, 0, 99, Buffer.from('x')));
    const goaway = await server.next((f) => f.type === FrameType.GOAWAY, 'GOAWAY');
    assert.equal(goaway.payload.readUInt32BE(4), ErrorCode.PROTOCOL_ERROR);
    await until('the stream closed', () => a.closed);
    await until('the socket closed', () => closed());
    assert.equal(conn.dropped, true);
  });
});
