// CRI RuntimeService and ImageService handler tables. Each RPC lives in its own module under
// runtime/ or image/; what is not built yet answers UNIMPLEMENTED, never a fake success.
import type { RuntimeServiceMethods, ImageServiceMethods } from '../gen/runtime.v1.js';
import { RuntimeServiceName, ImageServiceName } from '../gen/runtime.v1.js';
import type { Handlers } from '../common/grpc-server.js';
import { lookupService } from '../common/proto-registry.js';
import { unimplemented } from '../common/errors.js';
import type { NodeStatus } from '../sandbox/node-status.js';
import { version } from './runtime/version.js';
import { statusHandler } from './runtime/status.js';
import { runtimeConfig, updateRuntimeConfig } from './runtime/runtime-config.js';
import type { ImageService } from '../backend/images/service.js';
import type { PodController } from '../sandbox/pods/controller.js';
import type { ContainerController } from '../sandbox/containers/controller.js';
import { createContainer } from './runtime/create-container.js';
import { startContainer, stopContainer, removeContainer, reopenContainerLog } from './runtime/container-lifecycle.js';
import { containerStatus, listContainers } from './runtime/container-status.js';
import { execSyncHandler } from './runtime/exec-sync.js';
import { containerStats, listContainerStats, podSandboxStats, listPodSandboxStats } from './runtime/stats.js';
import { getContainerEvents } from './runtime/container-events.js';
import { listMetricDescriptors, listPodSandboxMetrics } from './runtime/metrics.js';
import { exec, attach, portForward } from './runtime/streaming.js';
import type { StreamingServer } from './streaming/server.js';
import { updateContainerResources } from './runtime/update-container-resources.js';
import type { PodMappingContext } from './runtime/pod-mapping.js';
import { runPodSandbox } from './runtime/run-pod-sandbox.js';
import { stopPodSandbox } from './runtime/stop-pod-sandbox.js';
import { removePodSandbox } from './runtime/remove-pod-sandbox.js';
import { podSandboxStatus } from './runtime/pod-sandbox-status.js';
import { updatePodSandboxResources } from './runtime/update-pod-sandbox-resources.js';
import { listPodSandbox } from './runtime/list-pod-sandbox.js';
import { pullImage } from './image/pull-image.js';
import { listImages } from './image/list-images.js';
import { imageStatusHandler } from './image/image-status.js';
import { removeImage } from './image/remove-image.js';
import { imageFsInfo } from './image/image-fs-info.js';

export interface CriDeps {
  node: NodeStatus;
  images: ImageService;
  pods: PodController;
  podMapping: PodMappingContext;
  containers: ContainerController;
  streaming: StreamingServer;
}

/** Every method of `serviceName` answering UNIMPLEMENTED, overlaid with the real handlers given. */
function withUnimplemented<H extends object>(serviceName: string, implemented: Partial<H>): H {
  const table: Record<string, unknown> = {};
  for (const m of lookupService(serviceName).methodsArray) {
    table[m.name] = async () => {
      throw unimplemented(`${m.name} is not implemented by crisp yet`);
    };
  }
  return { ...table, ...implemented } as H;
}

export function runtimeHandlers(deps: CriDeps): Handlers<RuntimeServiceMethods> {
  const stats = { containers: deps.containers, pods: deps.pods, snapshotMount: () => deps.images.snapshotterRoot() };
  return withUnimplemented<Handlers<RuntimeServiceMethods>>(RuntimeServiceName, {
    Version: (req) => version(req),
    Status: statusHandler(deps.node),
    RuntimeConfig: () => runtimeConfig(deps.node),
    UpdateRuntimeConfig: (req) => updateRuntimeConfig(deps.node, req),
    RunPodSandbox: (req) => runPodSandbox(deps.pods, deps.podMapping, req),
    StopPodSandbox: (req) => stopPodSandbox(deps.pods, req),
    RemovePodSandbox: (req) => removePodSandbox(deps.pods, req),
    PodSandboxStatus: (req) => podSandboxStatus(deps.pods, deps.containers, req),
    ListPodSandbox: (req) => listPodSandbox(deps.pods, req),
    UpdatePodSandboxResources: (req) => updatePodSandboxResources(deps.pods, req),
    CreateContainer: (req) => createContainer(deps.containers, req),
    StartContainer: (req) => startContainer(deps.containers, req),
    StopContainer: (req) => stopContainer(deps.containers, req),
    RemoveContainer: (req) => removeContainer(deps.containers, req),
    ReopenContainerLog: (req) => reopenContainerLog(deps.containers, req),
    ContainerStatus: (req) => containerStatus(deps.containers, req),
    ListContainers: (req) => listContainers(deps.containers, req),
    ExecSync: (req) => execSyncHandler(deps.containers, req),
    UpdateContainerResources: (req) => updateContainerResources(deps.containers, req),
    ContainerStats: (req) => containerStats(stats, req),
    ListContainerStats: (req) => listContainerStats(stats, req),
    PodSandboxStats: (req) => podSandboxStats(stats, req),
    ListPodSandboxStats: (req) => listPodSandboxStats(stats, req),
    ListMetricDescriptors: () => listMetricDescriptors(),
    ListPodSandboxMetrics: () => listPodSandboxMetrics(stats),
    GetContainerEvents: (req, stream, call) => getContainerEvents(deps.containers, deps.pods, req, stream, call),
    Exec: (req) => exec(deps, req),
    Attach: (req) => attach(deps, req),
    PortForward: (req) => portForward(deps, req),
  });
}

export function imageHandlers(deps: CriDeps): Handlers<ImageServiceMethods> {
  return withUnimplemented<Handlers<ImageServiceMethods>>(ImageServiceName, {
    PullImage: (req) => pullImage(deps.images, deps.podMapping.handlers, req),
    ListImages: (req) => listImages(deps.images, req),
    ImageStatus: imageStatusHandler(deps.images),
    RemoveImage: (req) => removeImage(deps.images, req),
    ImageFsInfo: () => imageFsInfo(deps.images),
  });
}
