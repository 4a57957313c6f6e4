// SPDY/3.1 framer and session: frame round trips, frames split at every byte, header blocks through the
// shared zlib stream with the SPDY/3 dictionary, and flow control (strict once the peer asks for it,
// lenient for peers like Go's spdystream that never send WINDOW_UPDATE).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { inflateSync, deflateSync, constants } from 'node:zlib';
import { SPDY3_DICTIONARY } from '../../cri/streaming/spdy/dictionary.js';
import { FrameParser, encodeFrame, encodeHeaderBlock, decodeHeaderBlock, SpdyProtocolError, type Frame } from '../../cri/streaming/spdy/frames.js';
import { HeaderCompressor, HeaderDecompressor } from '../../cri/streaming/spdy/header-compression.js';
import { SpdySession, type SpdyStream } from '../../cri/streaming/spdy/session.js';

function adler32(buf: Buffer): number {
  let a = 1;
  let b = 0;
  for (const x of buf) {
    a = (a + x) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

test('the SPDY/3 dictionary is the 1423 bytes of the draft (by length, shape and checksum)', () => {
  assert.equal(SPDY3_DICTIONARY.length, 1423);
  assert.equal(SPDY3_DICTIONARY.readUInt32BE(0), 7);
  assert.equal(SPDY3_DICTIONARY.subarray(4, 11).toString(), 'options');
  assert.ok(SPDY3_DICTIONARY.subarray(-10).toString().endsWith('enq=0.'));
  assert.equal(adler32(SPDY3_DICTIONARY), 0xe3c6a7c2);
});

const block = Buffer.from('compressed-bytes');
const samples: Frame[] = [
  { type: 'data', streamId: 1, fin: false, data: Buffer.from('hello') },
  { type: 'data', streamId: 0x7fffffff, fin: true, data: Buffer.alloc(0) },
  { type: 'syn_stream', streamId: 3, associatedId: 0, priority: 7, fin: false, unidirectional: false, headerBlock: block },
  { type: 'syn_stream', streamId: 5, associatedId: 1, priority: 0, fin: true, unidirectional: true, headerBlock: block },
  { type: 'syn_reply', streamId: 3, fin: false, headerBlock: block },
  { type: 'headers', streamId: 3, fin: true, headerBlock: block },
  { type: 'rst_stream', streamId: 9, status: 5 },
  { type: 'settings', clear: true, entries: [{ flags: 1, id: 7, value: 1000 }, { flags: 0, id: 4, value: 100 }] },
  { type: 'ping', id: 0xfffffffe },
  { type: 'goaway', lastGoodStreamId: 41, status: 2 },
  { type: 'window_update', streamId: 0, delta: 0x7fffffff },
];

test('every frame type round-trips through encode and the parser', () => {
  const parser = new FrameParser();
  for (const f of samples) assert.deepEqual(parser.push(encodeFrame(f)), [f]);
  assert.equal(parser.pending, 0);
});

test('frames split at every byte boundary, and several frames in one chunk, parse the same', () => {
  const wire = Buffer.concat(samples.map(encodeFrame));
  const byByte = new FrameParser();
  const got: Frame[] = [];
  for (let i = 0; i < wire.length; i++) got.push(...byByte.push(wire.subarray(i, i + 1)));
  assert.deepEqual(got, samples);
  for (let cut = 1; cut < wire.length; cut += 7) {
    const p = new FrameParser();
    assert.deepEqual([...p.push(wire.subarray(0, cut)), ...p.push(wire.subarray(cut))], samples);
  }
});

test('control frame layout: C bit, version 3, type, flags and 24-bit length', () => {
  const ping = encodeFrame({ type: 'ping', id: 7 });
  assert.deepEqual([...ping], [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 7]);
  const data = encodeFrame({ type: 'data', streamId: 5, fin: true, data: Buffer.from('ab') });
  assert.deepEqual([...data], [0, 0, 0, 5, 0x01, 0, 0, 2, 0x61, 0x62]);
});

test('malformed input is refused: wrong version, short payload, oversized frame', () => {
  const v2 = encodeFrame({ type: 'ping', id: 1 });
  v2.writeUInt16BE(0x8002, 0);
  assert.throws(() => new FrameParser().push(v2), SpdyProtocolError);
  const short = Buffer.from([0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0, 0]);
  assert.throws(() => new FrameParser().push(short), /too short/);
  assert.throws(() => new FrameParser(100).push(Buffer.from([0, 0, 0, 1, 0, 0, 1, 0])), /exceeds/);
});

test('header blocks: lowercase names, NUL-joined values, bad blocks rejected', () => {
  const raw = encodeHeaderBlock({ StreamType: ['stdout'], 'X-Multi': ['a', 'b'] });
  assert.deepEqual(decodeHeaderBlock(raw), { streamtype: ['stdout'], 'x-multi': ['a', 'b'] });
  assert.throws(() => decodeHeaderBlock(raw.subarray(0, raw.length - 2)), /truncated/);
  assert.throws(() => decodeHeaderBlock(Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])), /empty header name/);
});

