import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { findInLayers, parseGroup, parsePasswd, resolveUser, type ResolveUserInput } from '../../sandbox/containers/user.js';
import { isCrispError } from '../../common/errors.js';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  '# a comment',
  'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
  'app:x:1000:1000:App:/home/app:/bin/sh',
  'broken:x:notanumber:0::/:/bin/sh',
  'nohome:x:1001:1001::',
  '',
].join('\n');

const GROUP = ['root:x:0:', 'bin:x:1:root,daemon', 'wheel:x:10:root,app', 'app:x:1000:', 'video:x:44:app', 'staff:x:50:', 'nohome:x:1001:'].join('\n');

type Sec = ResolveUserInput['security'];
const sec = (over: Partial<Sec> = {}): Sec => ({
  runAsUsername: '',
  supplementalGroups: [],
  supplementalGroupsPolicy: 'merge',
  ...over,
});
const resolve = (over: Partial<Sec>, imageUser = '', files: { passwd?: string; group?: string } = { passwd: PASSWD, group: GROUP }) =>
  resolveUser({ security: sec(over), imageUser, ...files });

function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isCrispError(err, 'INVALID_ARGUMENT'), `expected INVALID_ARGUMENT, got ${String(err)}`);
    return err.message;
  }
  assert.fail('no error');
}

test('parsePasswd / parseGroup skip comments and malformed lines', () => {
  const p = parsePasswd(PASSWD);
  assert.deepEqual(p.map((e) => e.name), ['root', 'daemon', 'app', 'nohome']);
  assert.deepEqual(p[2], { name: 'app', uid: 1000, gid: 1000, home: '/home/app', shell: '/bin/sh' });
  assert.equal(p[3].home, '');
  const g = parseGroup(GROUP + '\nbad:x:x:\n');
  assert.deepEqual(g.find((e) => e.name === 'wheel'), { name: 'wheel', gid: 10, members: ['root', 'app'] });
  assert.deepEqual(g.find((e) => e.name === 'root')?.members, []);
  assert.equal(g.find((e) => e.name === 'bad'), undefined);
});

test('user resolution table', () => {
  const cases: { name: string; over: Partial<Sec>; image: string; want: { uid: number; gid: number; additionalGids: number[]; username?: string; home?: string } }[] = [
    { name: 'nothing: root, merged root groups', over: {}, image: '', want: { uid: 0, gid: 0, additionalGids: [1, 10], username: 'root', home: '/root' } },
    { name: 'image name', over: {}, image: 'app', want: { uid: 1000, gid: 1000, additionalGids: [10, 44], username: 'app', home: '/home/app' } },
    { name: 'image uid known', over: {}, image: '1000', want: { uid: 1000, gid: 1000, additionalGids: [10, 44], username: 'app', home: '/home/app' } },
    { name: 'image uid unknown', over: {}, image: '4242', want: { uid: 4242, gid: 0, additionalGids: [] } },
    { name: 'image uid:gid', over: {}, image: '4242:77', want: { uid: 4242, gid: 77, additionalGids: [] } },
    { name: 'image name:group', over: {}, image: 'app:staff', want: { uid: 1000, gid: 50, additionalGids: [10, 44], username: 'app', home: '/home/app' } },
    { name: 'image uid:groupname', over: {}, image: '1000:video', want: { uid: 1000, gid: 44, additionalGids: [10], username: 'app', home: '/home/app' } },
    { name: 'run_as_user wins over image', over: { runAsUser: 1 }, image: 'app:staff', want: { uid: 1, gid: 1, additionalGids: [], username: 'daemon', home: '/usr/sbin' } },
    { name: 'run_as_user + run_as_group', over: { runAsUser: 1000, runAsGroup: 3000 }, image: '', want: { uid: 1000, gid: 3000, additionalGids: [10, 44], username: 'app', home: '/home/app' } },
    { name: 'run_as_username', over: { runAsUsername: 'app' }, image: '0', want: { uid: 1000, gid: 1000, additionalGids: [10, 44], username: 'app', home: '/home/app' } },
    { name: 'no home field', over: { runAsUsername: 'nohome' }, image: '', want: { uid: 1001, gid: 1001, additionalGids: [], username: 'nohome' } },
    {
      name: 'supplemental merge: explicit first, deduplicated, primary excluded',
      over: { runAsUser: 1000, supplementalGroups: [44, 5000, 1000, 5000] },
      image: '',
      want: { uid: 1000, gid: 1000, additionalGids: [44, 5000, 10], username: 'app', home: '/home/app' },
    },
    {
      name: 'supplemental strict: explicit only',
      over: { runAsUser: 1000, supplementalGroups: [5000], supplementalGroupsPolicy: 'strict' },
      image: '',
      want: { uid: 1000, gid: 1000, additionalGids: [5000], username: 'app', home: '/home/app' },
    },
  ];
  for (const c of cases) assert.deepEqual(resolve(c.over, c.image), c.want, c.name);
});

