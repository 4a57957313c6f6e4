// Container Device Interface: devices a container asks for by fully qualified name
// ("vendor.com/class=name", from CreateContainer's CDI_devices or kubelet's "cdi.k8s.io/*"
// annotations) are resolved from the CDI spec files in /etc/cdi and /var/run/cdi (JSON or YAML; the
// later directory wins for a device named in both) and their container edits applied to the OCI spec:
// environment, device nodes (with their cgroup rules), mounts and hooks. An unknown or malformed name
// is refused with the field named; nothing is dropped silently.
import { readdir, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { invalidArgument, isENOENT } from '../../common/errors.js';
import { splitDev } from './devices.js';
import type { OciHook, OciSpec } from './oci-types.js';

export const CDI_SPEC_DIRS = ['/etc/cdi', '/var/run/cdi'];
const ANNOTATION_PREFIX = 'cdi.k8s.io/';
const QUALIFIED = /^([a-z0-9][a-z0-9.-]*\/[a-zA-Z0-9][a-zA-Z0-9_.-]*)=([a-zA-Z0-9][a-zA-Z0-9_.:-]*)$/;
const HOOK_NAMES = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;

interface CdiDeviceNode {
  path: string;
  hostPath?: string;
  type?: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  permissions?: string;
  uid?: number;
  gid?: number;
}

interface CdiMount {
  hostPath: string;
  containerPath: string;
  options?: string[];
  type?: string;
}

interface CdiHook {
  hookName: string;
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export interface CdiEdits {
  env?: string[];
  deviceNodes?: CdiDeviceNode[];
  mounts?: CdiMount[];
  hooks?: CdiHook[];
}

interface CdiSpecFile {
  kind?: string;
  devices?: { name?: string; containerEdits?: CdiEdits }[];
  containerEdits?: CdiEdits;
}

/** Fully qualified device name → its spec's edits and its own, and the file that defined it. */
export type CdiRegistry = Map<string, { file: string; spec: CdiEdits | undefined; device: CdiEdits | undefined }>;

export async function loadCdiRegistry(dirs: readonly string[] = CDI_SPEC_DIRS): Promise<CdiRegistry> {
  const registry: CdiRegistry = new Map();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => /\.(json|ya?ml)$/.test(n)).sort();
    } catch (err) {
      if (isENOENT(err)) continue; // no CDI specs on this node
      throw err;
    }
    for (const name of names) {
      const file = join(dir, name);
      let spec: CdiSpecFile;
      try {
        const text = await readFile(file, 'utf8');
        // yaml loads only when a node has YAML specs and a container asks for a CDI device. It is a CommonJS
        // package: its exports are the namespace's `default`, which the daemon bundle keeps as the only export.
        spec = (name.endsWith('.json') ? JSON.parse(text) : (await import('yaml')).default.parse(text)) as CdiSpecFile;
      } catch (err) {
        throw invalidArgument(`CDI spec ${file} cannot be read: ${(err as Error).message}`);
      }
      if (!spec?.kind || !Array.isArray(spec.devices)) continue;
      for (const d of spec.devices) {
        if (d?.name) registry.set(`${spec.kind}=${d.name}`, { file, spec: spec.containerEdits, device: d.containerEdits });
      }
    }
  }
  return registry;
}

/** Device names kubelet passes as "cdi.k8s.io/<key>" annotations (comma-separated values). */
export function cdiDevicesFromAnnotations(annotations: Readonly<Record<string, string>>): string[] {
  return Object.entries(annotations)
    .filter(([k]) => k.startsWith(ANNOTATION_PREFIX))
    .flatMap(([, v]) => v.split(','))
    .map((s) => s.trim())
    .filter(Boolean);
}

