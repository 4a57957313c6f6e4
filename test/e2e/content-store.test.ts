// ContentStore.write against a real containerd, both ways the bytes can travel: straight into the ingest's
// data file (the embedded containerd, IngestFiles) and over the content API's Write stream. Each way: a
// blob arriving in odd-sized pieces commits intact, a broken download keeps its bytes and resumes from
// them, and wrong or overlong content fails verification and leaves no ingest behind.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TestCrispd, uniqueId } from './lib/crispd.js';
import { ContainerdClient } from '../../backend/containerd/client.js';
import { crispdWithLeasedClient } from './lib/leased-client.js';
import { ContentStore, type BlobSource } from '../../backend/images/content-store.js';
import { IngestFiles } from '../../backend/images/ingest-files.js';
import { CrispError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';

const MiB = 1024 * 1024;

/** IngestFiles that records what it found, to show the file path was really taken. */
class RecordingIngestFiles extends IngestFiles {
  readonly found: (string | undefined)[] = [];
  override async dataFile(ref: string): Promise<string | undefined> {
    const file = await super.dataFile(ref);
    this.found.push(file);
    return file;
  }
}

/** `data` from `offset` in pieces of 1..48 KiB; `cutAt` ends the stream with an error at that byte. */
function source(data: Buffer, offset: number, cutAt?: number): BlobSource {
  async function* pieces() {
    for (let at = offset; at < data.length; ) {
      if (cutAt !== undefined && at >= cutAt) throw new Error('connection reset');
      const n = Math.min(1 + Math.floor(Math.random() * 48 * 1024), data.length - at, cutAt !== undefined ? cutAt - at : Infinity);
      yield data.subarray(at, at + n);
      at += n;
    }
  }
  return { stream: Readable.from(pieces()), origin: 'test' };
}

const isMismatch = (err: unknown): err is CrispError => err instanceof CrispError && err.kind === 'FAILED_PRECONDITION';
const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('content store writes', () => {
  const d = new TestCrispd();
  const lease = `crisp-e2e-content-${uniqueId()}`;
  const containerd = crispdWithLeasedClient(d, lease);

  const read = (store: ContentStore, digest: string) => store.read(digest, ContainerdClient.withLease(lease));

  // 'ingest file': crisp writes the ingest's data file, verifies it and commits it without containerd
  // reading it; 'ingest file, containerd verifies': the same file, committed through containerd's re-hash.
  for (const mode of ['ingest file', 'ingest file, containerd verifies', 'content API'] as const) {
    const make = () => {
      const files = mode !== 'content API' ? new RecordingIngestFiles(join(d.root, 'containerd', 'io.containerd.content.v1.content'), 'k8s.io') : undefined;
      return { store: new ContentStore(containerd.client(), files, { verifyLocally: mode === 'ingest file' }), files };
    };

    test(`${mode}: a blob in odd pieces commits intact with its labels`, async () => {
      const { store, files } = make();
      const data = randomBytes(3 * MiB + 12345);
      const digest = digestOf(data);
      let moved = 0;
      const verifiedBy = await store.write({
        ref: `e2e-whole-${uniqueId()}`,
        digest,
        size: data.length,
        open: async (offset) => source(data, offset),
        labels: { 'crisp.e2e/mode': mode },
        opts: ContainerdClient.withLease(lease),
        onBytes: (n) => (moved += n),
      });
      assert.equal(moved, data.length, 'progress counts every byte');
      assert.ok((await read(store, digest)).equals(data), 'the committed blob is the data');
      assert.equal((await store.info(digest))?.labels['crisp.e2e/mode'], mode);
      if (files) assert.ok(files.found.length === 1 && files.found[0]?.endsWith('/data'), `the ingest file was written: ${files.found.join(', ')}`);
      assert.equal(verifiedBy, mode === 'ingest file' ? 'crisp' : 'containerd', 'committed without containerd reading it only when crisp verified it');
      if (mode === 'ingest file') {
        const ingests = (await containerd.client().content.unary('ListStatuses', { filters: [] })).statuses.map((st) => st.ref);
        assert.deepEqual(ingests.filter((r) => r.startsWith('e2e-whole-')), [], 'no ingest of the write is left (the download\'s nor the verified commit\'s)');
      }
    });

    test(`${mode}: progress counts bytes as they arrive, before a whole message or batch is written`, async () => {
      const { store } = make();
      const piece = 64 * 1024;
      const data = randomBytes(8 * piece);
      let moved = 0;
      const link = new PassThrough();
      const writing = store.write({
        ref: `e2e-progress-${uniqueId()}`,
        digest: digestOf(data),
        size: data.length,
        open: async () => ({ stream: link, origin: 'test' }),
        opts: ContainerdClient.withLease(lease),
        onBytes: (n) => (moved += n),
      });
      // A slow link, one piece at a time: the stalled-download timer watches these counts.
      for (let at = 0; at < data.length; at += piece) {
        link.write(data.subarray(at, at + piece));
        const deadline = Date.now() + 5000;
        while (moved < at + piece && Date.now() < deadline) await sleep(5);
        assert.equal(moved, at + piece, `piece ${at / piece} counted before the next one arrives`);
      }
      link.end();
      await writing;
      assert.ok((await read(store, digestOf(data))).equals(data));
    });

    test(`${mode}: a broken download keeps its bytes; the next write resumes from them`, async () => {
      const { store } = make();
      const data = randomBytes(4 * MiB);
      const digest = digestOf(data);
      const ref = `e2e-resume-${uniqueId()}`;
      const cutAt = 2 * MiB + 777;
      const write = (cut?: number, offsets?: number[]) =>
        store.write({
          ref,
          digest,
          size: data.length,
          open: async (offset) => {
            offsets?.push(offset);
            return source(data, offset, cut);
          },
          opts: ContainerdClient.withLease(lease),
        });
      await assert.rejects(write(cutAt), (err: unknown) => err instanceof CrispError && err.kind === 'UNAVAILABLE' && /broke off/.test(err.message));
      const kept = await store.ingestOffset(ref);
      assert.equal(kept, cutAt, 'every byte that arrived is kept');
      const offsets: number[] = [];
      await write(undefined, offsets);
      assert.deepEqual(offsets, [kept], 'the retry asks only for the missing bytes');
      assert.ok((await read(store, digest)).equals(data));
      assert.equal(await store.ingestOffset(ref), undefined, 'the ingest is committed');
    });

    test(`${mode}: wrong or overlong content fails verification and leaves nothing`, async () => {
      const { store } = make();
      const data = randomBytes(2 * MiB);
      const digest = digestOf(data);
      const corrupt = Buffer.from(data);
      corrupt[MiB + 5] = corrupt[MiB + 5]! ^ 0xff;
      const ref = `e2e-bad-${uniqueId()}`;
      const write = (bytes: Buffer, size: number) =>
        store.write({ ref, digest, size, open: async (offset) => source(bytes, offset), opts: ContainerdClient.withLease(lease) });
      await assert.rejects(write(corrupt, data.length), (err: unknown) => isMismatch(err) && /failed verification/.test(err.message));
      assert.equal(await store.ingestOffset(ref), undefined, 'the corrupted ingest is discarded');
      assert.equal(await store.info(digest), undefined, 'nothing committed');
      await assert.rejects(write(Buffer.concat([data, Buffer.from('extra')]), data.length), (err: unknown) => isMismatch(err) && /more data/.test(err.message));
      assert.equal(await store.ingestOffset(ref), undefined, 'the overlong ingest is discarded');
      assert.equal(await store.info(digest), undefined);
    });
  }
});
