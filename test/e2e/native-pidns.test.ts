// crisp-nshelper pidns / pidns-stop against the real kernel (root): the pod's pid 1 holds the shared
// pid namespace, reaps orphans, outlives whoever started it, and pidns-stop takes the namespace down.
// Every test uses its own dir under /tmp/crisp-e2e-pidns-<random>; inits left by a failed test are
// killed by pid in after(), and only if they still hold the namespace they were started with.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import {
  isNsHelperError,
  nshelperPath,
  pinNamespaces,
  startPidNamespace,
  stopPidNamespace,
  unpinNamespaces,
  type IdMapping,
  type PidNamespace,
  type PinnedNamespaces,
} from '../../native/nshelper.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root';
const here = dirname(fileURLToPath(import.meta.url));

let base = '';
let n = 0;
/** Inits this run started, with the inode of their pid namespace, for the safety net in after(). */
const started: { pid: number; ino: number }[] = [];
/** Helper processes (nsenter …) a test spawned; killed in after() if still running. */
const spawned: ChildProcess[] = [];

function freshDir(): string {
  const d = join(base, `t${n++}`);
  mkdirSync(d);
  return d;
}

async function start(opts: Parameters<typeof startPidNamespace>[0]): Promise<PidNamespace> {
  const ns = await startPidNamespace(opts);
  started.push({ pid: ns.pid, ino: statSync(ns.path).ino });
  return ns;
}

const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(dir));

async function sh(cmd: string, ...args: string[]): Promise<string> {
  return (await run(cmd, args, { encoding: 'utf8' })).stdout.trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (cond()) return;
  assert.fail(`timed out waiting until ${what}`);
}

/** /proc/<pid>/status as key → value, or undefined once the pid is gone. */
function status(pid: number): Record<string, string> | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
  } catch {
    return undefined;
  }
}

// An exited init is reaped by the host's pid 1, which on some test machines never reaps: a zombie
// counts as gone (it has exited, the kernel has already killed the rest of its namespace).
const isGone = (pid: number) => status(pid)?.State?.startsWith('Z') ?? true;

const pidNsIno = (pid: number): number | undefined => {
  try {
    return statSync(`/proc/${pid}/ns/pid`).ino;
  } catch {
    return undefined;
  }
};

/** Processes whose pid namespace is `ino`, found through /proc/<pid>/ns/pid. */
interface Member {
  pid: number;
  name: string;
  state: string;
  ppid: number;
  nspid: number[];
}
function membersOf(ino: number): Member[] {
  const out: Member[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pidNsIno(pid) !== ino) continue;
    const st = status(pid);
    if (!st) continue;
    out.push({ pid, name: st.Name, state: st.State, ppid: Number(st.PPid), nspid: st.NSpid.split(/\s+/).map(Number) });
  }
  return out;
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').split('\0');
const mapping = (hostId: number): IdMapping[] => [{ containerId: 0, hostId, length: 65536 }];
const randomHostBase = () => 100000 + randomInt(1, 1000) * 65536;

/** Starts `nsenter --pid=<path> -- <cmd>` (nsenter forks into the namespace by itself). */
function spawnIn(path: string, cmd: string[]): ChildProcess {
  const child = spawn('nsenter', [`--pid=${path}`, '--', ...cmd], { stdio: 'ignore' });
  spawned.push(child);
  return child;
}

before(async () => {
  if (!isRoot) return;
  const nativeDir = join(here, '..', '..', '..', 'native');
  if (existsSync(join(nativeDir, 'Makefile'))) await run('make', ['-s', '-C', nativeDir]);
  assert.ok(existsSync(nshelperPath()), `helper missing at ${nshelperPath()}`);
  base = `/tmp/crisp-e2e-pidns-${randomBytes(4).toString('hex')}`;
  mkdirSync(base, { mode: 0o755 });
  chmodSync(base, 0o755); // user-namespace roots must be able to walk into it
});

after(async () => {
  for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const { pid, ino } of started) if (pidNsIno(pid) === ino && !isGone(pid)) process.kill(pid, 'SIGKILL');
  if (!base) return;
  for (const d of readdirSync(base)) {
    const dir = join(base, d);
    for (const line of mountsUnder(dir).reverse()) await run('umount', ['-l', line.split(' ')[4]]).catch(() => {});
    await unpinNamespaces(dir).catch(() => {});
  }
  assert.deepEqual(mountsUnder(base), [], 'mounts left behind');
  rmSync(base, { recursive: true, force: true });
});

