// crisp's root and state directories on small tmpfs mounts of the test's own, filled up and then
// remounted read-only: RunPodSandbox, CreateContainer and ExecSync fail with RESOURCE_EXHAUSTED (full)
// or a clear error naming the path (read-only), no record is half-written, nothing leaks, the running
// pod keeps running, and everything works again once space (or write access) returns.
// The embedded containerd's root and state are bind-mounted from the test's disk directory onto
// <root>/containerd and <state>/containerd: image layers need more room than the records, and this
// test is about crisp's own writes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { TestCrispd, mountsBelow, uniqueId } from './lib/crispd.js';
import { writeTestNetwork, type TestNetwork } from './lib/network.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { busyboxImage } from './fixtures/images.js';
import { isGrpcError } from '../../common/errors.js';
import { isAtomicTempFile } from '../../common/atomic-file.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerConfig, PodSandboxConfig } from '../../gen/runtime.v1.js';

const TMPFS_SIZE = '16m';

let d: TestCrispd;
let net: TestNetwork;
let registry: TestRegistry;
let image = '';
const run = uniqueId();

function sh(cmd: string, args: string[]): void {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(res.status, 0, `${cmd} ${args.join(' ')}: ${res.stderr}`);
}

/** Fill the filesystem at `dir` to the last byte; returns the filler's path. */
function fill(dir: string): string {
  const filler = join(dir, `filler-${run}`);
  // dd stops with "No space left on device" (exit 1) once the tmpfs is full; that is the point.
  spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { encoding: 'utf8' });
  // And the last partial block: small files until nothing more fits.
  for (let i = 0; i < 64; i++) {
    try {
      writeFileSync(join(dir, `filler-${run}-${i}`), Buffer.alloc(512));
    } catch {
      break; // full to the byte
    }
  }
  return filler;
}

function unfill(dir: string): void {
  for (const f of readdirSync(dir)) if (f.startsWith(`filler-${run}`)) rmSync(join(dir, f), { force: true });
}

const podConfig = (name: string): Input<PodSandboxConfig> => ({
  metadata: { name, uid: `${name}-${run}`, namespace: 'e2e', attempt: 0 },
  hostname: name,
  logDirectory: join(d.podLogRoot, `e2e_${name}_${run}`),
  labels: { run },
});
const containerConfig = (name: string): Input<ContainerConfig> => ({
  metadata: { name, attempt: 0 },
  image: { image },
  command: ['sleep', '3600'],
  logPath: `${name}/0.log`,
});

/** Every record file under crisp's root parses; no temp file of a write-then-rename is left. */
function recordProblems(): string[] {
  const problems: string[] = [];
  for (const kind of ['pods', 'containers']) {
    const top = join(d.root, kind);
    if (!existsSync(top)) continue;
    for (const id of readdirSync(top)) {
      for (const f of readdirSync(join(top, id))) {
        if (isAtomicTempFile(f)) problems.push(`${kind}/${id}/${f}: temp file left`);
        else if (f.endsWith('.json')) {
          try {
            JSON.parse(readFileSync(join(top, id, f), 'utf8'));
          } catch {
            problems.push(`${kind}/${id}/${f}: not JSON (half-written)`);
          }
        }
      }
    }
  }
  return problems;
}

async function snapshot() {
  const pods = (await d.client.runtime.unary('ListPodSandbox', {})).items.map((p) => p.id).sort();
  const containers = (await d.client.runtime.unary('ListContainers', {})).containers.map((c) => c.id).sort();
  const ipDir = join(net.dataDir, net.name);
  return {
    pods,
    containers,
    mounts: mountsBelow(join(d.state, 'pods')).length,
    ips: existsSync(ipDir) ? readdirSync(ipDir).filter((f) => /^\d/.test(f)).length : 0,
  };
}

