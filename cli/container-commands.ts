// crictl-like container commands: create, start, stop, rm, ps, inspect, logs [-f], exec (sync, or
// streaming with -i/-t), stats.
import { statSync, openSync, readSync, closeSync } from 'node:fs';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { ContainerState, type Container, type ContainerConfig, type ContainerStatus } from '../gen/runtime.v1.js';
import type { Input } from '../common/proto-registry.js';
import { sleep } from '../common/time.js';
import { forEachId, readInputFile, withClient } from './client-context.js';
import { camelize, readPodConfig } from './pod-commands.js';
import { printTable, printKeyValues, age, shortId, humanBytes } from './table.js';
import { collect, nanosToIso, newestFirst, parseCount, parseInfo, parseLabelSelector, parseOutputFormat, parseRegexFilter, protoJson, renderDocument, type OutputFormat } from './output.js';
import { CriLogParser, parseSince, renderEntries, selectEntries, type LogViewOptions } from './log-view.js';

export const STATE_NAMES: Record<number, string> = {
  [ContainerState.CONTAINER_CREATED]: 'Created',
  [ContainerState.CONTAINER_RUNNING]: 'Running',
  [ContainerState.CONTAINER_EXITED]: 'Exited',
  [ContainerState.CONTAINER_UNKNOWN]: 'Unknown',
};

/** `ps --state`: crictl's names (any case), or the CRI enum names. */
export function parseContainerState(value: string): ContainerState {
  const v = value.toLowerCase().replace(/^container_/, '');
  const states: Record<string, ContainerState> = {
    created: ContainerState.CONTAINER_CREATED,
    running: ContainerState.CONTAINER_RUNNING,
    exited: ContainerState.CONTAINER_EXITED,
    unknown: ContainerState.CONTAINER_UNKNOWN,
  };
  const s = states[v];
  if (s === undefined) throw new Error(`bad --state "${value}" (want created, running, exited or unknown)`);
  return s;
}