test('pidns: the init is pid 1 of a new namespace, detached, named, and holds nothing of the helper', { skip }, async () => {
  const dir = freshDir();
  const ns = await start({ dir });
  try {
    assert.equal(ns.path, join(dir, 'pid'));
    assert.equal(mountsUnder(dir).length, 1);
    const ino = statSync(ns.path).ino;
    assert.equal(pidNsIno(ns.pid), ino);
    assert.notEqual(pidNsIno(process.pid), ino);

    const st = status(ns.pid)!;
    assert.equal(st.NSpid.split(/\s+/).at(-1), '1', 'pid 1 in its namespace');
    assert.equal(st.NSsid.split(/\s+/).at(-1), '1', 'leads its own session');
    assert.notEqual(Number(st.PPid), process.pid);
    assert.equal(st.Name, 'crisp-pidinit');
    assert.deepEqual(cmdline(ns.pid), ['crisp-pidinit']);
    assert.equal(st.CapEff, '0000000000000000');
    assert.equal(st.NoNewPrivs, '1');
    // only stdio, all on /dev/null: crispd's pipes must not be held open by the init
    assert.deepEqual(readdirSync(`/proc/${ns.pid}/fd`).sort(), ['0', '1', '2']);
    for (const fd of ['0', '1', '2']) assert.equal(readlinkSync(`/proc/${ns.pid}/fd/${fd}`), '/dev/null');
    assert.equal(readlinkSync(`/proc/${ns.pid}/cwd`), '/');

    // a process entering the namespace is not pid 1 ...
    const inner = Number(await sh('nsenter', `--pid=${ns.path}`, '--', 'busybox', 'sh', '-c', 'echo $$'));
    assert.ok(Number.isInteger(inner) && inner > 1, `pid inside: ${inner}`);
    // ... and sees the init as pid 1 (proc mounted in a private mount namespace, not on the host)
    const procMounts = mountsUnder('/proc').length;
    assert.equal(
      await sh('nsenter', `--pid=${ns.path}`, '--', 'unshare', '--mount', '--mount-proc', '--', 'cat', '/proc/1/comm'),
      'crisp-pidinit',
    );
    assert.equal(mountsUnder('/proc').length, procMounts);

    await assert.rejects(start({ dir }), (err: unknown) => isNsHelperError(err) && err.kind === 'ALREADY_EXISTS');
    assert.equal(mountsUnder(dir).length, 1);
    assert.ok(!isGone(ns.pid));
  } finally {
    await stopPidNamespace({ dir, pid: ns.pid });
  }
  assert.ok(isGone(ns.pid));
  assert.deepEqual(mountsUnder(dir), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('pidns with a pinned user namespace: owned by it, init runs as its root, /proc/1/root closed to the pod', { skip }, async () => {
  const dir = freshDir();
  chmodSync(dir, 0o755);
  const uidHost = randomHostBase();
  const gidHost = uidHost + 65536;
  const pinned = await pinNamespaces({ dir, user: { uidMappings: mapping(uidHost), gidMappings: mapping(gidHost) } });
  const name = `crisp-pidinit-${randomBytes(4).toString('hex')}`;
  let ns: PidNamespace | undefined;
  try {
    ns = await start({ dir, userns: pinned.user!, name });
    const userIno = statSync(pinned.user!).ino;
    assert.equal(readlinkSync(`/proc/${ns.pid}/ns/user`), `user:[${userIno}]`);
    const lsns = JSON.parse(await sh('lsns', '-J', '-p', String(ns.pid), '-o', 'NS,TYPE,ONS')) as {
      namespaces: { ns: number | string; type: string; ons: number | string }[];
    };
    const pidns = lsns.namespaces.find((x) => x.type === 'pid');
    assert.equal(Number(pidns?.ns), statSync(ns.path).ino);
    assert.equal(Number(pidns?.ons), userIno, 'the pid namespace is owned by the pod user namespace');

    const st = status(ns.pid)!;
    assert.equal(st.NSpid.split(/\s+/).at(-1), '1');
    assert.deepEqual(st.Uid.split(/\s+/).map(Number), [uidHost, uidHost, uidHost, uidHost]);
    assert.deepEqual(st.Gid.split(/\s+/).map(Number), [gidHost, gidHost, gidHost, gidHost]);
    assert.equal(st.Groups, '');
    assert.equal(st.Name, name.slice(0, 15));
    assert.deepEqual(cmdline(ns.pid), [name]);

    // the pod's root sees the init as pid 1 but cannot follow /proc/1/root into the host's "/"
    const seen = await sh(
      'nsenter', `--user=${pinned.user}`, `--pid=${ns.path}`, '--',
      'unshare', '--mount', '--mount-proc', '--',
      'busybox', 'sh', '-c', 'cat /proc/1/comm; readlink /proc/1/root 2>/dev/null || echo denied',
    );
    assert.deepEqual(seen.split('\n'), [name.slice(0, 15), 'denied']);
  } finally {
    if (ns) await stopPidNamespace({ dir, pid: ns.pid });
    await unpinNamespaces(dir);
  }
  assert.ok(ns && isGone(ns.pid));
  assert.deepEqual(mountsUnder(dir), []);
  assert.deepEqual(readdirSync(dir), []);
});

test('pidns: a user namespace without uid 0 mapped fails and leaves nothing', { skip }, async () => {
  const dir = freshDir();
  chmodSync(dir, 0o755);
  const hostId = randomHostBase();
  const noRoot: IdMapping[] = [{ containerId: 1, hostId, length: 1000 }];
  const pinned = await pinNamespaces({ dir, user: { uidMappings: noRoot, gidMappings: noRoot } });
  try {
    await assert.rejects(
      start({ dir, userns: pinned.user! }),
      (err: unknown) => isNsHelperError(err) && err.kind === 'INTERNAL' && err.step.startsWith('init: set'),
    );
    assert.deepEqual(readdirSync(dir), ['user']);
    assert.equal(mountsUnder(dir).length, 1);
    // the starter killed and reaped the half-made init: no process is left in the user namespace
    const userIno = statSync(pinned.user!).ino;
    const inUserns = readdirSync('/proc').filter((e) => {
      try {
        return /^\d+$/.test(e) && statSync(`/proc/${e}/ns/user`).ino === userIno;
      } catch {
        return false;
      }
    });
    assert.deepEqual(inUserns, []);
  } finally {
    await unpinNamespaces(dir);
  }
});

for (const withUser of [false, true]) {
  test(`pidns: orphans in the namespace are reparented to the init and reaped (${withUser ? 'userns' : 'plain'})`, { skip }, async () => {
    const dir = freshDir();
    chmodSync(dir, 0o755);
    const hostId = randomHostBase();
    const pinned: PinnedNamespaces = withUser ? await pinNamespaces({ dir, user: { uidMappings: mapping(hostId), gidMappings: mapping(hostId) } }) : {};
    let ns: PidNamespace | undefined;
    try {
      ns = await start({ dir, ...(pinned.user ? { userns: pinned.user } : {}) });
      const ino = statSync(ns.path).ino;
      // the shell exits at once, so its three sleeps lose their parent inside the namespace (their
      // stdio goes to /dev/null, or execFile would wait for them to close its pipes)
      await sh('nsenter', `--pid=${ns.path}`, '--', '/bin/busybox', 'sh', '-c',
        'for i in 1 2 3; do /bin/busybox sleep 1 </dev/null >/dev/null 2>&1 & done; exit 0');
      const orphans = () => membersOf(ino).filter((m) => m.pid !== ns!.pid);
      await waitFor('the three sleeps are children of the init', () => {
        const o = orphans();
        return o.length === 3 && o.every((m) => m.ppid === ns!.pid);
      }, 900);
      await waitFor('the sleeps have exited and been reaped', () => orphans().length === 0, 5000);
      assert.deepEqual(
        membersOf(ino).map((m) => [m.pid, m.state.split(' ')[0]]),
        [[ns.pid, 'S']],
        'only the init is left, and no zombie',
      );
    } finally {
      if (ns) await stopPidNamespace({ dir, pid: ns.pid });
      if (withUser) await unpinNamespaces(dir);
    }
  });
}

test('pidns: the init outlives the process (group) that started it', { skip }, async () => {
  const dir = freshDir();
  // a stand-in for crispd: a Node process in its own process group that starts the namespace and
  // then is killed together with its whole group
  const wrapper = pathToFileURL(join(here, '..', '..', 'native', 'nshelper.js')).href;
  const script =
    `const m = await import(${JSON.stringify(wrapper)});` +
    `const ns = await m.startPidNamespace({ dir: ${JSON.stringify(dir)} });` +
    `process.stdout.write(JSON.stringify(ns) + '\\n'); setInterval(() => {}, 1000);`;
  const daemon = spawn(process.execPath, ['--input-type=module', '-e', script], {
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  spawned.push(daemon);
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    daemon.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(buf.split('\n')[0]);
    });
    daemon.once('exit', (code) => reject(new Error(`stand-in daemon exited early (${code})`)));
  });
  const ns = JSON.parse(line) as PidNamespace;
  started.push({ pid: ns.pid, ino: statSync(ns.path).ino });
  try {
    assert.notEqual(Number(status(ns.pid)!.PPid), daemon.pid);
    const exited = new Promise((r) => daemon.once('exit', r));
    process.kill(-daemon.pid!, 'SIGKILL');
    await exited;
    await sleep(100);
    assert.ok(!isGone(ns.pid), 'init still running');
    assert.equal(pidNsIno(ns.pid), statSync(ns.path).ino);
    assert.ok(Number(await sh('nsenter', `--pid=${ns.path}`, '--', 'busybox', 'sh', '-c', 'echo $$')) > 1);
  } finally {
    await stopPidNamespace({ dir, pid: ns.pid });
  }
  assert.ok(isGone(ns.pid));
  assert.deepEqual(mountsUnder(dir), []);
});

test('pidns-stop kills the init and everything in the namespace, unpins, and is idempotent', { skip }, async () => {
  const dir = freshDir();
  const ns = await start({ dir });
  const ino = statSync(ns.path).ino;
  // one member whose parent (nsenter) is outside, one orphan whose parent is the init
  const member = spawnIn(ns.path, ['sleep', '60']);
  await sh('nsenter', `--pid=${ns.path}`, '--', 'busybox', 'sh', '-c', 'busybox sleep 60 </dev/null >/dev/null 2>&1 & exit 0');
  await waitFor('two sleeps run in the namespace', () => membersOf(ino).filter((m) => m.pid !== ns.pid).length === 2);
  const members = membersOf(ino).filter((m) => m.pid !== ns.pid);
  const memberExit = new Promise((r) => member.once('exit', r));

  await stopPidNamespace({ dir, pid: ns.pid });
  assert.ok(isGone(ns.pid));
  for (const m of members) assert.ok(isGone(m.pid), `member ${m.pid} (${m.name}) gone`);
  assert.deepEqual(
    membersOf(ino).filter((m) => !m.state.startsWith('Z')),
    [],
    'nothing alive in the namespace',
  );
  await memberExit;
  assert.deepEqual(mountsUnder(dir), []);
  assert.deepEqual(readdirSync(dir), []);

  // again: the init and the file are gone, which is fine
  await stopPidNamespace({ dir, pid: ns.pid });
});

test('pidns-stop kills only the init of the pinned namespace', { skip }, async () => {
  const dir = freshDir();
  const ns = await start({ dir });
  const ino = statSync(ns.path).ino;
  const member = spawnIn(ns.path, ['sleep', '60']);
  await waitFor('a sleep runs in the namespace', () => membersOf(ino).some((m) => m.name === 'sleep'));
  const inside = membersOf(ino).find((m) => m.name === 'sleep')!;
  const host = spawn('sleep', ['60'], { stdio: 'ignore' });
  spawned.push(host);
  try {
    // a member of the namespace is refused: stopping it would leave the init running unpinned
    await assert.rejects(
      stopPidNamespace({ dir, pid: inside.pid }),
      (err: unknown) => isNsHelperError(err) && /is not its init/.test(err.step),
    );
    assert.ok(!isGone(inside.pid) && !isGone(ns.pid));
    assert.equal(mountsUnder(dir).length, 1);

    // a pid outside the namespace (a stale record, the pid reused) is left alone; the pin goes
    await stopPidNamespace({ dir, pid: host.pid! });
    assert.ok(!isGone(host.pid!), 'host process untouched');
    assert.ok(!isGone(ns.pid), 'init untouched');
    assert.deepEqual(mountsUnder(dir), []);
  } finally {
    host.kill('SIGKILL');
    // the pin is gone, so end the init by pid after checking it is still the one started here
    if (pidNsIno(ns.pid) === ino && !isGone(ns.pid)) process.kill(ns.pid, 'SIGKILL');
    await waitFor('the init has exited', () => isGone(ns.pid));
    await new Promise((r) => (member.exitCode !== null || member.signalCode !== null ? r(null) : member.once('exit', r)));
  }
});

test('pidns: bad arguments and missing dir', { skip }, async () => {
  const dir = freshDir();
  await assert.rejects(start({ dir: join(dir, 'absent') }), (err: unknown) => isNsHelperError(err) && err.step.startsWith('stat'));
  await assert.rejects(
    start({ dir, userns: '/proc/self/ns/net' }),
    (err: unknown) => isNsHelperError(err) && err.step.startsWith('setns user'),
  );
  assert.deepEqual(readdirSync(dir), []);
  assert.deepEqual(mountsUnder(dir), []);
});
