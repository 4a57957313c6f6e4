// Image pulls when the network misbehaves, through a fault-injecting proxy in front of a real registry:
// corrupted blobs are refused and never committed, interrupted downloads resume with a Range request,
// stalled pulls hit image_pull_progress_timeout, concurrent pulls download each blob once, and removing
// an image leaves no content, snapshots or leases behind. Also the progress side channel `crisp pull` reads.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TestCrispd, CLI, uniqueId } from './lib/crispd.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { startFaultProxy, blobPath, type FaultProxy } from './fixtures/fault-proxy.js';
import { buildImage, largeImage, type TestImage } from './fixtures/images.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { ContainerdClient } from '../../backend/containerd/client.js';
import { chainIds } from '../../backend/images/unpack.js';
import { pullProgressPath, type PullProgress } from '../../backend/images/progress.js';
import { ingestRef } from '../../backend/images/pull.js';

/** An image of `layers` layers of random (incompressible) bytes: nothing shared with any other image. */
function uniqueImage(layers: number, layerBytes = 256 * 1024): TestImage {
  const id = uniqueId();
  return buildImage(
    Array.from({ length: layers }, (_, i) => [
      { type: 'dir' as const, path: `data${i}` },
      { type: 'file' as const, path: `data${i}/${id}.bin`, data: randomBytes(layerBytes) },
    ]),
  );
}

