// Streaming client commands over WebSocket (the Kubernetes channel protocols): `crisp exec -it`,
// `crisp attach` and `crisp port-forward`. CRI hands out a URL on crispd's streaming server; these
// connect to it, put the terminal in raw mode for a tty, and send its size again on SIGWINCH.
import { createServer, type Socket } from 'node:net';
import type { Command } from 'commander';
import type { WebSocket, RawData } from 'ws';
import { withClient } from './client-context.js';
import { exitCodeOf, type KubeStatus } from '../cri/streaming/status.js';

const CH = { STDIN: 0, STDOUT: 1, STDERR: 2, ERROR: 3, RESIZE: 4, CLOSE: 255 } as const;

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function frame(channel: number, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([channel]), data]);
}

/** Connects; `onMessage` is attached at once, since frames can arrive in the same read as the
 *  handshake answer and are emitted before any later listener could be added. */
async function openSocket(url: string, protocols: string[], onMessage: (msg: Buffer) => void): Promise<WebSocket> {
  // ws loads only for a streaming session: other commands start faster.
  const { WebSocket } = await import('ws');
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
    ws.on('message', (data: RawData) => onMessage(toBuffer(data)));
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`streaming server answered ${res.statusCode} ${res.statusMessage ?? ''}`.trim())));
    ws.once('error', reject);
  });
}

/**
 * Runs an exec or attach session on `url` with this process's stdio: raw terminal for a tty, stdin
 * forwarded when asked, the remote exit code (from the error channel's Status) as the result.
 */
export async function runRemoteCommand(url: string, opts: { stdin: boolean; tty: boolean }): Promise<number> {
  let status = Buffer.alloc(0);
  const ws = await openSocket(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io'], (msg) => {
    if (msg.length === 0) return;
    const payload = msg.subarray(1);
    if (msg[0] === CH.STDOUT) process.stdout.write(payload);
    else if (msg[0] === CH.STDERR) process.stderr.write(payload);
    else if (msg[0] === CH.ERROR) status = Buffer.concat([status, payload]);
  });
  const v5 = ws.protocol === 'v5.channel.k8s.io';
  const rawTerminal = opts.tty && opts.stdin && process.stdin.isTTY;
  if (rawTerminal) process.stdin.setRawMode(true);
  const sendSize = () => {
    if (process.stdout.isTTY && ws.readyState === ws.OPEN) {
      ws.send(frame(CH.RESIZE, Buffer.from(JSON.stringify({ Width: process.stdout.columns, Height: process.stdout.rows }))));
    }
  };
  if (opts.tty) {
    sendSize();
    process.on('SIGWINCH', sendSize);
  }
  const onInput = (d: Buffer) => {
    if (ws.readyState === ws.OPEN) ws.send(frame(CH.STDIN, d));
  };
  const onInputEnd = () => {
    // v5 can say "no more stdin" without closing the session.
    if (v5 && ws.readyState === ws.OPEN) ws.send(Buffer.from([CH.CLOSE, CH.STDIN]));
  };
  if (opts.stdin) {
    process.stdin.on('data', onInput);
    process.stdin.once('end', onInputEnd);
  }
  await new Promise<void>((resolve) => ws.once('close', () => resolve()));
  process.off('SIGWINCH', sendSize);
  if (opts.stdin) {
    process.stdin.off('data', onInput);
    process.stdin.off('end', onInputEnd);
    process.stdin.pause();
  }
  if (rawTerminal) process.stdin.setRawMode(false);
  if (status.length === 0) return 0;
  let parsed: KubeStatus;
  try {
    parsed = JSON.parse(status.toString('utf8')) as KubeStatus;
  } catch {
    throw new Error(`bad status from the streaming server: ${status.toString('utf8')}`);
  }
  const result = exitCodeOf(parsed);
  if ('error' in result) throw new Error(result.error);
  return result.exitCode;
}

