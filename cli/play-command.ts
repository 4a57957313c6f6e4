// `crisp play pod.yaml` runs a Kubernetes Pod manifest directly over CRI (as `podman kube play`);
// `crisp play --down pod.yaml` stops and removes what it made.
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { withClient } from './client-context.js';
import { parsePodManifest, planPod, PLAY_LABEL } from './play-plan.js';

export function registerPlayCommand(program: Command): void {
  program
    .command('play <manifest>')
    .description('run a Kubernetes Pod manifest over CRI (hostPath and emptyDir volumes)')
    .option('--down', 'stop and remove the pod the manifest describes')
    .option('--log-root <dir>', 'directory for the pod log directories', '/var/log/pods')
    .option('--state <dir>', 'where emptyDir volumes live', '/var/lib/crisp')
    .action(async (manifest: string, o: { down?: boolean; logRoot: string; state: string }) => {
      const plan = planPod(parsePodManifest(readFileSync(manifest, 'utf8')), { logRoot: o.logRoot, stateDir: o.state });
      await withClient(program, async (cri) => {
        const label = { [PLAY_LABEL]: `${plan.namespace}_${plan.name}` };
        if (o.down) {
          const pods = await cri.runtime.unary('ListPodSandbox', { filter: { labelSelector: label } });
          for (const p of pods.items) {
            await cri.runtime.unary('StopPodSandbox', { podSandboxId: p.id });
            await cri.runtime.unary('RemovePodSandbox', { podSandboxId: p.id });
            console.log(`removed pod ${plan.namespace}/${plan.name} (${p.id.slice(0, 13)})`);
          }
          await rm(join(o.state, 'play', `${plan.namespace}_${plan.name}`), { recursive: true, force: true });
          return;
        }
        for (const dir of plan.emptyDirs) await mkdir(dir, { recursive: true, mode: 0o777 });
        const podId = (await cri.runtime.unary('RunPodSandbox', { config: plan.pod })).podSandboxId;
        try {
          for (const c of plan.containers) {
            const present = (await cri.image.unary('ImageStatus', { image: { image: c.image } })).image;
            if (!present || c.pullPolicy === 'Always') await cri.image.unary('PullImage', { image: { image: c.image } });
            const { containerId } = await cri.runtime.unary('CreateContainer', { podSandboxId: podId, config: c.config, sandboxConfig: plan.pod });
            await cri.runtime.unary('StartContainer', { containerId });
            console.log(`started ${c.config.metadata?.name} (${containerId.slice(0, 13)})`);
          }
        } catch (err) {
          await cri.runtime.unary('StopPodSandbox', { podSandboxId: podId }).catch(() => undefined);
          await cri.runtime.unary('RemovePodSandbox', { podSandboxId: podId }).catch(() => undefined);
          throw err;
        }
        console.log(`pod ${plan.namespace}/${plan.name} is running: ${podId}`);
      });
    });
}
