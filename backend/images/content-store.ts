// Blobs in containerd's content store: existence checks, streamed writes with an expected digest
// (containerd verifies it at commit; a mismatch aborts the ingest so nothing bad is committed or kept),
// resumable by ingest ref, reads, and GC labels.
import { Readable } from 'node:stream';
import { link, mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { status } from '../../common/grpc-types.js';
import { ContainerdClient } from '../containerd/client.js';
import type { CallOptions, DuplexCall } from '../../common/grpc-client.js';
import { WriteAction, type ContentMethods } from '../../gen/containerd.services.content.v1.js';
import { isNotFound, isAlreadyExists, isErrno, isGrpcError, withContext, errorMessage, unavailable, CrispError, type GrpcServiceError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { ContentMismatchError } from '../registry/verify.js';
import type { IngestFiles } from './ingest-files.js';
import type { FillResult } from './blob-fetcher.js';

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
  /**
   * Fill the ingest's data file `path` from `offset` to the end by other means (a download worker, see
   * blob-fetcher.ts), reporting its bytes itself; false when it wrote nothing and `open` should be used.
   * Only called when the data file is local. A ContentMismatchError discards the ingest.
   */
  fill?: (path: string, offset: number) => Promise<FillResult>;
  /** Every byte of the blob is in the store's hands; verify and commit follow. */
  onReceived?: () => void;
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

/** Where one write stands, for the cleanup of a failed one. */
interface WriteState {
  source?: BlobSource;
  /** The COMMIT was sent: a FAILED_PRECONDITION now means the content did not verify. */
  committing: boolean;
  /** The content is known bad: abort the ingest so nothing of it is kept. */
  discard: boolean;
}

/** link(2), making the target's directory first when the store has none yet (a fresh containerd). */
async function linkMakingDir(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
    await mkdir(dirname(to), { recursive: true, mode: 0o755 });
    await link(from, to);
  }
}

type WriteCall = DuplexCall<ContentMethods['Write']['request'], ContentMethods['Write']['response']>;

export interface ContentStoreOptions {
  /**
   * With `files`: verify a filled ingest file here and commit it without containerd reading it again
   * (see commitVerified). Default true; false leaves verification to containerd's re-hash.
   */
  verifyLocally?: boolean;
}

/** Who checked a written blob's digest: crispd (committed without containerd reading it) or containerd. */
export type VerifiedBy = 'crisp' | 'containerd';

export class ContentStore {
  /** `files`: direct access to ingest data files when containerd's content store is local (see ingest-files.ts). */
  constructor(
    private readonly ctd: ContainerdClient,
    private readonly files?: IngestFiles,
    private readonly options: ContentStoreOptions = {},
  ) {}

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
   * `onBytes` reports the bytes this call receives from the source (not those already held). Returns when
   * committed.
   *
   * What happens to the partial data on failure decides whether a retry can resume: a broken or stalled
   * source, a cancelled call or a store hiccup keep it; content that fails verification (digest or size
   * at commit, or a source that sends too much) is aborted, so nothing bad is kept or committed.
   */
  async write(args: WriteArgs): Promise<VerifiedBy> {
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

  private async writeOnce(args: WriteArgs): Promise<VerifiedBy> {
    const { ref, digest, size } = args;
    const call = this.ctd.content.duplex('Write', args.opts);
    const state: WriteState = { committing: false, discard: false };
    let second: WriteCall | undefined;
    try {
      const offset = await this.stat(call, args, state);
      const file = offset < size && this.files ? await this.files.dataFile(ref) : undefined;
      if (file) {
        // Release containerd's writer (and its lock on the ref), fill the file, reopen to commit.
        call.end();
        while (await call.read()) {
          // Nothing more is expected before the server closes; drain whatever comes.
        }
        let filled = await this.fillElsewhere(file, offset, args, state);
        if (!filled) {
          await this.fillFile(file, offset, args, state);
          filled = true;
        }
        args.onReceived?.();
        if (await this.commitVerified(file, args, state, filled === 'verified')) return 'crisp';
        second = this.ctd.content.duplex('Write', args.opts);
        const held = await this.stat(second, args, state);
        if (held !== size) throw unavailable(`ingest ${ref} holds ${held} of ${size} bytes after writing its file`);
        await this.commit(second, args, state, 0);
      } else {
        const sent = await this.streamToCall(call, offset, args, state);
        args.onReceived?.();
        await this.commit(call, args, state, sent);
      }
      return 'containerd';
    } catch (err) {
      call.cancel();
      second?.cancel();
      state.source?.stream.destroy();
      if (isAlreadyExists(err)) return 'containerd';
      if (err instanceof IngestLocked) throw err;
      // containerd verifies digest and size at commit and answers FAILED_PRECONDITION when they differ;
      // an offset it disagrees with (OUT_OF_RANGE) means our idea of the ingest is wrong: start over.
      const rejected = state.committing && isGrpcError(err, status.FAILED_PRECONDITION);
      if (state.discard || rejected || isGrpcError(err, status.OUT_OF_RANGE)) await this.abort(ref, args.opts).catch(() => undefined);
      if (rejected) {
        throw new ContentMismatchError(digest, `${state.source?.origin ?? 'source'}: blob ${digest} failed verification, discarded: ${errorMessage(err)}`);
      }
      throw err;
    }
  }

  /** Open (or resume) the ingest on `call`: the bytes it already holds. */
  private async stat(call: WriteCall, args: WriteArgs, state: WriteState): Promise<number> {
    await call.write({ action: WriteAction.STAT, ref: args.ref, total: args.size, expected: args.digest });
    let stat;
    try {
      stat = await call.read();
    } catch (err) {
      if (isGrpcError(err, status.UNAVAILABLE) && /locked/.test(err.details)) throw new IngestLocked(err);
      throw err;
    }
    if (!stat) throw new Error('content write closed before status');
    if (stat.offset > args.size) {
      state.discard = true;
      throw new CrispError('FAILED_PRECONDITION', `ingest ${args.ref} holds ${stat.offset} bytes, more than the blob's ${args.size}`);
    }
    return stat.offset;
  }

  /** The source's pieces from `offset`, checked against the blob's size; breaks become UNAVAILABLE. */
  private async *pieces(offset: number, args: WriteArgs, state: WriteState): AsyncGenerator<Buffer> {
    const source = await args.open(offset);
    state.source = source;
    const chunks = (source.stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (err) {
        throw unavailable(`${source.origin}: blob ${args.digest}: download broke off at byte ${offset} of ${args.size}: ${errorMessage(err)}`, err);
      }
      if (next.done) break;
      if (offset + next.value.length > args.size) {
        state.discard = true;
        throw new ContentMismatchError(args.digest, `${source.origin}: blob ${args.digest}: more data than the expected ${args.size} bytes`);
      }
      offset += next.value.length;
      // Counted on arrival, not when written: the stall timeout watches the network, and a slow one may
      // take a while to fill a CHUNK.
      args.onBytes?.(next.value.length);
      yield next.value;
    }
    // A source that ends short is a broken download, not bad content: keep what arrived.
    if (offset < args.size) throw unavailable(`${source.origin}: blob ${args.digest}: download ended at byte ${offset} of ${args.size}`);
  }

  /**
   * Send the rest of the blob as WRITE messages of up to CHUNK bytes (HTTP bodies arrive in pieces of
   * 16–64 KiB; one message per piece costs both sides far more). Returns the WRITE answers still unread.
   */
  private async streamToCall(call: WriteCall, offset: number, args: WriteArgs, state: WriteState): Promise<number> {
    let sent = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await call.write({ action: WriteAction.WRITE, ref: args.ref, offset, data });
      offset += data.length;
      sent++;
      // Keep at most a few answers outstanding so errors surface early and memory stays flat.
      while (sent > 4) {
        if (!(await call.read())) throw new Error('content write closed early');
        sent--;
      }
    };
    try {
      for await (const piece of this.pieces(offset, args, state)) {
        for (let at = 0; at < piece.length; ) {
          const part = piece.subarray(at, at + CHUNK - pendingBytes);
          pending.push(part);
          pendingBytes += part.length;
          at += part.length;
          if (pendingBytes >= CHUNK) await flush();
        }
      }
    } catch (err) {
      // A broken download: hand containerd what arrived and wait until it holds it, so the retry asks only
      // for the rest. (When that fails too — a cancelled pull — the retry fetches those bytes again.)
      if (!state.discard && !args.opts?.signal?.aborted) {
        await (async () => {
          if (pendingBytes > 0) await flush();
          for (; sent > 0; sent--) await call.read();
        })().catch(() => undefined);
      }
      throw err;
    }
    if (pendingBytes > 0) await flush();
    return sent;
  }

  /** `args.fill`, with bad content marked for discarding. */
  private async fillElsewhere(path: string, offset: number, args: WriteArgs, state: WriteState): Promise<FillResult> {
    if (!args.fill) return false;
    try {
      return await args.fill(path, offset);
    } catch (err) {
      if (err instanceof ContentMismatchError) state.discard = true;
      throw err;
    }
  }

  /** Write the rest of the blob into the ingest's data file at `offset`, in order, flushed to the file. */
  private async fillFile(path: string, offset: number, args: WriteArgs, state: WriteState): Promise<void> {
    const fh = await open(path, 'r+');
    try {
      let batch: Buffer[] = [];
      let batchBytes = 0;
      const flush = async () => {
        const { bytesWritten } = await fh.writev(batch, offset);
        if (bytesWritten !== batchBytes) throw new Error(`short write to ${path}: ${bytesWritten} of ${batchBytes} bytes`);
        offset += batchBytes;
        batch = [];
        batchBytes = 0;
      };
      try {
        for await (const piece of this.pieces(offset, args, state)) {
          batch.push(piece);
          batchBytes += piece.length;
          if (batchBytes >= CHUNK) await flush();
        }
      } catch (err) {
        // A broken or stalled download: keep every byte that arrived, so the retry asks only for the rest.
        // (A failing flush loses only those bytes; the download error is the one to report.)
        if (!state.discard && batchBytes > 0) await flush().catch(() => undefined);
        throw err;
      }
      if (batchBytes > 0) await flush();
    } finally {
      await fh.close();
    }
  }

  /**
   * Commit a filled ingest data file without containerd reading it again: crispd checks size and digest
   * itself (OpenSSL's SHA-256, several times faster than the Go one containerd re-hashes with), fsyncs
   * the file and hard-links it into the local store's blobs dir; a writer opened on a new ref with the
   * expected digest then finds the blob there and takes containerd's "shared content" path, whose commit
   * registers the blob without reading it (and whose open ingest keeps it from content GC meanwhile);
   * then the download's ingest is aborted (the link keeps the data). Content that does not verify is
   * discarded as a failed commit would be. False when the shortcut does not apply (GC took the link
   * before the writer saw it, an unknown layout): the caller commits the usual way, which re-hashes.
   */
  private async commitVerified(file: string, args: WriteArgs, state: WriteState, hashed: boolean): Promise<boolean> {
    const blob = this.options.verifyLocally === false ? undefined : this.files?.blobFile(args.digest);
    if (!blob) return false;
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      // A download worker that hashed every byte on the way (reading back what a resumed one had) spares the read.
      if (!hashed || size !== args.size) await this.verifyFile(fh, size, args, state);
      // Read-only and durable before containerd records it, as its own commit leaves a blob.
      await fh.chmod(0o444);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return this.registerVerified(file, blob, args);
  }

  /** Size and SHA-256 of a filled ingest file against the blob's; content that does not verify is discarded. */
  private async verifyFile(fh: FileHandle, size: number, args: WriteArgs, state: WriteState): Promise<void> {
    // One reused buffer: a fresh 1 MiB Buffer per read (a read stream) cost ~4 ms/MiB in GC here.
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let at = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, at);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (size !== args.size || actual !== args.digest) {
      state.discard = true;
      await this.abort(args.ref, args.opts).catch(() => undefined);
      throw new ContentMismatchError(
        args.digest,
        `${state.source?.origin ?? 'download'}: blob ${args.digest} failed verification, discarded: got ${size} bytes with digest ${actual}, expected ${args.size} bytes`,
      );
    }
  }

  /** Link the verified file into the blobs dir and commit it through a shared writer; see commitVerified. */
  private async registerVerified(file: string, blob: string, args: WriteArgs): Promise<boolean> {
    try {
      await linkMakingDir(file, blob);
    } catch (err) {
      // Already there (another namespace holds it, or an earlier attempt linked it): the writer finds it.
      if (!isErrno(err, 'EEXIST')) return false;
    }
    const shared = { ...args, ref: `${args.ref}-verified-${randomBytes(4).toString('hex')}` };
    // Its own state: nothing on this writer says anything about the download's ingest.
    const state: WriteState = { committing: false, discard: false };
    const call = this.ctd.content.duplex('Write', args.opts);
    try {
      if ((await this.stat(call, shared, state)) !== args.size) {
        // Not shared: content GC removed the unrecorded link before the writer looked. Nothing of ours stays.
        call.cancel();
        await this.abort(shared.ref, args.opts).catch(() => undefined);
        return false;
      }
      await this.commit(call, shared, state, 0);
    } catch (err) {
      call.cancel();
      if (!isAlreadyExists(err)) throw err;
    }
    // The download's ingest goes; its data lives on as the committed blob.
    await this.abort(args.ref, args.opts).catch(() => undefined);
    return true;
  }

  /** COMMIT at the blob's size with the expected digest, then read the `unread` WRITE answers and its own. */
  private async commit(call: WriteCall, args: WriteArgs, state: WriteState, unread: number): Promise<void> {
    state.committing = true;
    // The commit carries the final offset: containerd truncates a write whose offset is 0.
    await call.write({ action: WriteAction.COMMIT, ref: args.ref, offset: args.size, total: args.size, expected: args.digest, labels: args.labels ?? {} });
    for (; unread >= 0; unread--) {
      if (!(await call.read())) throw new Error('content write closed before commit');
    }
    call.end();
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
