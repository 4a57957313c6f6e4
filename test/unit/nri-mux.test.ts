import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { ByteQueue } from '../../nri/transport/byte-queue.js';
import {
  Mux,
  MUX_MAX_PAYLOAD,
  GO_PEER_FIRST_FRAME_LIMIT,
  planFrames,
  encodeMuxHeader,
  type MuxConnection,
} from '../../nri/transport/mux.js';

/** A trunk whose writes are captured and whose reads are injected by the test. */
class FakeTrunk extends Duplex {
  written: Buffer[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written.push(chunk);
    cb();
  }
  inject(bytes: Buffer): void {
    this.push(bytes);
  }
  output(): Buffer {
    return Buffer.concat(this.written);
  }
}

function frame(connId: number, payload: Buffer | string): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  return Buffer.concat([encodeMuxHeader(connId, p.length), p]);
}

function parseFrames(buf: Buffer): { connId: number; payload: Buffer }[] {
  const out: { connId: number; payload: Buffer }[] = [];
  let off = 0;
  while (off < buf.length) {
    const connId = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    out.push({ connId, payload: buf.subarray(off + 8, off + 8 + len) });
    off += 8 + len;
  }
  assert.equal(off, buf.length, 'output ends on a frame boundary');
  return out;
}

function collect(conn: MuxConnection): Buffer[] {
  const got: Buffer[] = [];
  conn.on('data', (b: Buffer) => got.push(b));
  return got;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

test('ByteQueue hands out exact slices across chunk boundaries', () => {
  const q = new ByteQueue();
  q.push(Buffer.from('ab'));
  q.push(Buffer.from(''));
  q.push(Buffer.from('cdef'));
  q.push(Buffer.from('g'));
  assert.equal(q.length, 7);
  assert.equal(q.take(1).toString(), 'a');
  assert.equal(q.take(3).toString(), 'bcd');
  assert.equal(q.take(0).length, 0);
  assert.equal(q.take(3).toString(), 'efg');
  assert.equal(q.length, 0);
  assert.throws(() => q.take(1), RangeError);
});

test('planFrames follows the Go-peer first-frame rule and the mux payload cap', () => {
  const L = GO_PEER_FIRST_FRAME_LIMIT;
  assert.deepEqual(planFrames(0, L), []);
  assert.deepEqual(planFrames(3000, L), [3000]);
  assert.deepEqual(planFrames(4096, L), [4096]);
  assert.deepEqual(planFrames(4097, L), [4096, 1]);
  assert.deepEqual(planFrames(6000, L), [4096, 1904]);
  // The largest ttrpc message (10-byte header + 4 MiB) still becomes exactly two frames.
  assert.deepEqual(planFrames(MUX_MAX_PAYLOAD, L), [4096, MUX_MAX_PAYLOAD - 4096]);
  assert.deepEqual(planFrames(MUX_MAX_PAYLOAD + 4096 + 1, L), [4096, MUX_MAX_PAYLOAD, 1]);
  // Without the rule: one frame per write, split only at the cap.
  assert.deepEqual(planFrames(6000, 0), [6000]);
  assert.deepEqual(planFrames(MUX_MAX_PAYLOAD, 0), [MUX_MAX_PAYLOAD]);
  assert.deepEqual(planFrames(2 * MUX_MAX_PAYLOAD + 5, 0), [MUX_MAX_PAYLOAD, MUX_MAX_PAYLOAD, 5]);
});

test('writes become frames with the conn id; large writes are split 4096 + rest', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk, { name: 'test' });
  const small = Buffer.alloc(3000, 1);
  const big = Buffer.alloc(6000, 2);
  const c1 = mux.open(1);
  const c2 = mux.open(2);
  await new Promise<void>((r) => c1.write(small, () => r()));
  await new Promise<void>((r) => c2.write(big, () => r()));
  const frames = parseFrames(trunk.output());
  assert.deepEqual(
    frames.map((f) => [f.connId, f.payload.length]),
    [
      [1, 3000],
      [2, 4096],
      [2, 1904],
    ],
  );
  assert.deepEqual(Buffer.concat(frames.slice(1).map((f) => f.payload)), big);
  mux.close();
});

test('without the first-frame rule a write over the cap is split at 4194314 bytes', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk, { firstFrameLimit: 0 });
  const data = Buffer.alloc(MUX_MAX_PAYLOAD + 100, 7);
  await new Promise<void>((r) => mux.open(1).write(data, () => r()));
  const frames = parseFrames(trunk.output());
  assert.deepEqual(
    frames.map((f) => f.payload.length),
    [MUX_MAX_PAYLOAD, 100],
  );
  mux.close();
});

