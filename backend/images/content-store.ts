// Blobs in containerd's content store: existence checks, streamed writes with an expected digest
// (containerd verifies it at commit; a mismatch aborts the ingest so nothing bad is committed or kept),
// resumable by ingest ref, reads, and GC labels.
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { ContainerdClient } from '../containerd/client.js';
import type { CallOptions } from '../../common/grpc-client.js';
import { WriteAction } from '../../gen/containerd.services.content.v1.js';
import { isNotFound, isAlreadyExists, isGrpcError, withContext, errorMessage, unavailable, CrispError, type GrpcServiceError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { ContentMismatchError } from '../registry/verify.js';

const CHUNK = 1024 * 1024;

/** Where blob bytes come from: a stream starting at the requested offset, and a name for errors. */
export interface BlobSource {
  stream: Readable;
  /** "127.0.0.1:5000", "memory", … */
  origin: string;
}

export interface WriteArgs {
  /** Ingest ref: stable per blob to make a write resumable. */
  ref: string;
  digest: string;
  size: number;
  /** Open the source at `offset`, the bytes the store already holds under `ref`. */
  open: (offset: number) => Promise<BlobSource>;
  labels?: Record<string, string>;
  opts?: CallOptions;
  onBytes?: (n: number) => void;
}

/** Another writer still holds the ingest ref. */
class IngestLocked extends Error {
  constructor(override readonly cause: GrpcServiceError) {
    super(cause.details);
  }
}

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

  /** Bytes held for an interrupted write under `ref`; undefined when there is no such ingest. */
  async ingestOffset(ref: string, opts: CallOptions = {}): Promise<number | undefined> {
    try {
      const res = await this.ctd.content.unary('Status', { ref }, opts);
      return res.status?.offset ?? 0;
    } catch (err) {
      if (isNotFound(err)) return undefined;
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
   * Stream a blob into the store as `digest` under the ingest `ref`, resuming where an earlier write under
   * the same ref stopped: the store says how many bytes it holds, and `open(offset)` supplies the rest.
   * `onBytes` reports the bytes moved by this call (not those already held). Returns when committed.
   *
   * What happens to the partial data on failure decides whether a retry can resume: a broken or stalled
   * source, a cancelled call or a store hiccup keep it; content that fails verification (digest or size
   * at commit, or a source that sends too much) is aborted, so nothing bad is kept or committed.
   */
  async write(args: WriteArgs): Promise<void> {
    // containerd locks an ingest ref per writer; a just-cancelled writer may hold it for a moment.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.writeOnce(args);
      } catch (err) {
        if (!(err instanceof IngestLocked) || attempt >= 20) throw withContext(`writing ${args.digest} to the content store`, err instanceof IngestLocked ? err.cause : err);
        await sleep(Math.min(50 * attempt, 500), args.opts?.signal);
      }
    }
  }

  private async writeOnce(args: WriteArgs): Promise<void> {
    const { ref, digest, size } = args;
    const call = this.ctd.content.duplex('Write', args.opts);
    let committing = false;
    let discard = false;
    let source: BlobSource | undefined;
    let sent = 0;
    try {
      await call.write({ action: WriteAction.STAT, ref, total: size, expected: digest });
      let stat;
      try {
        stat = await call.read();
      } catch (err) {
        if (isGrpcError(err, status.UNAVAILABLE) && /locked/.test(err.details)) throw new IngestLocked(err);
        throw err;
      }
      if (!stat) throw new Error('content write closed before status');
      let offset = stat.offset;
      if (offset > size) {
        discard = true;
        throw new CrispError('FAILED_PRECONDITION', `ingest ${ref} holds ${offset} bytes, more than the blob's ${size}`);
      }
      source = await args.open(offset);
      const chunks = (source.stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<Buffer>;
        try {
          next = await chunks.next();
        } catch (err) {
          throw unavailable(`${source.origin}: blob ${digest}: download broke off at byte ${offset} of ${size}: ${errorMessage(err)}`, err);
        }
        if (next.done) break;
        const piece = next.value;
        if (offset + piece.length > size) {
          discard = true;
          throw new ContentMismatchError(digest, `${source.origin}: blob ${digest}: more data than the expected ${size} bytes`);
        }
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
      // A source that ends short is a broken download, not bad content: keep what arrived.
      if (offset < size) throw unavailable(`${source.origin}: blob ${digest}: download ended at byte ${offset} of ${size}`);
      committing = true;
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
      source?.stream.destroy();
      if (isAlreadyExists(err)) return;
      if (err instanceof IngestLocked) throw err;
      // containerd verifies digest and size at commit and answers FAILED_PRECONDITION when they differ;
      // an offset it disagrees with (OUT_OF_RANGE) means our idea of the ingest is wrong: start over.
      const rejected = committing && isGrpcError(err, status.FAILED_PRECONDITION);
      if (discard || rejected || isGrpcError(err, status.OUT_OF_RANGE)) await this.abort(ref, args.opts).catch(() => undefined);
      if (rejected) {
        throw new ContentMismatchError(digest, `${source?.origin ?? 'source'}: blob ${digest} failed verification, discarded: ${errorMessage(err)}`);
      }
      throw err;
    }
  }

  /** Write a small in-memory blob (manifests, configs). */
  async writeBuffer(digest: string, data: Buffer, labels: Record<string, string>, opts: CallOptions = {}): Promise<void> {
    const ref = `crisp-${digest.replace(':', '-')}-${randomBytes(4).toString('hex')}`;
    await this.write({
      ref,
      digest,
      size: data.length,
      open: async (offset) => ({ stream: Readable.from([data.subarray(offset)]), origin: 'memory' }),
      labels,
      opts,
    });
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
