// Runs the compiled tests of one suite (unit or e2e) with node's test runner. Node 20 has no glob
// support in --test, so the files are listed here. e2e files run one at a time unless their name says
// they may share the machine (their resources are unique per run anyway; serial keeps CI predictable).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const suite = process.argv[2];
if (suite !== 'unit' && suite !== 'e2e') {
  console.error('usage: run-tests.mjs unit|e2e [filter]');
  process.exit(2);
}
const filter = process.argv[3];
const dir = join('dist', 'test', suite);
function list(d) {
  return readdirSync(d).flatMap((n) => {
    const p = join(d, n);
    return statSync(p).isDirectory() ? list(p) : n.endsWith('.test.js') ? [p] : [];
  });
}
const files = list(dir).filter((f) => !filter || f.includes(filter)).sort();
if (files.length === 0) {
  console.error(`no ${suite} test files under ${dir}`);
  process.exit(1);
}
const concurrency = suite === 'unit' ? '4' : (process.env.CRISP_E2E_CONCURRENCY ?? '2');
const args = ['--test', `--test-concurrency=${concurrency}`, '--enable-source-maps', ...files];
const res = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(res.status ?? 1);
