// `crisp logs`: CRI log records → messages, with --tail, --since and --timestamps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CriLogParser, parseDuration, parseRfc3339, parseSince, renderCriLog, renderEntries, selectEntries } from '../../cli/log-view.js';

const LOG = [
  '2024-05-01T10:00:00.000000001Z stdout F one',
  '2024-05-01T10:00:01.5Z stderr F warn',
  '2024-05-01T10:00:02.123456789Z stdout P tw',
  '2024-05-01T10:00:02.200000000Z stdout F o',
  '2024-05-01T10:00:03Z stdout F ',
  '2024-05-01T10:00:04+02:00 stdout F three',
  'garbage that is not a record',
  '2024-05-01T10:00:05Z stdout P prompt> ',
  '',
].join('\n');

const both = new Set(['stdout', 'stderr']);

test('records become messages: partials joined, empty lines kept, a trailing partial without newline', () => {
  assert.equal(renderCriLog(LOG, { streams: both }), 'one\nwarn\ntwo\n\nthree\nprompt> ');
  assert.equal(renderCriLog(LOG, { streams: new Set(['stderr']) }), 'warn\n');
});

test('--timestamps prefixes the time of the message\'s first record', () => {
  assert.equal(
    renderCriLog(LOG, { streams: both, timestamps: true, tail: 3 }),
    '2024-05-01T10:00:03Z \n2024-05-01T10:00:04+02:00 three\n2024-05-01T10:00:05Z prompt> ',
  );
  assert.match(renderCriLog(LOG, { streams: both, timestamps: true }), /^2024-05-01T10:00:02\.123456789Z two$/m);
});

test('--tail N counts messages after the stream filter; 0 prints nothing', () => {
  assert.equal(renderCriLog(LOG, { streams: new Set(['stdout']), tail: 2 }), 'three\nprompt> ');
  assert.equal(renderCriLog(LOG, { streams: both, tail: 0 }), '');
  assert.equal(renderCriLog(LOG, { streams: both, tail: 100 }), 'one\nwarn\ntwo\n\nthree\nprompt> ');
});

test('--since: RFC 3339 (any fraction, any offset) or a Go duration before now', () => {
  assert.equal(parseRfc3339('2024-05-01T10:00:02.123456789Z'), Date.UTC(2024, 4, 1, 10, 0, 2, 123));
  assert.equal(parseRfc3339('2024-05-01T12:00:00+02:00'), Date.UTC(2024, 4, 1, 10));
  assert.ok(Number.isNaN(parseRfc3339('yesterday')));
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('250ms'), 250);
  assert.ok(Number.isNaN(parseDuration('10')), 'a unit is required');
  assert.ok(Number.isNaN(parseDuration('5x')));
  const now = Date.UTC(2024, 4, 1, 10, 0, 3);
  assert.equal(parseSince('2s', now), Date.UTC(2024, 4, 1, 10, 0, 1));
  assert.throws(() => parseSince('soon', now), /bad --since "soon"/);
  // 10:00:02 is the first record of "two": the message counts from its first record.
  assert.equal(renderCriLog(LOG, { streams: both, sinceMs: Date.UTC(2024, 4, 1, 10, 0, 2) }), 'two\n\nprompt> ');
  assert.equal(renderCriLog(LOG, { streams: both, sinceMs: Date.UTC(2024, 4, 1, 7) }), 'one\nwarn\ntwo\n\nthree\nprompt> ', '+02:00 is 08:00Z');
});

test('the parser takes the file in any pieces (following), a partial waits for its end', () => {
  const parser = new CriLogParser();
  const out: string[] = [];
  for (let i = 0; i < LOG.length; i += 7) out.push(renderEntries(parser.feed(LOG.slice(i, i + 7))));
  assert.equal(out.join(''), 'one\nwarn\ntwo\n\nthree\n');
  assert.deepEqual(
    parser.pending().map((e) => [e.message, e.complete]),
    [['prompt> ', false]],
  );
  assert.deepEqual(selectEntries(parser.feed('2024-05-01T10:00:06Z stdout F done\n'), { streams: both }).map((e) => e.message), ['prompt> done']);
});
