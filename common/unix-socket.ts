// Taking a unix socket path safely: the parent directory is created private (0700) when crisp makes
// it, and left as it is when it exists (a `socket = /run/x.sock` must never chmod /run); a stale
// socket is replaced, but one another process still serves is never taken over; anything that is not
// a socket is never removed.
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { failedPrecondition, isENOENT, isErrno } from './errors.js';

/** The filesystem path of a `unix://path` address (a bare path is returned as it is). */
export function unixSocketPath(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

/**
 * What a connect to `path` says: something accepts connections (served), a socket file nobody listens on
 * (stale: ECONNREFUSED), nothing there (gone), or anything else, e.g. a full backlog (unknown).
 */
export function socketState(path: string): Promise<'served' | 'stale' | 'gone' | 'unknown'> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve('served');
    });
    s.once('error', (err) => resolve(isErrno(err, 'ECONNREFUSED') ? 'stale' : isENOENT(err) ? 'gone' : 'unknown'));
  });
}

/** Resolves true when something accepts connections on `path`. */
export async function socketAnswers(path: string): Promise<boolean> {
  return (await socketState(path)) === 'served';
}

/**
 * Makes `path` ready to listen on. `what` names the socket and `key` the config key that moves it,
 * for the error an operator sees.
 */
export async function claimSocketPath(path: string, what: string, key: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if (isENOENT(err)) return;
    throw err;
  }
  if (!st.isSocket()) throw failedPrecondition(`${what} ${path} exists and is not a socket; remove it or set ${key}`);
  if (await socketAnswers(path)) {
    throw failedPrecondition(`another process is serving ${what} ${path} (another runtime?); stop it or set ${key} to another path`);
  }
  await unlink(path).catch((err: unknown) => {
    if (!isENOENT(err)) throw err;
  });
}
