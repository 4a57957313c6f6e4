// nri-ulimit-policy: an NRI plugin (crisp's TypeScript SDK) that sets a container's rlimits and
// environment from pod annotations (see policy.ts). Works with crisp and with containerd's NRI.
//   node main.js [--socket /var/run/nri/nri.sock] [--max nofile=1048576 ...] [--name N] [--index NN]
// The identity defaults to NRI_PLUGIN_NAME / NRI_PLUGIN_IDX (set by the Helm chart), else
// ulimit-policy / 50. When the runtime restarts, the plugin dials again.
import { parseArgs } from 'node:util';
import { Plugin, DEFAULT_NRI_SOCKET, type Container, type PodSandbox } from '../../nri/plugin/index.js';
import { containerPolicy, parseMaximums, PolicyError, type Maximums } from './policy.js';

const USAGE = 'usage: nri-ulimit-policy [--socket PATH] [--max TYPE=N]... [--name NAME] [--index NN]';

function log(message: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg: message, ...fields })}\n`);
}

function adjustmentFor(pod: PodSandbox, container: Container, max: Maximums) {
  const policy = containerPolicy(pod.annotations, container.name, max);
  if (!policy) return undefined;
  log('adjusting container', { pod: `${pod.namespace}/${pod.name}`, container: container.name, rlimits: policy.rlimits, env: policy.env.map((e) => e.key) });
  return { rlimits: policy.rlimits, env: policy.env };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      socket: { type: 'string', default: DEFAULT_NRI_SOCKET },
      max: { type: 'string', multiple: true, default: [] },
      name: { type: 'string' },
      index: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const max = parseMaximums(values.max ?? []);
  const plugin = new Plugin({
    name: values.name ?? process.env.NRI_PLUGIN_NAME ?? 'ulimit-policy',
    index: values.index ?? process.env.NRI_PLUGIN_IDX ?? '50',
    socketPath: values.socket,
    events: ['CreateContainer'],
    reconnect: true,
    onCreateContainer: (pod, container) => adjustmentFor(pod, container, max),
    onDisconnect: (reason) => log('runtime went away; dialing again', { reason: reason.message }),
    onReconnect: () => log('registered again'),
  });
  const stop = () => plugin.stop();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await plugin.start();
  log('registered', { socket: values.socket, plugin: `${plugin.identity.index}-${plugin.identity.name}`, max: Object.fromEntries(max) });
  const reason = await plugin.closed;
  log('stopped', { reason: reason.message });
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  const badUsage = err instanceof PolicyError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(`nri-ulimit-policy: ${message}\n${badUsage ? `${USAGE}\n` : ''}`);
  process.exit(badUsage ? 2 : 1);
});
