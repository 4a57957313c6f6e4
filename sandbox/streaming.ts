// The runtime side of the streaming server (exec, attach, port-forward sessions), built from the
// sandbox's controllers and the containerd runtime. cri/streaming/ calls it through this narrow API and
// never sees containerd.
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/logger.js';
import type { ContainerdRuntime } from '../backend/containerd/runtime.js';
import type { ContainerController } from './containers/controller.js';
import type { PodController } from './pods/controller.js';
import { streamExec } from './containers/stream-exec.js';
import { attachContainer } from './containers/attach.js';
import { portForward } from './pods/port-forward.js';
import type { StreamIO } from './containers/stream-io.js';

export type { StreamIO, TerminalSize } from './containers/stream-io.js';
export { TerminalSizes } from './containers/stream-io.js';

/** What a streaming session needs from the runtime. */
export interface StreamingRuntime {
  /** Runs cmd with the client's streams; resolves with the exit code. */
  exec(containerId: string, cmd: string[], io: StreamIO): Promise<number>;
  /** Attaches until the container stops or the client leaves. */
  attach(containerId: string, io: StreamIO): Promise<void>;
  /** Relays one connection to `port` inside the pod's network namespace. */
  portForward(podId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void>;
}

export interface SandboxStreamingOptions {
  containers: ContainerController;
  pods: PodController;
  runtime: ContainerdRuntime;
  /** Scratch space for exec FIFOs (<state>/exec). */
  execDir: string;
  log: Logger;
}

export class SandboxStreaming implements StreamingRuntime {
  constructor(private readonly opts: SandboxStreamingOptions) {}

  async exec(containerId: string, cmd: string[], io: StreamIO): Promise<number> {
    const container = this.opts.containers.get(containerId);
    const spec = await this.opts.containers.ociSpec(container.id);
    const processSpec = (spec.process ?? {}) as Record<string, unknown>;
    return streamExec({ runtime: this.opts.runtime, container, processSpec, cmd, workDir: this.opts.execDir, log: this.opts.log }, io);
  }

  attach(containerId: string, io: StreamIO): Promise<void> {
    return attachContainer({ controller: this.opts.containers, runtime: this.opts.runtime, containerId, log: this.opts.log }, io);
  }

  portForward(podId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void> {
    return portForward({ pod: this.opts.pods.get(podId), port, stream, signal, log: this.opts.log });
  }
}
