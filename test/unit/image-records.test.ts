// ImageRecords resolves each image record's target (index → manifest → config) once and caches it by
// digest; a listing that no longer has an image drops its cache entry, so the cache holds only images
// that exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ImageRecords } from '../../backend/images/records.js';
import type { ContainerdClient } from '../../backend/containerd/client.js';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** An image's blobs: its config (unique per `name`) and a manifest pointing at it. */
function blobs(name: string) {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: { name } }, rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const configDescriptor = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: configDescriptor, layers: [] }));
  return { config, manifest, digest: digestOf(manifest) };
}

function fakeContainerd() {
  const store = new Map<string, Buffer>();
  let records: { name: string; target: { mediaType: string; digest: string; size: number } }[] = [];
  const reads: string[] = [];
  const ctd = {
    images: { unary: async (method: string) => (method === 'List' ? { images: records } : {}) },
    content: {
      serverStream: async function* (_method: string, req: { digest: string }) {
        reads.push(req.digest);
        const data = store.get(req.digest);
        if (!data) throw new Error(`${req.digest} not found`);
        yield { data };
      },
    },
  } as unknown as ContainerdClient;
  const add = (name: string) => {
    const b = blobs(name);
    store.set(digestOf(b.config), b.config);
    store.set(b.digest, b.manifest);
    records = [...records.filter((r) => r.name !== name), { name, target: { mediaType: MANIFEST, digest: b.digest, size: b.manifest.length } }];
  };
  const remove = (name: string) => (records = records.filter((r) => r.name !== name));
  return { ctd, add, remove, reads };
}

test('resolved targets are cached while their image is listed and dropped once it is gone', async () => {
  const f = fakeContainerd();
  const images = new ImageRecords(f.ctd);
  f.add('registry.test/a:1');
  f.add('registry.test/b:1');
  assert.deepEqual((await images.list()).flatMap((i) => i.repoTags).sort(), ['registry.test/a:1', 'registry.test/b:1']);
  assert.equal(f.reads.length, 4, 'manifest and config of each image');
  await images.list();
  assert.equal(f.reads.length, 4, 'a second listing reads nothing');

  f.remove('registry.test/a:1');
  assert.deepEqual((await images.list()).flatMap((i) => i.repoTags), ['registry.test/b:1']);
  // The same image tagged again is resolved afresh: its entry went with the listing that lacked it.
  f.add('registry.test/a:1');
  await images.list();
  assert.equal(f.reads.length, 6);
  assert.equal(f.reads.slice(4).filter((d) => d === f.reads[0] || d === f.reads[1]).length, 2);
});
