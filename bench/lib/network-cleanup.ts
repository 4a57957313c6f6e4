// Leftover removal for a benchmark's private CNI network: the bridge, and any iptables rules (and the
// CNI-* chains they jump to) that mention its subnet or network name. Normally CNI DEL leaves nothing;
// this runs on every exit so a benchmark killed half-way does not leave NAT rules on the machine.
import { spawnSync } from 'node:child_process';

/** Split one iptables-save rule line into argv, honouring "…" with \" escapes. */
export function splitRule(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '\\' && i + 1 < line.length) {
        cur += line[++i];
      } else if (ch === '"') {
        quoted = false;
      } else {
        cur += ch;
      }
    } else if (ch === '"') {
      quoted = true;
      has = true;
    } else if (ch === ' ' || ch === '\t') {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has || cur) out.push(cur);
  return out;
}

function iptables(args: string[]): { ok: boolean; out: string } {
  const res = spawnSync('iptables', ['-w', '5', ...args], { encoding: 'utf8' });
  return { ok: res.status === 0, out: `${res.stdout ?? ''}${res.stderr ?? ''}` };
}

/** Chains CNI creates for one container (bridge masquerade, portmap DNAT): named by a hash, never shared. */
const PER_CONTAINER_CHAIN = /^CNI-(DN-)?[0-9a-f]{16,}$/;

/** Rule lines of one table that mention any of `needles`. */
function matchingRules(table: string, needles: string[]): string[] {
  const save = spawnSync('iptables-save', ['-t', table], { encoding: 'utf8' }).stdout ?? '';
  return save.split('\n').filter((l) => l.startsWith('-A ') && needles.some((n) => l.includes(n)));
}

/**
 * Remove rules mentioning `needles` from the nat and filter tables, then flush and delete the CNI-*
 * chains they jumped to. Returns the rule lines still present afterwards (empty when clean).
 */
export function removeIptablesRules(needles: string[]): string[] {
  const left: string[] = [];
  for (const table of ['nat', 'filter']) {
    const rules = matchingRules(table, needles);
    const chains = new Set<string>();
    for (const line of rules) {
      const argv = splitRule(line);
      const chain = argv[1]!;
      const j = argv.indexOf('-j');
      const target = j >= 0 ? argv[j + 1] : undefined;
      if (target !== undefined && PER_CONTAINER_CHAIN.test(target)) chains.add(target);
      // Rules inside a per-container chain go with the chain; rules in shared chains (POSTROUTING,
      // CNI-HOSTPORT-*) are deleted one by one so other users' rules stay.
      if (PER_CONTAINER_CHAIN.test(chain)) chains.add(chain);
      else iptables(['-t', table, '-D', ...argv.slice(1)]);
    }
    for (const chain of chains) {
      iptables(['-t', table, '-F', chain]);
      iptables(['-t', table, '-X', chain]);
    }
    left.push(...matchingRules(table, needles).map((l) => `${table}: ${l}`));
  }
  return left;
}

/** Delete the bridge if it still exists (quietly: it usually does, CNI does not remove bridges). */
export function removeBridge(bridge: string): void {
  spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
}
