import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { Mux, encodeMuxHeader, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from '../../nri/transport/mux.js';
import {
  TtrpcClient,
  TtrpcServer,
  TtrpcError,
  isTtrpcError,
  TTRPC_MAX_PAYLOAD,
  TTRPC_TYPE_REQUEST,
  TTRPC_TYPE_RESPONSE,
  statusOfError,
} from '../../nri/transport/ttrpc.js';
import { encodeFrame } from '../../nri/transport/ttrpc-channel.js';
import { TypedTtrpcClient, registerTtrpcService } from '../../nri/transport/typed-ttrpc.js';
import { codecFor } from '../../common/proto-registry.js';
import { notFound } from '../../common/errors.js';
import type { Request as TtrpcRequest, Response as TtrpcResponse } from '../../gen/ttrpc.js';
import {
  PluginName,
  RuntimeName,
  type PluginMethods,
  type RuntimeMethods,
} from '../../gen/nri.pkg.api.v1alpha1.js';

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

/** Two trunk ends wired to each other, delivering asynchronously like a socket. */
class LinkEnd extends Duplex {
  peer!: LinkEnd;
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    setImmediate(() => {
      if (!this.peer.destroyed) this.peer.push(chunk);
    });
    cb();
  }
  override _final(cb: (err?: Error | null) => void): void {
    setImmediate(() => this.peer.push(null));
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    setImmediate(() => {
      if (!this.peer.destroyed) this.peer.push(null);
    });
    cb(err);
  }
}
function link(): [LinkEnd, LinkEnd] {
  const a = new LinkEnd();
  const b = new LinkEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

const reqCodec = codecFor<TtrpcRequest>('ttrpc.Request');
const resCodec = codecFor<TtrpcResponse>('ttrpc.Response');
const tick = () => new Promise<void>((r) => setImmediate(r));
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const str = (s: string) => Buffer.from(s).toString('hex');
function varint(n: number): string {
  const out: number[] = [];
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out).toString('hex');
}
function muxFrame(connId: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeMuxHeader(connId, payload.length), payload]);
}
/** Parses captured trunk output into ttrpc frames per conn, reassembling across mux frames. */
function ttrpcFramesOf(out: Buffer, connId: number): { streamId: number; type: number; flags: number; data: Buffer }[] {
  const parts: Buffer[] = [];
  for (let off = 0; off < out.length; ) {
    const id = out.readUInt32BE(off);
    const len = out.readUInt32BE(off + 4);
    if (id === connId) parts.push(out.subarray(off + 8, off + 8 + len));
    off += 8 + len;
  }
  const s = Buffer.concat(parts);
  const frames = [];
  for (let off = 0; off < s.length; ) {
    const len = s.readUInt32BE(off);
    frames.push({ streamId: s.readUInt32BE(off + 4), type: s[off + 8]!, flags: s[off + 9]!, data: s.subarray(off + 10, off + 10 + len) });
    off += 10 + len;
  }
  return frames;
}

/** A runtime-side and a plugin-side mux joined by an in-memory link. */
function pair() {
  const [ra, pa] = link();
  const runtime = new Mux(ra, { name: 'runtime' });
  const plugin = new Mux(pa, { name: 'plugin' });
  return { runtime, plugin };
}

// ---- golden bytes from the fact sheet's captured v0.12.2 exchange (§5) ----------------------

test('RegisterPlugin request and Empty reply match the captured bytes', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const client = new TypedTtrpcClient<RuntimeMethods>(new TtrpcClient(mux.open(RUNTIME_SERVICE_CONN)), RuntimeName);
  const call = client.call('RegisterPlugin', { pluginName: 'logger', pluginIdx: '10', NRIVersion: '0.0.0-unknown' }, 5000);
  await tick();
  const expected =
    '00000002 0000005b 00000051 00000001 01 00' +
    `0a1c${str('nri.pkg.api.v1alpha1.Runtime')} 120e${str('RegisterPlugin')}` +
    `1a1b 0a06${str('logger')} 1202${str('10')} 1a0d${str('0.0.0-unknown')}` +
    `20${varint(5_000_000_000)}`;
  assert.equal(trunk.output().toString('hex'), hex(expected).toString('hex'));
  trunk.inject(hex('00000002 0000000a 00000000 00000001 02 00'));
  assert.deepEqual(await call, {});
  mux.close();
});

