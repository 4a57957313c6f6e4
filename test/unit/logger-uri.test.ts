// The binary:// URI crisp hands to containerd, decoded the way the Go shim decodes it (url.Parse,
// url.ParseQuery, one "k" "v" argument pair per key in map order), must give the logger back exactly
// the paths crisp meant, in any pair order. No binary, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  loggerArgs,
  loggerPath,
  loggerUri,
  parseLoggerAck,
  parseLoggerArgs,
  type LoggerFiles,
} from '../../native/logger.js';
import { isCrispError } from '../../common/errors.js';
import { defaultHelperPath, useHelperPath } from '../../native/helper-paths.js';

const isInvalid = (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT');

/** Go's unescape: %XX must be two hex digits; "+" means space only in query mode. Bytes → UTF-8. */
function goUnescape(s: string, query: boolean): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === 0x25) {
      const hex = raw.subarray(i + 1, i + 3).toString('latin1');
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new Error(`invalid URL escape "%${hex}"`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c === 0x2b && query) {
      bytes.push(0x20);
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** What containerd 1.6's shim does with a stdout URI of scheme binary (pkg/process NewBinaryCmd):
 *  exec URL.Path with, for every key of URL.Query(), the arguments key and its first value. */
function goShimArgv(uri: string): { path: string; pairs: [string, string][] } {
  if ([...uri].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
    throw new Error('net/url: invalid control character in URL');
  const noFragment = uri.split('#')[0];
  const m = /^binary:\/\/([^/?]*)([^?]*)(?:\?(.*))?$/s.exec(noFragment);
  if (!m) throw new Error(`not a binary:// URI: ${uri}`);
  assert.equal(m[1], '', 'authority must be empty');
  const path = goUnescape(m[2], false);
  const query = new Map<string, string[]>();
  for (const part of (m[3] ?? '').split('&')) {
    if (part.includes(';')) continue; // Go ≥1.17 drops such pairs (and reports an error nobody checks)
    if (part === '') continue;
    const eq = part.indexOf('=');
    const [k, v] = eq < 0 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)];
    let key: string, value: string;
    try {
      key = goUnescape(k, true);
      value = goUnescape(v, true);
    } catch {
      continue;
    }
    query.set(key, [...(query.get(key) ?? []), value]);
  }
  return { path, pairs: [...query].map(([k, vs]) => [k, vs[0]]) };
}

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]));
}

const nasty = [
  '/var/log/pods/default_web-0_1234/app/0.log',
  '/tmp/with space/and+plus/0.log',
  '/tmp/a&b=c;d?e#f%20g/0.log',
  '/tmp/quote"s\'/back\\slash/0.log',
  '/tmp/ünïcödé/日志/0.log',
  '/tmp/new\nline/tab\there/0.log',
  '/tmp/%2F/%/%%/0.log',
];

