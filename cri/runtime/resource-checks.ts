// Linux resources from a request (pod overhead and resources, a container's config and its updates)
// checked before anything is applied: an out-of-range value fails INVALID_ARGUMENT naming the field
// instead of reaching runc or the kernel as an error crisp cannot explain. Zero means "not set".
import { invalidArgument } from '../../common/errors.js';
import type { LinuxContainerResources } from '../../gen/runtime.v1.js';
import type { ResourceSpec } from '../../sandbox/containers/types.js';
import { toResourceSpec } from './container-mapping.js';

const CPUSET_RE = /^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$/;

/** The kernel's limits (CFS period 1 ms..1 s, quota at least 1 ms, cgroup v1 shares 2..2^18, as runc checks them). */
const CPU_PERIOD_US = { min: 1000, max: 1_000_000 };
const CPU_QUOTA_MIN_US = 1000;
const CPU_SHARES = { min: 2, max: 262_144 };

export function checkedResourceSpec(r: LinuxContainerResources, field: string): ResourceSpec {
  const fail = (name: string, why: string) => invalidArgument(`${field}.${name}: ${why}`);
  const numbers = [
    ['cpu_period', r.cpuPeriod],
    ['cpu_quota', r.cpuQuota],
    ['cpu_shares', r.cpuShares],
    ['memory_limit_in_bytes', r.memoryLimitInBytes],
    ['memory_swap_limit_in_bytes', r.memorySwapLimitInBytes],
    ['oom_score_adj', r.oomScoreAdj],
  ] as const;
  // int64 values past 2^53 arrive rounded; runc would be handed a number that is not the one sent.
  for (const [name, v] of numbers) if (!Number.isSafeInteger(v)) throw fail(name, `${v} is out of range`);
  const atLeast = (value: number, min: number, name: string) => {
    if (value < min) throw fail(name, `${value} is below ${min}`);
  };
  atLeast(r.cpuPeriod, 0, 'cpu_period');
  atLeast(r.cpuQuota, -1, 'cpu_quota');
  atLeast(r.cpuShares, 0, 'cpu_shares');
  atLeast(r.memoryLimitInBytes, 0, 'memory_limit_in_bytes');
  atLeast(r.memorySwapLimitInBytes, -1, 'memory_swap_limit_in_bytes');
  if (r.cpuPeriod !== 0 && (r.cpuPeriod < CPU_PERIOD_US.min || r.cpuPeriod > CPU_PERIOD_US.max)) {
    throw fail('cpu_period', `${r.cpuPeriod} is outside ${CPU_PERIOD_US.min}..${CPU_PERIOD_US.max} µs`);
  }
  if (r.cpuQuota > 0 && r.cpuQuota < CPU_QUOTA_MIN_US) throw fail('cpu_quota', `${r.cpuQuota} is below ${CPU_QUOTA_MIN_US} µs`);
  if (r.cpuShares !== 0 && (r.cpuShares < CPU_SHARES.min || r.cpuShares > CPU_SHARES.max)) {
    throw fail('cpu_shares', `${r.cpuShares} is outside ${CPU_SHARES.min}..${CPU_SHARES.max}`);
  }
  // runc refuses a swap limit without a memory limit, and memory+swap below memory.
  if (r.memorySwapLimitInBytes > 0) {
    if (r.memoryLimitInBytes === 0) throw fail('memory_swap_limit_in_bytes', 'a swap limit needs memory_limit_in_bytes');
    if (r.memorySwapLimitInBytes < r.memoryLimitInBytes) {
      throw fail('memory_swap_limit_in_bytes', `${r.memorySwapLimitInBytes} is below memory_limit_in_bytes ${r.memoryLimitInBytes} (it counts memory plus swap)`);
    }
  }
  if (r.oomScoreAdj < -1000 || r.oomScoreAdj > 1000) throw fail('oom_score_adj', `${r.oomScoreAdj} is outside -1000..1000`);
  for (const [name, v] of [['cpuset_cpus', r.cpusetCpus], ['cpuset_mems', r.cpusetMems]] as const) {
    if (v !== '' && !CPUSET_RE.test(v)) throw fail(name, `"${v}" is not a cpu/node list like 0-3,6`);
  }
  r.hugepageLimits.forEach((h, i) => {
    if (!h.pageSize) throw invalidArgument(`${field}.hugepage_limits[${i}].page_size is required`);
    if (!Number.isSafeInteger(h.limit) || h.limit < 0) throw invalidArgument(`${field}.hugepage_limits[${i}].limit: ${h.limit} is out of range`);
  });
  for (const k of Object.keys(r.unified)) if (!k) throw fail('unified', 'an empty key is not a cgroup file');
  return toResourceSpec(r);
}
