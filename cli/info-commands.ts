// `crisp version`, `crisp info`, `crisp config default`: read-only views over CRI and configuration.
import type { Command } from 'commander';
import { CriClient } from '../cri/client.js';
import { defaultConfigToml } from '../daemon/config.js';
import { crispVersion } from '../common/version.js';
import { withClient } from './client-context.js';

export function registerInfoCommands(program: Command): void {
  program
    .command('version')
    .description('print the client version and the runtime version reported over CRI')
    .action(async () => {
      console.log(`Client:  crisp ${crispVersion()}`);
      await withClient(program, async (cri: CriClient) => {
        const v = await cri.runtime.unary('Version', { version: 'v1' });
        console.log(`Runtime: ${v.runtimeName} ${v.runtimeVersion} (CRI API ${v.runtimeApiVersion})`);
      });
    });

  program
    .command('info')
    .description('print the runtime Version and Status (conditions, handlers, config) as JSON')
    .action(async () => {
      await withClient(program, async (cri: CriClient) => {
        const [version, status] = await Promise.all([
          cri.runtime.unary('Version', { version: 'v1' }),
          cri.runtime.unary('Status', { verbose: true }),
        ]);
        const info: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(status.info)) {
          try {
            info[k] = JSON.parse(v);
          } catch {
            info[k] = v;
          }
        }
        console.log(
          JSON.stringify(
            {
              version,
              status: status.status,
              runtimeHandlers: status.runtimeHandlers,
              features: status.features,
              info,
            },
            null,
            2,
          ),
        );
      });
    });

  const config = program.command('config').description('configuration helpers');
  config
    .command('default')
    .description('print the default configuration file, every key documented')
    .action(() => {
      process.stdout.write(defaultConfigToml());
    });
}