test('Configure request, events reply and an UNIMPLEMENTED reply match the captured bytes', async () => {
  // Runtime side: the Configure request it sends.
  const rt = new FakeTrunk();
  const rmux = new Mux(rt);
  const client = new TypedTtrpcClient<PluginMethods>(new TtrpcClient(rmux.open(PLUGIN_SERVICE_CONN)), PluginName);
  const call = client.call(
    'Configure',
    { runtimeName: 'nri-harness', runtimeVersion: 'v0.0.1', registrationTimeout: 5000, requestTimeout: 2000, NRIVersion: '0.0.0-unknown' },
    2000,
  );
  await tick();
  const request =
    '00000001 00000064 0000005a 00000001 01 00' +
    `0a1b${str('nri.pkg.api.v1alpha1.Plugin')} 1209${str('Configure')}` +
    `1a2a 120b${str('nri-harness')} 1a06${str('v0.0.1')} 208827 28d00f 320d${str('0.0.0-unknown')}` +
    `20${varint(2_000_000_000)}`;
  assert.equal(rt.output().toString('hex'), hex(request).toString('hex'));

  // Plugin side (a v0.6-style plugin: Configure only): feed it that request, then RunPodSandbox on stream 5.
  const pt = new FakeTrunk();
  const pmux = new Mux(pt);
  const server = new TtrpcServer(pmux.open(PLUGIN_SERVICE_CONN));
  let seen: unknown;
  registerTtrpcService<PluginMethods>(server, PluginName, {
    Configure: async (req) => {
      seen = req;
      return { events: 0x3fff };
    },
  });
  pt.inject(hex(request));
  const rps = reqCodec.encode({ service: PluginName, method: 'RunPodSandbox', timeoutNano: 2e9 });
  pt.inject(muxFrame(1, encodeFrame(5, TTRPC_TYPE_REQUEST, 0, rps)));
  await tick();
  await tick();
  assert.equal((seen as { runtimeName: string }).runtimeName, 'nri-harness');
  const reply = '00000001 0000000f 00000005 00000001 02 00 1203 10ff7f';
  const unimplemented = `00000001 00000024 0000001a 00000005 02 00 0a18 080c 1214${str('method RunPodSandbox')}`;
  // Responses may come back in any order; compare the set of whole mux frames.
  const frames = (b: Buffer) => {
    const out: string[] = [];
    for (let off = 0; off < b.length; off += 8 + b.readUInt32BE(off + 4)) out.push(b.subarray(off, off + 8 + b.readUInt32BE(off + 4)).toString('hex'));
    return out.sort();
  };
  assert.deepEqual(frames(pt.output()), frames(hex(reply + unimplemented)));

  // And the runtime decodes the captured reply.
  rt.inject(hex(reply));
  assert.deepEqual(await call, { events: 0x3fff });
  rmux.close();
  pmux.close();
});

// ---- client/server behaviour ------------------------------------------------------------------

test('client stream ids are odd and strictly increasing, separately per connection', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const c1 = new TtrpcClient(mux.open(1));
  const c2 = new TtrpcClient(mux.open(2));
  const calls = [c1.call('s', 'a', Buffer.alloc(0)), c1.call('s', 'b', Buffer.alloc(0)), c2.call('s', 'c', Buffer.alloc(0)), c1.call('s', 'd', Buffer.alloc(0))];
  await tick();
  assert.deepEqual(ttrpcFramesOf(trunk.output(), 1).map((f) => [f.streamId, f.type, f.flags]), [
    [1, 1, 0],
    [3, 1, 0],
    [5, 1, 0],
  ]);
  assert.deepEqual(ttrpcFramesOf(trunk.output(), 2).map((f) => f.streamId), [1]);
  mux.close();
  for (const c of calls) await assert.rejects(c, (e) => isTtrpcError(e, 'closed'));
});

