import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isContentMismatch, verifyingStream } from '../../backend/registry/verify.js';
import { parseManifest } from '../../backend/registry/client.js';
import { MediaType } from '../../backend/registry/oci.js';
import { isCrispError } from '../../common/errors.js';

const data = randomBytes(100_000);
const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function run(chunks: Buffer[], expected: string, size: number, opts = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    verifyingStream(expected, size, opts),
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

test('verifyingStream passes matching content through unchanged', async () => {
  const got = await run([data.subarray(0, 1000), data.subarray(1000)], digest, data.length);
  assert.ok(got.equals(data));
  assert.ok((await run([data], digest, -1)).equals(data), 'size < 0 skips the length check');
});

test('verifyingStream rejects wrong digest, short and long content', async () => {
  const wrong = `sha256:${'0'.repeat(64)}`;
  await assert.rejects(run([data], wrong, data.length), (err: unknown) => isContentMismatch(err) && /digest mismatch: expected sha256:0+, got sha256:/.test(err.message));
  await assert.rejects(run([data.subarray(1)], digest, data.length), (err: unknown) => isContentMismatch(err) && /ended after 99999 of 100000 bytes/.test(err.message));
  await assert.rejects(run([data, Buffer.from('x')], digest, data.length), (err: unknown) => isContentMismatch(err) && /more data than/.test(err.message));
  await assert.rejects(run([data], 'sha256:bad', data.length), /invalid digest/);
});

test('verifyingStream resumes from a hash that saw the first bytes', async () => {
  const hash = createHash('sha256').update(data.subarray(0, 4096));
  const rest = await run([data.subarray(4096)], digest, data.length, { hash, offset: 4096 });
  assert.equal(rest.length, data.length - 4096);
});

test('parseManifest checks shape and rejects schema1', () => {
  const d = `sha256:${'1'.repeat(64)}`;
  const m = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: d, size: 2 }, layers: [] };
  assert.equal(parseManifest(Buffer.from(JSON.stringify(m)), MediaType.ociManifest, d).kind, 'manifest');
  const i = { schemaVersion: 2, manifests: [{ mediaType: MediaType.ociManifest, digest: d, size: 2 }] };
  assert.equal(parseManifest(Buffer.from(JSON.stringify(i)), MediaType.dockerManifestList, d).kind, 'index');
  assert.throws(() => parseManifest(Buffer.from('{"schemaVersion":1}'), 'application/json', d), (e: unknown) => isCrispError(e, 'UNIMPLEMENTED'));
  assert.throws(() => parseManifest(Buffer.from('{"schemaVersion":2,"layers":[]}'), MediaType.ociManifest, d), /missing config/);
  assert.throws(() => parseManifest(Buffer.from('nope'), MediaType.ociManifest, d), /not JSON/);
});
