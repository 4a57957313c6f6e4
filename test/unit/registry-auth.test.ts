import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCrispError } from '../../common/errors.js';
import {
  Authorizer,
  credentialsFrom,
  parseTokenResponse,
  parseWwwAuthenticate,
  pullScope,
  type TokenHttpRequest,
  type TokenHttpResponse,
} from '../../backend/registry/auth.js';

test('WWW-Authenticate: bearer with quoted params (commas inside quotes)', () => {
  const got = parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push"');
  assert.deepEqual(got, [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull,push' } },
  ]);
});

test('WWW-Authenticate: basic, several challenges, escapes, spacing, case, unquoted values, header lists', () => {
  assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  assert.deepEqual(parseWwwAuthenticate('Basic realm="a", BEARER Realm=https://t/x , Service = s, error="insufficient_scope"'), [
    { scheme: 'basic', params: { realm: 'a' } },
    { scheme: 'bearer', params: { realm: 'https://t/x', service: 's', error: 'insufficient_scope' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="quote \\" here",service="x"'), [{ scheme: 'bearer', params: { realm: 'quote " here', service: 'x' } }]);
  assert.deepEqual(parseWwwAuthenticate(['Basic realm="a"', 'Bearer realm="b"']).map((c) => c.scheme), ['basic', 'bearer']);
  assert.deepEqual(parseWwwAuthenticate('Negotiate'), [{ scheme: 'negotiate', params: {} }]);
  assert.deepEqual(parseWwwAuthenticate(''), []);
  assert.deepEqual(parseWwwAuthenticate(undefined), []);
});

test('CRI credentials: user/password, auth (base64), identity token, registry token, anonymous', () => {
  assert.deepEqual(credentialsFrom({ username: 'u', password: 'p' }), { kind: 'basic', username: 'u', password: 'p' });
  assert.deepEqual(credentialsFrom({ auth: Buffer.from('u:p:with:colons').toString('base64') }), { kind: 'basic', username: 'u', password: 'p:with:colons' });
  assert.deepEqual(credentialsFrom({ username: 'u', identityToken: 'rt' }), { kind: 'refresh', username: 'u', refreshToken: 'rt' });
  assert.deepEqual(credentialsFrom({ registryToken: 'tok', username: 'u', password: 'p' }), { kind: 'bearer', token: 'tok' });
  assert.equal(credentialsFrom({ username: '', password: '', auth: '', serverAddress: 'x', identityToken: '', registryToken: '' }), undefined);
  assert.equal(credentialsFrom(null), undefined);
  assert.throws(
    () => credentialsFrom({ auth: Buffer.from('no-colon-secret').toString('base64') }),
    (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && !err.message.includes('no-colon-secret'),
  );
});

test('token responses: token or access_token, default lifetime, issued_at', () => {
  assert.deepEqual(parseTokenResponse(Buffer.from('{"token":"a","expires_in":300}')), { token: 'a', expiresInSeconds: 300 });
  assert.equal(parseTokenResponse(Buffer.from('{"access_token":"b"}'))?.token, 'b');
  assert.equal(parseTokenResponse(Buffer.from('{"access_token":"b"}'))?.expiresInSeconds, 60);
  assert.equal(parseTokenResponse(Buffer.from('{"token":"a","expires_in":5}'))?.expiresInSeconds, 60, 'never below the spec minimum');
  assert.equal(parseTokenResponse(Buffer.from('{"token":"a","issued_at":"2024-01-01T00:00:00Z"}'))?.issuedAt?.toISOString(), '2024-01-01T00:00:00.000Z');
  assert.equal(parseTokenResponse(Buffer.from('{}')), undefined);
  assert.equal(parseTokenResponse(Buffer.from('not json')), undefined);
});

/** A scripted token endpoint recording what it was asked. */
function fakeTokenServer(answer: (req: TokenHttpRequest) => TokenHttpResponse) {
  const calls: TokenHttpRequest[] = [];
  const http = async (req: TokenHttpRequest) => {
    calls.push(req);
    await new Promise((r) => setImmediate(r));
    return answer(req);
  };
  return { calls, http };
}

const challenge = 'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:app:pull"';
const ok = (token: string, expires = 300): TokenHttpResponse => ({ status: 200, body: Buffer.from(JSON.stringify({ token, expires_in: expires })) });

test('bearer flow: GET realm with service, scope and Basic creds; token cached per scope until expiry', async () => {
  let now = 1_000_000;
  let n = 0;
  const fake = fakeTokenServer(() => ok(`t${++n}`));
  const a = new Authorizer(fake.http, () => now);
  const creds = credentialsFrom({ username: 'alice', password: 's3cret' });
  const scopes = [pullScope('app')];
  assert.equal(await a.authorization('reg.example', scopes, creds), undefined, 'nothing known before the first challenge');
  const h = await a.onUnauthorized('reg.example', challenge, scopes, creds, undefined);
  assert.equal(h, 'Bearer t1');
  assert.equal(fake.calls.length, 1);
  const url = new URL(fake.calls[0]!.url);
  assert.equal(fake.calls[0]!.method, 'GET');
  assert.equal(url.origin + url.pathname, 'https://auth.example/token');
  assert.equal(url.searchParams.get('service'), 'reg.example');
  assert.deepEqual(url.searchParams.getAll('scope'), ['repository:app:pull']);
  assert.equal(fake.calls[0]!.headers.authorization, `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);

  assert.equal(await a.authorization('reg.example', scopes, creds), 'Bearer t1', 'later requests authorize up front from cache');
  assert.equal(fake.calls.length, 1);
  assert.equal(await a.authorization('reg.example', [pullScope('other')], creds), 'Bearer t2', 'another scope, another token');
  assert.equal(await a.authorization('reg.example', scopes, undefined), 'Bearer t3', 'other credentials, another token');
  now += 300_000;
  assert.equal(await a.authorization('reg.example', scopes, creds), 'Bearer t4', 'expired tokens are fetched again');
});

test('bearer flow: expired tokens are dropped as new ones are fetched', async () => {
  let now = 1_000_000;
  let n = 0;
  const fake = fakeTokenServer(() => ok(`t${++n}`, 300));
  const a = new Authorizer(fake.http, () => now);
  await a.onUnauthorized('reg.example', challenge, [pullScope('app')], undefined, undefined);
  for (let i = 0; i < 50; i++) {
    assert.equal(await a.authorization('reg.example', [pullScope(`repo-${i}`)], undefined), `Bearer t${i + 2}`);
    now += 60_000;
  }
  // A token lives 300 s less a margin: only the ones fetched in the last 5 minutes are held.
  assert.ok(a.cachedTokens() <= 5, `${a.cachedTokens()} tokens held`);
});

test('bearer flow: concurrent requests share one token fetch', async () => {
  const fake = fakeTokenServer(() => ok('shared'));
  const a = new Authorizer(fake.http);
  const scopes = [pullScope('app')];
  const both = await Promise.all([
    a.onUnauthorized('reg.example', challenge, scopes, undefined, undefined),
    a.onUnauthorized('reg.example', challenge, scopes, undefined, undefined),
    a.authorization('reg.example', scopes, undefined),
  ]);
  assert.deepEqual(both, ['Bearer shared', 'Bearer shared', 'Bearer shared']);
  assert.equal(fake.calls.length, 1);
});

test('bearer flow: rejected credentials say "authentication failed for <host>" without secrets', async () => {
  const fake = fakeTokenServer(() => ({ status: 401, body: Buffer.from('{"details":"nope"}') }));
  const a = new Authorizer(fake.http);
  const creds = credentialsFrom({ username: 'alice', password: 'hunter2-secret' });
  await assert.rejects(a.onUnauthorized('reg.example', challenge, [pullScope('app')], creds, undefined), (err: unknown) => {
    assert.ok(isCrispError(err, 'UNAUTHENTICATED'));
    assert.match(err.message, /^authentication failed for reg\.example/);
    assert.ok(!err.message.includes('hunter2') && !err.message.includes('alice'), err.message);
    return true;
  });
});

test('bearer flow: the same token rejected twice is an auth failure, not a loop', async () => {
  const fake = fakeTokenServer(() => ok('same'));
  const a = new Authorizer(fake.http);
  const scopes = [pullScope('app')];
  const first = await a.onUnauthorized('reg.example', challenge, scopes, undefined, undefined);
  await assert.rejects(a.onUnauthorized('reg.example', challenge, scopes, undefined, first), /authentication failed for reg\.example/);
  assert.equal(fake.calls.length, 2, 'the cached token was dropped and fetched once more before giving up');
});

test('identity token: OAuth2 refresh-token POST', async () => {
  const fake = fakeTokenServer(() => ({ status: 200, body: Buffer.from('{"access_token":"oauth"}') }));
  const a = new Authorizer(fake.http);
  const h = await a.onUnauthorized('reg.example', challenge, [pullScope('app')], credentialsFrom({ identityToken: 'refresh-me' }), undefined);
  assert.equal(h, 'Bearer oauth');
  const call = fake.calls[0]!;
  assert.equal(call.method, 'POST');
  const form = new URLSearchParams(call.body);
  assert.equal(form.get('grant_type'), 'refresh_token');
  assert.equal(form.get('refresh_token'), 'refresh-me');
  assert.equal(form.get('service'), 'reg.example');
  assert.equal(form.get('scope'), 'repository:app:pull');
});

test('basic challenge: Basic header with creds, clear failure without', async () => {
  const fake = fakeTokenServer(() => ok('unused'));
  const a = new Authorizer(fake.http);
  const creds = credentialsFrom({ username: 'u', password: 'p' });
  const h = await a.onUnauthorized('reg.example', 'Basic realm="r"', [pullScope('app')], creds, undefined);
  assert.equal(h, `Basic ${Buffer.from('u:p').toString('base64')}`);
  assert.equal(await a.authorization('reg.example', [pullScope('app')], creds), h);
  await assert.rejects(a.onUnauthorized('reg.example', 'Basic realm="r"', [pullScope('app')], creds, h), /authentication failed for reg\.example: credentials rejected/);
  await assert.rejects(a.authorization('reg.example', [pullScope('app')], undefined), /authentication failed for reg\.example: registry requires username and password/);
  assert.equal(fake.calls.length, 0);
});

test('registry token goes straight to the registry; unknown schemes fail clearly', async () => {
  const fake = fakeTokenServer(() => ok('unused'));
  const a = new Authorizer(fake.http);
  assert.equal(await a.authorization('reg.example', [], credentialsFrom({ registryToken: 'rt' })), 'Bearer rt');
  await assert.rejects(a.onUnauthorized('reg.example', 'Negotiate', [], undefined, undefined), /unsupported auth scheme negotiate/);
  await assert.rejects(a.onUnauthorized('reg.example', undefined, [], undefined, undefined), /no WWW-Authenticate challenge/);
  await assert.rejects(a.onUnauthorized('reg.example', 'Bearer service="x"', [], undefined, undefined), /without realm/);
});

test('token server failures: 5xx is UNAVAILABLE, network errors name the token host', async () => {
  const a = new Authorizer(async () => ({ status: 503, body: Buffer.alloc(0) }));
  await assert.rejects(a.onUnauthorized('reg.example', challenge, [], undefined, undefined), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /auth\.example.*503/.test(err.message));
  const b = new Authorizer(async () => {
    throw new Error('connect ECONNREFUSED');
  });
  await assert.rejects(b.onUnauthorized('reg.example', challenge, [], undefined, undefined), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /token server auth\.example for reg\.example unreachable/.test(err.message));
});
