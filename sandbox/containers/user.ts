// Who the container's first process runs as: the CRI security context and the image's User resolved
// against the image's own /etc/passwd and /etc/group, with Kubernetes/containerd semantics.
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import { invalidArgument } from '../../common/errors.js';
import type { ContainerSecurity, ResolvedUser } from './types.js';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const MAX_ID = 2 ** 32 - 2; // (uid_t)-1 means "no change" to the kernel

const parseId = (s: string): number | undefined => {
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
};

/** /etc/passwd text → entries; comments and malformed lines are skipped, as libc does. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4 || f[0] === '') continue;
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (uid === undefined || gid === undefined) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '', shell: (f[6] ?? '').trim() });
  }
  return out;
}

/** /etc/group text → entries. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 3 || f[0] === '') continue;
    const gid = parseId(f[2]);
    if (gid === undefined) continue;
    const members = (f[3] ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '');
    out.push({ name: f[0], gid, members });
  }
  return out;
}

export interface ResolveUserInput {
  security: Pick<ContainerSecurity, 'runAsUser' | 'runAsGroup' | 'runAsUsername' | 'supplementalGroups' | 'supplementalGroupsPolicy'>;
  /** The image config's User ("", "name", "uid", "name:group", "uid:gid", ...). */
  imageUser?: string;
  /** The image's /etc/passwd and /etc/group, undefined when the image has none. */
  passwd?: string;
  group?: string;
}

/**
 * The CRI user (run_as_user / run_as_username, with run_as_group) wins over the image's User; with
 * neither, the process runs as root. Names are looked up in the image's files; an unknown name is an
 * INVALID_ARGUMENT error naming it (the CRI says the runtime must fail then).
 */
export function resolveUser(input: ResolveUserInput): ResolvedUser {
  const sec = input.security;
  let userPart: string;
  let groupPart: string | undefined;
  if (sec.runAsUser !== undefined && sec.runAsUsername !== '') {
    throw invalidArgument(`run_as_user (${sec.runAsUser}) and run_as_username ("${sec.runAsUsername}") are both set; only one may be`);
  }
  if (sec.runAsUser !== undefined || sec.runAsUsername !== '') {
    userPart = sec.runAsUser !== undefined ? String(sec.runAsUser) : sec.runAsUsername;
    if (sec.runAsGroup !== undefined) groupPart = String(sec.runAsGroup);
  } else {
    if (sec.runAsGroup !== undefined) {
      // The CRI requires run_as_group to come with a user; kubelet always sends the image's user along.
      throw invalidArgument(`run_as_group (${sec.runAsGroup}) is set without run_as_user or run_as_username`);
    }
    const image = (input.imageUser ?? '').trim();
    const colon = image.indexOf(':');
    userPart = colon < 0 ? image : image.slice(0, colon);
    groupPart = colon < 0 ? undefined : image.slice(colon + 1);
    if (userPart === '') {
      if (groupPart) throw invalidArgument(`image user "${image}" names a group without a user`);
      userPart = '0';
    }
  }
  if (groupPart === '') groupPart = undefined;

  const passwd = input.passwd === undefined ? undefined : parsePasswd(input.passwd);
  const groups = input.group === undefined ? undefined : parseGroup(input.group);

  let uid: number;
  let entry: PasswdEntry | undefined;
  const numericUid = parseId(userPart);
  if (numericUid !== undefined) {
    uid = numericUid;
    entry = passwd?.find((p) => p.uid === uid);
  } else {
    if (/^\d+$/.test(userPart)) throw invalidArgument(`user id ${userPart} is out of range`);
    entry = passwd?.find((p) => p.name === userPart);
    if (!entry) {
      throw invalidArgument(
        passwd === undefined ? `user "${userPart}" cannot be resolved: the image has no /etc/passwd` : `user "${userPart}" not found in the image's /etc/passwd`,
      );
    }
    uid = entry.uid;
  }

  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined) {
    const numericGid = parseId(groupPart);
    if (numericGid !== undefined) gid = numericGid;
    else if (/^\d+$/.test(groupPart)) throw invalidArgument(`group id ${groupPart} is out of range`);
    else {
      const g = groups?.find((x) => x.name === groupPart);
      if (!g) {
        throw invalidArgument(
          groups === undefined ? `group "${groupPart}" cannot be resolved: the image has no /etc/group` : `group "${groupPart}" not found in the image's /etc/group`,
        );
      }
      gid = g.gid;
    }
  }

  const extra = [...sec.supplementalGroups];
  if (sec.supplementalGroupsPolicy === 'merge' && entry && groups) {
    for (const g of groups) if (g.members.includes(entry.name)) extra.push(g.gid);
  }
  const additionalGids = [...new Set(extra)].filter((g) => g !== gid);

  const out: ResolvedUser = { uid, gid, additionalGids };
  if (entry) {
    out.username = entry.name;
    if (entry.home !== '') out.home = entry.home;
  }
  return out;
}

