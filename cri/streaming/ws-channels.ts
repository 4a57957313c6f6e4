// The Kubernetes channel protocols over WebSocket: every message starts with its channel number. The
// binary variants put it in the first byte; the base64 ones send text, with the channel as an ASCII
// digit ('0' + n) followed by base64 of the payload. v5 adds a CLOSE signal: channel 255 whose one-byte
// payload names the channel the sender has finished writing (stdin half-close).

export const Channel = { STDIN: 0, STDOUT: 1, STDERR: 2, ERROR: 3, RESIZE: 4, CLOSE: 255 } as const;

export interface ChannelProtocol {
  name: string;
  base64: boolean;
  /** Status as JSON on the error channel (v4 and later). */
  jsonStatus: boolean;
  /** Understands the CLOSE signal (v5). */
  closeSignal: boolean;
}

const protocol = (name: string, base64: boolean, jsonStatus: boolean, closeSignal = false): ChannelProtocol => ({ name, base64, jsonStatus, closeSignal });

/** Exec/attach subprotocols; "" is a client that asked for none (binary, pre-v4). */
export const REMOTE_COMMAND_WS_PROTOCOLS: readonly ChannelProtocol[] = [
  protocol('v5.channel.k8s.io', false, true, true),
  protocol('v4.channel.k8s.io', false, true),
  protocol('v4.base64.channel.k8s.io', true, true),
  protocol('channel.k8s.io', false, false),
  protocol('base64.channel.k8s.io', true, false),
  protocol('', false, false),
];

/** Port-forward subprotocols, as kubelet offers them (plus the SPDY name, binary). */
export const PORT_FORWARD_WS_PROTOCOLS: readonly ChannelProtocol[] = [
  protocol('v4.channel.k8s.io', false, false),
  protocol('v4.base64.channel.k8s.io', true, false),
  protocol('portforward.k8s.io', false, false),
  protocol('', false, false),
];

/**
 * The subprotocol for what the client offered: the first of the client's list the server knows (the
 * client lists them by preference). undefined when the client offered some and none fits.
 */
export function pickWsProtocol(offered: string[], known: readonly ChannelProtocol[]): ChannelProtocol | undefined {
  if (offered.length === 0) return known.find((p) => p.name === '');
  for (const name of offered) {
    const p = known.find((k) => k.name !== '' && k.name === name);
    if (p) return p;
  }
  return undefined;
}

/** Comma-separated Sec-WebSocket-Protocol values, trimmed, empties dropped. */
export function parseProtocolHeader(value: string | string[] | undefined): string[] {
  const values = Array.isArray(value) ? value : value ? [value] : [];
  return values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
}

/** One message for `channel`: a Buffer (binary protocols) or a string (base64 ones). */
export function encodeChannelMessage(channel: number, data: Buffer, base64: boolean): Buffer | string {
  if (base64) return String.fromCharCode(48 + channel) + data.toString('base64');
  const out = Buffer.allocUnsafe(data.length + 1);
  out[0] = channel;
  data.copy(out, 1);
  return out;
}

export class ChannelFrameError extends Error {}

/** Splits a received message into its channel and payload. */
export function decodeChannelMessage(message: Buffer, isText: boolean, base64: boolean): { channel: number; data: Buffer } {
  if (message.length === 0) throw new ChannelFrameError('empty message (no channel byte)');
  if (base64) {
    if (!isText) throw new ChannelFrameError('binary message on a base64 channel protocol');
    const channel = message[0]! - 48;
    const text = message.subarray(1).toString('latin1');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) throw new ChannelFrameError(`channel ${channel}: payload is not valid base64`);
    return { channel, data: Buffer.from(text, 'base64') };
  }
  return { channel: message[0]!, data: message.subarray(1) };
}

/** Port-forward over WebSocket: data on channel 2i and errors on 2i+1 for the i-th port; the first
 *  message on each carries the port as a little-endian uint16. */
export function portPrefix(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(port);
  return b;
}
