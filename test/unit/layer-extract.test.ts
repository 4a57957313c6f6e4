import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layerCompression, lowerDirs, upperDir } from '../../backend/images/layer-extract.js';
import { Slots } from '../../common/slots.js';

test('layerCompression: the OCI and Docker layer media types crisp-untar reads; others go to containerd', () => {
  assert.equal(layerCompression('application/vnd.oci.image.layer.v1.tar+gzip'), 'gzip');
  assert.equal(layerCompression('application/vnd.docker.image.rootfs.diff.tar.gzip'), 'gzip');
  assert.equal(layerCompression('application/vnd.oci.image.layer.v1.tar+zstd'), 'zstd');
  assert.equal(layerCompression('application/vnd.oci.image.layer.v1.tar'), 'none');
  assert.equal(layerCompression('application/vnd.oci.image.layer.v1.tar+gzip+encrypted'), undefined);
  assert.equal(layerCompression('application/octet-stream'), undefined);
});

test('upperDir and lowerDirs read prepared overlayfs snapshot mounts', () => {
  const bind = [{ type: 'bind', source: '/s/snapshots/1/fs', options: ['rw', 'rbind'] }];
  assert.equal(upperDir(bind), '/s/snapshots/1/fs');
  assert.deepEqual(lowerDirs(bind), []);
  const overlay = [{ type: 'overlay', source: 'overlay', options: ['index=off', 'workdir=/s/snapshots/3/work', 'upperdir=/s/snapshots/3/fs', 'lowerdir=/s/snapshots/2/fs:/s/snapshots/1/fs'] }];
  assert.equal(upperDir(overlay), '/s/snapshots/3/fs');
  assert.deepEqual(lowerDirs(overlay), ['/s/snapshots/2/fs', '/s/snapshots/1/fs']);
  assert.equal(upperDir([...bind, ...bind]), undefined, 'more than one mount is not a shape crisp knows');
  assert.equal(upperDir([{ type: 'tmpfs', source: 'tmpfs', options: [] }]), undefined);
});

test('Slots: at most N tasks run at once; the rest start in order as slots free up', async () => {
  const slots = new Slots(2);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const task = (n: number) =>
    slots.run(async () => {
      running++;
      peak = Math.max(peak, running);
      order.push(n);
      await new Promise((r) => setImmediate(r));
      running--;
      if (n === 1) throw new Error('a failed task frees its slot too');
      return n;
    });
  const results = await Promise.allSettled([0, 1, 2, 3, 4].map(task));
  assert.equal(peak, 2);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
});