test('server rejects even and non-increasing stream ids with INVALID_ARGUMENT and keeps serving', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const server = new TtrpcServer(mux.open(1));
  server.register('svc', 'Echo', async (p) => p);
  const req = reqCodec.encode({ service: 'svc', method: 'Echo', payload: Buffer.from('hi') });
  for (const id of [2, 7, 7, 3, 9]) trunk.inject(muxFrame(1, encodeFrame(id, TTRPC_TYPE_REQUEST, 0, req)));
  await tick();
  await tick();
  const replies = ttrpcFramesOf(trunk.output(), 1).map((f) => {
    const r = resCodec.decode(f.data);
    return [f.streamId, f.type, r.status?.code ?? 0, r.status?.message ?? r.payload.toString()];
  });
  assert.deepEqual(
    replies.sort((a, b) => (a[0] as number) - (b[0] as number) || String(a[3]).localeCompare(String(b[3]))),
    [
      [2, 2, 3, 'StreamID must be odd for client initiated streams'],
      [3, 2, 3, 'StreamID cannot be re-used and must increment'],
      [7, 2, 0, 'hi'],
      [7, 2, 3, 'StreamID cannot be re-used and must increment'],
      [9, 2, 0, 'hi'],
    ],
  );
  mux.close();
});

test('round trip over a mux pair: unknown service/method, handler errors, empty replies, out-of-order answers', async () => {
  const { runtime, plugin } = pair();
  const server = new TtrpcServer(plugin.open(1), { name: 'plugin server' });
  const client = new TtrpcClient(runtime.open(1), { name: 'runtime client' });
  let releaseSlow!: () => void;
  server
    .register('svc', 'Slow', () => new Promise<Uint8Array>((r) => (releaseSlow = () => r(Buffer.from('slow')))))
    .register('svc', 'Fast', async () => Buffer.from('fast'))
    .register('svc', 'Empty', async () => new Uint8Array(0))
    .register('svc', 'Boom', async () => {
      throw new Error('kaboom');
    })
    .register('svc', 'Missing', async () => {
      throw notFound('container "c1" not found');
    });
  assert.throws(() => server.register('svc', 'Fast', async () => Buffer.alloc(0)), /already registered/);

  const slow = client.call('svc', 'Slow', Buffer.from('x'), 1000);
  assert.equal((await client.call('svc', 'Fast', Buffer.alloc(0), 1000)).toString(), 'fast');
  releaseSlow();
  assert.equal((await slow).toString(), 'slow');
  assert.equal((await client.call('svc', 'Empty', Buffer.alloc(0))).length, 0);

  await assert.rejects(client.call('nope', 'X', Buffer.alloc(0)), (e: unknown) => {
    assert.ok(e instanceof TtrpcError);
    assert.equal(e.failure, 'status');
    assert.equal(e.code, 12);
    assert.equal(e.details, 'service nope');
    assert.match(e.message, /runtime client: \/nope\/X: UNIMPLEMENTED: service nope/);
    return true;
  });
  await assert.rejects(client.call('svc', 'Nope', Buffer.alloc(0)), { code: 12, details: 'method Nope' });
  await assert.rejects(client.call('svc', 'Boom', Buffer.alloc(0)), { failure: 'status', code: 2, details: 'kaboom' });
  await assert.rejects(client.call('svc', 'Missing', Buffer.alloc(0)), { code: 5, details: 'container "c1" not found' });
  runtime.close();
  plugin.close();
});

