// Exec, Attach and PortForward: validate the request against the container or pod, then hand out a
// single-use URL on the streaming server, where the session itself runs.
import type { AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest, PortForwardResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import { failedPrecondition, invalidArgument } from '../../common/errors.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import type { StreamingServer } from '../streaming/server.js';
import { requireString } from '../validate.js';

export interface StreamingDeps {
  containers: ContainerController;
  pods: PodController;
  streaming: StreamingServer;
}

/** The stream flags both Exec and Attach share, checked as kubelet's streaming server does. */
function checkStreams(req: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }): void {
  if (req.tty && req.stderr) throw invalidArgument('tty and stderr cannot both be true (a terminal has one output stream)');
  if (!req.stdin && !req.stdout && !req.stderr) throw invalidArgument('one of stdin, stdout and stderr must be set');
}

export async function exec(deps: StreamingDeps, req: ExecRequest): Promise<Input<ExecResponse>> {
  const c = deps.containers.get(requireString(req.containerId, 'container_id'));
  if (req.cmd.length === 0) throw invalidArgument('cmd is required');
  checkStreams(req);
  if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}, not running; cannot exec in it`);
  const url = deps.streaming.urlFor({ kind: 'exec', containerId: c.id, cmd: req.cmd, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr });
  return { url };
}

export async function attach(deps: StreamingDeps, req: AttachRequest): Promise<Input<AttachResponse>> {
  const c = deps.containers.get(requireString(req.containerId, 'container_id'));
  checkStreams(req);
  if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}, not running; cannot attach to it`);
  if (req.stdin && !c.spec.stdin) throw failedPrecondition(`container ${c.id} was not created with stdin; cannot attach stdin`);
  if (req.tty && !c.spec.tty) throw failedPrecondition(`container ${c.id} was not created with a tty; cannot attach one`);
  const url = deps.streaming.urlFor({ kind: 'attach', containerId: c.id, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr });
  return { url };
}

export async function portForward(deps: StreamingDeps, req: PortForwardRequest): Promise<Input<PortForwardResponse>> {
  const pod = deps.pods.get(requireString(req.podSandboxId, 'pod_sandbox_id'));
  for (const p of req.port) if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalidArgument(`port ${p} is not 1-65535`);
  if (pod.state !== 'ready') throw failedPrecondition(`pod sandbox ${pod.id} is not ready; cannot forward ports into it`);
  const url = deps.streaming.urlFor({ kind: 'portforward', podId: pod.id, ports: [...new Set(req.port)] });
  return { url };
}