test('merged frames in one chunk are demultiplexed in order', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const got1 = collect(mux.open(1));
  const got2 = collect(mux.open(2));
  trunk.inject(Buffer.concat([frame(1, 'one'), frame(2, 'two'), frame(1, 'three')]));
  await tick();
  assert.equal(Buffer.concat(got1).toString(), 'onethree');
  assert.equal(Buffer.concat(got2).toString(), 'two');
  mux.close();
});

test('a frame split into single bytes is reassembled', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const got = collect(mux.open(2));
  const f = frame(2, Buffer.alloc(5000, 9));
  for (let i = 0; i < f.length; i++) trunk.inject(f.subarray(i, i + 1));
  await tick();
  assert.deepEqual(Buffer.concat(got), Buffer.alloc(5000, 9));
  mux.close();
});

test('frames split at every byte boundary give the same streams; unknown ids are dropped', async () => {
  const payload2 = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
  const stream = Buffer.concat([
    frame(1, 'hello'),
    frame(7, 'not for us'),
    frame(2, payload2),
    frame(0, 'reserved'),
    frame(1, ''),
    frame(1, ' world'),
  ]);
  for (let k = 0; k <= stream.length; k++) {
    const trunk = new FakeTrunk();
    const mux = new Mux(trunk);
    const got1 = collect(mux.open(1));
    const got2 = collect(mux.open(2));
    trunk.inject(stream.subarray(0, k));
    trunk.inject(stream.subarray(k));
    await tick();
    assert.equal(Buffer.concat(got1).toString(), 'hello world', `split at ${k}`);
    assert.deepEqual(Buffer.concat(got2), payload2, `split at ${k}`);
    assert.equal(mux.droppedFrames, 2, `split at ${k}`);
    assert.equal(mux.closed, false);
    mux.close();
  }
});

test('frames for a conn id that is not open are dropped and later frames still flow', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  trunk.inject(frame(1, 'early'));
  await tick();
  assert.equal(mux.droppedFrames, 1);
  const got = collect(mux.open(1));
  trunk.inject(frame(3, 'x'));
  trunk.inject(frame(1, 'late'));
  await tick();
  assert.equal(Buffer.concat(got).toString(), 'late');
  assert.equal(mux.droppedFrames, 2);
  mux.close();
});

test('a locally destroyed conn stops receiving; its frames are dropped', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const c1 = mux.open(1);
  c1.destroy();
  await tick();
  trunk.inject(frame(1, 'gone'));
  await tick();
  assert.equal(mux.droppedFrames, 1);
  assert.notEqual(mux.open(1), c1, 'reopening gives a fresh conn');
  mux.close();
});

test('open() validates ids and returns the same conn for the same id', () => {
  const mux = new Mux(new FakeTrunk());
  assert.throws(() => mux.open(0), /reserved/);
  assert.throws(() => mux.open(2 ** 32), RangeError);
  assert.equal(mux.open(5), mux.open(5));
  mux.close();
  assert.throws(() => mux.open(5), /cannot open conn 5/);
});

test('a frame header over the payload limit tears the mux down with a clear reason', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk, { name: 'plugin 10-test' });
  const conn = mux.open(1);
  const closed = new Promise<Error | undefined>((r) => mux.onClose(r));
  const connClosed = new Promise<void>((r) => conn.on('close', () => r()));
  trunk.inject(encodeMuxHeader(1, MUX_MAX_PAYLOAD + 1));
  const reason = await closed;
  await connClosed;
  assert.match(reason?.message ?? '', /plugin 10-test: bad frame header: conn 1 frame of 4194315 bytes exceeds the 4194314-byte limit/);
  assert.equal(conn.closeReason, reason);
  assert.equal(trunk.destroyed, true);
});

test('peer hang-up closes every logical conn; later writes fail', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const c1 = mux.open(1);
  const c2 = mux.open(2);
  c1.resume();
  c2.resume();
  const closes = Promise.all([c1, c2].map((c) => new Promise<void>((r) => c.on('close', () => r()))));
  trunk.inject(frame(1, 'last words'));
  trunk.push(null);
  await closes;
  assert.equal(mux.closed, true);
  assert.match(c1.closeReason?.message ?? '', /peer closed the connection/);
  const err = await new Promise<Error | null | undefined>((r) => {
    const fresh = new Mux(new FakeTrunk());
    const c = fresh.open(1);
    fresh.close();
    c.on('error', () => {});
    c.write(Buffer.from('x'), (e) => r(e));
  });
  assert.ok(err instanceof Error);
});
