import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostMounts, mountOf } from '../../sandbox/containers/mount-propagation.js';

const TABLE = [
  '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
  '40 27 0:50 / /srv rw shared:7 - tmpfs tmpfs rw',
  '41 40 0:51 / /srv/data rw master:7 - tmpfs tmpfs rw',
  '42 27 0:52 / /mnt/with\\040space rw shared:9 master:3 - tmpfs tmpfs rw',
  '43 40 0:53 / /srv rw - tmpfs tmpfs rw',
  '',
].join('\n');

test('mountinfo: mount points unescaped, shared and slave from the optional fields', () => {
  assert.deepEqual(hostMounts(TABLE), [
    { point: '/', shared: false, slave: false },
    { point: '/srv', shared: true, slave: false },
    { point: '/srv/data', shared: false, slave: true },
    { point: '/mnt/with space', shared: true, slave: true },
    { point: '/srv', shared: false, slave: false },
  ]);
});

test('the mount a path lies on: the longest mount point above it, the last one stacked there', () => {
  const mounts = hostMounts(TABLE);
  assert.equal(mountOf('/var/lib/x', mounts)?.point, '/');
  assert.equal(mountOf('/srv/data/sub', mounts)?.point, '/srv/data');
  assert.equal(mountOf('/srv/database', mounts)?.point, '/srv', 'a name that only starts like a mount point is not below it');
  assert.deepEqual(mountOf('/srv/x', mounts), { point: '/srv', shared: false, slave: false }, 'the tmpfs stacked last on /srv');
  assert.equal(mountOf('/mnt/with space/y', mounts)?.shared, true);
});
