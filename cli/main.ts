#!/usr/bin/env node
// The crisp command: `crisp daemon` runs crispd; the rest are crictl-like clients over CRI.
const args = process.argv.slice(2);
if (args[0] === 'daemon') {
  // crispd runs the daemon command alone, bundled (scripts/bundle-daemon.mjs, part of `npm run build`):
  // the client commands' modules and one file per module would only take memory. A variable, so tsc does
  // not look for the bundle, which exists only after the build's last step.
  const bundled = '../crispd/daemon-cli.js';
  const { runDaemonCli } = (await import(bundled)) as typeof import('./daemon-cli.js');
  await runDaemonCli(args);
} else {
  const { runCli } = await import('./program.js');
  await runCli(args);
}
