// A minimal WebSocket client of the Kubernetes channel protocols (binary v4/v5 framing: one channel
// byte, then data) for exec, attach and port-forward URLs: sends framed messages once open, collects
// each channel's bytes, and ends when `until` holds (then it closes the socket) or the server closes.
import { WebSocket, type RawData } from 'ws';

export interface ChannelSession {
  channels: Map<number, Buffer>;
  text(ch: number): string;
  closeCode: number;
}

export function channelSession(
  url: string,
  opts: { protocol?: string; send?: { ch: number; data: string }[]; until?: (s: ChannelSession) => boolean; timeoutMs?: number } = {},
): Promise<ChannelSession> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [opts.protocol ?? 'v5.channel.k8s.io']);
    const s: ChannelSession = {
      channels: new Map(),
      text: (ch) => s.channels.get(ch)?.toString() ?? '',
      closeCode: 0,
    };
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`channel session timed out; so far: ${JSON.stringify([...s.channels].map(([c, b]) => [c, b.toString()]))}`));
    }, opts.timeoutMs ?? 20_000);
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new Error(`HTTP ${res.statusCode} from ${url}`));
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.once('open', () => {
      for (const m of opts.send ?? []) ws.send(Buffer.concat([Buffer.from([m.ch]), Buffer.from(m.data)]));
    });
    ws.on('message', (data: RawData) => {
      const msg = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
      if (msg.length === 0) return;
      const ch = msg[0]!;
      s.channels.set(ch, Buffer.concat([s.channels.get(ch) ?? Buffer.alloc(0), msg.subarray(1)]));
      if (opts.until?.(s)) ws.close();
    });
    ws.once('close', (code) => {
      clearTimeout(timer);
      s.closeCode = code;
      resolve(s);
    });
  });
}
