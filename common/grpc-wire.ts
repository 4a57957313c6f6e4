// The parts of gRPC over HTTP/2 (grpc/grpc PROTOCOL-HTTP2.md) that are plain data: length-prefixed
// messages, the grpc-timeout header and the percent-encoded grpc-message trailer.

/** A message on the wire: 1 byte compressed-flag, 4 bytes big-endian length, the bytes. */
export const FRAME_HEADER = 5;

export function frameMessage(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  out.set(payload, FRAME_HEADER);
  return writeFrameHeader(out);
}

/** Writes the prefix (uncompressed) of the message that follows it in `frame`; returns `frame`. */
export function writeFrameHeader(frame: Buffer): Buffer {
  frame[0] = 0;
  frame.writeUInt32BE(frame.length - FRAME_HEADER, 1);
  return frame;
}

export type Unframed =
  | { kind: 'message'; compressed: boolean; payload: Buffer }
  | { kind: 'none' }
  | { kind: 'truncated'; declared: number; have: number }
  | { kind: 'several' };

/** The one message a unary or server-streaming request carries. */
export function unframeSingle(body: Buffer): Unframed {
  if (body.length === 0) return { kind: 'none' };
  if (body.length < FRAME_HEADER) return { kind: 'truncated', declared: -1, have: body.length };
  const declared = body.readUInt32BE(1);
  const end = FRAME_HEADER + declared;
  if (body.length < end) return { kind: 'truncated', declared, have: body.length - FRAME_HEADER };
  if (body.length > end) return { kind: 'several' };
  return { kind: 'message', compressed: body[0] !== 0, payload: body.subarray(FRAME_HEADER, end) };
}

/** The declared length of the first message, once its 5-byte prefix has arrived (chunks as received). */
export function declaredLength(chunks: readonly Buffer[]): number | undefined {
  let have = 0;
  for (const c of chunks) have += c.length;
  if (have < FRAME_HEADER) return undefined;
  const head = chunks[0]!.length >= FRAME_HEADER ? chunks[0]! : Buffer.concat(chunks as Buffer[]);
  return head.readUInt32BE(1);
}

function timeoutUnitMs(unit: string): number | undefined {
  switch (unit) {
    case 'H':
      return 3_600_000;
    case 'M':
      return 60_000;
    case 'S':
      return 1000;
    case 'm':
      return 1;
    case 'u':
      return 0.001;
    case 'n':
      return 0.000_001;
    default:
      return undefined;
  }
}

/**
 * grpc-timeout ("TimeoutValue TimeoutUnit": at most 8 digits, one of H M S m u n) in ms; undefined when
 * malformed. Read by hand: every call carries one, and a RegExp match allocated its result per call.
 */
export function parseGrpcTimeout(value: string): number | undefined {
  const last = value.length - 1;
  if (last < 1 || last > 8) return undefined;
  const unit = timeoutUnitMs(value[last]!);
  if (unit === undefined) return undefined;
  let n = 0;
  for (let i = 0; i < last; i++) {
    const digit = value.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    n = n * 10 + digit;
  }
  return n * unit;
}

/** Bytes a grpc-message may carry as they are: printable ASCII except '%'. */
const PLAIN = /^[\x20-\x24\x26-\x7e]*$/;

/** grpc-message value: the UTF-8 bytes of `text`, each outside 0x20–0x7E (and '%') as %XX. */
export function encodeGrpcMessage(text: string): string {
  if (PLAIN.test(text)) return text;
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** A deadline `ms` from now as a grpc-timeout value (at most 8 digits, rounded up to the unit). */
export function formatGrpcTimeout(ms: number): string {
  const units: [string, number][] = [['m', 1], ['S', 1000], ['M', 60_000], ['H', 3_600_000]];
  for (const [unit, size] of units) {
    const n = Math.ceil(Math.max(ms, 0) / size);
    if (n < 100_000_000) return `${n}${unit}`;
  }
  return '99999999H';
}

/** The text of a percent-encoded grpc-message (invalid UTF-8 becomes U+FFFD, a stray '%' stays). */
export function decodeGrpcMessage(value: string): string {
  if (!value.includes('%')) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    const hex = c === 0x25 ? /^[0-9a-fA-F]{2}$/.exec(value.slice(i + 1, i + 3)) : null;
    if (hex) {
      bytes.push(parseInt(hex[0], 16));
      i += 2;
    } else {
      bytes.push(c & 0xff);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
