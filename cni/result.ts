// Typed view of a plugin result (spec 0.3.0 .. 1.x). The raw JSON is what gets chained and cached;
// this view is what crisp reads (pod IPs, interfaces).
import { internal } from '../common/errors.js';
import { isJsonObject, type CniDns, type CniInterface, type CniIpConfig, type CniResult, type CniRoute, type JsonObject, type JsonValue, type PodIp } from './types.js';

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function strings(v: JsonValue | undefined): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function objects(where: string, field: string, v: JsonValue | undefined): JsonObject[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every(isJsonObject)) throw internal(`${where}: result field "${field}" must be an array of objects`);
  return v;
}

/** Family of an address with or without prefix. */
export function ipFamily(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

/** Parse a plugin result; `where` names the plugin/step for error messages. Unknown fields are ignored. */
export function parseCniResult(where: string, value: unknown): CniResult {
  if (!isJsonObject(value)) throw internal(`${where}: result is not a JSON object`);
  const interfaces: CniInterface[] = objects(where, 'interfaces', value.interfaces).map((o, i) => {
    const name = str(o.name);
    if (!name) throw internal(`${where}: result field "interfaces[${i}].name" is missing`);
    const itf: CniInterface = { name };
    const mac = str(o.mac);
    if (mac) itf.mac = mac;
    const sandbox = str(o.sandbox);
    if (sandbox) itf.sandbox = sandbox;
    if (typeof o.mtu === 'number') itf.mtu = o.mtu;
    return itf;
  });
  const ips: CniIpConfig[] = objects(where, 'ips', value.ips).map((o, i) => {
    const address = str(o.address);
    if (!address || !address.includes('/')) throw internal(`${where}: result field "ips[${i}].address" must be a CIDR`);
    const ip: CniIpConfig = { address, family: ipFamily(address) };
    const gateway = str(o.gateway);
    if (gateway) ip.gateway = gateway;
    if (typeof o.interface === 'number') ip.interface = o.interface;
    return ip;
  });
  const routes: CniRoute[] = objects(where, 'routes', value.routes).map((o, i) => {
    const dst = str(o.dst);
    if (!dst) throw internal(`${where}: result field "routes[${i}].dst" is missing`);
    const gw = str(o.gw);
    return gw ? { dst, gw } : { dst };
  });
  const d = isJsonObject(value.dns) ? value.dns : {};
  const dns: CniDns = { nameservers: strings(d.nameservers), search: strings(d.search), options: strings(d.options) };
  const domain = str(d.domain);
  if (domain) dns.domain = domain;
  return { cniVersion: str(value.cniVersion) ?? '', interfaces, ips, routes, dns };
}

/**
 * The pod's addresses: those on the pod interface `ifName` (when the result says which interface an IP
 * belongs to), IPv4 first so the primary pod IP is v4 on dual-stack, as kubelet expects by default.
 */
export function podIps(result: CniResult, ifName = 'eth0'): PodIp[] {
  const onPod = result.ips.filter((ip) => {
    if (ip.interface === undefined) return true;
    const itf = result.interfaces[ip.interface];
    return itf === undefined || (itf.name === ifName && itf.sandbox !== undefined);
  });
  const out = onPod.map((ip): PodIp => {
    const [addr = '', prefix = ''] = ip.address.split('/');
    const p: PodIp = { ip: addr, prefixLength: Number(prefix), family: ip.family };
    if (ip.gateway) p.gateway = ip.gateway;
    return p;
  });
  return out.sort((a, b) => a.family - b.family);
}
