// `crisp pull` credentials from stdin (`--creds -`) or $CRISP_CREDS, so they need not sit in argv.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { resolvePullCreds, CREDS_ENV } from '../../cli/pull-creds.js';

const noStdin = () => Readable.from([]);

test('--creds - reads one line from stdin; the line ending is not part of the password', async () => {
  assert.deepEqual(await resolvePullCreds('-', {}, Readable.from(['alice:s3cr:et\r\n'])), { username: 'alice', password: 's3cr:et' });
  assert.deepEqual(await resolvePullCreds('-', {}, Readable.from([Buffer.from('bob:pw\nignored\n')])), { username: 'bob', password: 'pw' });
  await assert.rejects(resolvePullCreds('-', {}, noStdin()), /--creds -: nothing read from stdin/);
});

test(`without --creds, $${CREDS_ENV} is used; --creds wins over it; neither means anonymous`, async () => {
  assert.deepEqual(await resolvePullCreds(undefined, { [CREDS_ENV]: 'carol:pw' }, noStdin()), { username: 'carol', password: 'pw' });
  assert.deepEqual(await resolvePullCreds('dave:x', { [CREDS_ENV]: 'carol:pw' }, noStdin()), { username: 'dave', password: 'x' });
  assert.equal(await resolvePullCreds(undefined, {}, noStdin()), null);
  assert.equal(await resolvePullCreds(undefined, { [CREDS_ENV]: '' }, noStdin()), null);
});

test('an empty user name is refused, naming where the value came from', async () => {
  await assert.rejects(resolvePullCreds(undefined, { [CREDS_ENV]: ':pw' }, noStdin()), new RegExp(`${CREDS_ENV}: expected USER\\[:PASSWORD\\]`));
  await assert.rejects(resolvePullCreds('-', {}, Readable.from([':pw\n'])), /--creds - \(stdin\)/);
  assert.deepEqual(await resolvePullCreds('erin', {}, noStdin()), { username: 'erin', password: '' });
});
