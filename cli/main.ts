#!/usr/bin/env node
// The crisp command: `crisp daemon` runs crispd; the rest are crictl-like clients over CRI.
const args = process.argv.slice(2);
if (args[0] === 'daemon') {
  // crispd loads the daemon command alone: the client commands' modules would only take memory.
  const { runDaemonCli } = await import('./daemon-cli.js');
  await runDaemonCli(args);
} else {
  const { runCli } = await import('./program.js');
  await runCli(args);
}