test('an Empty success reply is a zero-length ttrpc response', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const server = new TtrpcServer(mux.open(2));
  server.register('svc', 'Empty', async () => Buffer.alloc(0));
  trunk.inject(muxFrame(2, encodeFrame(1, TTRPC_TYPE_REQUEST, 0, reqCodec.encode({ service: 'svc', method: 'Empty' }))));
  await tick();
  await tick();
  assert.equal(trunk.output().toString('hex'), '000000020000000a00000000000000010200');
  mux.close();
});

test('timeout: the call fails with DEADLINE_EXCEEDED, timeout_nano reaches the server, late replies are ignored', async () => {
  const { runtime, plugin } = pair();
  const server = new TtrpcServer(plugin.open(1));
  const client = new TtrpcClient(runtime.open(1), { name: 'rt' });
  let ctxTimeout = -1;
  let aborted: unknown;
  let late!: () => void;
  server.register('svc', 'Hang', (_p, ctx) => {
    ctxTimeout = ctx.timeoutMs;
    ctx.signal.addEventListener('abort', () => (aborted = ctx.signal.reason));
    return new Promise((r) => (late = () => r(Buffer.from('too late'))));
  });
  server.register('svc', 'Ok', async () => Buffer.from('ok'));
  const t0 = Date.now();
  await assert.rejects(client.call('svc', 'Hang', Buffer.alloc(0), 50), (e: unknown) => {
    assert.ok(isTtrpcError(e, 'timeout'));
    assert.equal(e.code, 4);
    assert.match(e.message, /rt: \/svc\/Hang: no response within 50ms/);
    return true;
  });
  assert.ok(Date.now() - t0 >= 45);
  assert.equal(ctxTimeout, 50);
  // The server's own deadline timer fires independently of the client's; give it time under load.
  for (let i = 0; i < 100 && aborted === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(isTtrpcError(aborted, 'timeout'), 'server handler saw its deadline');
  late();
  await tick();
  await tick();
  assert.equal((await client.call('svc', 'Ok', Buffer.alloc(0), 1000)).toString(), 'ok');
  assert.equal(client.closed, false);
  runtime.close();
  plugin.close();
});

test('connection close fails pending calls and later calls with "closed"', async () => {
  const { runtime, plugin } = pair();
  const server = new TtrpcServer(plugin.open(1));
  let handlerSignal: AbortSignal | undefined;
  server.register('svc', 'Hang', (_p, ctx) => {
    handlerSignal = ctx.signal;
    return new Promise(() => {});
  });
  const client = new TtrpcClient(runtime.open(1));
  const closedReason = new Promise<Error>((r) => client.onClose(r));
  const pending = [client.call('svc', 'Hang', Buffer.alloc(0)), client.call('svc', 'Hang', Buffer.alloc(0), 60_000)];
  // Wait until the server really runs the handler (not a fixed delay: slow under a loaded machine).
  for (let i = 0; i < 200 && handlerSignal === undefined; i++) await new Promise((r) => setTimeout(r, 5));
  plugin.close(); // the plugin goes away
  for (const p of pending) {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(isTtrpcError(e, 'closed'));
      assert.equal(e.code, 14);
      assert.match(e.message, /connection closed: runtime: peer closed the connection/);
      return true;
    });
  }
  assert.match((await closedReason).message, /peer closed/);
  await assert.rejects(client.call('svc', 'Hang', Buffer.alloc(0)), (e) => isTtrpcError(e, 'closed'));
  assert.equal(handlerSignal?.aborted, true, 'in-flight handler was cancelled');
});

test('bad header: a request type on a client connection is a connection error', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const conn = mux.open(1);
  const client = new TtrpcClient(conn, { name: 'rt client' });
  const pending = client.call('svc', 'M', Buffer.alloc(0));
  trunk.inject(muxFrame(1, encodeFrame(1, TTRPC_TYPE_REQUEST, 0, Buffer.alloc(0))));
  await assert.rejects(pending, (e: unknown) => {
    assert.ok(isTtrpcError(e, 'protocol'));
    assert.match(e.message, /rt client: bad frame header: stream 1 has message type 1, expected 2/);
    return true;
  });
  assert.equal(conn.destroyed, true);
  assert.equal(mux.closed, false, 'the other logical connections survive');
  mux.close();
});

