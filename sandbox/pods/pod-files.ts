// The pod's /etc/hostname, /etc/hosts and /etc/resolv.conf: written once per pod, bind-mounted into
// every container of the pod.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.js';
import type { DnsConfig, PodIp } from '../../cni/index.js';

export function hostsFile(hostname: string, ips: readonly PodIp[]): string {
  const lines = [
    '# Kubernetes-managed hosts file (written by crisp).',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  for (const ip of ips) lines.push(`${ip.ip}\t${hostname}`);
  return `${lines.join('\n')}\n`;
}

export function resolvConf(dns: DnsConfig): string {
  const lines: string[] = [];
  if (dns.searches?.length) lines.push(`search ${dns.searches.join(' ')}`);
  for (const s of dns.servers ?? []) lines.push(`nameserver ${s}`);
  if (dns.options?.length) lines.push(`options ${dns.options.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

export interface PodFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

/** Write the three files into `dir`. Without a DNS config the host's resolv.conf is copied. */
export async function writePodFiles(dir: string, hostname: string, ips: readonly PodIp[], dns: DnsConfig | undefined): Promise<PodFiles> {
  const files = { hostname: join(dir, 'hostname'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf') };
  const hasDns = dns && ((dns.servers?.length ?? 0) > 0 || (dns.searches?.length ?? 0) > 0 || (dns.options?.length ?? 0) > 0);
  const resolv = hasDns ? resolvConf(dns) : await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  await Promise.all([
    writeFileAtomic(files.hostname, `${hostname}\n`, 0o644),
    writeFileAtomic(files.hosts, hostsFile(hostname, ips), 0o644),
    writeFileAtomic(files.resolvConf, resolv, 0o644),
  ]);
  return files;
}

/** Rewrite /etc/hosts once the pod's IPs are known. */
export async function updateHostsFile(path: string, hostname: string, ips: readonly PodIp[]): Promise<void> {
  await writeFileAtomic(path, hostsFile(hostname, ips), 0o644);
}