before(async () => {
  d = new TestCrispd({ config: { log_level: 'info' } });
  net = writeTestNetwork(d.cniConfDir, d.dir);
  for (const [dir, disk] of [
    [d.root, join(d.dir, 'ctd-root')],
    [d.state, join(d.dir, 'ctd-state')],
  ] as const) {
    mkdirSync(dir, { recursive: true });
    sh('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE},mode=0711`, `crisp-e2e-${run}`, dir]);
    mkdirSync(join(dir, 'containerd'), { mode: 0o700 });
    mkdirSync(disk, { mode: 0o700 });
    sh('mount', ['--bind', disk, join(dir, 'containerd')]);
  }
  registry = await startRegistry({});
  await registry.push(busyboxImage({}), 'e2e/busybox', 'v1');
  image = `${registry.host}/e2e/busybox:v1`;
  await d.start();
  await d.client.image.unary('PullImage', { image: { image } });
});

after(async () => {
  try {
    unfill(d.root);
    unfill(d.state);
    await d.removeAllPods();
  } finally {
    await d.cleanup();
    await registry.stop();
    assert.deepEqual(net.teardown(), []);
  }
});

const rt = () => d.client.runtime;

async function startPodWithContainer(name: string): Promise<{ pod: string; ctr: string }> {
  const config = podConfig(name);
  const pod = (await rt().unary('RunPodSandbox', { config })).podSandboxId;
  const ctr = (await rt().unary('CreateContainer', { podSandboxId: pod, config: containerConfig(`${name}-c`), sandboxConfig: config })).containerId;
  await rt().unary('StartContainer', { containerId: ctr });
  return { pod, ctr };
}

async function removePod(pod: string): Promise<void> {
  await rt().unary('StopPodSandbox', { podSandboxId: pod });
  await rt().unary('RemovePodSandbox', { podSandboxId: pod });
}

/** The calls a node makes all the time, each expected to fail with `check`; returns their messages. */
async function failingCalls(running: { pod: string; ctr: string }, tag: string, check: (err: unknown) => boolean): Promise<string[]> {
  const messages: string[] = [];
  const expectFailure = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      assert.fail(`${what} succeeded with ${tag}`);
    } catch (err) {
      assert.ok(isGrpcError(err), `${what}: a gRPC status (${String(err)})`);
      assert.ok(check(err), `${what} with ${tag}: ${grpc.status[err.code]}: ${err.details}`);
      messages.push(`${what}: ${grpc.status[err.code]}: ${err.details}`);
    }
  };
  const config = podConfig(`${tag}-pod`);
  await expectFailure('RunPodSandbox', () => rt().unary('RunPodSandbox', { config }));
  await expectFailure('CreateContainer', () => rt().unary('CreateContainer', { podSandboxId: running.pod, config: containerConfig(`${tag}-c`), sandboxConfig: podConfig('running') }));
  // ExecSync needs inodes (a FIFO directory), not blocks: on a full tmpfs it may still work; if it fails,
  // it fails as the others do.
  try {
    await rt().unary('ExecSync', { containerId: running.ctr, cmd: ['true'], timeout: 10 });
    messages.push('ExecSync: OK');
  } catch (err) {
    assert.ok(isGrpcError(err) && check(err), `ExecSync with ${tag}: ${String(err)}`);
    messages.push(`ExecSync: ${grpc.status[err.code]}: ${err.details}`);
  }
  return messages;
}

test('root and state full: RESOURCE_EXHAUSTED naming the path, nothing half-written or leaked, all works again once space returns', async () => {
  const running = await startPodWithContainer('running');
  const before = await snapshot();
  fill(d.root);
  fill(d.state);
  let messages: string[];
  try {
    messages = await failingCalls(running, 'full', (err) => isGrpcError(err, grpc.status.RESOURCE_EXHAUSTED) && /no space left on device/i.test(err.details) && err.details.includes(d.dir));
  } finally {
    unfill(d.root);
    unfill(d.state);
  }
  process.stdout.write(`# disk full:\n${messages.map((m) => `#   ${m}`).join('\n')}\n`);
  assert.deepEqual(recordProblems(), []);
  assert.deepEqual(await snapshot(), before, 'no pod, container, mount or IP left by the failed calls');
  // The running container keeps running and is still listed as such.
  assert.equal((await rt().unary('ContainerStatus', { containerId: running.ctr })).status?.state, 1);

  const again = await startPodWithContainer('after-full');
  assert.equal((await rt().unary('ExecSync', { containerId: again.ctr, cmd: ['echo', 'ok'], timeout: 10 })).stdout.toString().trim(), 'ok');
  assert.equal((await rt().unary('ExecSync', { containerId: running.ctr, cmd: ['true'], timeout: 10 })).exitCode, 0);
  await removePod(again.pod);
  await removePod(running.pod);
  assert.deepEqual(recordProblems(), []);
});

test('root and state read-only: calls fail naming the read-only path; all works again after a read-write remount', async () => {
  const running = await startPodWithContainer('running-ro');
  const before = await snapshot();
  sh('mount', ['-o', 'remount,ro', d.root]);
  sh('mount', ['-o', 'remount,ro', d.state]);
  let messages: string[];
  try {
    messages = await failingCalls(running, 'ro', (err) => isGrpcError(err) && err.code !== grpc.status.UNKNOWN && /read-only file system/i.test(err.details) && err.details.includes(d.dir));
  } finally {
    sh('mount', ['-o', 'remount,rw', d.root]);
    sh('mount', ['-o', 'remount,rw', d.state]);
  }
  process.stdout.write(`# read-only:\n${messages.map((m) => `#   ${m}`).join('\n')}\n`);
  assert.deepEqual(recordProblems(), []);
  assert.deepEqual(await snapshot(), before, 'no pod, container, mount or IP left by the failed calls');
  const again = await startPodWithContainer('after-ro');
  assert.equal((await rt().unary('ExecSync', { containerId: again.ctr, cmd: ['echo', 'ok'], timeout: 10 })).stdout.toString().trim(), 'ok');
  await removePod(again.pod);
  await removePod(running.pod);
});