describe('image pull robustness', () => {
  const d = new TestCrispd();
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let ctd: ContainerdClient;
  const images: TestImage[] = [];

  before(async () => {
    registry = await startRegistry({});
    proxy = await startFaultProxy(registry.host);
    d.writeConfig({ image_pull_progress_timeout: 2 });
    await d.start();
    ctd = new ContainerdClient({ address: join(d.state, 'containerd', 'containerd.sock'), namespace: 'k8s.io', timeoutMs: 10_000 });
  });
  afterEach(() => proxy.clearRules());
  after(async () => {
    ctd?.close();
    await d.cleanup();
    await proxy?.stop();
    await registry?.stop();
    await Promise.all(images.map((i) => i.cleanup()));
  });

  const pull = (ref: string) => d.client.image.unary('PullImage', { image: { image: ref } }).then((r) => r.imageRef);
  const staging = () => join(d.root, 'containerd', 'io.containerd.snapshotter.v1.overlayfs', 'crisp-staging');
  const staged = () => (existsSync(staging()) ? readdirSync(staging()) : []);
  /** crispd's debug line saying crisp-untar extracted this layer from its ingest file while it downloaded. */
  const extractedWhileDownloading = (digest: string) => new RegExp(`"digest":"${digest}"[^\n]*"msg":"layer extracted while downloading"`);
  const imageStatus = (ref: string) => d.client.image.unary('ImageStatus', { image: { image: ref } }).then((r) => r.image);
  const contentInfo = (digest: string) =>
    ctd.content.unary('Info', { digest }).then(
      () => 'present' as const,
      (err: unknown) => (isGrpcError(err, grpc.status.NOT_FOUND) ? ('absent' as const) : Promise.reject(err)),
    );
  const ingestStatus = (digest: string) =>
    ctd.content.unary('Status', { ref: ingestRef(digest) }).then(
      (r) => r.status?.offset ?? 0,
      (err: unknown) => (isGrpcError(err, grpc.status.NOT_FOUND) ? undefined : Promise.reject(err)),
    );
  /** A synchronous containerd GC: deleting an image record with sync waits for a collection. */
  const collectGarbage = async () => {
    const name = `crisp-e2e-gc-${uniqueId()}`;
    await ctd.images.unary('Create', {
      image: { name, target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 1 } },
    });
    await ctd.images.unary('Delete', { name, sync: true });
  };

  test('a corrupted layer fails the pull naming its digest; nothing is committed or kept; a clean pull then works', async () => {
    const img = uniqueImage(2);
    const repo = 'e2e/mismatch';
    await registry.push(img, repo, 'v1');
    const bad = img.manifest.layers[1]!.digest;
    proxy.addRule({ path: blobPath(repo, bad), action: { kind: 'corrupt' } });
    const ref = `${proxy.host}/${repo}:v1`;

    await assert.rejects(pull(ref), (err: unknown) => {
      assert.ok(isGrpcError(err, grpc.status.FAILED_PRECONDITION), `FAILED_PRECONDITION, got ${String(err)}`);
      assert.ok(err.details.includes(bad), `the error names the digest: ${err.details}`);
      return true;
    });
    assert.equal(proxy.stats(blobPath(repo, bad)).requests, 1, 'the corrupted blob was served');
    assert.equal(await imageStatus(ref), null, 'no image record');
    const listed = await d.client.image.unary('ListImages', {});
    assert.ok(!listed.images.some((i) => i.id === img.manifest.config.digest), 'not listed');
    assert.equal(await contentInfo(bad), 'absent', 'the bad blob is not committed');
    assert.equal(await ingestStatus(bad), undefined, 'and its partial data is not kept');

    proxy.clearRules();
    assert.equal(await pull(ref), img.manifest.config.digest, 'a clean pull succeeds');
    assert.equal(await contentInfo(bad), 'present');
  });

  test('an overlong layer (the download worker sees more bytes than the manifest says) fails the pull; nothing is kept', async () => {
    const img = uniqueImage(2);
    const repo = 'e2e/overlong';
    await registry.push(img, repo, 'v1');
    const bad = img.manifest.layers[0]!.digest;
    proxy.addRule({ path: blobPath(repo, bad), action: { kind: 'extra', bytes: 4096 } });
    const ref = `${proxy.host}/${repo}:v1`;

    await assert.rejects(pull(ref), (err: unknown) => {
      assert.ok(isGrpcError(err, grpc.status.FAILED_PRECONDITION), `FAILED_PRECONDITION, got ${String(err)}`);
      assert.ok(err.details.includes(bad) && /more data than the expected/.test(err.details), `the error names the digest and the cause: ${err.details}`);
      return true;
    });
    assert.equal(await imageStatus(ref), null, 'no image record');
    assert.equal(await contentInfo(bad), 'absent', 'the blob is not committed');
    assert.equal(await ingestStatus(bad), undefined, 'and its partial data is not kept');

    proxy.clearRules();
    assert.equal(await pull(ref), img.manifest.config.digest, 'a clean pull succeeds');
  });

  test('an interrupted layer download fails the pull; the retry resumes with a Range request', async () => {
    const big = await largeImage({ sizeMB: 24, layers: 3, seed: uniqueId('resume-'), withBusybox: false });
    images.push(big);
    const repo = 'e2e/resume';
    await registry.push(big, repo, 'v1');
    const target = big.manifest.layers[1]!;
    const cutAt = 3_000_000;
    proxy.addRule({ path: blobPath(repo, target.digest), action: { kind: 'cut', afterBytes: cutAt }, times: 1 });
    const ref = `${proxy.host}/${repo}:v1`;

    await assert.rejects(pull(ref), (err: unknown) => {
      assert.ok(isGrpcError(err, grpc.status.UNAVAILABLE), `UNAVAILABLE, got ${String(err)}`);
      assert.ok(err.details.includes(target.digest) || err.details.includes(proxy.host), `names the blob or host: ${err.details}`);
      return true;
    });
    assert.equal(await imageStatus(ref), null);
    assert.deepEqual(staged(), [], 'the extraction that followed the cut download is gone');
    const kept = await ingestStatus(target.digest);
    assert.ok(kept !== undefined && kept > 0 && kept <= cutAt, `partial data kept (${kept} bytes)`);
    // The failed pull's lease is gone; a collection now must not take the partial download with it.
    await collectGarbage();
    assert.equal(await ingestStatus(target.digest), kept, 'the partial download survives GC');

    assert.equal(await pull(ref), big.manifest.config.digest);
    const hits = proxy.requests.filter((r) => r.method === 'GET' && blobPath(repo, target.digest).test(r.path));
    assert.equal(hits.length, 2, 'one cut request, one resumed request');
    assert.equal(hits[0]!.range, undefined);
    assert.equal(hits[0]!.fault, 'cut');
    assert.equal(hits[1]!.range, `bytes=${kept}-`, 'the retry starts where the store stopped');
    assert.equal(hits[1]!.bytes, target.size - kept, 'only the missing bytes travel again');
    assert.ok(hits[1]!.bytes < target.size);
    assert.equal(await ingestStatus(target.digest), undefined, 'the ingest is committed');
    assert.match(d.logs, /blob download resumed/);
    // The retry's extraction read the kept bytes and then the resumed ones as they arrived.
    assert.match(d.logs, extractedWhileDownloading(target.digest));
    assert.deepEqual(staged(), []);
    // The worker hashed what the first attempt left plus what the retry brought: crisp verified the
    // blob and containerd registered it without reading it again.
    assert.match(d.logs, new RegExp(`"digest":"${target.digest}","size":\\d+,"verifiedBy":"crisp","msg":"blob committed"`));
  });

  test('a stalled layer hits image_pull_progress_timeout; crispd keeps serving; no half image', async () => {
    const img = uniqueImage(2, 512 * 1024);
    const repo = 'e2e/stall';
    await registry.push(img, repo, 'v1');
    const layer = img.manifest.layers[0]!;
    proxy.addRule({ path: blobPath(repo, layer.digest), action: { kind: 'stall', afterBytes: 64 * 1024 }, times: 1 });
    const ref = `${proxy.host}/${repo}:v1`;
    const progressFile = pullProgressPath(join(d.state, 'pulls'), ref);

    const started = Date.now();
    const pulling = pull(ref);
    pulling.catch(() => undefined);
    // While it hangs, the pull publishes its progress for `crisp pull`.
    let seen: PullProgress | undefined;
    for (let i = 0; i < 40 && !seen; i++) {
      await sleep(50);
      if (existsSync(progressFile)) seen = JSON.parse(readFileSync(progressFile, 'utf8')) as PullProgress;
    }
    assert.ok(seen, `progress published at ${progressFile}`);
    assert.equal(seen.reference, ref);

    await assert.rejects(pulling, (err: unknown) => {
      assert.ok(isGrpcError(err, grpc.status.DEADLINE_EXCEEDED), `DEADLINE_EXCEEDED, got ${String(err)}`);
      assert.match(err.details, /image_pull_progress_timeout/);
      return true;
    });
    const took = Date.now() - started;
    assert.ok(took >= 1900 && took < 8000, `failed after ${took} ms`);
    assert.equal(existsSync(progressFile), false, 'the progress file is removed');

    const v = await d.client.runtime.unary('Version', { version: 'v1' });
    assert.equal(v.runtimeApiVersion, 'v1', 'crispd keeps serving');
    assert.equal(await imageStatus(ref), null, 'no image record');
    assert.equal(await contentInfo(img.manifest.config.digest), 'absent');
    assert.equal(await contentInfo(layer.digest), 'absent');
    assert.deepEqual(staged(), [], 'the extraction waiting for the stalled layer is gone');

    proxy.clearRules();
    assert.equal(await pull(ref), img.manifest.config.digest, 'the next pull completes');
    const ranges = proxy.stats(blobPath(repo, layer.digest)).ranges;
    assert.equal(ranges.length, 2);
    assert.match(ranges[1] ?? '', /^bytes=[1-9]\d*-$/, 'and resumes the stalled layer');
  });

  test('a stall while layers still wait for a download slot fails the pull (it does not hang); nothing is left staged', async () => {
    // Three stalled layers hold every download slot (image_max_concurrent_downloads = 3): the other
    // three never start, so their unpack must be given up with the pull rather than waited for.
    const img = uniqueImage(6, 512 * 1024);
    const repo = 'e2e/stall-queued';
    await registry.push(img, repo, 'v1');
    for (const layer of img.manifest.layers.slice(0, 3)) {
      proxy.addRule({ path: blobPath(repo, layer.digest), action: { kind: 'stall', afterBytes: 64 * 1024 }, times: 1 });
    }
    const ref = `${proxy.host}/${repo}:v1`;
    await assert.rejects(pull(ref), (err: unknown) => {
      assert.ok(isGrpcError(err, grpc.status.DEADLINE_EXCEEDED), `DEADLINE_EXCEEDED, got ${String(err)}`);
      return true;
    });
    assert.deepEqual(staged(), [], 'nothing staged');
    proxy.clearRules();
    assert.equal(await pull(ref), img.manifest.config.digest, 'the next pull completes');
  });

  test('a slow layer is extracted while it downloads; its snapshot holds the layer', async () => {
    const id = uniqueId();
    const data = randomBytes(3 << 20);
    const img = buildImage([[{ type: 'dir', path: 'slow' }, { type: 'file', path: `slow/${id}.bin`, data }]]);
    const repo = 'e2e/slow';
    await registry.push(img, repo, 'v1');
    const layer = img.manifest.layers[0]!;
    proxy.addRule({ path: blobPath(repo, layer.digest), action: { kind: 'slow', bytesPerSecond: 4 << 20 } });
    assert.equal(await pull(`${proxy.host}/${repo}:v1`), img.manifest.config.digest);
    assert.ok(proxy.stats(blobPath(repo, layer.digest)).requests >= 1);
    assert.match(d.logs, extractedWhileDownloading(layer.digest));
    assert.deepEqual(staged(), []);
    // The committed snapshot holds the file: a view of a one-layer chain is a bind of its directory.
    const [chain] = chainIds(img.config.rootfs.diff_ids);
    const key = `e2e-slow-view-${id}`;
    // A GC root: an unreferenced view is garbage, and containerd's GC (which other tests' removals start)
    // could take it while this test reads it.
    const labels = { 'containerd.io/gc.root': new Date().toISOString() };
    const { mounts } = await ctd.snapshots.unary('View', { snapshotter: 'overlayfs', key, parent: chain!, labels });
    try {
      assert.equal(mounts[0]?.type, 'bind');
      assert.ok(readFileSync(join(mounts[0]!.source, 'slow', `${id}.bin`)).equals(data), 'the file is the layer\'s');
    } finally {
      await ctd.snapshots.unary('Remove', { snapshotter: 'overlayfs', key });
    }
  });

  test('three concurrent PullImage calls download each blob once', async () => {
    const big = await largeImage({ sizeMB: 24, layers: 3, seed: uniqueId('concurrent-'), withBusybox: false });
    images.push(big);
    const repo = 'e2e/concurrent';
    await registry.push(big, repo, 'v1');
    const ref = `${proxy.host}/${repo}:v1`;
    const ids = await Promise.all([pull(ref), pull(ref), pull(ref)]);
    assert.deepEqual(ids, [big.manifest.config.digest, big.manifest.config.digest, big.manifest.config.digest]);
    for (const blob of big.blobs) {
      const s = proxy.stats(blobPath(repo, blob.digest));
      assert.equal(s.requests, 1, `blob ${blob.digest} fetched once`);
      assert.equal(s.bytes, blob.size);
    }
    assert.equal(proxy.stats(new RegExp(`^/v2/${repo}/manifests/`)).requests, 1, 'manifest fetched once');
  });

  test('crisp pull without a TTY prints only the result', async () => {
    const img = uniqueImage(1);
    await registry.push(img, 'e2e/cli', 'v1');
    const ref = `${proxy.host}/e2e/cli:v1`;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, 'pull', '--state', d.state, ref], {
      env: { ...process.env, CRISP_ENDPOINT: d.endpoint },
    });
    // A fresh pull says what it downloaded; "up to date" is only for a pull that fetched nothing.
    assert.equal(stdout, `Downloaded ${ref}: ${img.manifest.config.digest}\n`);
    assert.equal(stderr, '');
  });

  test('remove + GC leaves no content, snapshots or leases of the image', async () => {
    const img = uniqueImage(3);
    const repo = 'e2e/gc';
    await registry.push(img, repo, 'v1');
    const id = await pull(`${proxy.host}/${repo}:v1`);
    const digests = [img.top.digest, img.manifest.config.digest, ...img.manifest.layers.map((l) => l.digest)];
    const chains = chainIds(img.config.rootfs.diff_ids);
    const remaining = async () => {
      const content: string[] = [];
      for await (const res of ctd.content.serverStream('List', { filters: [] })) for (const i of res.info) content.push(i.digest);
      const snapshots: string[] = [];
      for await (const res of ctd.snapshots.serverStream('List', { snapshotter: 'overlayfs', filters: [] })) for (const i of res.info) snapshots.push(i.name);
      const leases = (await ctd.leases.unary('List', { filters: [] })).leases.map((l) => l.id);
      return {
        content: digests.filter((dg) => content.includes(dg)),
        snapshots: chains.filter((c) => snapshots.includes(c)),
        leases: leases.filter((l) => l.startsWith('crisp-pull-') || digests.some((dg) => l.endsWith(dg.replace(':', '-')))),
      };
    };
    const present = await remaining();
    assert.deepEqual(present.content.sort(), [...digests].sort(), 'all blobs are in the store after the pull');
    assert.deepEqual(present.snapshots, chains, 'all layers are unpacked');
    assert.deepEqual(present.leases, [], 'no pull or download lease outlives a successful pull');

    await d.client.image.unary('RemoveImage', { image: { image: id } });
    let left = await remaining();
    for (let i = 0; i < 50 && (left.content.length > 0 || left.snapshots.length > 0); i++) {
      await sleep(200);
      left = await remaining();
    }
    assert.deepEqual(left, { content: [], snapshots: [], leases: [] });
  });
});
