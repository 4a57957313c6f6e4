// A connected pair of unix stream sockets, for handing one end to a launched plugin as its fd 3.
// Node has no socketpair(2), so the pair is made by connecting to a throw-away listener in a
// private (0700) temp directory that is removed again at once.
import net from 'node:net';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SocketPair {
  /** The end crisp keeps. */
  ours: net.Socket;
  /** The end the child gets; close it in the parent right after spawning. */
  theirs: net.Socket;
}

export async function connectedSocketPair(): Promise<SocketPair> {
  const dir = await mkdtemp(join(tmpdir(), 'crisp-nri-pair-'));
  const server = net.createServer();
  try {
    server.listen(join(dir, 's'));
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const theirs = net.connect(join(dir, 's'));
    // Nothing may be read from the child's end in this process: those bytes belong to the child.
    theirs.pause();
    await once(theirs, 'connect');
    const [ours] = await accepted;
    return { ours, theirs };
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}
