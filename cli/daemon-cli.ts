// `crisp daemon` on its own: a command tree with only the daemon command, so crispd never loads the
// client commands' modules (tables, YAML, the streaming client, play) it does not use.
import { Command } from 'commander';
import { registerDaemonCommand } from './daemon-command.js';
import { oneLine } from './one-line.js';
import { errorMessage } from '../common/errors.js';

/** Runs `crisp daemon …` (args start with "daemon"); failures end as one `crisp: …` line, exit 1. */
export async function runDaemonCli(args: string[]): Promise<void> {
  const program = new Command()
    .name('crisp')
    .configureOutput({ outputError: (text, write) => write(`crisp: ${oneLine(text.replace(/^error: /, ''))}\n`) });
  registerDaemonCommand(program);
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (err) {
    console.error(`crisp: ${errorMessage(err)}`);
    process.exitCode = 1;
  }
}
