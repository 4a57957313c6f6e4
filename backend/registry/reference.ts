// Image references in the docker grammar, normalised the way kubelet and containerd do it:
// "busybox" is docker.io/library/busybox:latest, a first path component is a registry host when it
// contains '.' or ':', is "localhost", or has upper-case letters; the repository path must be lower case.
import { invalidArgument } from '../../common/errors.js';
import { digestProblem } from './digest.js';

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
const NAME_MAX = 255;

const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`;
// IPv6 literals only in brackets, without zone ids, as the upstream grammar allows.
const IPV6 = '\\[[a-fA-F0-9:]+\\]';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_NAME}|${IPV6})(?::[0-9]+)?$`);
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = /^\w[\w.-]{0,127}$/;
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;

export interface ImageReference {
  /** Registry host namespace, e.g. "docker.io", "127.0.0.1:5000", "[::1]:5000". */
  readonly domain: string;
  /** Repository path inside the registry, e.g. "library/busybox". */
  readonly path: string;
  /** Tag; "latest" when the reference named neither a tag nor a digest. Kept beside a digest for naming. */
  readonly tag?: string;
  /** Digest; when present it, not the tag, decides what is pulled. */
  readonly digest?: string;
}

const fail = (ref: string, why: string) => invalidArgument(`invalid image reference "${ref}": ${why}`);

/** Parse and normalise `ref`; throws INVALID_ARGUMENT naming the reference. */
export function parseImageReference(ref: string): ImageReference {
  if (ref.length === 0) throw fail(ref, 'empty reference');
  if (IDENTIFIER_RE.test(ref)) throw fail(ref, 'a 64-character hex identifier is not a repository name');
  if (/\s/.test(ref)) throw fail(ref, 'contains whitespace');

  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const problem = digestProblem(digest);
    if (problem) throw fail(ref, `bad digest: ${problem}`);
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw fail(ref, `bad tag "${tag}"`);
  }
  if (rest.length === 0) throw fail(ref, 'missing repository name');

  const { domain, path } = splitDomain(rest);
  if (path.toLowerCase() !== path) throw fail(ref, `repository name "${path}" must be lowercase`);
  if (!DOMAIN_RE.test(domain)) throw fail(ref, `bad registry host "${domain}"`);
  if (!PATH_RE.test(path)) throw fail(ref, `bad repository name "${path}"`);
  if (domain.length + 1 + path.length > NAME_MAX) throw fail(ref, `name longer than ${NAME_MAX} characters`);

  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return { domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

function splitDomain(name: string): { domain: string; path: string } {
  const slash = name.indexOf('/');
  if (slash < 0) return { domain: DEFAULT_DOMAIN, path: OFFICIAL_PREFIX + name };
  const first = name.slice(0, slash);
  const remainder = name.slice(slash + 1);
  let domain: string;
  let path: string;
  if (first === LEGACY_DEFAULT_DOMAIN) {
    domain = DEFAULT_DOMAIN;
    path = remainder;
  } else if (first === 'localhost' || /[.:]/.test(first) || first.toLowerCase() !== first) {
    domain = first;
    path = remainder;
  } else {
    domain = DEFAULT_DOMAIN;
    path = name;
  }
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_PREFIX + path;
  return { domain, path };
}

/** "domain/path" — the repository name without tag or digest. */
export const repositoryName = (r: ImageReference): string => `${r.domain}/${r.path}`;

/** The full normalised string: name[:tag][@digest]. */
export function referenceString(r: ImageReference): string {
  return repositoryName(r) + (r.tag !== undefined ? `:${r.tag}` : '') + (r.digest !== undefined ? `@${r.digest}` : '');
}

/** What to ask the registry's manifests endpoint for: the digest when there is one, else the tag. */
export const manifestObject = (r: ImageReference): string => r.digest ?? r.tag ?? DEFAULT_TAG;

/** name@digest, the pinned form an image is recorded under once resolved. */
export const digestReference = (r: ImageReference, digest: string): string => `${repositoryName(r)}@${digest}`;

/** name:tag, or undefined for a digest-only reference. */
export const tagReference = (r: ImageReference): string | undefined =>
  r.tag !== undefined ? `${repositoryName(r)}:${r.tag}` : undefined;

/** The short form people type ("busybox:latest", "me/app:1"), for messages. */
export function familiarString(r: ImageReference): string {
  let name = repositoryName(r);
  if (r.domain === DEFAULT_DOMAIN) {
    name = r.path.startsWith(OFFICIAL_PREFIX) && !r.path.slice(OFFICIAL_PREFIX.length).includes('/')
      ? r.path.slice(OFFICIAL_PREFIX.length)
      : r.path;
  }
  return name + (r.tag !== undefined ? `:${r.tag}` : '') + (r.digest !== undefined ? `@${r.digest}` : '');
}
