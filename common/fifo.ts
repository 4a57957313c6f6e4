// FIFOs between crispd and a containerd shim. Output FIFOs are opened O_RDWR|O_NONBLOCK: opening never
// blocks on the peer, and a reader never sees a premature EOF. The price is that the reader sees no
// EOF at all, so it ends itself: once the writer is known to be done (the process was deleted), a
// random marker written through the same FIFO arrives after every byte the writer sent.
import { constants, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { execa } from './exec.js';
import { isErrno } from './errors.js';

export async function makeFifos(...paths: string[]): Promise<void> {
  if (paths.length > 0) await execa('mkfifo', ['-m', '0600', ...paths]);
}

export async function removeFifos(...paths: string[]): Promise<void> {
  await Promise.all(paths.map((p) => rm(p, { force: true })));
}

/** A raw fd (not a FileHandle: the socket owns and closes it, a FileHandle would close it again on GC). */
async function openPipe(path: string, readable = true): Promise<Socket> {
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  return new Socket({ fd, readable, writable: true });
}

export interface FifoReader {
  /** Bytes received so far (capped at `limit`; `truncated` tells). */
  data(): Buffer;
  truncated(): boolean;
  /** Call once the writer is done: resolves with everything it wrote, then closes the FIFO. */
  finish(timeoutMs?: number): Promise<Buffer>;
  /** Raw stream of the output, for streaming consumers. */
  socket: Socket;
  close(): void;
}

export async function openFifoReader(path: string, limit = Number.POSITIVE_INFINITY): Promise<FifoReader> {
  const socket = await openPipe(path);
  const chunks: Buffer[] = [];
  let size = 0;
  let cut = false;
  let tail = Buffer.alloc(0);
  let marker: Buffer | undefined;
  let done: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    if (marker) {
      // Keep a window so a marker split across chunks is still found.
      const joined = Buffer.concat([tail, chunk]);
      const at = joined.indexOf(marker);
      if (at >= 0) {
        keep(joined.subarray(0, at));
        tail = Buffer.alloc(0);
        done?.();
        return;
      }
      const safe = Math.max(0, joined.length - marker.length);
      keep(joined.subarray(0, safe));
      tail = joined.subarray(safe);
      return;
    }
    keep(chunk);
  });
  socket.on('error', () => undefined);
  function keep(b: Buffer): void {
    if (b.length === 0) return;
    const room = limit - size;
    if (room <= 0) {
      cut = true;
      return;
    }
    const part = b.length > room ? b.subarray(0, room) : b;
    if (part.length < b.length) cut = true;
    chunks.push(part);
    size += part.length;
  }
  return {
    socket,
    data: () => Buffer.concat(chunks),
    truncated: () => cut,
    close: () => socket.destroy(),
    finish: async (timeoutMs = 5000) => {
      marker = randomBytes(24);
      const arrived = new Promise<void>((resolve) => (done = resolve));
      socket.write(marker);
      await Promise.race([arrived, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
      socket.destroy();
      return Buffer.concat(chunks);
    },
  };
}

/** Both directions of a FIFO: read what the shim writes, and write an end marker through it. */
export async function openFifoDuplex(path: string): Promise<Socket> {
  return openPipe(path, true);
}

/**
 * The write side of a task's stdin FIFO, opened O_WRONLY once the shim holds the read end (after
 * Tasks.Create): an O_RDWR end would also count as a reader and could take bytes meant for the
 * shim. The shim keeps a writer of its own until CloseIO, so closing this one never ends stdin.
 * Undefined when no reader is there (ENXIO: the task is gone).
 */
export async function openFifoWriter(path: string): Promise<Socket | undefined> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, 'ENXIO')) return undefined;
    throw err;
  }
  const socket = new Socket({ fd, readable: false, writable: true });
  socket.on('error', () => undefined);
  return socket;
}
