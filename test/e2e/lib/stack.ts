// A full test node: crispd (embedded containerd) + a private CNI network + a real registry holding the
// busybox test image, pulled and ready. Tests build pods and containers on top and call teardown().
import { join } from 'node:path';
import { TestCrispd, uniqueId } from './crispd.js';
import { writeTestNetwork, type TestNetwork } from './network.js';
import { startRegistry, type TestRegistry } from '../fixtures/registry.js';
import { busyboxImage } from '../fixtures/images.js';
import type { Input } from '../../../common/proto-registry.js';
import type { ContainerConfig, PodSandboxConfig } from '../../../gen/runtime.v1.js';
import { sleep } from '../../../common/time.js';

export interface Stack {
  d: TestCrispd;
  net: TestNetwork;
  registry: TestRegistry;
  image: string;
  imageId: string;
  run: string;
  podConfig(name: string, extra?: Input<PodSandboxConfig>): Input<PodSandboxConfig>;
  runPod(name: string, extra?: Input<PodSandboxConfig>): Promise<string>;
  containerConfig(name: string, cmd: string[], extra?: Input<ContainerConfig>): Input<ContainerConfig>;
  /** Create and start; returns the id. */
  runContainer(podId: string, name: string, cmd: string[], extra?: Input<ContainerConfig>): Promise<string>;
  waitExited(id: string, timeoutMs?: number): Promise<{ exitCode: number; reason: string }>;
  teardown(): Promise<string[]>;
}

export async function startStack(config: Record<string, unknown> = {}, options: { cli?: string; env?: Record<string, string> } = {}): Promise<Stack> {
  const d = new TestCrispd({ config, ...options });
  const net = writeTestNetwork(d.cniConfDir, d.dir);
  const registry = await startRegistry({});
  const img = busyboxImage({ config: { Env: ['PATH=/bin', 'FROM_IMAGE=yes', 'OVERRIDE=image'], WorkingDir: '/home' } });
  await registry.push(img, 'e2e/busybox', 'v1');
  const image = `${registry.host}/e2e/busybox:v1`;
  await d.start();
  const imageId = (await d.client.image.unary('PullImage', { image: { image } })).imageRef;
  const run = uniqueId();
  const podConfig = (name: string, extra: Input<PodSandboxConfig> = {}): Input<PodSandboxConfig> => ({
    metadata: { name, uid: `${name}-${run}`, namespace: 'e2e', attempt: 0 },
    hostname: name,
    logDirectory: join(d.podLogRoot, `e2e_${name}_${run}`),
    labels: { run, app: name },
    ...extra,
  });
  const containerConfig = (name: string, cmd: string[], extra: Input<ContainerConfig> = {}): Input<ContainerConfig> => ({
    metadata: { name, attempt: 0 },
    image: { image },
    command: cmd,
    logPath: `${name}/0.log`,
    labels: { run, container: name },
    ...extra,
  });
  const stack: Stack = {
    d,
    net,
    registry,
    image,
    imageId,
    run,
    podConfig,
    containerConfig,
    runPod: async (name, extra) => (await d.client.runtime.unary('RunPodSandbox', { config: podConfig(name, extra) })).podSandboxId,
    runContainer: async (podId, name, cmd, extra) => {
      const { containerId } = await d.client.runtime.unary('CreateContainer', {
        podSandboxId: podId,
        config: containerConfig(name, cmd, extra),
      });
      await d.client.runtime.unary('StartContainer', { containerId });
      return containerId;
    },
    waitExited: async (id, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const st = (await d.client.runtime.unary('ContainerStatus', { containerId: id })).status!;
        if (st.state === 2) return { exitCode: st.exitCode, reason: st.reason };
        await sleep(50);
      }
      throw new Error(`container ${id} did not exit within ${timeoutMs} ms`);
    },
    teardown: async () => {
      try {
        await d.removeAllPods();
      } finally {
        await d.cleanup();
        await registry.stop();
      }
      return net.teardown();
    },
  };
  return stack;
}