test('images without /etc/passwd or /etc/group', () => {
  assert.deepEqual(resolve({ runAsUser: 1234, supplementalGroups: [7] }, '', {}), { uid: 1234, gid: 0, additionalGids: [7] });
  assert.deepEqual(resolve({}, '5:6', {}), { uid: 5, gid: 6, additionalGids: [] });
  assert.deepEqual(resolve({}, 'app', { passwd: PASSWD }), { uid: 1000, gid: 1000, additionalGids: [], username: 'app', home: '/home/app' });
  assert.match(invalid(() => resolve({}, 'app', {})), /user "app" cannot be resolved: the image has no \/etc\/passwd/);
  assert.match(invalid(() => resolve({}, '5:staff', { passwd: PASSWD })), /group "staff" cannot be resolved: the image has no \/etc\/group/);
});

test('unknown names and inconsistent requests are INVALID_ARGUMENT naming the culprit', () => {
  assert.match(invalid(() => resolve({ runAsUsername: 'ghost' }, '')), /user "ghost" not found in the image's \/etc\/passwd/);
  assert.match(invalid(() => resolve({}, 'ghost')), /user "ghost" not found/);
  assert.match(invalid(() => resolve({}, 'app:nogroup')), /group "nogroup" not found in the image's \/etc\/group/);
  assert.match(invalid(() => resolve({ runAsGroup: 5 }, 'app')), /run_as_group \(5\) is set without run_as_user/);
  assert.match(invalid(() => resolve({ runAsUser: 1, runAsUsername: 'app' }, '')), /both set/);
  assert.match(invalid(() => resolve({}, ':5')), /names a group without a user/);
  assert.match(invalid(() => resolve({}, '99999999999')), /user id 99999999999 is out of range/);
});

test('findInLayers: top-most wins, whiteouts and opaque dirs hide lower layers, symlinks resolve in the stack', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'crisp-unit-user-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const layer = (name: string, files: Record<string, string>) => {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    for (const [p, content] of Object.entries(files)) {
      mkdirSync(join(dir, p, '..'), { recursive: true });
      if (content.startsWith('->')) symlinkSync(content.slice(2), join(dir, p));
      else writeFileSync(join(dir, p), content);
    }
    return dir;
  };
  const lower = layer('lower', { 'etc/passwd': 'lower', 'etc/group': 'lower-group', 'usr/etc/shadow': 'real' });
  const middle = layer('middle', { 'etc/passwd': 'middle', 'etc/.wh.group': '' });
  const upper = layer('upper', { 'etc/hostname': 'x', 'etc/shadow': '->../usr/etc/shadow', 'etc/abs': '->/usr/etc/shadow', 'etc/loop': '->/etc/loop' });

  assert.equal(findInLayers('etc/passwd', [upper, middle, lower]), join(middle, 'etc/passwd'));
  assert.equal(findInLayers('/etc/passwd', [lower]), join(lower, 'etc/passwd'));
  assert.equal(findInLayers('etc/group', [upper, middle, lower]), undefined, 'tar-style whiteout hides it');
  assert.equal(findInLayers('etc/group', [upper, lower]), join(lower, 'etc/group'));
  assert.equal(findInLayers('etc/missing', [upper, middle, lower]), undefined);
  assert.equal(findInLayers('etc', [upper, middle, lower]), undefined, 'a directory is not a file');
  assert.equal(findInLayers('etc/shadow', [upper, middle, lower]), join(lower, 'usr/etc/shadow'), 'relative symlink');
  assert.equal(findInLayers('etc/abs', [upper, middle, lower]), join(lower, 'usr/etc/shadow'), 'absolute symlink stays in the stack');
  assert.equal(findInLayers('etc/loop', [upper]), undefined, 'symlink loops end');
  assert.equal(findInLayers('etc/passwd', []), undefined);

  const opaque = layer('opaque', { 'etc/.wh..wh..opq': '', 'etc/hosts': 'h' });
  assert.equal(findInLayers('etc/passwd', [opaque, middle, lower]), undefined, 'opaque /etc hides lower /etc/passwd');
  assert.equal(findInLayers('etc/hosts', [opaque, lower]), join(opaque, 'etc/hosts'));

  const linkedEtc = layer('linked', { etc: '->usr/etc' });
  assert.equal(findInLayers('etc/shadow', [linkedEtc, lower]), join(lower, 'usr/etc/shadow'), 'symlinked parent directory');

  // overlayfs whiteout: a 0:0 character device (needs root to create).
  if (process.getuid?.() === 0) {
    const ow = layer('overlay-wh', {});
    mkdirSync(join(ow, 'etc'));
    execFileSync('mknod', [join(ow, 'etc/passwd'), 'c', '0', '0']);
    assert.equal(findInLayers('etc/passwd', [ow, lower]), undefined, 'overlay whiteout hides it');
  }
});
