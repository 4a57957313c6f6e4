import type { ExecSyncRequest, ExecSyncResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import { requireString } from '../validate.js';

/** ExecSync: run a command to completion (timeout honoured) and return its output and exit code. */
export async function execSyncHandler(c: ContainerController, req: ExecSyncRequest): Promise<Input<ExecSyncResponse>> {
  const res = await c.execSync(requireString(req.containerId, 'container_id'), req.cmd, req.timeout);
  return { stdout: res.stdout, stderr: res.stderr, exitCode: res.exitCode };
}
