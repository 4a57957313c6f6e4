// Bundles what `crisp daemon` runs into dist/crispd/ (part of `npm run build`, after tsc): one minified ES
// module graph of crisp and its packages (split into chunks where the daemon imports lazily) instead of
// ~400 files, and the pull worker beside it. Fewer, smaller modules are less heap (V8 keeps every
// module's source text and records): an idle crispd uses 3–4 MiB less RSS (bench/README.md, "Where the
// memory goes"). The CLI's client commands and the unit tests keep running from dist/ as tsc wrote it.
// Paths the daemon resolves from its own module stay right: dist/crispd/ is as deep in the tree as
// dist/<folder>/ (package.json two levels up, native/build/ beside dist/), and the pull worker is
// dist/crispd/blob-fetch-worker.js next to the chunk that starts it.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(repo, 'dist', 'crispd');

rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: [join(repo, 'dist/cli/daemon-cli.js'), join(repo, 'dist/backend/images/blob-fetch-worker.js')],
  outdir: out,
  entryNames: '[name]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: true,
  // For a crash's stack: node --enable-source-maps maps it back (the package ships no maps).
  sourcemap: true,
  // Packages written as CommonJS call require() for node's own modules; an ES module has none.
  banner: { js: "import { createRequire as __crispRequire } from 'node:module'; const require = __crispRequire(import.meta.url);" },
  logLevel: 'warning',
});
