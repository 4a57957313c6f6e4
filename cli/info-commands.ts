// `crisp version`, `crisp info`, `crisp config default`: read-only views over CRI and configuration.
import type { Command } from 'commander';
import { CriClient } from '../cri/client.js';
import { crispVersion } from '../common/version.js';
import { withClient } from './client-context.js';
import { printTable } from './table.js';
import type { NriPluginInfo } from '../nri/host/index.js';

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

  program
    .command('nri')
    .description('NRI host')
    .command('plugins')
    .description('connected NRI plugins: index, events, health')
    .action(async () => {
      await withClient(program, async (cri: CriClient) => {
        const status = await cri.runtime.unary('Status', { verbose: true });
        const info = JSON.parse(status.info.config ?? '{}') as { nri?: { plugins: NriPluginInfo[] } };
        if (!info.nri) throw new Error('crispd runs without NRI (nri_enabled = false)');
        printTable(
          ['INDEX', 'NAME', 'KIND', 'HEALTH', 'EVENTS', 'FAILURES', 'CONNECTED'],
          info.nri.plugins.map((p) => [p.index, p.name, p.required ? `${p.kind},required` : p.kind, p.health, p.events.join(','), String(p.failures), p.connectedAt ?? '-']),
        );
      });
    });

  const config = program.command('config').description('configuration helpers');
  config
    .command('default')
    .description('print the default configuration file, every key documented')
    .action(async () => {
      const { defaultConfigToml } = await import('../daemon/config.js');
      process.stdout.write(defaultConfigToml());
    });
}
