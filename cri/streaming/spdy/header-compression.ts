// SPDY/3 header block compression: one zlib stream per direction for the whole session, primed with
// the SPDY/3 dictionary, each header block ending on a sync flush so the peer can inflate it at once.
// Node's zlib streams are asynchronous, so each call is queued behind the previous one: blocks must go
// through the shared stream in frame order.
import { constants, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';
import { SPDY3_DICTIONARY } from './dictionary.js';
import { decodeHeaderBlock, encodeHeaderBlock, type HeaderMap } from './frames.js';

type ZStream = Deflate | Inflate;

/** Runs buffers through one long-lived zlib stream, returning each one's output after a sync flush. */
class FlushingPipe {
  private chunks: Buffer[] = [];
  private tail: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;

  constructor(private readonly z: ZStream) {
    z.on('data', (c: Buffer) => this.chunks.push(c));
    z.on('error', (err: Error) => {
      this.failure = err;
    });
  }

  run(input: Buffer): Promise<Buffer> {
    const next = this.tail.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          if (this.failure) return reject(this.failure);
          this.chunks = [];
          const onError = (err: Error) => reject(err);
          this.z.once('error', onError);
          this.z.write(input);
          this.z.flush(constants.Z_SYNC_FLUSH, () => {
            this.z.off('error', onError);
            if (this.failure) return reject(this.failure);
            const out = Buffer.concat(this.chunks);
            this.chunks = [];
            resolve(out);
          });
        }),
    );
    this.tail = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.z.close();
  }
}

export class HeaderCompressor {
  private readonly pipe = new FlushingPipe(createDeflate({ dictionary: SPDY3_DICTIONARY }));

  /** The compressed header block for `headers` (names lowercased). */
  compress(headers: HeaderMap): Promise<Buffer> {
    return this.pipe.run(encodeHeaderBlock(headers));
  }

  close(): void {
    this.pipe.close();
  }
}

export class HeaderDecompressor {
  private readonly pipe = new FlushingPipe(createInflate({ dictionary: SPDY3_DICTIONARY }));

  /** Inflates one received header block (which continues the session's zlib stream) and parses it. */
  async decompress(block: Buffer, streamId = 0): Promise<HeaderMap> {
    return decodeHeaderBlock(await this.pipe.run(block), streamId);
  }

  close(): void {
    this.pipe.close();
  }
}
