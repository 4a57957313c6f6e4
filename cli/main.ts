#!/usr/bin/env node
// The crisp command: `crisp daemon` runs crispd; the rest are crictl-like clients over CRI.
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

const program = new Command();
program
  .name('crisp')
  .description('crisp: a Kubernetes CRI runtime without pause containers')
  .version(crispVersion(), '--client-version', 'print the client version')
  .option('-e, --endpoint <endpoint>', `CRI endpoint (env CRISP_ENDPOINT)`, process.env.CRISP_ENDPOINT ?? DEFAULT_ENDPOINT);

registerDaemonCommand(program);
registerInfoCommands(program);
registerPodCommands(program);
registerImageCommands(program);
registerContainerCommands(program);
registerPlayCommand(program);
registerStreamCommands(program);

await program.parseAsync(process.argv);