/** `crisp exec -i/-t`: an Exec session (the plain `crisp exec` stays ExecSync). */
export async function streamingExec(program: Command, id: string, cmd: string[], opts: { stdin: boolean; tty: boolean }): Promise<void> {
  await withClient(program, async (cri) => {
    const { url } = await cri.runtime.unary('Exec', { containerId: id, cmd, tty: opts.tty, stdin: opts.stdin, stdout: true, stderr: !opts.tty });
    process.exitCode = await runRemoteCommand(url, opts);
  });
}

/** LOCAL:REMOTE or PORT (both the same). */
export function parsePortMapping(spec: string): { local: number; remote: number } {
  const m = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(spec);
  const local = m ? Number(m[1]) : NaN;
  const remote = m ? Number(m[2] ?? m[1]) : NaN;
  if (!(local >= 0 && local <= 65535 && remote >= 1 && remote <= 65535)) throw new Error(`bad port mapping "${spec}" (want LOCAL:REMOTE or PORT)`);
  return { local, remote };
}

/** Relays one local connection through a fresh PortForward session (one WebSocket per connection). */
function relayConnection(url: string, remote: number, sock: Socket): void {
  // The first message on each channel is the port number; everything after it is payload.
  const seenPrefix = new Set<number>();
  openSocket(url, ['v4.channel.k8s.io'], (msg) => {
    if (msg.length === 0) return;
    const channel = msg[0]!;
    let payload = msg.subarray(1);
    if (!seenPrefix.has(channel)) {
      seenPrefix.add(channel);
      payload = payload.subarray(2);
    }
    if (channel === 0) sock.write(payload);
    else if (channel === 1 && payload.length > 0) console.error(`crisp: port ${remote}: ${payload.toString('utf8')}`);
  })
    .then((ws) => {
      ws.once('close', () => sock.end());
      sock.on('data', (d: Buffer) => {
        if (ws.readyState === ws.OPEN) ws.send(frame(0, d));
      });
      sock.once('close', () => ws.close());
    })
    .catch((err: unknown) => {
      console.error(`crisp: port ${remote}: ${err instanceof Error ? err.message : String(err)}`);
      sock.destroy();
    });
}

export function registerStreamCommands(program: Command): void {
  program
    .command('attach <id>')
    .description("attach to a running container's main process (its output, and stdin with -i)")
    .option('-i, --stdin', 'send this terminal\'s input to the container (it must have been created with stdin)')
    .option('-t, --tty', 'the container has a tty (must match its config)')
    .action(async (id: string, o: { stdin?: boolean; tty?: boolean }) => {
      await withClient(program, async (cri) => {
        const opts = { stdin: Boolean(o.stdin), tty: Boolean(o.tty) };
        const { url } = await cri.runtime.unary('Attach', { containerId: id, stdin: opts.stdin, tty: opts.tty, stdout: true, stderr: !opts.tty });
        process.exitCode = await runRemoteCommand(url, opts);
      });
    });

  program
    .command('port-forward <pod-id> <ports...>')
    .description('forward local ports to ports in a pod: LOCAL:REMOTE or PORT (until interrupted)')
    .option('--address <address>', 'local address to listen on', '127.0.0.1')
    .action(async (podId: string, specs: string[], o: { address: string }) => {
      await withClient(program, async (cri) => {
        const mappings = specs.map(parsePortMapping);
        const servers = await Promise.all(
          mappings.map(
            ({ local, remote }) =>
              new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
                const server = createServer((sock) => {
                  sock.on('error', () => undefined);
                  cri.runtime
                    .unary('PortForward', { podSandboxId: podId, port: [remote] })
                    .then(({ url }) => relayConnection(url, remote, sock))
                    .catch((err: unknown) => {
                      console.error(`crisp: PortForward: ${err instanceof Error ? err.message : String(err)}`);
                      sock.destroy();
                    });
                });
                server.once('error', reject);
                server.listen(local, o.address, () => {
                  const addr = server.address();
                  const port = typeof addr === 'object' && addr ? addr.port : local;
                  console.log(`Forwarding from ${o.address}:${port} -> ${remote}`);
                  resolve(server);
                });
              }),
          ),
        );
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        for (const s of servers) s.close();
      });
    });
}
