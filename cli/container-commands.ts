// crictl-like container commands: create, start, stop, rm, ps, inspect, logs [-f], exec (sync, or
// streaming with -i/-t), stats.
import { readFileSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { ContainerState, type ContainerConfig } from '../gen/runtime.v1.js';
import type { Input } from '../common/proto-registry.js';
import { sleep } from '../common/time.js';
import { withClient } from './client-context.js';
import { camelize, readPodConfig } from './pod-commands.js';
import { printTable, age, shortId, humanBytes } from './table.js';
import { streamingExec } from './stream-commands.js';

const STATE_NAMES: Record<number, string> = {
  [ContainerState.CONTAINER_CREATED]: 'Created',
  [ContainerState.CONTAINER_RUNNING]: 'Running',
  [ContainerState.CONTAINER_EXITED]: 'Exited',
  [ContainerState.CONTAINER_UNKNOWN]: 'Unknown',
};

function readContainerConfig(path: string): Input<ContainerConfig> {
  const text = readFileSync(path, 'utf8');
  const raw = camelize(path.endsWith('.json') ? JSON.parse(text) : parseYaml(text)) as { envs?: unknown };
  // Env values are bytes on the wire; a config file writes them as text, as crictl's does.
  if (Array.isArray(raw.envs)) {
    raw.envs = raw.envs.map((e: { key?: unknown; value?: unknown }) => ({ key: String(e.key ?? ''), value: Buffer.from(String(e.value ?? '')) }));
  }
  return raw as Input<ContainerConfig>;
}

/** CRI log lines → the message bytes, as `kubectl logs` shows them (P records joined). */
export function renderCriLog(text: string, streams: Set<string>): string {
  let out = '';
  for (const line of text.split('\n')) {
    const m = /^(\S+) (stdout|stderr) ([FP]) (.*)$/.exec(line);
    if (!m || !streams.has(m[2]!)) continue;
    out += m[4] + (m[3] === 'F' ? '\n' : '');
  }
  return out;
}

export function registerContainerCommands(program: Command): void {
  program
    .command('create <pod-id> <container-config> [pod-config]')
    .description('create a container in a pod from a JSON or YAML ContainerConfig')
    .action(async (podId: string, config: string, podConfig?: string) => {
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('CreateContainer', {
          podSandboxId: podId,
          config: readContainerConfig(config),
          sandboxConfig: podConfig ? readPodConfig(podConfig) : null,
        });
        console.log(res.containerId);
      });
    });

  program
    .command('start <ids...>')
    .description('start created containers')
    .action(async (ids: string[]) => {
      await withClient(program, async (cri) => {
        for (const id of ids) {
          await cri.runtime.unary('StartContainer', { containerId: id });
          console.log(id);
        }
      });
    });

  program
    .command('stop <ids...>')
    .description('stop containers')
    .option('-t, --timeout <seconds>', 'grace period before SIGKILL', '10')
    .action(async (ids: string[], o: { timeout: string }) => {
      await withClient(program, async (cri) => {
        for (const id of ids) {
          await cri.runtime.unary('StopContainer', { containerId: id, timeout: Number(o.timeout) });
          console.log(id);
        }
      });
    });

  program
    .command('rm <ids...>')
    .description('remove containers (running ones are killed)')
    .action(async (ids: string[]) => {
      await withClient(program, async (cri) => {
        for (const id of ids) {
          await cri.runtime.unary('RemoveContainer', { containerId: id });
          console.log(id);
        }
      });
    });

  program
    .command('ps')
    .description('list containers')
    .option('-a, --all', 'include exited containers')
    .option('-p, --pod <id>', 'only this pod')
    .option('-q, --quiet', 'ids only')
    .action(async (o: { all?: boolean; pod?: string; quiet?: boolean }) => {
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('ListContainers', {
          filter: { podSandboxId: o.pod ?? '', state: o.all ? null : { state: ContainerState.CONTAINER_RUNNING } },
        });
        if (o.quiet) return res.containers.forEach((c) => console.log(c.id));
        printTable(
          ['CONTAINER', 'IMAGE', 'CREATED', 'STATE', 'NAME', 'ATTEMPT', 'POD ID'],
          res.containers.map((c) => [shortId(c.id), c.image?.image ?? '', age(c.createdAt), STATE_NAMES[c.state] ?? '?', c.metadata?.name ?? '', String(c.metadata?.attempt ?? 0), shortId(c.podSandboxId)]),
        );
      });
    });

  program
    .command('inspect <id>')
    .description('container status (verbose) as JSON')
    .action(async (id: string) => {
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('ContainerStatus', { containerId: id, verbose: true });
        console.log(JSON.stringify({ status: res.status, info: res.info.info ? JSON.parse(res.info.info) : {} }, null, 2));
      });
    });

  program
    .command('logs <id>')
    .description("print a container's log (read from the node's log file)")
    .option('-f, --follow', 'keep printing new output')
    .option('--stream <stream>', 'stdout, stderr or all', 'all')
    .action(async (id: string, o: { follow?: boolean; stream: string }) => {
      await withClient(program, async (cri) => {
        const st = (await cri.runtime.unary('ContainerStatus', { containerId: id })).status!;
        if (!st.logPath) throw new Error(`container ${id} has no log path`);
        const streams = new Set(o.stream === 'all' ? ['stdout', 'stderr'] : [o.stream]);
        let offset = 0;
        let pending = '';
        const drain = () => {
          const size = statSync(st.logPath).size;
          if (size < offset) offset = 0; // rotated
          if (size === offset) return;
          const fd = openSync(st.logPath, 'r');
          try {
            const buf = Buffer.alloc(size - offset);
            readSync(fd, buf, 0, buf.length, offset);
            offset = size;
            const text = pending + buf.toString('utf8');
            const cut = text.lastIndexOf('\n') + 1;
            pending = text.slice(cut);
            process.stdout.write(renderCriLog(text.slice(0, cut), streams));
          } finally {
            closeSync(fd);
          }
        };
        drain();
        while (o.follow) {
          await sleep(200);
          drain();
          const now = (await cri.runtime.unary('ContainerStatus', { containerId: id })).status!;
          if (now.state !== ContainerState.CONTAINER_RUNNING) {
            drain();
            break;
          }
        }
      });
    });

  program
    .command('exec <id> <cmd...>')
    .description('run a command in a container (ExecSync); with -i/-t a streaming session (put -- before CMD)')
    .option('--timeout <seconds>', 'kill the command after this long (ExecSync only)', '0')
    .option('-i, --stdin', 'stream: send this terminal\'s input to the command')
    .option('-t, --tty', 'stream: run the command on a terminal')
    .action(async (id: string, cmd: string[], o: { timeout: string; stdin?: boolean; tty?: boolean }) => {
      if (o.stdin || o.tty) return streamingExec(program, id, cmd, { stdin: Boolean(o.stdin), tty: Boolean(o.tty) });
      await withClient(program, async (cri) => {
        const res = await cri.runtime.unary('ExecSync', { containerId: id, cmd, timeout: Number(o.timeout) });
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
