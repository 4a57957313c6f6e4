// crictl-like pod commands: runp, pods, inspectp, stopp, rmp.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { PodSandboxState, type PodSandboxConfig } from '../gen/runtime.v1.js';
import type { Input } from '../common/proto-registry.js';
import { withClient } from './client-context.js';
import { printTable, age, shortId } from './table.js';

/** A pod config file (JSON or YAML, crictl's shape with snake_case or camelCase keys). */
export function readPodConfig(path: string): Input<PodSandboxConfig> {
  const text = readFileSync(path, 'utf8');
  const raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  return camelize(raw) as Input<PodSandboxConfig>;
}

/** snake_case keys → camelCase (protobufjs field names); map-valued fields keep their keys. */
export function camelize(value: unknown, keepKeys = false): unknown {
  if (Array.isArray(value)) return value.map((v) => camelize(v));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const key = keepKeys ? k : k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    out[key] = camelize(v, ['labels', 'annotations', 'sysctls', 'labelSelector'].includes(key));
  }
  return out;
}

export function registerPodCommands(program: Command): void {
  program
    .command('runp <config>')
    .description('run a pod sandbox from a JSON or YAML PodSandboxConfig')
    .option('-r, --runtime <handler>', 'runtime handler', '')
    .action(async (config: string, o: { runtime: string }) => {
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('RunPodSandbox', { config: readPodConfig(config), runtimeHandler: o.runtime });
        console.log(res.podSandboxId);
      });
    });

  program
    .command('pods')
    .description('list pod sandboxes')
    .option('--id <id>', 'filter by id prefix')
    .option('--state <state>', 'ready or notready')
    .option('-q, --quiet', 'ids only')
    .action(async (o: { id?: string; state?: string; quiet?: boolean }) => {
      await withClient(program, async (cri) => {
        const state = o.state ? { state: o.state.toLowerCase() === 'ready' ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY } : null;
        const res = await cri.runtime.unary('ListPodSandbox', { filter: { id: o.id ?? '', state } });
        if (o.quiet) return res.items.forEach((p) => console.log(p.id));
        printTable(
          ['POD ID', 'CREATED', 'STATE', 'NAME', 'NAMESPACE', 'ATTEMPT', 'RUNTIME'],
          res.items.map((p) => [
            shortId(p.id),
            age(p.createdAt),
            p.state === PodSandboxState.SANDBOX_READY ? 'Ready' : 'NotReady',
            p.metadata?.name ?? '',
            p.metadata?.namespace ?? '',
            String(p.metadata?.attempt ?? 0),
            p.runtimeHandler,
          ]),
        );
      });
    });

  program
    .command('inspectp <id>')
    .description('pod sandbox status (verbose) as JSON')
    .action(async (id: string) => {
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('PodSandboxStatus', { podSandboxId: id, verbose: true });
        const info = res.info.info ? JSON.parse(res.info.info) : {};
        console.log(JSON.stringify({ status: res.status, info }, null, 2));
      });
    });

  for (const [name, method, verb] of [
    ['stopp', 'StopPodSandbox', 'stopped'],
    ['rmp', 'RemovePodSandbox', 'removed'],
  ] as const) {
    program
      .command(`${name} <ids...>`)
      .description(`${verb === 'stopped' ? 'stop' : 'remove'} pod sandboxes`)
      .action(async (ids: string[]) => {
        await withClient(program, async (cri) => {
          for (const id of ids) {
            await cri.runtime.unary(method, { podSandboxId: id });
            console.log(`${verb} ${id}`);
          }
        });
      });
  }
}
