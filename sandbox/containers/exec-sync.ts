// ExecSync: run a command in a running container and collect its stdout and stderr through FIFOs;
// output beyond the limit is dropped (the process is never blocked by it), and a timeout kills it.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { makeDir } from '../../common/make-dir.js';
import { join } from 'node:path';
import { CrispError, errorMessage, failedPrecondition, invalidArgument } from '../../common/errors.js';
import type { ContainerdRuntime } from '../../backend/containerd/runtime.js';
import type { ContainerRecord } from './types.js';
import { makeFifos, openFifoReader, type FifoReader } from '../../common/fifo.js';

/** Per stream, as kubelet's own exec output cap. */
export const EXEC_SYNC_OUTPUT_LIMIT = 16 * 1024 * 1024;

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

/** What runc says when the command itself cannot run (missing, not executable): the caller's mistake. */
const COMMAND_UNRUNNABLE = /exec failed: (.*(executable file not found|no such file or directory|permission denied|is a directory|exec format error).*)/;

/** A failed exec start: INVALID_ARGUMENT naming cmd[0] when runc could not run the command, else as it came. */
export function commandStartError(cmd: string[], containerId: string, err: unknown): unknown {
  const why = COMMAND_UNRUNNABLE.exec(errorMessage(err));
  if (!why) return err;
  // Only the command's name: its arguments may carry secrets.
  return invalidArgument(`cmd[0]: ${JSON.stringify(cmd[0])} cannot be run in container ${containerId}: ${why[1]}`, err);
}

export async function execSync(args: {
  runtime: ContainerdRuntime;
  container: ContainerRecord;
  processSpec: Record<string, unknown>;
  cmd: string[];
  timeoutSeconds: number;
  workDir: string;
}): Promise<ExecSyncResult> {
  const { runtime, container: c } = args;
  if (args.cmd.length === 0) throw invalidArgument('cmd is required');
  if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}, not running`);
  const execId = `exec-${randomBytes(8).toString('hex')}`;
  const dir = join(args.workDir, execId);
  await makeDir(dir, 0o700);
  const out = join(dir, 'stdout');
  const err = join(dir, 'stderr');
  // Whatever fails, the FIFOs or one reader's open included, the readers opened are closed and the
  // directory is removed.
  const readers: FifoReader[] = [];
  try {
    await makeFifos(out, err);
    const opened = await Promise.allSettled([openFifoReader(out, EXEC_SYNC_OUTPUT_LIMIT), openFifoReader(err, EXEC_SYNC_OUTPUT_LIMIT)]);
    for (const r of opened) if (r.status === 'fulfilled') readers.push(r.value);
    for (const r of opened) if (r.status === 'rejected') throw r.reason;
    const [outReader, errReader] = readers as [FifoReader, FifoReader];
    const processSpec = { ...args.processSpec, args: args.cmd, terminal: false };
    await runtime.exec(c.id, execId, processSpec, { stdin: '', stdout: out, stderr: err, terminal: false });
    try {
      await runtime.startTask(c.id, execId).catch((e: unknown) => {
        throw commandStartError(args.cmd, c.id, e);
      });
      const exited = await runtime.wait(c.id, execId, args.timeoutSeconds > 0 ? args.timeoutSeconds * 1000 : 0);
      if (!exited) {
        await runtime.kill(c.id, 9, { execId });
        await runtime.wait(c.id, execId, 10_000);
        // The command's arguments stay out of the error: it is logged, and arguments may carry secrets.
        throw new CrispError('DEADLINE_EXCEEDED', `command ${JSON.stringify(args.cmd[0])} timed out after ${args.timeoutSeconds} s`);
      }
      // Deleting the process waits for the shim to finish copying its output into the FIFOs.
      await runtime.deleteExec(c.id, execId);
      const [stdout, stderr] = await Promise.all([outReader.finish(), errReader.finish()]);
      return { stdout, stderr, exitCode: exited.exitStatus };
    } finally {
      await runtime.deleteExec(c.id, execId).catch(() => undefined);
    }
  } finally {
    for (const r of readers) r.close();
    await rm(dir, { recursive: true, force: true });
  }
}
