// Streaming building blocks: single-use expiring tokens, the Status objects kubectl reads, WebSocket
// channel framing (binary, base64, v5 close), subprotocol negotiation, terminal size messages, CRI log
// records back to bytes (attach), and the port-forward helper's argv.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenStore } from '../../cri/streaming/tokens.js';
import { encodeStatus, exitCodeOf, exitCodeStatus, internalErrorStatus, statusFor, successStatus } from '../../cri/streaming/status.js';
import {
  Channel,
  PORT_FORWARD_WS_PROTOCOLS,
  REMOTE_COMMAND_WS_PROTOCOLS,
  decodeChannelMessage,
  encodeChannelMessage,
  parseProtocolHeader,
  pickWsProtocol,
  portPrefix,
} from '../../cri/streaming/ws-channels.js';
import { ResizeDecoder, parseSize } from '../../cri/streaming/resize.js';
import { decodeCriLogLine } from '../../sandbox/containers/attach.js';
import { portfwdArgs } from '../../native/nshelper.js';
import { wsPortForwardPorts } from '../../cri/streaming/ws-handlers.js';
import { isCrispError } from '../../common/errors.js';

test('tokens: 32 random bytes as base64url, usable once', () => {
  const store = new TokenStore<string>();
  const t = store.insert('a');
  assert.match(t, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(store.insert('b'), t);
  assert.equal(store.consume(t), 'a');
  assert.equal(store.consume(t), undefined);
  assert.equal(store.consume('nope'), undefined);
});

test('tokens: expire after the TTL whether used or not, and the store stays bounded', () => {
  let now = 1000;
  const store = new TokenStore<number>({ ttlMs: 60_000, maxTokens: 3, now: () => now });
  const early = store.insert(1);
  now += 59_999;
  const fresh = store.insert(2);
  assert.equal(store.consume(early), 1);
  const late = store.insert(3);
  now += 60_000;
  assert.equal(store.consume(late), undefined);
  assert.equal(store.consume(fresh), undefined);
  assert.equal(store.size, 0);
  store.insert(4);
  store.insert(5);
  store.insert(6);
  assert.throws(() => store.insert(7), (err: unknown) => isCrispError(err, 'RESOURCE_EXHAUSTED'));
  now += 60_000;
  assert.doesNotThrow(() => store.insert(8));
});

test('Status objects: the shapes kubectl decodes, in Go field order', () => {
  assert.equal(JSON.stringify(successStatus()), '{"metadata":{},"status":"Success"}');
  const failed = exitCodeStatus(3, 'error executing command ["sh"], exit code 3');
  assert.equal(
    JSON.stringify(failed),
    '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [\\"sh\\"], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
  );
  assert.deepEqual(exitCodeOf(failed), { exitCode: 3 });
  assert.deepEqual(exitCodeOf(successStatus()), { exitCode: 0 });
  const internal = internalErrorStatus('boom');
  assert.equal(internal.code, 500);
  assert.equal(internal.reason, 'InternalError');
  assert.deepEqual(exitCodeOf(internal), { error: 'Internal error occurred: boom' });
  assert.deepEqual(statusFor({ exitCode: 0 }), successStatus());
  assert.equal(statusFor({ exitCode: 9 }).details?.causes[0]?.message, '9');
  // Pre-v4 protocols: the message text for a failure, nothing for success.
  assert.equal(encodeStatus(successStatus(), false).length, 0);
  assert.match(encodeStatus(failed, false).toString(), /^command terminated with non-zero exit code/);
  assert.deepEqual(JSON.parse(encodeStatus(failed, true).toString()), failed);
});

test('WebSocket channels: binary frames carry the channel in the first byte', () => {
  const m = encodeChannelMessage(Channel.STDERR, Buffer.from('oops'), false) as Buffer;
  assert.deepEqual([...m], [2, 0x6f, 0x6f, 0x70, 0x73]);
  assert.deepEqual(decodeChannelMessage(m, false, false), { channel: 2, data: Buffer.from('oops') });
  assert.deepEqual(decodeChannelMessage(Buffer.from([255, 0]), false, false), { channel: 255, data: Buffer.from([0]) });
  assert.deepEqual(decodeChannelMessage(Buffer.from([1]), false, false), { channel: 1, data: Buffer.alloc(0) });
  assert.throws(() => decodeChannelMessage(Buffer.alloc(0), false, false), /empty/);
});

test('WebSocket channels: base64 variants send text with an ASCII channel digit', () => {
  const m = encodeChannelMessage(Channel.STDOUT, Buffer.from([0, 1, 255]), true);
  assert.equal(m, '1AAH/');
  assert.deepEqual(decodeChannelMessage(Buffer.from('0Zm9vCg=='), true, true), { channel: 0, data: Buffer.from('foo\n') });
  assert.throws(() => decodeChannelMessage(Buffer.from('0!!'), true, true), /base64/);
  assert.throws(() => decodeChannelMessage(Buffer.from([0x30, 0x41]), false, true), /binary message/);
});

test('WebSocket subprotocols: the client’s first known choice; none offered means binary v1', () => {
  const pick = (offered: string[]) => pickWsProtocol(offered, REMOTE_COMMAND_WS_PROTOCOLS)?.name;
  assert.equal(pick(['v5.channel.k8s.io', 'v4.channel.k8s.io']), 'v5.channel.k8s.io');
  assert.equal(pick(['bogus', 'v4.base64.channel.k8s.io', 'v5.channel.k8s.io']), 'v4.base64.channel.k8s.io');
  assert.equal(pick([]), '');
  assert.equal(pick(['bogus']), undefined);
  const v5 = pickWsProtocol(['v5.channel.k8s.io'], REMOTE_COMMAND_WS_PROTOCOLS)!;
  assert.equal(v5.closeSignal, true);
  assert.equal(v5.jsonStatus, true);
  assert.equal(pickWsProtocol(['channel.k8s.io'], REMOTE_COMMAND_WS_PROTOCOLS)!.jsonStatus, false);
  assert.equal(pickWsProtocol(['v5.channel.k8s.io'], PORT_FORWARD_WS_PROTOCOLS), undefined);
  assert.deepEqual(parseProtocolHeader(['a, b', 'c,,']), ['a', 'b', 'c']);
  assert.deepEqual(parseProtocolHeader(undefined), []);
});

test('port-forward over WebSocket: LE port prefix, ports from the request or the query', () => {
  assert.deepEqual([...portPrefix(8080)], [0x90, 0x1f]);
  assert.deepEqual(wsPortForwardPorts([80], new URL('http://x/?port=1')), [80]);
  assert.deepEqual(wsPortForwardPorts([], new URL('http://x/?port=80,443&port=8080')), [80, 443, 8080]);
  assert.match(String(wsPortForwardPorts([], new URL('http://x/'))), /required/);
  assert.match(String(wsPortForwardPorts([], new URL('http://x/?port=70000'))), /invalid/);
});

test('terminal sizes: objects split, glued and malformed', () => {
  const d = new ResizeDecoder();
  assert.deepEqual(d.push('{"Width":80,'), []);
  assert.deepEqual(d.push('"Height":24}{"Width":100,"Height":30}\n{"Wid'), [
    { width: 80, height: 24 },
    { width: 100, height: 30 },
  ]);
  assert.deepEqual(d.push(Buffer.from('th":1,"Height":2}')), [{ width: 1, height: 2 }]);
  assert.deepEqual(d.push('{"Width":"x","Height":2}{"a":"}{"}{"Width":5,"Height":6}'), [{ width: 5, height: 6 }]);
  assert.equal(parseSize('{"Width":-1,"Height":2}'), undefined);
  assert.equal(parseSize('{"Width":70000,"Height":2}'), undefined);
});

test('CRI log records back to bytes: F ends a line, P does not, bytes are kept', () => {
  const dec = (s: string | Buffer) => decodeCriLogLine(Buffer.isBuffer(s) ? s : Buffer.from(s));
  assert.deepEqual(dec('2024-01-01T00:00:00.1Z stdout F hello world'), { stream: 'stdout', data: Buffer.from('hello world\n') });
  assert.deepEqual(dec('2024-01-01T00:00:00Z stderr P part '), { stream: 'stderr', data: Buffer.from('part ') });
  assert.deepEqual(dec('2024-01-01T00:00:00Z stdout F '), { stream: 'stdout', data: Buffer.from('\n') });
  assert.deepEqual(dec('2024-01-01T00:00:00Z stdout F'), { stream: 'stdout', data: Buffer.from('\n') });
  const raw = Buffer.concat([Buffer.from('2024-01-01T00:00:00Z stdout F '), Buffer.from([0xff, 0x00, 0x0d])]);
  assert.deepEqual(dec(raw), { stream: 'stdout', data: Buffer.from([0xff, 0x00, 0x0d, 0x0a]) });
  assert.equal(dec('garbage'), undefined);
  assert.equal(dec('2024 stdin F x'), undefined);
  assert.equal(dec('2024 stdout X x'), undefined);
});

test('portfwd helper argv: netns, port, optional IP host; bad values refused', () => {
  assert.deepEqual(portfwdArgs({ netns: '/run/p/net', port: 8080 }), ['portfwd', '--netns', '/run/p/net', '--port', '8080']);
  assert.deepEqual(portfwdArgs({ netns: '/run/p/net', port: 1, host: '::1' }), ['portfwd', '--netns', '/run/p/net', '--port', '1', '--host', '::1']);
  assert.throws(() => portfwdArgs({ netns: 'rel', port: 1 }), /absolute/);
  assert.throws(() => portfwdArgs({ netns: '/n', port: 0 }), /1-65535/);
  assert.throws(() => portfwdArgs({ netns: '/n', port: 1, host: 'localhost' }), /IP address/);
});
