// A CNI network private to one test run: unique bridge name and subnet, host-local state in the test's
// own dir, and a teardown that removes the bridge and checks no iptables rule for the subnet is left.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';

export interface TestNetwork {
  bridge: string;
  subnet: string;
  gateway: string;
  name: string;
  dataDir: string;
  /** Remove the bridge; returns iptables lines that still mention the subnet (should be none). */
  teardown(): string[];
}

export function writeTestNetwork(confDir: string, dir: string, extraPlugins: object[] = []): TestNetwork {
  const bridge = `crt${randomBytes(4).toString('hex')}`;
  const b = randomInt(100, 250);
  const c = randomInt(0, 255);
  const subnet = `10.${b}.${c}.0/24`;
  const gateway = `10.${b}.${c}.1`;
  const name = `e2e-${bridge}`;
  const dataDir = join(dir, 'ipam');
  const conf = {
    cniVersion: '1.0.0',
    name,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      ...extraPlugins,
    ],
  };
  writeFileSync(join(confDir, '10-e2e.conflist'), JSON.stringify(conf));
  return {
    bridge,
    subnet,
    gateway,
    name,
    dataDir,
    teardown: () => {
      spawnSync('ip', ['link', 'del', bridge]);
      const rules = spawnSync('iptables-save', [], { encoding: 'utf8' }).stdout ?? '';
      return rules.split('\n').filter((l) => l.includes(subnet.replace('.0/24', '.')) || l.includes(name));
    },
  };
}

/** Run a command inside a pinned network namespace. */
export function inNetns(netns: string, cmd: string[], timeoutMs = 10_000): { code: number | null; out: string } {
  const res = spawnSync('nsenter', [`--net=${netns}`, ...cmd], { encoding: 'utf8', timeout: timeoutMs });
  return { code: res.status, out: `${res.stdout ?? ''}${res.stderr ?? ''}` };
}
