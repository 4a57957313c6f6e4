import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCrispError } from '../../common/errors.js';
import {
  digestReference,
  familiarString,
  manifestObject,
  parseImageReference,
  referenceString,
  repositoryName,
  tagReference,
} from '../../backend/registry/reference.js';
import { digestProblem, parseDigest } from '../../backend/registry/digest.js';

const D = `sha256:${'a'.repeat(64)}`;
const D512 = `sha512:${'b'.repeat(128)}`;

// input → normalised full string
const valid: [string, string][] = [
  ['busybox', 'docker.io/library/busybox:latest'],
  ['busybox:1.36', 'docker.io/library/busybox:1.36'],
  ['busybox:latest', 'docker.io/library/busybox:latest'],
  ['library/busybox', 'docker.io/library/busybox:latest'],
  ['docker.io/busybox', 'docker.io/library/busybox:latest'],
  ['docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
  ['index.docker.io/busybox', 'docker.io/library/busybox:latest'],
  ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest'],
  ['me/app', 'docker.io/me/app:latest'],
  ['me/sub/app:tag', 'docker.io/me/sub/app:tag'],
  ['quay.io/coreos/etcd:v3.5', 'quay.io/coreos/etcd:v3.5'],
  ['registry.k8s.io/pause:3.9', 'registry.k8s.io/pause:3.9'],
  ['localhost/x', 'localhost/x:latest'],
  ['localhost:5000/x', 'localhost:5000/x:latest'],
  ['registry:5000/x', 'registry:5000/x:latest'],
  ['127.0.0.1:5000/test/busybox:v1', '127.0.0.1:5000/test/busybox:v1'],
  ['[::1]:5000/x:tag', '[::1]:5000/x:tag'],
  ['[fe80::1]/x', '[fe80::1]/x:latest'],
  ['Foo/bar', 'Foo/bar:latest'], // an upper-case first component can only be a host
  ['Example.COM/bar', 'Example.COM/bar:latest'],
  ['localhost:5000', 'docker.io/library/localhost:5000'], // no slash: "5000" is a tag
  ['busybox@' + D, `docker.io/library/busybox@${D}`],
  ['busybox:1@' + D, `docker.io/library/busybox:1@${D}`],
  ['example.com/a/b/c@' + D512, `example.com/a/b/c@${D512}`],
  ['docker.io/a-b_c.d__e---f/x', 'docker.io/a-b_c.d__e---f/x:latest'],
  ['x/y_z:T_a.g-1', 'docker.io/x/y_z:T_a.g-1'],
  [`busybox:${'t'.repeat(128)}`, `docker.io/library/busybox:${'t'.repeat(128)}`],
  ['a.b-c.d:65535/p', 'a.b-c.d:65535/p:latest'],
];

for (const [input, want] of valid) {
  test(`reference ${JSON.stringify(input)} normalises to ${want}`, () => {
    assert.equal(referenceString(parseImageReference(input)), want);
  });
}

const invalid: [string, RegExp][] = [
  ['', /empty/],
  ['Busybox', /must be lowercase/],
  ['docker.io/Library/busybox', /must be lowercase/],
  ['busybox:', /bad tag/],
  ['busybox:-x', /bad tag/],
  [`busybox:${'t'.repeat(129)}`, /bad tag/],
  [':tag', /missing repository/],
  ['@' + D, /missing repository/],
  ['busybox@sha256:abc', /64 hex/],
  ['busybox@md5:' + 'a'.repeat(32), /unsupported digest algorithm/],
  ['busybox@sha256:' + 'A'.repeat(64), /lowercase hex/],
  ['busybox@' + 'a'.repeat(64), /missing algorithm/],
  ['a'.repeat(64), /64-character hex/],
  ['a//b', /bad repository name/],
  ['a/b/', /bad repository name/],
  ['-busybox', /bad repository name/],
  ['busybox___x', /bad repository name/],
  ['busy box', /whitespace/],
  ['example.com:port/x', /bad registry host/],
  ['exa_mple.com/x', /bad registry host/],
  ['[::1]', /bad tag/], // no slash: ':1]' reads as a tag
  [`example.com/${'a'.repeat(250)}`, /longer than 255/],
  ['a/b:c:d', /bad repository name/],
];

for (const [input, why] of invalid) {
  test(`reference ${JSON.stringify(input.length > 60 ? input.slice(0, 60) + '…' : input)} is rejected`, () => {
    assert.throws(
      () => parseImageReference(input),
      (err: unknown) => {
        assert.ok(isCrispError(err, 'INVALID_ARGUMENT'), String(err));
        assert.match(err.message, why);
        assert.ok(err.message.includes(`"${input}"`), `message names the reference: ${err.message}`);
        return true;
      },
    );
  });
}

test('reference parts: domain, path, tag, digest', () => {
  const r = parseImageReference(`127.0.0.1:5000/test/app:v2@${D}`);
  assert.deepEqual(r, { domain: '127.0.0.1:5000', path: 'test/app', tag: 'v2', digest: D });
  assert.equal(repositoryName(r), '127.0.0.1:5000/test/app');
  assert.equal(manifestObject(r), D, 'the digest wins for pulling');
  assert.equal(tagReference(r), '127.0.0.1:5000/test/app:v2', 'the tag is kept for naming');
  assert.equal(digestReference(r, D), `127.0.0.1:5000/test/app@${D}`);
  const digestOnly = parseImageReference(`busybox@${D}`);
  assert.equal(digestOnly.tag, undefined, 'no latest is added beside a digest');
  assert.equal(tagReference(digestOnly), undefined);
  assert.equal(manifestObject(parseImageReference('busybox')), 'latest');
});

test('familiar form drops docker.io and library/', () => {
  assert.equal(familiarString(parseImageReference('busybox')), 'busybox:latest');
  assert.equal(familiarString(parseImageReference('docker.io/me/app:1')), 'me/app:1');
  assert.equal(familiarString(parseImageReference('docker.io/library/a/b')), 'library/a/b:latest');
  assert.equal(familiarString(parseImageReference('quay.io/x/y')), 'quay.io/x/y:latest');
});

test('digest parsing', () => {
  assert.deepEqual(parseDigest(D), { algorithm: 'sha256', encoded: 'a'.repeat(64) });
  assert.equal(digestProblem(D512), undefined);
  assert.match(digestProblem('sha384:' + 'a'.repeat(64)) ?? '', /96 hex/);
  assert.throws(() => parseDigest('nope'), /invalid digest "nope"/);
});
