// Container resources (CreateContainer's config.linux.resources and UpdateContainerResources' linux)
// are checked like a pod's: the fuzzer's int64 max in memory_limit_in_bytes reached runc as
// 9223372036854776000 and came back INTERNAL ("cannot unmarshal number"); now it is refused naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCrispError } from '../../common/errors.js';
import { checkedResourceSpec } from '../../cri/runtime/resource-checks.js';
import { toContainerSpec } from '../../cri/runtime/container-mapping.js';
import { codecFor } from '../../common/proto-registry.js';
import type { ContainerConfig, LinuxContainerResources } from '../../gen/runtime.v1.js';
import { fakeResources } from '../e2e/fixtures/nri-plugins/fake-runtime.js';

const cri = (extra: Partial<LinuxContainerResources>): LinuxContainerResources => fakeResources(extra);

test('out-of-range container resources are INVALID_ARGUMENT naming the field', () => {
  const cases: [Partial<LinuxContainerResources>, RegExp][] = [
    [{ memoryLimitInBytes: 2 ** 63 }, /^linux\.memory_limit_in_bytes: 9223372036854776000 is out of range$/],
    [{ cpuPeriod: 2 ** 53 }, /^linux\.cpu_period: .* is out of range$/],
    [{ cpuPeriod: 999 }, /^linux\.cpu_period: 999 is outside 1000\.\.1000000 µs$/],
    [{ cpuQuota: 10 }, /^linux\.cpu_quota: 10 is below 1000 µs$/],
    [{ cpuShares: 262_145 }, /^linux\.cpu_shares: 262145 is outside 2\.\.262144$/],
    [{ cpuShares: 1 }, /^linux\.cpu_shares: 1 is outside 2\.\.262144$/],
    [{ memorySwapLimitInBytes: 1 << 20 }, /^linux\.memory_swap_limit_in_bytes: a swap limit needs memory_limit_in_bytes$/],
    [{ memoryLimitInBytes: 2 << 20, memorySwapLimitInBytes: 1 << 20 }, /^linux\.memory_swap_limit_in_bytes: 1048576 is below memory_limit_in_bytes 2097152/],
    [{ cpuShares: -1 }, /^linux\.cpu_shares: -1 is below 0$/],
    [{ oomScoreAdj: -(2 ** 31) }, /^linux\.oom_score_adj: -2147483648 is outside -1000\.\.1000$/],
    [{ cpusetMems: 'a/b=c' }, /^linux\.cpuset_mems: "a\/b=c" is not a cpu\/node list/],
    [{ hugepageLimits: [{ pageSize: '2MB', limit: -1 }] }, /^linux\.hugepage_limits\[0\]\.limit: -1 is out of range$/],
  ];
  for (const [extra, re] of cases) {
    assert.throws(() => checkedResourceSpec(cri(extra), 'linux'), (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && re.test(err.message), JSON.stringify(extra));
  }
  // What kubelet sends passes unchanged.
  const ok = checkedResourceSpec(cri({ cpuPeriod: 100_000, cpuQuota: 50_000, cpuShares: 2, memoryLimitInBytes: 1 << 30, memorySwapLimitInBytes: -1, oomScoreAdj: -997 }), 'linux');
  assert.equal(ok.cpuQuota, 50_000);
  assert.equal(ok.memorySwapLimitInBytes, -1);
});

test('CreateContainer checks config.linux.resources', () => {
  const config = codecFor<ContainerConfig>('runtime.v1.ContainerConfig').normalize({
    metadata: { name: 'c' },
    image: { image: 'busybox' },
    linux: { resources: { memoryLimitInBytes: 2 ** 63 } },
  });
  assert.throws(() => toContainerSpec(config), (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && /^config\.linux\.resources\.memory_limit_in_bytes: /.test(err.message));
});
