// What a warm start keeps of the shim's answer: a containerd 1.x shim prints its socket address and
// writes `address` itself; a 2.x shim prints its bootstrap parameters as JSON and writes no file, so
// crisp writes `address` (the shim's Shutdown reads it to remove its socket, and retire() finds the
// shim by it). The shim is a script standing in for the `start` command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { WarmShims } from '../../backend/containerd/warm-shims.js';

function shimPrinting(root: string, output: string): string {
  const path = join(root, 'fake-shim');
  writeFileSync(path, `#!/bin/sh\nprintf '%s' '${output}'\n`);
  chmodSync(path, 0o755);
  return path;
}

async function warmOnce(output: string): Promise<{ addressFile: string | undefined; warnings: string[] }> {
  const root = mkdtempSync('/tmp/crisp-unit-warmaddr-');
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const shims = new WarmShims({
    dir: join(root, 'shims'),
    shimBinary: shimPrinting(root, output),
    containerdAddress: join(root, 'containerd.sock'),
    ttrpcAddress: join(root, 'containerd.sock.ttrpc'),
    containerdBinary: '/usr/bin/containerd',
    namespace: 'k8s.io',
    log,
  });
  try {
    shims.warm('pod1');
    await shims.ready('pod1');
    const file = join(root, 'shims', 'pod1', 'address');
    return { addressFile: existsSync(file) ? readFileSync(file, 'utf8') : undefined, warnings };
  } finally {
    await shims.close();
    rmSync(root, { recursive: true, force: true });
  }
}

test("a 2.x shim's JSON answer: crisp writes its address into the shim's directory", async () => {
  const r = await warmOnce('{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}');
  assert.equal(r.addressFile, 'unix:///run/containerd/s/abc');
  assert.deepEqual(r.warnings, []);
});

test('a 1.x shim prints a plain address: crisp writes nothing (the shim does)', async () => {
  const r = await warmOnce('unix:///run/containerd/s/abc');
  assert.equal(r.addressFile, undefined);
  assert.deepEqual(r.warnings, []);
});

test('a JSON answer without an address is a failed warm start (logged, not thrown)', async () => {
  const r = await warmOnce('{"version":3,"protocol":"ttrpc"}');
  assert.equal(r.addressFile, undefined);
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0]!, /printed no address/);
});
