// Splitting the Synchronize state into parts that each fit one ttrpc message (nri-protocol.md §5):
// every part but the last is sent with more=true. Plugins older than v0.7 cannot take a split, so
// the state is split only when it does not fit.
import type { Container, PodSandbox } from '../../gen/nri.pkg.api.v1alpha1.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import { TTRPC_MAX_PAYLOAD } from '../transport/ttrpc.js';

const podCodec = codecFor<PodSandbox>('nri.pkg.api.v1alpha1.PodSandbox');
const containerCodec = codecFor<Container>('nri.pkg.api.v1alpha1.Container');

/**
 * Room for the ttrpc Request envelope around the SynchronizeRequest (service and method names,
 * timeout, the payload's own tag and length) and the `more` flag.
 */
const ENVELOPE_ALLOWANCE = 1024;

/** The default part size: the largest SynchronizeRequest that still fits one ttrpc message. */
export const DEFAULT_SYNC_PART_BYTES = TTRPC_MAX_PAYLOAD - ENVELOPE_ALLOWANCE;

export interface SyncPart {
  pods: Input<PodSandbox>[];
  containers: Input<Container>[];
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    len++;
  }
  return len;
}

/** Bytes a repeated message field element takes: tag, length prefix, body. */
function fieldSize(body: number): number {
  return 1 + varintLength(body) + body;
}

/**
 * Packs pods then containers greedily into parts of at most `partBytes` encoded bytes (pods first,
 * so a plugin learns about a pod before its containers). A single item larger than a part cannot be
 * sent at all and throws.
 */
export function splitSyncState(pods: Input<PodSandbox>[], containers: Input<Container>[], partBytes = DEFAULT_SYNC_PART_BYTES): SyncPart[] {
  const parts: SyncPart[] = [];
  let cur: SyncPart = { pods: [], containers: [] };
  let size = 0;
  const place = (kind: 'pods' | 'containers', item: Input<PodSandbox> | Input<Container>, bytes: number, what: string) => {
    if (bytes > partBytes) throw new Error(`${what} needs ${bytes} bytes, more than one Synchronize message can carry (${partBytes})`);
    if (size + bytes > partBytes && size > 0) {
      parts.push(cur);
      cur = { pods: [], containers: [] };
      size = 0;
    }
    (cur[kind] as (typeof item)[]).push(item);
    size += bytes;
  };
  for (const p of pods) place('pods', p, fieldSize(podCodec.encode(p).length), `pod ${p.id ?? ''}`);
  for (const c of containers) place('containers', c, fieldSize(containerCodec.encode(c).length), `container ${c.id ?? ''}`);
  parts.push(cur);
  return parts;
}