test('loggerUri: Go shim decoding gives back the exact paths, in every pair order', () => {
  for (const p of nasty) {
    const files: LoggerFiles = { logPath: p, pidFile: `${p}.pid`, ackFile: `${p}.ack` };
    for (const tty of [false, true]) {
      const want: LoggerFiles = tty ? { ...files, tty: true } : files;
      const binary = `/opt/cri sp+${p.length}/crisp-logger`;
      const uri = loggerUri({ ...want, binary });
      assert.match(uri, /^binary:\/\/\/[^#\s]*\?[^#\s]*$/, 'one unambiguous URI: no raw space, # or control chars');
      const { path, pairs } = goShimArgv(uri);
      assert.equal(path, binary);
      assert.equal(pairs.length, tty ? 4 : 3);
      for (const order of permutations(pairs)) assert.deepEqual(parseLoggerArgs(order.flat()), want);
    }
  }
});

test("loggerUri: Node's URL reads the same URI the same way", () => {
  for (const p of nasty) {
    const uri = loggerUri({ logPath: p, pidFile: '/run/c/pid', ackFile: '/run/c/ack', binary: '/usr/lib/crisp/crisp-logger' });
    const url = new URL(uri);
    assert.equal(url.protocol, 'binary:');
    assert.equal(url.host, '');
    assert.equal(decodeURIComponent(url.pathname), '/usr/lib/crisp/crisp-logger');
    assert.deepEqual([...url.searchParams], [['log', p], ['pid', '/run/c/pid'], ['ack', '/run/c/ack']]);
  }
});

test('loggerUri: a plain path stays readable', () => {
  assert.equal(
    loggerUri({ logPath: '/var/log/pods/ns_pod_uid/c/0.log', pidFile: '/run/crisp/c/logger.pid', ackFile: '/run/crisp/c/logger.ack', binary: '/usr/lib/crisp/crisp-logger' }),
    'binary:///usr/lib/crisp/crisp-logger?log=%2Fvar%2Flog%2Fpods%2Fns_pod_uid%2Fc%2F0.log&pid=%2Frun%2Fcrisp%2Fc%2Flogger.pid&ack=%2Frun%2Fcrisp%2Fc%2Flogger.ack',
  );
});

test('loggerUri / loggerArgs: refuse what the logger would refuse', () => {
  const ok = { logPath: '/l', pidFile: '/p', ackFile: '/a', binary: '/b/crisp-logger' };
  assert.throws(() => loggerUri({ ...ok, logPath: 'rel/0.log' }), isInvalid);
  assert.throws(() => loggerUri({ ...ok, pidFile: '' }), isInvalid);
  assert.throws(() => loggerUri({ ...ok, ackFile: '/a\0b' }), isInvalid);
  assert.throws(() => loggerUri({ ...ok, binary: 'crisp-logger' }), isInvalid, 'the shim runs it without PATH');
  assert.throws(() => loggerUri({ ...ok, logPath: '/x\ud800' }), isInvalid, 'lone surrogate');
  assert.deepEqual(loggerArgs(ok), ['log', '/l', 'pid', '/p', 'ack', '/a']);
  assert.deepEqual(loggerArgs({ ...ok, tty: true }), ['log', '/l', 'pid', '/p', 'ack', '/a', 'tty', '1']);
  assert.deepEqual(loggerArgs({ ...ok, tty: false }), ['log', '/l', 'pid', '/p', 'ack', '/a']);
});

test('parseLoggerArgs: pairs in any order, each key once, absolute paths, tty 0|1', () => {
  assert.deepEqual(parseLoggerArgs(['ack', '/a', 'tty', '0', 'log', '/l', 'pid', '/p']), { logPath: '/l', pidFile: '/p', ackFile: '/a' });
  assert.deepEqual(parseLoggerArgs(['tty', '1', 'ack', '/a', 'log', '/l', 'pid', '/p']), { logPath: '/l', pidFile: '/p', ackFile: '/a', tty: true });
  for (const bad of [
    ['log', '/l', 'pid', '/p', 'ack'],
    ['log', '/l', 'pid', '/p'],
    ['log', '/l', 'pid', '/p', 'ack', '/a', 'log', '/m'],
    ['log', 'l', 'pid', '/p', 'ack', '/a'],
    ['log', '/l', 'pid', '/p', 'ack', '/a', 'tty', ''],
    ['log', '/l', 'pid', '/p', 'ack', '/a', 'tty', 'yes'],
    ['log', '/l', 'pid', '/p', 'ack', '/a', 'env.X', '1'],
  ])
    assert.throws(() => parseLoggerArgs(bad), isInvalid, JSON.stringify(bad));
});

test('parseLoggerAck: complete acks only', () => {
  const line = '{"pid":42,"reopens":3,"error":"","droppedBytes":0,"writeErrors":0,"exited":false}\n';
  assert.deepEqual(parseLoggerAck(line), { pid: 42, reopens: 3, error: '', droppedBytes: 0, writeErrors: 0, exited: false });
  assert.equal(parseLoggerAck(''), undefined);
  assert.equal(parseLoggerAck('{"pid":42'), undefined);
  assert.equal(parseLoggerAck('{"pid":42,"reopens":-1,"error":"","droppedBytes":0,"writeErrors":0,"exited":false}'), undefined);
  assert.equal(parseLoggerAck('{"pid":42,"reopens":1,"droppedBytes":0,"writeErrors":0,"exited":false}'), undefined);
  assert.equal(parseLoggerAck('null'), undefined);
});

test('loggerPath: the configured path wins, else the default', () => {
  try {
    useHelperPath('crisp-logger', '/opt/x/crisp-logger');
    assert.equal(loggerPath(), '/opt/x/crisp-logger');
    assert.match(loggerUri({ logPath: '/l/0.log', pidFile: '/r/p', ackFile: '/r/a' }), /^binary:\/\/\/opt\/x\/crisp-logger\?/);
    useHelperPath('crisp-logger', '');
    assert.equal(loggerPath(), defaultHelperPath('crisp-logger'));
  } finally {
    useHelperPath('crisp-logger', '');
  }
});
