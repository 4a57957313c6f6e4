// The text log format and journald priorities (common/log-format.ts) through a real pino logger, and the
// JOURNAL_STREAM check against real file descriptors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, fstatSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../common/logger.js';
import { logfmtLine, stderrIsJournal } from '../../common/log-format.js';

function sink(): { out: Writable; text: () => string } {
  let text = '';
  return { out: new Writable({ write: (c: Buffer, _e, done) => ((text += c.toString()), done()) }), text: () => text };
}

test('text: one logfmt line per entry, values quoted only when they need it, credentials still redacted', () => {
  const s = sink();
  const log = createLogger('debug', s.out, { format: 'text', journal: false }).child({ component: 'cri' });
  log.warn({ method: 'CreateContainer', code: 'FAILED_PRECONDITION', err: 'NRI plugin 10-deny refused: "no"', n: 3, ok: false }, 'cri request failed');
  log.debug({ auth: { password: 'hunter2' }, ids: ['a', 'b'] }, 'with objects');
  const lines = s.text().split('\n');
  assert.equal(lines.length, 3, s.text());
  assert.match(
    lines[0]!,
    /^time=\S+Z level=warn msg="cri request failed" component=cri method=CreateContainer code=FAILED_PRECONDITION err="NRI plugin 10-deny refused: \\"no\\"" n=3 ok=false$/,
  );
  assert.match(lines[1]!, /^time=\S+ level=debug msg="with objects" component=cri auth=\[redacted\] ids="\[\\"a\\",\\"b\\"\]"$/);
  assert.equal(logfmtLine('not json\n'), 'not json');
});

test('journal: each line starts with its syslog priority, in either format', () => {
  for (const format of ['json', 'text'] as const) {
    const s = sink();
    const log = createLogger('trace', s.out, { format, journal: true });
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    log.fatal('f');
    const prefixes = s.text().split('\n').filter(Boolean).map((l) => l.slice(0, 3));
    assert.deepEqual(prefixes, ['<7>', '<6>', '<4>', '<3>', '<2>'], format);
    if (format === 'json') assert.doesNotThrow(() => JSON.parse(s.text().split('\n')[0]!.slice(3)));
  }
});

test('stderrIsJournal: JOURNAL_STREAM must name the very file descriptor', () => {
  const dir = mkdtempSync('/tmp/crisp-log-format-');
  const fd = openSync(join(dir, 'f'), 'w');
  try {
    const st = fstatSync(fd);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }, fd), true);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` }, fd), false, 'redirected elsewhere');
    assert.equal(stderrIsJournal({}, fd), false);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: 'garbage' }, fd), false);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});