function readContainerConfig(path: string): Input<ContainerConfig> {
  const text = readInputFile(path, 'container config');
  let parsed: unknown;
  try {
    parsed = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new Error(`container config ${path}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  const raw = camelize(parsed) as { envs?: unknown };
  // Env values are bytes on the wire; a config file writes them as text, as crictl's does.
  if (Array.isArray(raw.envs)) {
    raw.envs = raw.envs.map((e: { key?: unknown; value?: unknown }) => ({ key: String(e.key ?? ''), value: Buffer.from(String(e.value ?? '')) }));
  }
  return raw as Input<ContainerConfig>;
}

export interface PsOptions {
  all?: boolean;
  pod?: string;
  quiet?: boolean;
  name?: string;
  label: string[];
  state?: string;
  latest?: boolean;
  last?: string;
  output?: string;
}

/** The CRI filter and the client-side rest (name regex, latest/last) of `crisp ps`. */
export function psQuery(o: PsOptions): {
  filter: { podSandboxId: string; state: { state: ContainerState } | null; labelSelector: Record<string, string> };
  name: RegExp | undefined;
  last: { latest?: boolean; last?: number };
} {
  // crictl: an explicit --state wins; otherwise running only unless -a.
  const state = o.state !== undefined ? { state: parseContainerState(o.state) } : o.all ? null : { state: ContainerState.CONTAINER_RUNNING };
  const last = parseCount('--last', o.last);
  return {
    filter: { podSandboxId: o.pod ?? '', state, labelSelector: parseLabelSelector(o.label) },
    name: parseRegexFilter('--name', o.name),
    last: { latest: o.latest, ...(last !== undefined ? { last } : {}) },
  };
}

/** crictl's inspect shape: the status with readable times, and the verbose info parsed. */
export function containerInspectDoc(status: ContainerStatus, info: Record<string, string>): Record<string, unknown> {
  const st = protoJson('runtime.v1.ContainerStatus', status);
  st.createdAt = nanosToIso(status.createdAt);
  st.startedAt = nanosToIso(status.startedAt);
  st.finishedAt = nanosToIso(status.finishedAt);
  return { status: st, info: parseInfo(info) };
}

/** `inspect -o table`: the fields a person looks for, one per line. */
export function containerInspectTable(s: ContainerStatus): string[][] {
  return [
    ['ID', s.id],
    ['Name', s.metadata?.name ?? ''],
    ['Attempt', String(s.metadata?.attempt ?? 0)],
    ['State', STATE_NAMES[s.state] ?? '?'],
    ['Image', s.image?.image ?? ''],
    ['Image ref', s.imageRef],
    ['Created', nanosToIso(s.createdAt)],
    ['Started', nanosToIso(s.startedAt)],
    ['Finished', nanosToIso(s.finishedAt)],
    ['Exit code', s.state === ContainerState.CONTAINER_EXITED ? String(s.exitCode) : ''],
    ['Reason', s.reason],
    ['Message', s.message],
    ['Log path', s.logPath],
  ];
}

function psRow(c: Container, podNames: Map<string, string>): string[] {
  return [
    shortId(c.id),
    c.image?.image ?? '',
    age(c.createdAt),
    STATE_NAMES[c.state] ?? '?',
    c.metadata?.name ?? '',
    String(c.metadata?.attempt ?? 0),
    shortId(c.podSandboxId),
    podNames.get(c.podSandboxId) ?? '',
  ];
}

export function registerContainerCommands(program: Command): void {
  program
    .command('create <pod-id> <container-config> [pod-config]')
    .description('create a container in a pod from a JSON or YAML ContainerConfig')
    .action(async (podId: string, config: string, podConfig?: string) => {
      const containerConfig = readContainerConfig(config);
      const sandboxConfig = podConfig ? readPodConfig(podConfig) : null;
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('CreateContainer', { podSandboxId: podId, config: containerConfig, sandboxConfig });
        console.log(res.containerId);
      });
    });

  program
    .command('start <ids...>')
    .description('start created containers')
    .action(async (ids: string[]) => {
      await withClient(program, async (cri) => {
        await forEachId(program, ids, 'container', async (id) => {
          await cri.runtime.unary('StartContainer', { containerId: id });
          console.log(id);
        });
      });
    });

  program
    .command('stop <ids...>')
    .description('stop containers')
    .option('-t, --timeout <seconds>', 'grace period before SIGKILL', '10')
    .action(async (ids: string[], o: { timeout: string }) => {
      const timeout = parseCount('--timeout', o.timeout)!;
      await withClient(program, async (cri) => {
        await forEachId(program, ids, 'container', async (id) => {
          // StopContainer of an unknown id succeeds (CRI wants that); the person typing learns here.
          const st = (await cri.runtime.unary('ContainerStatus', { containerId: id })).status!;
          await cri.runtime.unary('StopContainer', { containerId: st.id, timeout });
          console.log(id);
        });
      });
    });

  program
    .command('rm <ids...>')
    .description('remove containers (running ones are killed)')
    .option('-f, --force', 'accepted for crictl compatibility: running containers are always stopped first')
    .action(async (ids: string[]) => {
      await withClient(program, async (cri) => {
        await forEachId(program, ids, 'container', async (id) => {
          const st = (await cri.runtime.unary('ContainerStatus', { containerId: id })).status!;
          await cri.runtime.unary('RemoveContainer', { containerId: st.id });
          console.log(id);
        });
      });
    });

  program
    .command('ps')
    .description('list containers (running ones unless -a or --state)')
    .option('-a, --all', 'include created and exited containers')
    .option('-p, --pod <id>', 'only this pod (id or unique id prefix)')
    .option('--name <regex>', 'container name matches this regular expression')
    .option('--label <key=value>', 'container has this label (repeatable)', collect, [])
    .option('-s, --state <state>', 'created, running, exited or unknown')
    .option('-l, --latest', 'only the newest container')
    .option('-n, --last <n>', 'only the n newest containers')
    .option('-q, --quiet', 'ids only')
    .option('-o, --output <format>', 'json, yaml or table', 'table')
    .action(async (o: PsOptions) => {
      const q = psQuery(o);
      const format: OutputFormat = parseOutputFormat(o.output, 'table');
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('ListContainers', { filter: q.filter });
        const containers = newestFirst(
          res.containers.filter((c) => !q.name || q.name.test(c.metadata?.name ?? '')),
          q.last,
        );
        if (o.quiet) return containers.forEach((c) => console.log(c.id));
        if (format !== 'table') {
          process.stdout.write(renderDocument(format, { containers: containers.map((c) => protoJson('runtime.v1.Container', c)) }));
          return;
        }
        const pods = await cri.runtime.unary('ListPodSandbox', {});
        const podNames = new Map(pods.items.map((p) => [p.id, p.metadata?.name ?? '']));
        printTable(
          ['CONTAINER', 'IMAGE', 'CREATED', 'STATE', 'NAME', 'ATTEMPT', 'POD ID', 'POD'],
          containers.map((c) => psRow(c, podNames)),
        );
      });
    });

  program
    .command('inspect <ids...>')
    .description('container status with verbose info (JSON by default)')
    .option('-o, --output <format>', 'json, yaml or table', 'json')
    .action(async (ids: string[], o: { output: string }) => {
      const format = parseOutputFormat(o.output, 'json');
      await withClient(program, async (cri) => {
        await forEachId(program, ids, 'container', async (id) => {
          const res = await cri.runtime.unary('ContainerStatus', { containerId: id, verbose: format !== 'table' });
          if (format === 'table') return printKeyValues(containerInspectTable(res.status!));
          process.stdout.write(renderDocument(format, containerInspectDoc(res.status!, res.info)));
        });
      });
    });

  program
    .command('logs <id>')
    .description("print a container's log (read from the node's log file)")
    .option('-f, --follow', 'keep printing new output until the container exits')
    .option('--tail <n>', 'only the last n lines (all by default)')
    .option('--since <time>', 'only lines since an RFC 3339 time or a duration ago (42m, 1h30m)')
    .option('-t, --timestamps', 'prefix each line with its RFC 3339 time')
    .option('--stream <stream>', 'stdout, stderr or all', 'all')
    .action(async (id: string, o: { follow?: boolean; tail?: string; since?: string; timestamps?: boolean; stream: string }) => {
      if (!['all', 'stdout', 'stderr'].includes(o.stream)) throw new Error(`bad --stream "${o.stream}" (want stdout, stderr or all)`);
      const view: LogViewOptions = {
        streams: new Set(o.stream === 'all' ? ['stdout', 'stderr'] : [o.stream]),
        timestamps: Boolean(o.timestamps),
        ...(o.since !== undefined ? { sinceMs: parseSince(o.since, Date.now()) } : {}),
        ...(o.tail !== undefined ? { tail: parseTail(o.tail) } : {}),
      };
      await withClient(program, async (cri) => {
        const st = (await cri.runtime.unary('ContainerStatus', { containerId: id })).status!;
        if (!st.logPath) throw new Error(`container ${id} has no log path`);
        const parser = new CriLogParser();
        let offset = 0;
        const read = (): string => {
          let size: number;
          try {
            size = statSync(st.logPath).size;
          } catch {
            return ''; // not written yet, or rotated away this instant
          }
          if (size < offset) offset = 0; // rotated
          if (size === offset) return '';
          const fd = openSync(st.logPath, 'r');
          try {
            const buf = Buffer.alloc(size - offset);
            const n = readSync(fd, buf, 0, buf.length, offset);
            offset += n;
            return buf.subarray(0, n).toString('utf8');
          } finally {
            closeSync(fd);
          }
        };
        // What the file holds now: --tail and --since apply; partial messages wait when following.
        const first = parser.feed(read());
        const initial = o.follow ? first : [...first, ...parser.pending()];
        process.stdout.write(renderEntries(selectEntries(initial, view), view.timestamps));
        if (!o.follow) return;
        const more = { ...view, tail: undefined };
        for (;;) {
          await sleep(200);
          process.stdout.write(renderEntries(selectEntries(parser.feed(read()), more), view.timestamps));
          const now = (await cri.runtime.unary('ContainerStatus', { containerId: id })).status!;
          if (now.state !== ContainerState.CONTAINER_RUNNING) {
            process.stdout.write(renderEntries(selectEntries([...parser.feed(read()), ...parser.pending()], more), view.timestamps));
            break;
          }
        }
      });
    });

  program
    .command('exec <id> <cmd...>')
    .description('run a command in a container (ExecSync; with -i/-t a streaming session). Options go before the id; everything after it is the command')
    .passThroughOptions()
    .option('--timeout <seconds>', 'kill the command after this long (ExecSync only)', '0')
    .option('-i, --stdin', "stream: send this terminal's input to the command")
    .option('-t, --tty', 'stream: run the command on a terminal')
    .action(async (id: string, args: string[], o: { timeout: string; stdin?: boolean; tty?: boolean }) => {
      const cmd = execCommand(args);
      const timeout = parseCount('--timeout', o.timeout)!;
      if (o.stdin || o.tty) {
        const { streamingExec } = await import('./stream-commands.js');
        return streamingExec(program, id, cmd, { stdin: Boolean(o.stdin), tty: Boolean(o.tty) });
      }
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('ExecSync', { containerId: id, cmd, timeout });
        process.stdout.write(res.stdout);
        process.stderr.write(res.stderr);
        process.exitCode = res.exitCode;
      });
    });

  program
    .command('stats')
    .description('resource usage of running containers')
    .option('-p, --pod <id>', 'only this pod')
    .action(async (o: { pod?: string }) => {
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('ListContainerStats', { filter: { podSandboxId: o.pod ?? '' } });
        printTable(
          ['CONTAINER', 'NAME', 'CPU (ns)', 'MEM (working set)', 'WRITABLE'],
          res.stats.map((s) => [
            shortId(s.attributes?.id ?? ''),
            s.attributes?.metadata?.name ?? '',
            String(s.cpu?.usageCoreNanoSeconds?.value ?? 0),
            humanBytes(s.memory?.workingSetBytes?.value ?? 0),
            humanBytes(s.writableLayer?.usedBytes?.value ?? 0),
          ]),
        );
      });
    });
}

/** crictl's --tail: a count, or -1 for all. */
export function parseTail(value: string): number | undefined {
  if (value.trim() === '-1') return undefined;
  return parseCount('--tail', value);
}

/** The command of `crisp exec ID …`: a leading `--` (the old spelling) is dropped. */
export function execCommand(args: string[]): string[] {
  const cmd = args[0] === '--' ? args.slice(1) : args;
  if (cmd.length === 0) throw new Error('exec: no command given (crisp exec ID CMD [ARG…])');
  return cmd;
}