const MAX_SYMLINKS = 8;

/** What one layer says about a path: a file there, a deletion, or nothing (look further down). */
type LayerHit = { kind: 'file'; path: string } | { kind: 'link'; target: string } | { kind: 'hidden' } | { kind: 'absent'; opaque: boolean };

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

// overlayfs marks a deletion with a 0:0 character device; an unpacked but unconverted layer may still
// carry the tar format's ".wh." files, so both are honoured.
const isWhiteout = (st: Stats): boolean => st.isCharacterDevice() && st.rdev === 0;

/** A symlink found at parent/<link> with `rest` still to walk, as a path from the container root. */
const resolveLink = (parent: string[], target: string, rest: string): string =>
  posix.isAbsolute(target) ? posix.join(target, rest) : posix.join('/', ...parent, target, rest);

function probeLayer(dir: string, parts: string[]): LayerHit {
  let cur = dir;
  let opaque = false;
  for (const [i, name] of parts.entries()) {
    const last = i === parts.length - 1;
    if (lstatOrUndefined(posix.join(cur, `.wh.${name}`))) return { kind: 'hidden' };
    const p = posix.join(cur, name);
    const st = lstatOrUndefined(p);
    if (!st) return { kind: 'absent', opaque };
    if (isWhiteout(st)) return { kind: 'hidden' };
    if (last) {
      if (st.isFile()) return { kind: 'file', path: p };
      if (st.isSymbolicLink()) return { kind: 'link', target: resolveLink(parts.slice(0, i), readlinkSync(p), '') };
      return { kind: 'hidden' }; // a directory or device shadows whatever lies below
    }
    if (st.isSymbolicLink()) {
      // A symlinked parent (/etc → /usr/etc): resolve the rest through it.
      return { kind: 'link', target: resolveLink(parts.slice(0, i), readlinkSync(p), parts.slice(i + 1).join('/')) };
    }
    if (!st.isDirectory()) return { kind: 'hidden' };
    cur = p;
    if (lstatOrUndefined(posix.join(cur, '.wh..wh..opq'))) opaque = true;
  }
  return { kind: 'absent', opaque };
}

/**
 * The host path of `relPath` (relative to the container root) in a stack of overlay layer dirs ordered
 * top-most first, if it is a regular file: lets crisp read the image's /etc/passwd without mounting the
 * rootfs. Whiteouts and opaque directories (the ".wh..wh..opq" marker; overlay's opaque xattr cannot be
 * read from Node) hide lower layers; symlinks are followed inside the stack.
 */
export function findInLayers(relPath: string, dirs: string[]): string | undefined {
  let path = relPath;
  for (let hops = 0; hops <= MAX_SYMLINKS; hops++) {
    const parts = posix.normalize(`/${path}`).split('/').filter((p) => p !== '' && p !== '.');
    if (parts.length === 0 || parts.includes('..')) return undefined;
    let next: string | undefined;
    for (const dir of dirs) {
      const hit = probeLayer(dir, parts);
      if (hit.kind === 'file') return hit.path;
      if (hit.kind === 'hidden') return undefined;
      if (hit.kind === 'link') {
        next = hit.target;
        break;
      }
      if (hit.opaque) return undefined;
    }
    if (next === undefined) return undefined;
    path = next;
  }
  return undefined;
}
