// cri/image/image-status.ts: a non-verbose answer's encoding is reused only while the image's view is
// the same (same values, same arrays and config); a retag, a new copy or pinning shows at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codecFor } from '../../common/proto-registry.js';
import { Encoded } from '../../common/grpc-server.js';
import type { ImageStatusResponse } from '../../gen/runtime.v1.js';
import type { ImageService, ImageView } from '../../backend/images/service.js';
import { imageStatusHandler } from '../../cri/image/image-status.js';
import { toCriImage } from '../../cri/image/image-view.js';

const codec = codecFor<ImageStatusResponse>('runtime.v1.ImageStatusResponse');
const HEX = 'e'.repeat(64);

function view(tags: string[], pinned = false): ImageView {
  return {
    id: `sha256:${HEX}`,
    repoTags: tags,
    repoDigests: [],
    size: 4096,
    config: { config: { User: '1000' } } as ImageView['config'],
    configDigest: `sha256:${HEX}`,
    manifestDigest: 'sha256:' + 'c'.repeat(64),
    topChainId: '',
    chainIds: [],
    recordNames: tags,
    pinned,
  };
}

type Handler = ReturnType<typeof imageStatusHandler>;

async function answer(imageStatus: Handler, verbose = false): Promise<ImageStatusResponse> {
  const res = await imageStatus({ image: { image: 'busybox' }, verbose } as Parameters<Handler>[0]);
  return res instanceof Encoded ? codec.decode(res.bytes) : codec.normalize(res);
}

test('ImageStatus reuses the encoding of an unchanged view and answers any change', async () => {
  let current: ImageView | undefined = view(['docker.io/library/busybox:latest']);
  // A fresh view object per call around the same image fields, as ImageService.status makes.
  const images = { status: async () => (current ? { ...current } : undefined) } as unknown as ImageService;
  const imageStatus = imageStatusHandler(images);
  const req = { image: { image: 'busybox' }, verbose: false } as Parameters<Handler>[0];
  const first = await imageStatus(req);
  assert.equal(await imageStatus(req), first);
  assert.deepEqual((first as Encoded<ImageStatusResponse>).bytes, codec.encode({ image: toCriImage(current), info: {} }));
  current = { ...current, pinned: true };
  assert.equal((await answer(imageStatus)).image!.pinned, true);
  current = view(['docker.io/library/busybox:latest', 'registry.test/busybox:v2'], true);
  assert.deepEqual((await answer(imageStatus)).image!.repoTags, ['docker.io/library/busybox:latest', 'registry.test/busybox:v2']);
  assert.equal((await answer(imageStatus)).image!.uid!.value, 1000);
  assert.match((await answer(imageStatus, true)).info.info!, /"pinned":true/);
  current = undefined;
  assert.equal((await answer(imageStatus)).image, null);
});
