// The platform this host runs (GOOS/GOARCH/variant naming, as image indexes use) and picking the best
// manifest for it from an index, with containerd's compatibility rules: arm64 accepts "" and "v8",
// 32-bit arm accepts its own variant and older ones, amd64 prefers no variant.
import { endianness } from 'node:os';
import { notFound } from '../../common/errors.js';
import type { Descriptor, ImageIndex, Platform } from './oci.js';

/** node's process.arch → Go's GOARCH. */
export function goArch(nodeArch: string = process.arch, endian: string = endianness()): string {
  switch (nodeArch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    case 'ppc64':
      return endian === 'LE' ? 'ppc64le' : 'ppc64';
    case 'mipsel':
      return 'mipsle';
    default:
      return nodeArch; // arm, arm64, s390x, riscv64, loong64, mips, ppc already match
  }
}

function armVariant(): string {
  const v = (process.config.variables as Record<string, unknown>).arm_version;
  return typeof v === 'string' && v ? `v${v}` : 'v7';
}

/** The platform of this process. */
export function hostPlatform(): Platform {
  const architecture = goArch();
  if (architecture === 'arm64') return { os: 'linux', architecture, variant: 'v8' };
  if (architecture === 'arm') return { os: 'linux', architecture, variant: armVariant() };
  return { os: 'linux', architecture };
}

export const platformString = (p: Platform): string => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;

/**
 * How well `candidate` suits `want`: undefined when it cannot run, otherwise a rank where 0 is best.
 * An entry without a platform ranks last (containerd accepts it).
 * Exact variant first, then compatible ones (for arm: newer before older).
 */
export function platformRank(want: Platform, candidate: Platform | undefined): number | undefined {
  // containerd accepts an index entry without a platform, after every entry that names a matching one.
  if (!candidate) return 100;
  if (candidate.os !== want.os || normaliseArch(candidate.architecture) !== normaliseArch(want.architecture)) return undefined;
  const arch = normaliseArch(want.architecture);
  const wantV = normaliseVariant(arch, want.variant);
  const haveV = normaliseVariant(arch, candidate.variant);
  if (wantV === haveV) return 0;
  if (arch === 'arm') {
    const w = Number(wantV.slice(1));
    const h = Number(haveV.slice(1));
    if (Number.isFinite(w) && Number.isFinite(h) && h < w) return w - h;
    return undefined;
  }
  if (arch === 'amd64') {
    // amd64 micro-architecture levels: v1 is baseline; higher levels are not assumed.
    return haveV === '' || haveV === 'v1' ? 1 : undefined;
  }
  return undefined;
}

function normaliseArch(a: string): string {
  switch (a) {
    case 'x86_64':
    case 'x86-64':
      return 'amd64';
    case 'aarch64':
      return 'arm64';
    case 'i386':
      return '386';
    default:
      return a;
  }
}

function normaliseVariant(arch: string, v: string | undefined): string {
  const variant = v ?? '';
  if (arch === 'arm64' && (variant === '' || variant === '8')) return 'v8';
  if (arch === 'arm' && variant === '') return 'v7';
  if (arch === 'arm' && /^\d$/.test(variant)) return `v${variant}`;
  if (arch === 'amd64' && variant === 'v1') return '';
  return variant;
}

/** The best manifest in `index` for `want` (default: this host). Throws NOT_FOUND listing what there is. */
export function pickPlatform(index: ImageIndex, want: Platform = hostPlatform(), what = 'image index'): Descriptor {
  let best: { d: Descriptor; rank: number } | undefined;
  for (const d of index.manifests) {
    const rank = platformRank(want, d.platform);
    if (rank === undefined) continue;
    if (!best || rank < best.rank) best = { d, rank };
  }
  if (best) return best.d;
  const offered = index.manifests
    .map((d) => (d.platform ? platformString(d.platform) : 'no platform'))
    .filter((p) => p !== 'unknown/unknown');
  throw notFound(`${what}: no manifest for platform ${platformString(want)} (offered: ${offered.join(', ') || 'none'})`);
}
