// CRI pod-level resources (RunPodSandbox's config.linux and UpdatePodSandboxResources) → domain:
// absent stays absent, values are kept as kubelet gave them, bad ones are refused naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCrispError } from '../../common/errors.js';
import { toPodResources } from '../../cri/runtime/pod-mapping.js';
import type { LinuxContainerResources } from '../../gen/runtime.v1.js';
import { fakeResources } from '../e2e/fixtures/nri-plugins/fake-runtime.js';

// The CRI message and the domain ResourceSpec have the same fields.
const cri = (extra: Partial<LinuxContainerResources>): LinuxContainerResources => fakeResources(extra);

test('absent overhead or resources stay absent; present ones keep their values', () => {
  assert.deepEqual(toPodResources(null, undefined, ''), {});
  const r = toPodResources(null, cri({ cpuShares: 512, cpuQuota: -1, cpusetCpus: '0-3,6', memoryLimitInBytes: 1 << 28 }), '');
  assert.equal(r.overhead, undefined);
  assert.equal(r.resources!.cpuShares, 512);
  assert.equal(r.resources!.cpuQuota, -1);
  assert.equal(r.resources!.cpusetCpus, '0-3,6');
  assert.equal(r.resources!.memoryLimitInBytes, 1 << 28);
});

test('bad values are INVALID_ARGUMENT naming the field', () => {
  const cases: [Partial<LinuxContainerResources>, RegExp][] = [
    [{ cpuShares: -5 }, /^resources\.cpu_shares: -5 is below 0$/],
    [{ cpuQuota: -2 }, /^resources\.cpu_quota: -2 is below -1$/],
    [{ memoryLimitInBytes: -1 }, /^resources\.memory_limit_in_bytes: -1 is below 0$/],
    [{ oomScoreAdj: 1001 }, /^resources\.oom_score_adj: 1001 is outside -1000\.\.1000$/],
    [{ cpusetMems: '0-' }, /^resources\.cpuset_mems: "0-" is not a cpu\/node list/],
    [{ hugepageLimits: [{ pageSize: '', limit: 1 }] }, /^resources\.hugepage_limits\[0\]\.page_size is required$/],
  ];
  for (const [bad, message] of cases) {
    assert.throws(() => toPodResources(undefined, cri(bad), ''), (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && message.test(err.message), JSON.stringify(bad));
  }
  assert.throws(() => toPodResources(cri({ cpuPeriod: -1 }), null, 'config.linux'), (err: unknown) => isCrispError(err) && err.message === 'config.linux.overhead.cpu_period: -1 is below 0');
});