test('header compression: one zlib stream with the SPDY/3 dictionary, sync-flushed per block', async () => {
  const c = new HeaderCompressor();
  const d = new HeaderDecompressor();
  const h1 = { streamtype: ['error'], port: ['8080'], requestid: ['0'] };
  const h2 = { streamtype: ['data'], port: ['8080'], requestid: ['0'] };
  const b1 = await c.compress(h1);
  const b2 = await c.compress(h2);
  const b3 = await c.compress({});
  // zlib header with FDICT set and the dictionary's Adler-32 as DICTID.
  assert.equal(b1[0]! & 0x0f, 8);
  assert.ok((b1[1]! & 0x20) !== 0, 'FDICT flag');
  assert.equal(b1.readUInt32BE(2), adler32(SPDY3_DICTIONARY));
  // A sync flush ends every block with the empty stored block 00 00 ff ff.
  for (const b of [b1, b2, b3]) assert.deepEqual([...b.subarray(-4)], [0, 0, 0xff, 0xff]);
  // The second block leans on the first: the shared stream is smaller than compressing it alone.
  assert.ok(b2.length < (await new HeaderCompressor().compress(h2)).length);
  // Node's own one-shot inflate with the dictionary reads the first block.
  assert.deepEqual(decodeHeaderBlock(inflateSync(b1, { dictionary: SPDY3_DICTIONARY, finishFlush: constants.Z_SYNC_FLUSH })), h1);
  assert.deepEqual(await d.decompress(b1), h1);
  assert.deepEqual(await d.decompress(b2), h2);
  assert.deepEqual(await d.decompress(b3), {});
  c.close();
  d.close();
});

test('header decompression reads a block compressed by an independent deflate with the dictionary', async () => {
  const raw = encodeHeaderBlock({ streamtype: ['stdin'] });
  const z = deflateSync(raw, { dictionary: SPDY3_DICTIONARY, level: 9, finishFlush: constants.Z_SYNC_FLUSH });
  const d = new HeaderDecompressor();
  assert.deepEqual(await d.decompress(z), { streamtype: ['stdin'] });
  d.close();
});

/** A connected pair of loopback sockets. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const client = connect(port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', () => r()));
  const s = await accepted;
  server.close();
  return [client, s];
}

function readAll(stream: SpdyStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => stream.on('end', () => resolve(Buffer.concat(chunks))));
}

test('session: streams both ways, FIN half-close, ping, goaway', async () => {
  const [a, b] = await socketPair();
  const client = new SpdySession(a, { role: 'client' });
  const server = new SpdySession(b, { role: 'server' });
  const accepted = new Promise<SpdyStream>((r) => server.on('stream', r));
  const cs = await client.createStream({ streamtype: ['stdout'] });
  const replied = new Promise((r) => cs.once('reply', r));
  const ss = await accepted;
  assert.equal(ss.id, 1);
  assert.equal(ss.header('streamType'), 'stdout');
  await ss.reply();
  await replied;
  const serverGot = readAll(ss);
  const clientGot = readAll(cs);
  cs.end(Buffer.from('from client'));
  ss.end(Buffer.from('x'.repeat(100_000)));
  assert.equal((await serverGot).toString(), 'from client');
  assert.equal((await clientGot).length, 100_000);
  assert.ok((await client.ping()) >= 0);
  assert.ok((await server.ping()) >= 0);
  const goaway = new Promise<{ lastGoodStreamId: number }>((r) => client.on('goaway', r));
  await server.goAway();
  assert.equal((await goaway).lastGoodStreamId, 1);
  await assert.rejects(client.createStream({ streamtype: ['x'] }), /closing/);
  const closed = new Promise((r) => server.on('close', r));
  client.destroy();
  await closed;
});

test('session: a reset from the peer ends the stream; data for unknown streams is dropped', async () => {
  const [a, b] = await socketPair();
  const client = new SpdySession(a, { role: 'client' });
  const server = new SpdySession(b, { role: 'server' });
  const accepted = new Promise<SpdyStream>((r) => server.on('stream', r));
  const cs = await client.createStream({ streamtype: ['stdin'] });
  const ss = await accepted;
  await ss.reply();
  const reset = new Promise<number>((r) => ss.on('reset', r));
  const ended = new Promise<void>((r) => ss.on('end', () => r()));
  ss.resume();
  cs.reset(5);
  assert.equal(await reset, 5);
  await ended;
  client.destroy();
  server.destroy();
});

/** A hand-driven peer: raw frames out, parsed frames in. */
async function rawPeer() {
  const [a, b] = await socketPair();
  const server = new SpdySession(b, { role: 'server' });
  const parser = new FrameParser();
  const frames: Frame[] = [];
  a.on('data', (c: Buffer) => frames.push(...parser.push(c)));
  const compressor = new HeaderCompressor();
  return {
    server,
    frames,
    send: (f: Frame) => a.write(encodeFrame(f)),
    syn: async (id: number, headers: Record<string, string[]>) =>
      a.write(encodeFrame({ type: 'syn_stream', streamId: id, associatedId: 0, priority: 0, fin: false, unidirectional: false, headerBlock: await compressor.compress(headers) })),
    dataBytes: (id: number) => frames.filter((f): f is Extract<Frame, { type: 'data' }> => f.type === 'data' && f.streamId === id).reduce((n, f) => n + f.data.length, 0),
    close: () => {
      compressor.close();
      a.destroy();
      server.destroy();
    },
  };
}

