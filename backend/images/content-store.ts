// Blobs in containerd's content store: existence checks, streamed writes with an expected digest
// (containerd verifies it at commit; a mismatch aborts the write so nothing half-written is
// committed), resumable by ref, reads, and GC labels.
import type { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { ContainerdClient } from '../containerd/client.js';
import type { CallOptions } from '../../common/grpc-client.js';
import { WriteAction } from '../../gen/containerd.services.content.v1.js';
import { isNotFound, isAlreadyExists, withContext, errorMessage, CrispError } from '../../common/errors.js';

const CHUNK = 1024 * 1024;

export interface BlobInfo {
  digest: string;
  size: number;
  labels: Record<string, string>;
}

export class ContentStore {
  constructor(private readonly ctd: ContainerdClient) {}

  async info(digest: string): Promise<BlobInfo | undefined> {
    try {
      const res = await this.ctd.content.unary('Info', { digest });
      return { digest, size: res.info?.size ?? 0, labels: res.info?.labels ?? {} };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw withContext(`content info ${digest}`, err);
    }
  }

  /** Bytes already written for an interrupted write under `ref` (0 when none). */
  async resumeOffset(ref: string, opts: CallOptions = {}): Promise<number> {
    try {
      const res = await this.ctd.content.unary('Status', { ref }, opts);
      return res.status?.offset ?? 0;
    } catch (err) {
      if (isNotFound(err)) return 0;
      throw withContext(`content status ${ref}`, err);
    }
  }

  async abort(ref: string, opts: CallOptions = {}): Promise<void> {
    try {
      await this.ctd.content.unary('Abort', { ref }, opts);
    } catch (err) {
      if (!isNotFound(err)) throw withContext(`content abort ${ref}`, err);
    }
  }

  /**
   * Stream `source` into the store as `digest`. `source` starts at byte `offset` of the blob (the
   * resume point asked of resumeOffset). `onBytes` reports progress. Returns when committed.
   */
  async write(args: {
    ref: string;
    digest: string;
    size: number;
    offset: number;
    source: Readable;
    labels?: Record<string, string>;
    opts?: CallOptions;
    onBytes?: (n: number) => void;
  }): Promise<void> {
    const { ref, digest, size } = args;
    const call = this.ctd.content.duplex('Write', args.opts);
    let sent = 0;
    try {
      await call.write({ action: WriteAction.STAT, ref, total: size, expected: digest });
      const stat = await call.read();
      if (!stat) throw new Error('content write closed before status');
      if (stat.offset !== args.offset) {
        throw new CrispError('ABORTED', `resume offset mismatch: store has ${stat.offset}, source starts at ${args.offset}`);
      }
      let offset = args.offset;
      for await (const piece of args.source as AsyncIterable<Buffer>) {
        for (let at = 0; at < piece.length; at += CHUNK) {
          const data = piece.subarray(at, at + CHUNK);
          await call.write({ action: WriteAction.WRITE, ref, offset, data });
          offset += data.length;
          sent++;
          args.onBytes?.(data.length);
        }
        // Keep at most a few responses outstanding so errors surface early and memory stays flat.
        while (sent > 4) {
          const res = await call.read();
          if (!res) throw new Error('content write closed early');
          sent--;
        }
      }
      // The commit carries the final offset: containerd truncates a write whose offset is 0.
      await call.write({ action: WriteAction.COMMIT, ref, offset, total: size, expected: digest, labels: args.labels ?? {} });
      // Drain outstanding WRITE responses, then the COMMIT response.
      for (; sent >= 0; sent--) {
        const res = await call.read();
        if (!res) throw new Error('content write closed before commit');
      }
      call.end();
    } catch (err) {
      call.cancel();
      if (isAlreadyExists(err)) return;
      // A digest mismatch or a broken stream: drop the partial data only when it cannot be resumed.
      if (err instanceof CrispError && err.kind === 'ABORTED') await this.abort(ref, args.opts).catch(() => undefined);
      else if (/digest|size/i.test(errorMessage(err))) await this.abort(ref, args.opts).catch(() => undefined);
      throw withContext(`writing ${digest} to the content store`, err);
    }
  }

  /** Write a small in-memory blob (manifests, configs). */
  async writeBuffer(digest: string, data: Buffer, labels: Record<string, string>, opts: CallOptions = {}): Promise<void> {
    const { Readable } = await import('node:stream');
    const ref = `crisp-${digest.replace(':', '-')}-${randomBytes(4).toString('hex')}`;
    await this.write({ ref, digest, size: data.length, offset: 0, source: Readable.from([data]), labels, opts });
  }

  async read(digest: string, opts: CallOptions = {}): Promise<Buffer> {
    const parts: Buffer[] = [];
    try {
      for await (const res of this.ctd.content.serverStream('Read', { digest, offset: 0, size: 0 }, opts)) parts.push(res.data);
    } catch (err) {
      throw withContext(`reading ${digest} from the content store`, err);
    }
    return Buffer.concat(parts);
  }

  /** Set labels (merging with existing ones). */
  async setLabels(digest: string, labels: Record<string, string>): Promise<void> {
    const paths = Object.keys(labels).map((k) => `labels.${k}`);
    if (paths.length === 0) return;
    try {
      await this.ctd.content.unary('Update', { info: { digest, labels }, updateMask: { paths } });
    } catch (err) {
      throw withContext(`labelling ${digest}`, err);
    }
  }

  async delete(digest: string): Promise<void> {
    try {
      await this.ctd.content.unary('Delete', { digest });
    } catch (err) {
      if (!isNotFound(err)) throw withContext(`deleting ${digest}`, err);
    }
  }

  async list(): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    for await (const res of this.ctd.content.serverStream('List', { filters: [] })) {
      for (const i of res.info) out.push({ digest: i.digest, size: i.size, labels: i.labels });
    }
    return out;
  }
}
