// crispd foundation against the real stack: embedded containerd, CRI over the unix socket.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TestCrispd } from './lib/crispd.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { CgroupDriver } from '../../gen/runtime.v1.js';

function condition(status: { status: { conditions: { type: string; status: boolean; reason: string; message: string }[] } | null }, type: string) {
  const c = status.status?.conditions.find((x) => x.type === type);
  assert.ok(c, `condition ${type} present`);
  return c;
}

describe('crispd with embedded containerd', () => {
  const d = new TestCrispd();
  before(() => d.start());
  after(() => d.cleanup());

  test('Version answers runtime v1 with crisp name and version', async () => {
    const v = await d.client.runtime.unary('Version', { version: 'v1' });
    assert.equal(v.runtimeName, 'crisp');
    assert.equal(v.runtimeApiVersion, 'v1');
    assert.match(v.runtimeVersion, /^\d+\.\d+\.\d+/);
  });

  test('Status: RuntimeReady from containerd, NetworkReady false with a reason without CNI config', async () => {
    const s = await d.client.runtime.unary('Status', { verbose: true });
    assert.equal(condition(s, 'RuntimeReady').status, true);
    const net = condition(s, 'NetworkReady');
    assert.equal(net.status, false);
    assert.equal(net.reason, 'NetworkPluginNotReady');
    assert.match(net.message, new RegExp(d.cniConfDir));
    const info = JSON.parse(s.info.config!) as { containerd: { embedded: boolean; version: string } };
    assert.equal(info.containerd.embedded, true);
    assert.match(info.containerd.version, /^1\./);
    assert.deepEqual(s.runtimeHandlers.map((h) => h.name), ['', 'runc']);
  });

  test('Status: NetworkReady turns true once a valid conflist appears', async () => {
    writeFileSync(
      join(d.cniConfDir, '10-test.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'e2e', plugins: [{ type: 'loopback' }] }),
    );
    const s = await d.client.runtime.unary('Status', {});
    assert.equal(condition(s, 'NetworkReady').status, true);
  });

  test('RuntimeConfig reports the cgroup driver; UpdateRuntimeConfig validates the pod CIDR', async () => {
    const rc = await d.client.runtime.unary('RuntimeConfig', {});
    assert.equal(rc.linux?.cgroupDriver, CgroupDriver.CGROUPFS);
    await d.client.runtime.unary('UpdateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: '10.244.0.0/24' } } });
    const s = await d.client.runtime.unary('Status', { verbose: true });
    assert.equal((JSON.parse(s.info.config!) as { podCidr: string }).podCidr, '10.244.0.0/24');
    await assert.rejects(
      d.client.runtime.unary('UpdateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: '10.0.0.0/99' } } }),
      (err: unknown) => isGrpcError(err, grpc.status.INVALID_ARGUMENT) && /pod_cidr/.test(err.details),
    );
  });

  test('RPCs that are not built yet answer UNIMPLEMENTED, never a fake success', async () => {
    await assert.rejects(
      d.client.runtime.unary('CheckpointContainer', { containerId: 'x' }),
      (err: unknown) => isGrpcError(err, grpc.status.UNIMPLEMENTED) && /CheckpointContainer/.test(err.details),
    );
  });

  test('socket is 0660 in a 0700 directory', () => {
    assert.equal(statSync(d.socket).mode & 0o777, 0o660);
    assert.equal(statSync(dirname(d.socket)).mode & 0o777, 0o700);
  });

  test('a second crispd on the same socket refuses to start with a clear message', () => {
    const res = d.runExpectingFailure();
    assert.notEqual(res.code, 0);
    assert.match(res.output, /another process is serving the CRI socket/);
    assert.ok(existsSync(d.socket), 'the first daemon keeps its socket');
  });

  test('containerd down: RuntimeReady false with a reason, then the child is restarted', async () => {
    const pid = d.containerdPid();
    assert.ok(pid, 'embedded containerd pid file');
    process.kill(pid, 'SIGKILL');
    let sawDown = false;
    let sawUp = false;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !sawUp) {
      const s = await d.client.runtime.unary('Status', {});
      const rr = condition(s, 'RuntimeReady');
      if (!rr.status) {
        sawDown = true;
        assert.equal(rr.reason, 'ContainerdUnavailable');
        assert.match(rr.message, /containerd/);
      } else if (sawDown) {
        sawUp = true;
      }
      await sleep(100);
    }
    assert.ok(sawDown, 'RuntimeReady went false');
    assert.ok(sawUp, 'RuntimeReady came back after the restart');
    assert.notEqual(d.containerdPid(), pid);
  });

  test('SIGTERM stops crispd and its embedded containerd, and removes the socket', async () => {
    const ctd = d.containerdPid()!;
    const code = await d.stop();
    assert.equal(code, 0);
    assert.equal(existsSync(d.socket), false);
    assert.throws(() => process.kill(ctd, 0), 'containerd child is gone');
  });
});

describe('crispd start-up failures are fast and clear', () => {
  test('an unknown config key is named', () => {
    const d = new TestCrispd({ config: { no_such_key: 1 } });
    try {
      const res = d.runExpectingFailure();
      assert.equal(res.code, 2);
      assert.match(res.output, /config key "no_such_key": unknown key/);
    } finally {
      void d.cleanup();
    }
  });

  test('a bad value is named', () => {
    const d = new TestCrispd({ config: { cgroup_driver: 'nope' } });
    try {
      const res = d.runExpectingFailure();
      assert.equal(res.code, 2);
      assert.match(res.output, /cgroup_driver.*not one of cgroupfs, systemd/);
    } finally {
      void d.cleanup();
    }
  });

  test('a missing containerd binary says how to fix it', async () => {
    const d = new TestCrispd({ config: { containerd_binary: '/nonexistent/containerd' } });
    try {
      const res = d.runExpectingFailure();
      assert.equal(res.code, 1);
      assert.match(res.output, /containerd binary "\/nonexistent\/containerd" not found.*apt-get install containerd/);
    } finally {
      await d.cleanup();
    }
  });

  test('an unreachable --containerd-address fails fast and names the address', async () => {
    const d = new TestCrispd();
    try {
      const started = Date.now();
      const res = d.runExpectingFailure(['--containerd-address', join(d.dir, 'nope.sock')]);
      assert.equal(res.code, 1);
      assert.match(res.output, /containerd_address .*nope\.sock/);
      assert.ok(Date.now() - started < 15_000);
    } finally {
      await d.cleanup();
    }
  });
});
