// `crisp play pod.yaml` runs a Kubernetes Pod manifest directly over CRI (as `podman kube play`):
// init containers one after the other to completion, then the app containers. `--watch` stays in the
// foreground and restarts exited containers as spec.restartPolicy says; without it nothing restarts
// them. `crisp play --down pod.yaml` stops and removes what it made, log directory included.
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ContainerState, PodSandboxState, type ContainerStatus } from '../gen/runtime.v1.js';
import type { CriClient } from '../cri/client.js';
import { isNotFound } from '../common/errors.js';
import { readInputFile, withClient } from './client-context.js';
import { CriLogParser } from './log-view.js';
import {
  isPlayLogDirectory,
  parsePodManifest,
  planPod,
  podIdentity,
  restartDelayMs,
  shouldRestart,
  withAttempt,
  PLAY_LABEL,
  PLAY_LOG_DIR_ANNOTATION,
  type PlannedContainer,
  type PlayPlan,
} from './play-plan.js';

const POLL_MS = 200;
const WATCH_MS = 1000;

export const PLAY_HELP = `
What runs: containers (command, args, env values, workingDir, ports with hostPort, resources,
securityContext), hostPath and emptyDir volumes, dnsConfig, sysctls, shareProcessNamespace, hostNetwork,
hostPID and hostIPC (applied to the pod and every container). Each play gets a new pod uid, so its
log directory <log-root>/<namespace>_<name>_<uid> is new; --down removes it with the pod.

initContainers run one at a time, each to completion, before the app containers start; one that fails
fails the play (the pod is removed). An init container with restartPolicy: Always (a sidecar) is
started and not waited for.

restartPolicy (Always, the default; OnFailure; Never) is honoured only while 'crisp play --watch' runs:
it restarts exited containers with kubelet's back-off (at once, then 10 s doubling to 5 min) as attempt
1, 2, … (log <name>/<attempt>.log) and ends when the pod can no longer change (exit 1 if a container
failed). Without --watch, or after Ctrl-C, nothing restarts containers: crispd does not, since
restarting is kubelet's job. Probes, configMap/secret/projected volumes, env valueFrom and envFrom are not supported.`;

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** An AbortSignal that SIGINT/SIGTERM trigger, while `fn` runs. */
async function interruptible<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = () => ac.abort(new Error('interrupted'));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(ac.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The last message a container wrote, for an error line ("" when there is none). */
function lastOutput(logPath: string): string {
  try {
    const parser = new CriLogParser();
    const entries = [...parser.feed(readFileSync(logPath, 'utf8')), ...parser.pending()].filter((e) => e.message.trim() !== '');
    const last = entries[entries.length - 1]?.message.trim() ?? '';
    return last.length > 200 ? `${last.slice(0, 200)}…` : last;
  } catch {
    return '';
  }
}

async function waitExited(cri: CriClient, id: string, signal: AbortSignal): Promise<ContainerStatus> {
  for (;;) {
    const st = (await cri.runtime.unary('ContainerStatus', { containerId: id })).status!;
    if (st.state === ContainerState.CONTAINER_EXITED) return st;
    if (signal.aborted) throw signal.reason;
    await pause(POLL_MS, signal);
  }
}

class ImageEnsurer {
  private readonly done = new Set<string>();
  constructor(private readonly cri: CriClient) {}

  async ensure(c: PlannedContainer): Promise<void> {
    if (this.done.has(c.image)) return;
    const present = (await this.cri.image.unary('ImageStatus', { image: { image: c.image } })).image;
    if (c.pullPolicy === 'Never' && !present) throw new Error(`container "${c.name}": image ${c.image} is not present and imagePullPolicy is Never`);
    if (c.pullPolicy === 'Always' || (!present && c.pullPolicy !== 'Never')) {
      console.log(`pulling ${c.image}`);
      await this.cri.image.unary('PullImage', { image: { image: c.image } });
    }
    this.done.add(c.image);
  }
}

interface Running {
  planned: PlannedContainer;
  id: string;
  attempt: number;
}

async function startContainer(cri: CriClient, podId: string, plan: PlayPlan, c: PlannedContainer, attempt: number): Promise<string> {
  const { containerId } = await cri.runtime.unary('CreateContainer', { podSandboxId: podId, config: withAttempt(c, attempt), sandboxConfig: plan.pod });
  await cri.runtime.unary('StartContainer', { containerId });
  return containerId;
}

/** Everything a failed or interrupted play made goes again: pod, log directory, emptyDirs. */
async function undo(cri: CriClient, podId: string | undefined, plan: PlayPlan): Promise<void> {
  if (podId) {
    await cri.runtime.unary('StopPodSandbox', { podSandboxId: podId }).catch(() => undefined);
    await cri.runtime.unary('RemovePodSandbox', { podSandboxId: podId }).catch(() => undefined);
  }
  await rm(plan.logDirectory, { recursive: true, force: true }).catch(() => undefined);
  await rm(plan.podStateDir, { recursive: true, force: true }).catch(() => undefined);
}

async function up(cri: CriClient, plan: PlayPlan, signal: AbortSignal): Promise<{ podId: string; running: Running[] }> {
  const label = { [PLAY_LABEL]: `${plan.namespace}_${plan.name}` };
  const existing = (await cri.runtime.unary('ListPodSandbox', { filter: { labelSelector: label } })).items;
  if (existing.length > 0) {
    throw new Error(`pod ${plan.namespace}/${plan.name} already exists (${existing[0]!.id.slice(0, 13)}): remove it with crisp play --down first`);
  }
  let podId: string | undefined;
  try {
    for (const dir of plan.emptyDirs) await mkdir(dir, { recursive: true, mode: 0o777 });
    podId = (await cri.runtime.unary('RunPodSandbox', { config: plan.pod })).podSandboxId;
    const images = new ImageEnsurer(cri);
    const running: Running[] = [];
    for (const c of plan.initContainers) {
      if (signal.aborted) throw signal.reason;
      await images.ensure(c);
      const id = await startContainer(cri, podId, plan, c, 0);
      if (c.sidecar) {
        console.log(`started sidecar ${c.name} (${id.slice(0, 13)})`);
        running.push({ planned: c, id, attempt: 0 });
        continue;
      }
      const st = await waitExited(cri, id, signal);
      if (st.exitCode !== 0) {
        const out = lastOutput(join(plan.logDirectory, `${c.name}/0.log`));
        throw new Error(`init container "${c.name}" failed: exit code ${st.exitCode}${st.reason ? ` (${st.reason})` : ''}${out ? `; last output: ${JSON.stringify(out)}` : ''}`);
      }
      console.log(`init container ${c.name} completed (${id.slice(0, 13)})`);
    }
    for (const c of plan.containers) {
      if (signal.aborted) throw signal.reason;
      await images.ensure(c);
      const id = await startContainer(cri, podId, plan, c, 0);
      console.log(`started ${c.name} (${id.slice(0, 13)})`);
      running.push({ planned: c, id, attempt: 0 });
    }
    return { podId, running };
  } catch (err) {
    await undo(cri, podId, plan);
    throw err;
  }
}

/**
 * `--watch`: restart exited containers as the restartPolicy says, with back-off, until interrupted,
 * the pod goes away, or no container can change any more.
 */
async function watch(cri: CriClient, plan: PlayPlan, podId: string, running: Running[], signal: AbortSignal): Promise<void> {
  console.log(`watching pod ${plan.namespace}/${plan.name} (restartPolicy ${plan.restartPolicy}); Ctrl-C stops watching and leaves the pod running`);
  const restarts = new Map<string, number>();
  const restartAt = new Map<string, number>();
  const finished = new Map<string, number>(); // app containers that will not restart: exit code
  while (!signal.aborted) {
    const pod = await cri.runtime.unary('PodSandboxStatus', { podSandboxId: podId }).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (!pod?.status || pod.status.state !== PodSandboxState.SANDBOX_READY) {
      console.log(`pod ${plan.namespace}/${plan.name} was stopped or removed; stopped watching`);
      return;
    }
    for (const r of running) {
      const name = r.planned.name;
      if (finished.has(name)) continue;
      const st = (await cri.runtime.unary('ContainerStatus', { containerId: r.id })).status!;
      if (st.state !== ContainerState.CONTAINER_EXITED) continue;
      if (!shouldRestart(plan.restartPolicy, st.exitCode, r.planned.sidecar)) {
        finished.set(name, st.exitCode);
        console.log(`${name} exited with code ${st.exitCode}${st.reason ? ` (${st.reason})` : ''}; restartPolicy ${plan.restartPolicy}: not restarted`);
        continue;
      }
      const now = Date.now();
      if (!restartAt.has(name)) {
        const ranFor = (st.finishedAt - st.startedAt) / 1e6;
        if (ranFor >= 10 * 60_000) restarts.set(name, 0);
        const delay = restartDelayMs(restarts.get(name) ?? 0, ranFor);
        restartAt.set(name, now + delay);
        if (delay > 0) console.log(`${name} exited with code ${st.exitCode}; back-off: restarting in ${Math.round(delay / 1000)} s`);
      }
      if (now < restartAt.get(name)!) continue;
      restartAt.delete(name);
      const previous = r.id;
      const attempt = r.attempt + 1;
      r.id = await startContainer(cri, podId, plan, r.planned, attempt);
      r.attempt = attempt;
      restarts.set(name, (restarts.get(name) ?? 0) + 1);
      console.log(`restarted ${name} (attempt ${attempt}, ${r.id.slice(0, 13)}) after exit code ${st.exitCode}`);
      // kubelet keeps the last dead container for `logs --previous`; older ones go.
      const older = (await cri.runtime.unary('ListContainers', { filter: { podSandboxId: podId } })).containers.filter(
        (c) => c.metadata?.name === name && c.id !== r.id && c.id !== previous && c.state === ContainerState.CONTAINER_EXITED,
      );
      for (const c of older) await cri.runtime.unary('RemoveContainer', { containerId: c.id }).catch(() => undefined);
    }
    const apps = running.filter((r) => !r.planned.sidecar);
    if (apps.every((r) => finished.has(r.planned.name))) {
      const failed = apps.filter((r) => finished.get(r.planned.name) !== 0).map((r) => r.planned.name);
      console.log(`pod ${plan.namespace}/${plan.name} finished: ${failed.length ? `failed (${failed.join(', ')})` : 'all containers succeeded'}; crisp play --down removes it`);
      if (failed.length) process.exitCode = 1;
      return;
    }
    await pause(WATCH_MS, signal);
  }
  console.log(`stopped watching; pod ${plan.namespace}/${plan.name} keeps running (crisp play --down removes it)`);
}

async function down(cri: CriClient, pod: { name: string; namespace: string }, stateDir: string): Promise<void> {
  const label = { [PLAY_LABEL]: `${pod.namespace}_${pod.name}` };
  const pods = (await cri.runtime.unary('ListPodSandbox', { filter: { labelSelector: label } })).items;
  await rm(join(stateDir, 'play', `${pod.namespace}_${pod.name}`), { recursive: true, force: true });
  if (pods.length === 0) throw new Error(`pod ${pod.namespace}/${pod.name} not found (nothing that crisp play started is running)`);
  for (const p of pods) {
    await cri.runtime.unary('StopPodSandbox', { podSandboxId: p.id });
    await cri.runtime.unary('RemovePodSandbox', { podSandboxId: p.id });
    const logDir = p.annotations[PLAY_LOG_DIR_ANNOTATION];
    if (isPlayLogDirectory(logDir, { ...pod, uid: p.metadata?.uid ?? '' })) await rm(logDir, { recursive: true, force: true });
    console.log(`removed pod ${pod.namespace}/${pod.name} (${p.id.slice(0, 13)})`);
  }
}

export function registerPlayCommand(program: Command): void {
  program
    .command('play <manifest>')
    .description('run a Kubernetes Pod manifest over CRI (see --help for what is supported)')
    .option('--down', 'stop and remove the pod the manifest describes, with its log directory and emptyDirs')
    .option('-w, --watch', 'stay in the foreground and restart exited containers as spec.restartPolicy says')
    .option('--log-root <dir>', 'directory for the pod log directories', '/var/log/pods')
    .option('--state <dir>', 'where emptyDir volumes live', '/var/lib/crisp')
    .addHelpText('after', PLAY_HELP)
    .action(async (manifest: string, o: { down?: boolean; watch?: boolean; logRoot: string; state: string }) => {
      const pod = parsePodManifest(readInputFile(manifest, 'pod manifest'));
      if (o.down) {
        const id = podIdentity(pod);
        await withClient(program, (cri) => down(cri, id, o.state));
        return;
      }
      const plan = planPod(pod, { logRoot: o.logRoot, stateDir: o.state });
      await withClient(program, (cri) =>
        interruptible(async (signal) => {
          const { podId, running } = await up(cri, plan, signal);
          console.log(`pod ${plan.namespace}/${plan.name} is running: ${podId}`);
          if (o.watch) await watch(cri, plan, podId, running, signal);
        }),
      );
    });
}
