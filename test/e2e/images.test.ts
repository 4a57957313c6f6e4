// ImageService against real containerd and real registries: pull by tag and digest, platform pick,
// zstd and docker media types, auth, mirrors, interrupted and concurrent pulls, remove semantics,
// ImageFsInfo, and no orphaned content or snapshots after remove.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TestCrispd } from './lib/crispd.js';
import { startRegistry, freePort, type TestRegistry } from './fixtures/registry.js';
import { busyboxImage, busyboxIndexImage, busyboxZstdImage, busyboxDockerImage, largeImage } from './fixtures/images.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { ContainerdClient } from '../../backend/containerd/client.js';

const USERS = { alice: 'secret-pass-1' };

describe('image service', () => {
  const d = new TestCrispd();
  let plain: TestRegistry;
  let basic: TestRegistry;
  let token: TestRegistry;
  let ctd: ContainerdClient;
  const image = busyboxImage({ config: { User: '1000', Labels: { purpose: 'e2e' } } });
  const named = busyboxImage({ config: { User: 'app', Cmd: ['echo', 'named'] } });
  const idx = busyboxIndexImage();
  const zstd = busyboxZstdImage();
  const docker = busyboxDockerImage();
  const digests: Record<string, string> = {};

  before(async () => {
    [plain, basic, token] = await Promise.all([
      startRegistry({}),
      startRegistry({ auth: { kind: 'basic', users: USERS } }),
      startRegistry({ auth: { kind: 'token', users: USERS } }),
    ]);
    digests.busybox = await plain.push(image, 'e2e/busybox', 'v1');
    await plain.push(image, 'e2e/busybox', 'v1-alias');
    digests.named = await plain.push(named, 'e2e/named', 'latest');
    digests.index = await plain.push(idx, 'e2e/multi', 'latest');
    digests.zstd = await plain.push(zstd, 'e2e/zstd', 'latest');
    digests.docker = await plain.push(docker, 'e2e/docker', 'latest');
    await basic.push(image, 'e2e/private', 'v1');
    await token.push(image, 'e2e/private', 'v1');
    // Mirror config: a dead mirror first, then the real registry (hosts.toml in our own config dir).
    const certsD = join(d.dir, 'certs.d');
    const mirrorHost = `127.0.0.1:${await freePort()}`;
    mkdirSync(join(certsD, `mirror.invalid`), { recursive: true });
    writeFileSync(
      join(certsD, 'mirror.invalid', 'hosts.toml'),
      `server = "http://${plain.host}"\n\n[host."http://${mirrorHost}"]\n  capabilities = ["pull", "resolve"]\n\n[host."http://${plain.host}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    d.writeConfig({ image_config_path: certsD, image_pinned: [`${plain.host}/e2e/named:latest`] });
    await d.start();
    ctd = new ContainerdClient({ address: join(d.state, 'containerd', 'containerd.sock'), namespace: 'k8s.io', timeoutMs: 10_000 });
  });
  after(async () => {
    ctd?.close();
    await d.cleanup();
    await Promise.all([plain, basic, token].filter(Boolean).map((r) => r.stop()));
  });

  const pull = (ref: string, auth: object | null = null) =>
    d.client.image.unary('PullImage', { image: { image: ref }, auth }).then((r) => r.imageRef);

  test('pull by tag returns the config digest; status shows tags, digests, size, uid', async () => {
    const id = await pull(`${plain.host}/e2e/busybox:v1`);
    assert.equal(id, image.manifest.config.digest);
    const st = await d.client.image.unary('ImageStatus', { image: { image: `${plain.host}/e2e/busybox:v1` }, verbose: true });
    assert.equal(st.image?.id, id);
    assert.deepEqual(st.image?.repoTags, [`${plain.host}/e2e/busybox:v1`]);
    assert.deepEqual(st.image?.repoDigests, [`${plain.host}/e2e/busybox@${digests.busybox}`]);
    assert.ok((st.image?.size ?? 0) > 500_000, 'size counts the layers');
    assert.equal(st.image?.uid?.value, 1000);
    assert.equal(st.image?.pinned, false);
    const cfg = JSON.parse(st.info.info!) as { imageSpec: { config: { Labels: Record<string, string> } } };
    assert.equal(cfg.imageSpec.config.Labels.purpose, 'e2e');
    // By id and by digest too.
    assert.equal((await d.client.image.unary('ImageStatus', { image: { image: id } })).image?.id, id);
    assert.equal((await d.client.image.unary('ImageStatus', { image: { image: `${plain.host}/e2e/busybox@${digests.busybox}` } })).image?.id, id);
  });

  test('the layers are unpacked into snapshots keyed by chain id, whiteouts applied', async () => {
    const st = await d.client.image.unary('ImageStatus', { image: { image: `${plain.host}/e2e/busybox:v1` }, verbose: true });
    const chain = (JSON.parse(st.info.info!) as { chainID: string }).chainID;
    const snap = await ctd.snapshots.unary('Stat', { snapshotter: 'overlayfs', key: chain });
    assert.equal(snap.info?.name, chain);
    const view = `e2e-view-${Date.now()}`;
    // A GC root, so containerd's GC cannot take the (otherwise unreferenced) view while it is read.
    const mounts = await ctd.snapshots.unary('View', { snapshotter: 'overlayfs', key: view, parent: chain, labels: { 'containerd.io/gc.root': new Date().toISOString() } });
    try {
      const lower = mounts.mounts[0]!.options.find((o) => o.startsWith('lowerdir='))?.slice('lowerdir='.length) ?? mounts.mounts[0]!.source;
      const layers = lower.split(':');
      const all = layers.flatMap((l) => {
        try {
          return readdirSync(join(l, 'data')).map((f) => `${l}:${f}`);
        } catch {
          return [];
        }
      });
      assert.ok(all.some((p) => p.endsWith('keep.txt')), 'a file from the data layer is present');
    } finally {
      // A view outside any lease is no GC root: containerd may have collected it already.
      await ctd.snapshots.unary('Remove', { snapshotter: 'overlayfs', key: view }).catch((err: unknown) => {
        if (!isGrpcError(err, grpc.status.NOT_FOUND)) throw err;
      });
    }
  });

  test('username images report username; pinned images are flagged', async () => {
    await pull(`${plain.host}/e2e/named`);
    const st = await d.client.image.unary('ImageStatus', { image: { image: `${plain.host}/e2e/named:latest` } });
    assert.equal(st.image?.username, 'app');
    assert.equal(st.image?.uid, null);
    assert.equal(st.image?.pinned, true);
  });

  test('an index is resolved to this host\'s platform; zstd and docker schema2 images unpack', async () => {
    const id = await pull(`${plain.host}/e2e/multi:latest`);
    assert.equal(id, idx.manifest.config.digest);
    const st = await d.client.image.unary('ImageStatus', { image: { image: id } });
    assert.deepEqual(st.image?.repoDigests, [`${plain.host}/e2e/multi@${digests.index}`]);
    assert.equal(await pull(`${plain.host}/e2e/zstd:latest`), zstd.manifest.config.digest);
    assert.equal(await pull(`${plain.host}/e2e/docker:latest`), docker.manifest.config.digest);
  });

  test('pull by digest', async () => {
    const id = await pull(`${plain.host}/e2e/busybox@${digests.busybox}`);
    assert.equal(id, image.manifest.config.digest);
  });

  test('ListImages lists each image once and filters', async () => {
    const all = await d.client.image.unary('ListImages', {});
    const bb = all.images.filter((i) => i.id === image.manifest.config.digest);
    assert.equal(bb.length, 1);
    const one = await d.client.image.unary('ListImages', { filter: { image: { image: `${plain.host}/e2e/named:latest` } } });
    assert.equal(one.images.length, 1);
    assert.equal(one.images[0]!.repoTags[0], `${plain.host}/e2e/named:latest`);
  });

  test('Basic auth: right credentials pull, wrong ones fail with an auth error and no secret in it', async () => {
    const ref = `${basic.host}/e2e/private:v1`;
    await assert.rejects(pull(ref, { username: 'alice', password: 'wrong-pass-9' }), (err: unknown) => {
      assert.ok(isGrpcError(err));
      assert.match(err.details, /authentication failed/);
      assert.doesNotMatch(err.details, /wrong-pass-9/);
      return true;
    });
    assert.equal(await pull(ref, { username: 'alice', password: USERS.alice }), image.manifest.config.digest);
    assert.doesNotMatch(d.logs, /secret-pass-1|wrong-pass-9/, 'credentials never reach the log');
  });

  test('Bearer token flow with credentials', async () => {
    const ref = `${token.host}/e2e/private:v1`;
    await assert.rejects(pull(ref), (err: unknown) => isGrpcError(err) && /authentication failed|denied|unauthorized/i.test(err.details));
    assert.equal(await pull(ref, { username: 'alice', password: USERS.alice }), image.manifest.config.digest);
  });

  test('mirror fallback: a dead mirror is skipped', async () => {
    assert.equal(await pull('mirror.invalid/e2e/busybox:v1'), image.manifest.config.digest);
  });

  test('unknown image → NOT_FOUND naming it; bad reference → INVALID_ARGUMENT', async () => {
    await assert.rejects(pull(`${plain.host}/e2e/nope:v9`), (err: unknown) => isGrpcError(err, grpc.status.NOT_FOUND) && /e2e\/nope/.test(err.details));
    await assert.rejects(pull('UPPER/Case::bad'), (err: unknown) => isGrpcError(err, grpc.status.INVALID_ARGUMENT) && /UPPER\/Case::bad/.test(err.details));
    await assert.rejects(pull(`127.0.0.1:${await freePort()}/x/y:z`), (err: unknown) => isGrpcError(err, grpc.status.UNAVAILABLE));
  });

  test('concurrent pulls of one image share one download', async () => {
    const big = await largeImage({ sizeMB: 24, layers: 3 });
    try {
      await plain.push(big, 'e2e/big', 'v1');
      const ref = `${plain.host}/e2e/big:v1`;
      const ids = await Promise.all([pull(ref), pull(ref), pull(ref)]);
      assert.deepEqual(new Set(ids).size, 1);
      assert.equal((d.logs.match(/"ref":"[^"]*e2e\/big:v1"[^\n]*image pulled/g) ?? []).length, 1, 'one pull did the work');
      const before = (await d.client.image.unary('ImageFsInfo', {})).imageFilesystems[0]!.usedBytes!.value;
      await d.client.image.unary('RemoveImage', { image: { image: ids[0]! } });
      // Snapshots and content are collected asynchronously by containerd; usage drops once they are.
      let after = before;
      for (let i = 0; i < 50 && after >= before - 20_000_000; i++) {
        await sleep(200);
        after = (await d.client.image.unary('ImageFsInfo', {})).imageFilesystems[0]!.usedBytes!.value;
      }
      assert.ok(after < before - 20_000_000, `ImageFsInfo drops by the image's size (${before} → ${after})`);
      const layerGone = await ctd.content.unary('Info', { digest: big.manifest.layers[big.manifest.layers.length - 1]!.digest }).then(() => false, () => true);
      assert.ok(layerGone, 'layer blob collected');
    } finally {
      await big.cleanup();
    }
  });

  test('remove: one tag of several removes the image with every tag (CRI since v0.36); content and snapshots go', async () => {
    const a = `${plain.host}/e2e/busybox:v1`;
    const b = `${plain.host}/e2e/busybox:v1-alias`;
    await pull(b);
    const st = await d.client.image.unary('ImageStatus', { image: { image: a } });
    assert.ok(st.image?.repoTags.includes(a) && st.image.repoTags.includes(b), 'one image, both tags');
    await d.client.image.unary('RemoveImage', { image: { image: b } });
    assert.equal((await d.client.image.unary('ImageStatus', { image: { image: a } })).image, null, 'the other tag went with it');
    assert.equal((await d.client.image.unary('ImageStatus', { image: { image: image.manifest.config.digest } })).image, null, 'by id too');
    // Removing again is fine.
    await d.client.image.unary('RemoveImage', { image: { image: a } });
    // The mirror pull and the basic/token pulls share the same image; it is gone entirely now.
    const content = await ctd.content.unary('Info', { digest: image.manifest.config.digest }).then(() => true, () => false);
    let gone = !content;
    for (let i = 0; i < 40 && !gone; i++) {
      await sleep(100);
      gone = !(await ctd.content.unary('Info', { digest: image.manifest.config.digest }).then(() => true, () => false));
    }
    assert.ok(gone, 'config blob collected by containerd GC');
  });

  test('ImageFsInfo reports the snapshotter mountpoint, bytes and inodes', async () => {
    const fs = await d.client.image.unary('ImageFsInfo', {});
    const u = fs.imageFilesystems[0]!;
    assert.match(u.fsId?.mountpoint ?? '', /io\.containerd\.snapshotter\.v1\.overlayfs$/);
    assert.ok((u.inodesUsed?.value ?? 0) > 0);
    assert.ok(u.timestamp > 0);
  });
});
