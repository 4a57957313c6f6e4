// The crisp command tree: `crisp daemon` runs crispd; the rest are crictl-like clients over CRI.
// Built here (not in main.ts) so tests can parse command lines without running anything.
import { Command } from 'commander';
import { crispVersion } from '../common/version.js';
import { DEFAULT_ENDPOINT } from '../cri/client.js';
import { registerDaemonCommand } from './daemon-command.js';
import { registerInfoCommands } from './info-commands.js';
import { registerPodCommands } from './pod-commands.js';
import { registerImageCommands } from './image-commands.js';
import { registerContainerCommands } from './container-commands.js';
import { registerPlayCommand } from './play-command.js';
import { registerStreamCommands } from './stream-commands.js';
import { bashCompletion, zshCompletion } from './completion.js';
import { describeError, endpointOf } from './client-context.js';
import { oneLine } from './one-line.js';

/** Commands that talk to no daemon, so take no -e. */
const LOCAL_COMMANDS = new Set(['daemon', 'default', 'completion']);

function leafCommands(c: Command): Command[] {
  return c.commands.length === 0 ? [c] : c.commands.flatMap(leafCommands);
}

export { oneLine };

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('crisp')
    .description('crisp: a Kubernetes CRI runtime without pause containers')
    .usage('[-e ENDPOINT] COMMAND [options] [args]')
    .version(crispVersion(), '--client-version', 'print the client version')
    .option('-e, --endpoint <endpoint>', `CRI endpoint (env CRISP_ENDPOINT)`, process.env.CRISP_ENDPOINT || DEFAULT_ENDPOINT)
    // Never parsed: rewriteArgs turns it into the `version` command first. Listed for --help.
    .option('-v, --version', 'print the client and runtime versions (as `crisp version`)')
    // Options of a command go before its arguments; `crisp exec ID sh -c …` passes the rest through.
    .enablePositionalOptions()
    .showSuggestionAfterError(true)
    // Commander's own errors (unknown option, missing argument) as one `crisp: …` line too.
    .configureOutput({ outputError: (text, write) => write(`crisp: ${oneLine(text.replace(/^error: /, ''))}\n`) });

  registerDaemonCommand(program);
  registerInfoCommands(program);
  registerPodCommands(program);
  registerImageCommands(program);
  registerContainerCommands(program);
  registerPlayCommand(program);
  registerStreamCommands(program);

  program
    .command('completion <shell>')
    .description('print a shell completion script: bash or zsh (source <(crisp completion bash))')
    .action((shell: string) => {
      if (shell === 'bash') process.stdout.write(bashCompletion(program));
      else if (shell === 'zsh') process.stdout.write(zshCompletion(program));
      else throw new Error(`no completion for shell "${shell}" (want bash or zsh)`);
    });

  // -e after the command name works too (`crisp ps -e unix:///…`), as it did before options became
  // positional; it wins over one given before the command.
  for (const leaf of leafCommands(program)) {
    if (!LOCAL_COMMANDS.has(leaf.name())) leaf.option('-e, --endpoint <endpoint>', 'CRI endpoint (also accepted before the command)');
  }
  program.hook('preAction', (_root, action) => {
    const local = action.opts<{ endpoint?: string }>().endpoint;
    if (action !== program && local !== undefined) program.setOptionValueWithSource('endpoint', local, 'cli');
  });
  return program;
}

/**
 * `crisp --version` / `crisp -v` (after any global -e) is `crisp version`, as the issue asks and as
 * kubectl spells it; `--client-version` prints the client's alone.
 */
export function rewriteArgs(args: string[]): string[] {
  let i = 0;
  while (i < args.length) {
    const a = args[i]!;
    if (a === '-e' || a === '--endpoint') i += 2;
    else if (a.startsWith('--endpoint=') || (a.startsWith('-e') && a.length > 2)) i += 1;
    else break;
  }
  if (args[i] === '--version' || args[i] === '-v') return [...args.slice(0, i), 'version', ...args.slice(i + 1)];
  return args;
}

/** Runs a command line (without node and the script); failures end as one `crisp: …` line, exit 1. */
export async function runCli(args: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(rewriteArgs(args), { from: 'user' });
  } catch (err) {
    console.error(`crisp: ${describeError(err, endpointOf(program))}`);
    process.exitCode = 1;
  }
}