test('bad header: a frame over 4 MiB is a connection error', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const server = new TtrpcServer(mux.open(1), { name: 'plugin server' });
  const closed = new Promise<Error>((r) => server.onClose(r));
  const hdr = Buffer.alloc(10);
  hdr.writeUInt32BE(TTRPC_MAX_PAYLOAD + 1, 0);
  hdr.writeUInt32BE(1, 4);
  hdr[8] = TTRPC_TYPE_REQUEST;
  trunk.inject(muxFrame(1, hdr));
  const reason = await closed;
  assert.ok(isTtrpcError(reason, 'protocol'));
  assert.match(reason.message, /plugin server: bad frame header: stream 1 declares 4194305 bytes, over the 4194304-byte limit/);
  mux.close();
});

test('max size: a request near 4 MiB round-trips; one over the limit is refused locally', async () => {
  const { runtime, plugin } = pair();
  const server = new TtrpcServer(plugin.open(1));
  server.register('svc', 'Len', async (p) => Buffer.from(String(p.length)));
  const client = new TtrpcClient(runtime.open(1));
  const near = Buffer.alloc(TTRPC_MAX_PAYLOAD - 64, 0xab);
  assert.equal((await client.call('svc', 'Len', near, 5000)).toString(), String(near.length));
  await assert.rejects(client.call('svc', 'Len', Buffer.alloc(TTRPC_MAX_PAYLOAD), 5000), (e: unknown) => {
    assert.ok(isTtrpcError(e, 'oversize'));
    assert.equal(e.code, 8);
    return true;
  });
  assert.equal((await client.call('svc', 'Len', Buffer.from('abc'), 5000)).toString(), '3', 'connection still usable');
  runtime.close();
  plugin.close();
});

test('a response spread over many mux frames (as a Go peer may send) is reassembled', async () => {
  const trunk = new FakeTrunk();
  const mux = new Mux(trunk);
  const client = new TtrpcClient(mux.open(1));
  const call = client.call('svc', 'Big', Buffer.alloc(0));
  const payload = Buffer.alloc(100_000, 3);
  const frame = encodeFrame(1, TTRPC_TYPE_RESPONSE, 0, resCodec.encode({ payload }));
  for (let off = 0; off < frame.length; off += 777) trunk.inject(muxFrame(1, frame.subarray(off, off + 777)));
  assert.deepEqual(await call, payload);
  mux.close();
});

test('statusOfError keeps explicit codes and maps the rest to UNKNOWN', () => {
  assert.deepEqual(statusOfError(new Error('x')), { code: 2, message: 'x' });
  assert.deepEqual(statusOfError(notFound('gone')), { code: 5, message: 'gone' });
  assert.deepEqual(statusOfError(new TtrpcError('status', 12, 'm')), { code: 12, message: 'm' });
  assert.deepEqual(statusOfError('plain'), { code: 2, message: 'plain' });
  const ac = new AbortController();
  ac.abort(new TtrpcError('timeout', 4, 'deadline'));
  assert.deepEqual(statusOfError(new Error('late'), ac.signal), { code: 4, message: 'late' });
});

test('a call in the same tick as the mux closing fails at once with "closed"', async () => {
  const mux = new Mux(new FakeTrunk(), { name: 'm' });
  const client = new TtrpcClient(mux.open(1), { name: 'c' });
  mux.close(new Error('m: plugin killed'));
  await assert.rejects(client.call('svc', 'M', Buffer.alloc(0)), (e: unknown) => {
    assert.ok(isTtrpcError(e, 'closed'));
    assert.match(e.message, /c: \/svc\/M: connection closed: m: plugin killed/);
    return true;
  });
});