async function deviceNode(n: CdiDeviceNode, field: string): Promise<{ path: string; type: string; major: number; minor: number; fileMode?: number; uid?: number; gid?: number; permissions: string }> {
  if (!n.path || !isAbsolute(n.path)) throw invalidArgument(`${field}: device node path "${n.path}" must be absolute`);
  let { type, major, minor, fileMode } = n;
  if (major === undefined || minor === undefined || !type) {
    const host = n.hostPath || n.path;
    const st = await stat(host).catch((err: unknown) => {
      throw isENOENT(err) ? invalidArgument(`${field}: device node ${host} does not exist on this host`) : err;
    });
    if (!st.isCharacterDevice() && !st.isBlockDevice()) throw invalidArgument(`${field}: ${host} is not a device node`);
    ({ major, minor } = splitDev(st.rdev));
    type ??= st.isCharacterDevice() ? 'c' : 'b';
    fileMode ??= st.mode & 0o777;
  }
  return {
    path: n.path,
    type,
    major,
    minor,
    ...(fileMode !== undefined ? { fileMode } : {}),
    ...(n.uid !== undefined ? { uid: n.uid } : {}),
    ...(n.gid !== undefined ? { gid: n.gid } : {}),
    permissions: n.permissions || 'rwm',
  };
}

async function applyEdits(oci: OciSpec, edits: CdiEdits | undefined, field: string): Promise<void> {
  if (!edits) return;
  if (edits.env?.length) {
    oci.process ??= { user: { uid: 0, gid: 0 }, args: [], cwd: '/' };
    oci.process.env = [...(oci.process.env ?? []), ...edits.env];
  }
  for (const n of edits.deviceNodes ?? []) {
    const d = await deviceNode(n, field);
    oci.linux ??= {};
    oci.linux.devices = [...(oci.linux.devices ?? []).filter((x) => x.path !== d.path), { path: d.path, type: d.type, major: d.major, minor: d.minor, ...(d.fileMode !== undefined ? { fileMode: d.fileMode } : {}), ...(d.uid !== undefined ? { uid: d.uid } : {}), ...(d.gid !== undefined ? { gid: d.gid } : {}) }];
    oci.linux.resources ??= {};
    oci.linux.resources.devices = [...(oci.linux.resources.devices ?? []), { allow: true, type: d.type, major: d.major, minor: d.minor, access: d.permissions }];
  }
  for (const m of edits.mounts ?? []) {
    if (!isAbsolute(m.containerPath ?? '') || !isAbsolute(m.hostPath ?? '')) throw invalidArgument(`${field}: mount paths must be absolute (${m.hostPath} → ${m.containerPath})`);
    oci.mounts = [...(oci.mounts ?? []), { destination: m.containerPath, source: m.hostPath, type: m.type || 'bind', options: m.options ?? ['rbind', 'rprivate'] }];
  }
  for (const h of edits.hooks ?? []) {
    if (!(HOOK_NAMES as readonly string[]).includes(h.hookName)) throw invalidArgument(`${field}: unknown hook "${h.hookName}"`);
    if (!isAbsolute(h.path ?? '')) throw invalidArgument(`${field}: hook path "${h.path}" must be absolute`);
    const hook: OciHook = { path: h.path, ...(h.args ? { args: h.args } : {}), ...(h.env ? { env: h.env } : {}), ...(h.timeout ? { timeout: h.timeout } : {}) };
    oci.hooks ??= {};
    const name = h.hookName as (typeof HOOK_NAMES)[number];
    oci.hooks[name] = [...(oci.hooks[name] ?? []), hook];
  }
}

/**
 * Applies the named devices to `oci` (in place). `names` come from CDI_devices (field
 * config.CDI_devices[i]) and then annotations; each spec's own edits are applied once.
 */
export async function applyCdiDevices(oci: OciSpec, names: readonly { name: string; field: string }[], registry: CdiRegistry): Promise<void> {
  const specsApplied = new Set<string>();
  const seen = new Set<string>();
  for (const { name, field } of names) {
    if (seen.has(name)) continue;
    seen.add(name);
    if (!QUALIFIED.test(name)) throw invalidArgument(`${field}: "${name}" is not a fully qualified CDI device name (vendor.com/class=name)`);
    const entry = registry.get(name);
    if (!entry) throw invalidArgument(`${field}: CDI device "${name}" is not defined by any spec in ${CDI_SPEC_DIRS.join(' or ')}`);
    if (!specsApplied.has(entry.file)) {
      specsApplied.add(entry.file);
      await applyEdits(oci, entry.spec, `${field} (${entry.file})`);
    }
    await applyEdits(oci, entry.device, `${field} (${entry.file})`);
  }
}
