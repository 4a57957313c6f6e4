// Shared plumbing for client commands: the --endpoint option, clean one-line errors, input files.
import { readFileSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { CriClient, DEFAULT_ENDPOINT } from '../cri/client.js';
import { errorMessage, isGrpcError, isNotFound } from '../common/errors.js';

export function endpointOf(program: Command): string {
  return program.opts<{ endpoint?: string }>().endpoint || process.env.CRISP_ENDPOINT || DEFAULT_ENDPOINT;
}

/**
 * The one line a failure prints after "crisp: ". A daemon that cannot be reached (no socket, nobody
 * listening, no permission) is said so in words; crispd's own errors keep their message.
 */
export function describeError(err: unknown, endpoint: string): string {
  if (isGrpcError(err, status.UNAVAILABLE)) {
    const text = `${err.details} ${err.message}`;
    if (/EACCES|EPERM/.test(text)) return `cannot reach crispd at ${endpoint}: permission denied (run as root?)`;
    if (/No connection established|ECONNREFUSED|ENOENT|ECONNRESET|ENOTSOCK|Connection dropped|Failed to connect/i.test(text)) {
      return `cannot reach crispd at ${endpoint}: is it running?`;
    }
  }
  if (isGrpcError(err, status.DEADLINE_EXCEEDED) && /Waiting for LB pick|No connection/i.test(`${err.details}`)) {
    return `cannot reach crispd at ${endpoint}: is it running?`;
  }
  if (isErrnoLike(err)) return errnoMessage(err);
  return errorMessage(err).replace(/\s+/g, ' ').trim();
}

function isErrnoLike(err: unknown): err is NodeJS.ErrnoException & { path?: string } {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  EPERM: 'operation not permitted',
};

/** "open /x.yaml: no such file or directory" rather than Node's ENOENT text with its stack. */
function errnoMessage(err: NodeJS.ErrnoException): string {
  const what = ERRNO_TEXT[err.code ?? ''] ?? err.message;
  return err.path ? `${err.path}: ${what}` : `${err.syscall}: ${what}`;
}

/** A file the person named (a manifest, a config): missing or unreadable says which and why. */
export function readInputFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    throw new Error(`cannot read ${what} ${path}: ${ERRNO_TEXT[code] ?? errorMessage(err)}`);
  }
}

/** Prints `crisp: <message>` and marks the process as failed (exit 1), without stopping it. */
export function reportError(err: unknown, endpoint: string): void {
  console.error(`crisp: ${describeError(err, endpoint)}`);
  process.exitCode = 1;
}

export async function withClient(program: Command, fn: (cri: CriClient) => Promise<void>): Promise<void> {
  const endpoint = endpointOf(program);
  const cri = new CriClient(endpoint);
  try {
    await fn(cri);
  } catch (err) {
    reportError(err, endpoint);
  } finally {
    cri.close();
  }
}

/**
 * Runs `fn` for each id, going on after a failure (as crictl does), which is printed as one line;
 * the command then exits 1. A NOT_FOUND answer becomes `<kind> "<id>" not found`.
 */
export async function forEachId(program: Command, ids: string[], kind: string, fn: (id: string) => Promise<void>): Promise<void> {
  const endpoint = endpointOf(program);
  for (const id of ids) {
    try {
      await fn(id);
    } catch (err) {
      if (isNotFound(err)) {
        console.error(`crisp: ${kind} "${id}" not found`);
        process.exitCode = 1;
      } else {
        reportError(err, endpoint);
        // An unreachable daemon fails every id alike: say it once.
        if (describeError(err, endpoint).startsWith('cannot reach crispd')) return;
      }
    }
  }
}
