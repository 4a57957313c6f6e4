// Finding the data file of a containerd ingest from its client ref: only an exact "<namespace>/<seq>/<ref>"
// match counts, and anything ambiguous or missing answers undefined (the caller then uses the content API).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IngestFiles } from '../../backend/images/ingest-files.js';

const root = mkdtempSync(join(tmpdir(), 'crisp-ingest-files-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** An ingest directory as containerd's local store lays it out; returns its data file. */
function ingest(contentRoot: string, backendRef: string): string {
  const dir = join(contentRoot, 'ingest', createHash('sha256').update(backendRef).digest('hex'));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ref'), backendRef);
  writeFileSync(join(dir, 'data'), '');
  return join(dir, 'data');
}

describe('IngestFiles.dataFile', () => {
  test('finds the ingest of the ref in the client namespace', async () => {
    const content = join(root, 'one');
    const want = ingest(content, 'k8s.io/7/crisp-blob-sha256-aa');
    ingest(content, 'k8s.io/8/crisp-blob-sha256-aab');
    ingest(content, 'other/9/crisp-blob-sha256-aa');
    ingest(content, 'k8s.io/x/crisp-blob-sha256-aa');
    assert.equal(await new IngestFiles(content, 'k8s.io').dataFile('crisp-blob-sha256-aa'), want);
  });

  test('a ref with slashes matches only whole', async () => {
    const content = join(root, 'slashes');
    const want = ingest(content, 'k8s.io/3/a/b');
    ingest(content, 'k8s.io/4/x/a/b');
    assert.equal(await new IngestFiles(content, 'k8s.io').dataFile('a/b'), want);
  });

  test('no match, two matches or no ingest directory: undefined', async () => {
    const content = join(root, 'ambiguous');
    ingest(content, 'k8s.io/1/ref-a');
    ingest(content, 'k8s.io/2/ref-a');
    const files = new IngestFiles(content, 'k8s.io');
    assert.equal(await files.dataFile('ref-a'), undefined, 'two candidates');
    assert.equal(await files.dataFile('ref-b'), undefined, 'none');
    assert.equal(await new IngestFiles(join(root, 'missing'), 'k8s.io').dataFile('ref-a'), undefined);
  });

  test('an entry without a ref file is skipped', async () => {
    const content = join(root, 'partial');
    mkdirSync(join(content, 'ingest', 'half-made'), { recursive: true });
    const want = ingest(content, 'k8s.io/5/ref-c');
    assert.equal(await new IngestFiles(content, 'k8s.io').dataFile('ref-c'), want);
  });
});
