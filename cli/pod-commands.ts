// crictl-like pod commands: runp, pods, inspectp, stopp, rmp.
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { PodSandboxState, type PodSandbox, type PodSandboxConfig, type PodSandboxStatus } from '../gen/runtime.v1.js';
import type { Input } from '../common/proto-registry.js';
import { forEachId, readInputFile, withClient } from './client-context.js';
import { printTable, printKeyValues, age, shortId } from './table.js';
import { collect, nanosToIso, newestFirst, parseCount, parseInfo, parseLabelSelector, parseOutputFormat, parseRegexFilter, protoJson, renderDocument } from './output.js';

/** A pod config file (JSON or YAML, crictl's shape with snake_case or camelCase keys). */
export function readPodConfig(path: string): Input<PodSandboxConfig> {
  const text = readInputFile(path, 'pod config');
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new Error(`pod config ${path}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
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

/** `pods --state`: ready / notready (any case, or the CRI enum names). */
export function parsePodState(value: string): PodSandboxState {
  const v = value.toLowerCase().replace(/^sandbox_/, '').replace(/[-_ ]/g, '');
  if (v === 'ready') return PodSandboxState.SANDBOX_READY;
  if (v === 'notready') return PodSandboxState.SANDBOX_NOTREADY;
  throw new Error(`bad --state "${value}" (want ready or notready)`);
}

export interface PodsOptions {
  id?: string;
  name?: string;
  namespace?: string;
  label: string[];
  state?: string;
  latest?: boolean;
  last?: string;
  quiet?: boolean;
  output?: string;
}

/** The CRI filter and the client-side matcher of `crisp pods`. */
export function podsQuery(o: PodsOptions): {
  filter: { id: string; state: { state: PodSandboxState } | null; labelSelector: Record<string, string> };
  match: (p: PodSandbox) => boolean;
  last: { latest?: boolean; last?: number };
} {
  const name = parseRegexFilter('--name', o.name);
  const namespace = parseRegexFilter('--namespace', o.namespace);
  const last = parseCount('--last', o.last);
  return {
    filter: { id: o.id ?? '', state: o.state !== undefined ? { state: parsePodState(o.state) } : null, labelSelector: parseLabelSelector(o.label) },
    match: (p) => (!name || name.test(p.metadata?.name ?? '')) && (!namespace || namespace.test(p.metadata?.namespace ?? '')),
    last: { latest: o.latest, ...(last !== undefined ? { last } : {}) },
  };
}

const podState = (s: PodSandboxState) => (s === PodSandboxState.SANDBOX_READY ? 'Ready' : 'NotReady');

export function podInspectTable(s: PodSandboxStatus): string[][] {
  return [
    ['ID', s.id],
    ['Name', s.metadata?.name ?? ''],
    ['Namespace', s.metadata?.namespace ?? ''],
    ['UID', s.metadata?.uid ?? ''],
    ['Attempt', String(s.metadata?.attempt ?? 0)],
    ['State', podState(s.state)],
    ['Created', nanosToIso(s.createdAt)],
    ['IP', [s.network?.ip ?? '', ...(s.network?.additionalIps ?? []).map((i) => i.ip)].filter(Boolean).join(', ')],
    ['Runtime', s.runtimeHandler],
  ];
}

export function registerPodCommands(program: Command): void {
  program
    .command('runp <config>')
    .description('run a pod sandbox from a JSON or YAML PodSandboxConfig')
    .option('-r, --runtime <handler>', 'runtime handler', '')
    .action(async (config: string, o: { runtime: string }) => {
      const podConfig = readPodConfig(config);
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('RunPodSandbox', { config: podConfig, runtimeHandler: o.runtime });
        console.log(res.podSandboxId);
      });
    });

  program
    .command('pods')
    .description('list pod sandboxes')
    .option('--id <id>', 'pod id or id prefix')
    .option('--name <regex>', 'pod name matches this regular expression')
    .option('--namespace <regex>', 'pod namespace matches this regular expression')
    .option('--label <key=value>', 'pod has this label (repeatable)', collect, [])
    .option('-s, --state <state>', 'ready or notready')
    .option('-l, --latest', 'only the newest pod')
    .option('-n, --last <n>', 'only the n newest pods')
    .option('-q, --quiet', 'ids only')
    .option('-o, --output <format>', 'json, yaml or table', 'table')
    .action(async (o: PodsOptions) => {
      const q = podsQuery(o);
      const format = parseOutputFormat(o.output, 'table');
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('ListPodSandbox', { filter: q.filter });
        const pods = newestFirst(res.items.filter(q.match), q.last);
        if (o.quiet) return pods.forEach((p) => console.log(p.id));
        if (format !== 'table') {
          process.stdout.write(renderDocument(format, { items: pods.map((p) => protoJson('runtime.v1.PodSandbox', p)) }));
          return;
        }
        printTable(
          ['POD ID', 'CREATED', 'STATE', 'NAME', 'NAMESPACE', 'ATTEMPT', 'RUNTIME'],
          pods.map((p) => [shortId(p.id), age(p.createdAt), podState(p.state), p.metadata?.name ?? '', p.metadata?.namespace ?? '', String(p.metadata?.attempt ?? 0), p.runtimeHandler]),
        );
      });
    });

  program
    .command('inspectp <ids...>')
    .description('pod sandbox status with verbose info (JSON by default)')
    .option('-o, --output <format>', 'json, yaml or table', 'json')
    .action(async (ids: string[], o: { output: string }) => {
      const format = parseOutputFormat(o.output, 'json');
      await withClient(program, async (cri) => {
        await forEachId(program, ids, 'pod sandbox', async (id) => {
          const res = await cri.runtime.unary('PodSandboxStatus', { podSandboxId: id, verbose: format !== 'table' });
          if (format === 'table') return printKeyValues(podInspectTable(res.status!));
          const status = protoJson('runtime.v1.PodSandboxStatus', res.status);
          status.createdAt = nanosToIso(res.status!.createdAt);
          process.stdout.write(renderDocument(format, { status, info: parseInfo(res.info) }));
        });
      });
    });

  for (const [name, method, verb, description] of [
    ['stopp', 'StopPodSandbox', 'Stopped', 'stop pod sandboxes (their containers are stopped)'],
    ['rmp', 'RemovePodSandbox', 'Removed', 'remove pod sandboxes (ready ones are stopped first)'],
  ] as const) {
    program
      .command(`${name} <ids...>`)
      .description(description)
      .action(async (ids: string[]) => {
        await withClient(program, async (cri) => {
          await forEachId(program, ids, 'pod sandbox', async (id) => {
            // Stop/Remove of an unknown pod succeed (CRI wants that); the person typing learns here.
            const st = (await cri.runtime.unary('PodSandboxStatus', { podSandboxId: id })).status!;
            await cri.runtime.unary(method, { podSandboxId: st.id });
            console.log(`${verb} sandbox ${id}`);
          });
        });
      });
  }
}