const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms));

test('flow control: once the peer sets a window, the sender stays inside it and resumes on WINDOW_UPDATE', async () => {
  const peer = await rawPeer();
  peer.send({ type: 'settings', clear: false, entries: [{ flags: 0, id: 7, value: 1000 }] });
  const accepted = new Promise<SpdyStream>((r) => peer.server.on('stream', r));
  await peer.syn(1, { streamtype: ['stdout'] });
  const ss = await accepted;
  await ss.reply();
  ss.write(Buffer.alloc(5000, 1));
  await settle();
  assert.equal(peer.dataBytes(1), 1000);
  peer.send({ type: 'window_update', streamId: 1, delta: 2500 });
  await settle();
  assert.equal(peer.dataBytes(1), 3500);
  peer.send({ type: 'window_update', streamId: 1, delta: 10_000 });
  await settle();
  assert.equal(peer.dataBytes(1), 5000);
  peer.close();
});

test('flow control: the session window (stream 0) limits all streams together', async () => {
  const peer = await rawPeer();
  // Start participating with a large stream window: only the 64 KiB session window binds.
  peer.send({ type: 'window_update', streamId: 0, delta: 1 });
  const accepted: SpdyStream[] = [];
  peer.server.on('stream', (s) => accepted.push(s));
  await peer.syn(1, { streamtype: ['a'] });
  await peer.syn(3, { streamtype: ['b'] });
  peer.send({ type: 'window_update', streamId: 1, delta: 1_000_000 });
  peer.send({ type: 'window_update', streamId: 3, delta: 1_000_000 });
  await settle(50);
  for (const s of accepted) {
    await s.reply();
    s.write(Buffer.alloc(50_000, 2));
  }
  await settle();
  assert.equal(peer.dataBytes(1) + peer.dataBytes(3), 65_537);
  peer.send({ type: 'window_update', streamId: 0, delta: 40_000 });
  await settle();
  assert.equal(peer.dataBytes(1) + peer.dataBytes(3), 100_000);
  peer.close();
});

test('flow control: a peer that never speaks it (Go spdystream) is not stalled after 64 KiB', async () => {
  const peer = await rawPeer();
  const accepted = new Promise<SpdyStream>((r) => peer.server.on('stream', r));
  await peer.syn(1, { streamtype: ['stdout'] });
  const ss = await accepted;
  await ss.reply();
  ss.end(Buffer.alloc(300_000, 3));
  await settle(200);
  assert.equal(peer.dataBytes(1), 300_000);
  peer.close();
});

test('flow control: the receiver acknowledges consumed data with stream and session WINDOW_UPDATEs', async () => {
  const peer = await rawPeer();
  const accepted = new Promise<SpdyStream>((r) => peer.server.on('stream', r));
  await peer.syn(1, { streamtype: ['stdin'] });
  const ss = await accepted;
  await ss.reply();
  ss.resume();
  peer.send({ type: 'data', streamId: 1, fin: false, data: Buffer.alloc(40_000) });
  await settle();
  const updates = peer.frames.filter((f): f is Extract<Frame, { type: 'window_update' }> => f.type === 'window_update');
  assert.equal(updates.filter((u) => u.streamId === 1).reduce((n, u) => n + u.delta, 0), 40_000);
  assert.equal(updates.filter((u) => u.streamId === 0).reduce((n, u) => n + u.delta, 0), 40_000);
  peer.close();
});

test('streams opened with a wrong id (even from a client, or not increasing) are reset', async () => {
  const peer = await rawPeer();
  const seen: number[] = [];
  peer.server.on('stream', (s) => seen.push(s.id));
  await peer.syn(5, { streamtype: ['a'] });
  await peer.syn(3, { streamtype: ['b'] });
  await peer.syn(8, { streamtype: ['c'] });
  await peer.syn(7, { streamtype: ['d'] });
  await settle();
  assert.deepEqual(seen, [5, 7]);
  const resets = peer.frames.filter((f) => f.type === 'rst_stream').map((f) => (f as { streamId: number }).streamId);
  assert.deepEqual(resets, [3, 8]);
  peer.close();
});

test('the session answers the peer’s pings with the same id', async () => {
  const peer = await rawPeer();
  peer.send({ type: 'ping', id: 11 });
  await settle(50);
  assert.deepEqual(peer.frames.filter((f) => f.type === 'ping'), [{ type: 'ping', id: 11 }]);
  peer.close();
});
