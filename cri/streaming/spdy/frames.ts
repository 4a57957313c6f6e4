// SPDY/3 frames on the wire (SPDY/3.1 uses the same frames; it adds session-level flow control through
// WINDOW_UPDATE on stream 0). Pure encode/decode: header blocks stay compressed bytes here, their
// (de)compression lives in header-compression.ts, so this module is synchronous and easy to test.
//
// Control frame: C=1 | version (15) | type (16) | flags (8) | length (24) | payload
// Data frame:    C=0 | stream id (31)           | flags (8) | length (24) | payload

export const SPDY_VERSION = 3;
/** Both windows start at 64 KiB in SPDY/3.1. */
export const DEFAULT_WINDOW = 65_536;
export const MAX_FRAME_LENGTH = 0xff_ffff;

export const FrameType = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;

export const Flag = { FIN: 0x01, UNIDIRECTIONAL: 0x02, CLEAR_SETTINGS: 0x01 } as const;

export const RstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  UNSUPPORTED_VERSION: 4,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7,
  STREAM_IN_USE: 8,
  STREAM_ALREADY_CLOSED: 9,
  FRAME_TOO_LARGE: 11,
} as const;

export const GoAwayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

export const SettingId = { INITIAL_WINDOW_SIZE: 7 } as const;

export interface SettingEntry {
  flags: number;
  id: number;
  value: number;
}

export type Frame =
  | { type: 'data'; streamId: number; fin: boolean; data: Buffer }
  | { type: 'syn_stream'; streamId: number; associatedId: number; priority: number; fin: boolean; unidirectional: boolean; headerBlock: Buffer }
  | { type: 'syn_reply'; streamId: number; fin: boolean; headerBlock: Buffer }
  | { type: 'headers'; streamId: number; fin: boolean; headerBlock: Buffer }
  | { type: 'rst_stream'; streamId: number; status: number }
  | { type: 'settings'; clear: boolean; entries: SettingEntry[] }
  | { type: 'ping'; id: number }
  | { type: 'goaway'; lastGoodStreamId: number; status: number }
  | { type: 'window_update'; streamId: number; delta: number }
  /** A control frame of a type this side does not know (CREDENTIAL, or newer): skipped. */
  | { type: 'unknown'; frameType: number };

export class SpdyProtocolError extends Error {
  constructor(
    message: string,
    /** Set when the error concerns one stream (answered with RST_STREAM instead of GOAWAY). */
    readonly streamId = 0,
  ) {
    super(message);
    this.name = 'SpdyProtocolError';
  }
}

const ID_MASK = 0x7fff_ffff;

function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_LENGTH) throw new RangeError(`SPDY frame payload of ${payload.length} bytes is too large`);
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([head, payload]);
}

function checkId(id: number, what: string): number {
  if (!Number.isInteger(id) || id < 0 || id > ID_MASK) throw new RangeError(`SPDY ${what} ${id} is out of range`);
  return id;
}

/** Encodes one frame (header blocks must already be compressed). */
export function encodeFrame(f: Frame): Buffer {
  switch (f.type) {
    case 'data': {
      if (f.data.length > MAX_FRAME_LENGTH) throw new RangeError(`SPDY data frame of ${f.data.length} bytes is too large`);
      const head = Buffer.alloc(8);
      head.writeUInt32BE(checkId(f.streamId, 'stream id'), 0);
      head.writeUInt32BE(((f.fin ? Flag.FIN : 0) << 24) | f.data.length, 4);
      return Buffer.concat([head, f.data]);
    }
    case 'syn_stream': {
      const p = Buffer.alloc(10);
      p.writeUInt32BE(checkId(f.streamId, 'stream id'), 0);
      p.writeUInt32BE(checkId(f.associatedId, 'associated stream id'), 4);
      p.writeUInt8((f.priority & 0x7) << 5, 8);
      p.writeUInt8(0, 9); // credential slot: unused
      const flags = (f.fin ? Flag.FIN : 0) | (f.unidirectional ? Flag.UNIDIRECTIONAL : 0);
      return controlFrame(FrameType.SYN_STREAM, flags, Buffer.concat([p, f.headerBlock]));
    }
    case 'syn_reply':
    case 'headers': {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(checkId(f.streamId, 'stream id'), 0);
      const type = f.type === 'syn_reply' ? FrameType.SYN_REPLY : FrameType.HEADERS;
      return controlFrame(type, f.fin ? Flag.FIN : 0, Buffer.concat([p, f.headerBlock]));
    }
    case 'rst_stream': {
      const p = Buffer.alloc(8);
      p.writeUInt32BE(checkId(f.streamId, 'stream id'), 0);
      p.writeUInt32BE(f.status >>> 0, 4);
      return controlFrame(FrameType.RST_STREAM, 0, p);
    }
    case 'settings': {
      const p = Buffer.alloc(4 + 8 * f.entries.length);
      p.writeUInt32BE(f.entries.length, 0);
      f.entries.forEach((e, i) => {
        p.writeUInt32BE((((e.flags & 0xff) << 24) | (e.id & 0xff_ffff)) >>> 0, 4 + 8 * i);
        p.writeUInt32BE(e.value >>> 0, 8 + 8 * i);
      });
      return controlFrame(FrameType.SETTINGS, f.clear ? Flag.CLEAR_SETTINGS : 0, p);
    }
    case 'ping': {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(f.id >>> 0, 0);
      return controlFrame(FrameType.PING, 0, p);
    }
    case 'goaway': {
      const p = Buffer.alloc(8);
      p.writeUInt32BE(checkId(f.lastGoodStreamId, 'last good stream id'), 0);
      p.writeUInt32BE(f.status >>> 0, 4);
      return controlFrame(FrameType.GOAWAY, 0, p);
    }
    case 'window_update': {
      const p = Buffer.alloc(8);
      p.writeUInt32BE(checkId(f.streamId, 'stream id'), 0);
      if (!Number.isInteger(f.delta) || f.delta < 1 || f.delta > ID_MASK) throw new RangeError(`SPDY window delta ${f.delta} is out of range`);
      p.writeUInt32BE(f.delta, 4);
      return controlFrame(FrameType.WINDOW_UPDATE, 0, p);
    }
    case 'unknown':
      throw new RangeError(`cannot encode an unknown SPDY frame type ${f.frameType}`);
  }
}

function need(payload: Buffer, n: number, what: string): void {
  if (payload.length < n) throw new SpdyProtocolError(`${what} frame of ${payload.length} bytes is too short (needs ${n})`);
}

function decodeControl(type: number, flags: number, p: Buffer): Frame {
  const fin = (flags & Flag.FIN) !== 0;
  switch (type) {
    case FrameType.SYN_STREAM:
      need(p, 10, 'SYN_STREAM');
      return {
        type: 'syn_stream',
        streamId: p.readUInt32BE(0) & ID_MASK,
        associatedId: p.readUInt32BE(4) & ID_MASK,
        priority: p.readUInt8(8) >> 5,
        fin,
        unidirectional: (flags & Flag.UNIDIRECTIONAL) !== 0,
        headerBlock: p.subarray(10),
      };
    case FrameType.SYN_REPLY:
      need(p, 4, 'SYN_REPLY');
      return { type: 'syn_reply', streamId: p.readUInt32BE(0) & ID_MASK, fin, headerBlock: p.subarray(4) };
    case FrameType.HEADERS:
      need(p, 4, 'HEADERS');
      return { type: 'headers', streamId: p.readUInt32BE(0) & ID_MASK, fin, headerBlock: p.subarray(4) };
    case FrameType.RST_STREAM:
      need(p, 8, 'RST_STREAM');
      return { type: 'rst_stream', streamId: p.readUInt32BE(0) & ID_MASK, status: p.readUInt32BE(4) };
    case FrameType.SETTINGS: {
      need(p, 4, 'SETTINGS');
      const count = p.readUInt32BE(0);
      need(p, 4 + 8 * count, 'SETTINGS');
      const entries: SettingEntry[] = [];
      for (let i = 0; i < count; i++) {
        const word = p.readUInt32BE(4 + 8 * i);
        entries.push({ flags: word >>> 24, id: word & 0xff_ffff, value: p.readUInt32BE(8 + 8 * i) });
      }
      return { type: 'settings', clear: (flags & Flag.CLEAR_SETTINGS) !== 0, entries };
    }
    case FrameType.PING:
      need(p, 4, 'PING');
      return { type: 'ping', id: p.readUInt32BE(0) };
    case FrameType.GOAWAY:
      need(p, 4, 'GOAWAY');
      // SPDY/2 peers sent no status; treat it as OK.
      return { type: 'goaway', lastGoodStreamId: p.readUInt32BE(0) & ID_MASK, status: p.length >= 8 ? p.readUInt32BE(4) : 0 };
    case FrameType.WINDOW_UPDATE:
      need(p, 8, 'WINDOW_UPDATE');
      return { type: 'window_update', streamId: p.readUInt32BE(0) & ID_MASK, delta: p.readUInt32BE(4) & ID_MASK };
    default:
      return { type: 'unknown', frameType: type };
  }
}

/**
 * Incremental frame reader: feed it socket chunks in any split, get whole frames back. Bytes of a frame
 * that has not fully arrived are kept for the next push.
 */
export class FrameParser {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrameLength = MAX_FRAME_LENGTH) {}

  /** Frames completed by `chunk`, in order. Throws SpdyProtocolError on a malformed frame. */
  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    let at = 0;
    while (this.buf.length - at >= 8) {
      const word0 = this.buf.readUInt32BE(at);
      const word1 = this.buf.readUInt32BE(at + 4);
      const flags = word1 >>> 24;
      const length = word1 & 0xff_ffff;
      if (length > this.maxFrameLength) throw new SpdyProtocolError(`frame of ${length} bytes exceeds the ${this.maxFrameLength}-byte limit`);
      if (this.buf.length - at < 8 + length) break;
      // Copy: the payload outlives this buffer (queued data, header blocks awaiting inflation).
      const payload = Buffer.from(this.buf.subarray(at + 8, at + 8 + length));
      at += 8 + length;
      if ((word0 & 0x8000_0000) !== 0) {
        const version = (word0 >>> 16) & 0x7fff;
        if (version !== SPDY_VERSION) throw new SpdyProtocolError(`unsupported SPDY version ${version}`);
        frames.push(decodeControl(word0 & 0xffff, flags, payload));
      } else {
        frames.push({ type: 'data', streamId: word0 & ID_MASK, fin: (flags & Flag.FIN) !== 0, data: payload });
      }
    }
    this.buf = at === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(at);
    return frames;
  }

  /** Bytes waiting for the rest of their frame. */
  get pending(): number {
    return this.buf.length;
  }
}

/** Name/value pairs in a header block; a name may carry several values (NUL-separated on the wire). */
export type HeaderMap = Record<string, string[]>;

/** The uncompressed header block: count, then length-prefixed names and values (all 32-bit lengths). */
export function encodeHeaderBlock(headers: HeaderMap): Buffer {
  const entries = Object.entries(headers);
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(entries.length);
  parts.push(count);
  for (const [name, values] of entries) {
    // SPDY/3 requires lowercase names; Go's framer rejects anything else.
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(values.join('\0'), 'utf8');
    const nl = Buffer.alloc(4);
    nl.writeUInt32BE(n.length);
    const vl = Buffer.alloc(4);
    vl.writeUInt32BE(v.length);
    parts.push(nl, n, vl, v);
  }
  return Buffer.concat(parts);
}

export function decodeHeaderBlock(block: Buffer, streamId = 0): HeaderMap {
  const fail = (why: string) => new SpdyProtocolError(`bad header block: ${why}`, streamId);
  if (block.length < 4) throw fail('no pair count');
  const count = block.readUInt32BE(0);
  let at = 4;
  const out: HeaderMap = {};
  const readString = (what: string): string => {
    if (block.length - at < 4) throw fail(`truncated ${what} length`);
    const len = block.readUInt32BE(at);
    at += 4;
    if (block.length - at < len) throw fail(`truncated ${what}`);
    const s = block.subarray(at, at + len).toString('utf8');
    at += len;
    return s;
  };
  for (let i = 0; i < count; i++) {
    const name = readString('name');
    if (name === '') throw fail('empty header name');
    const value = readString('value');
    if (out[name]) throw fail(`duplicate header ${name}`);
    out[name.toLowerCase()] = value.split('\0');
  }
  return out;
}

/** First value of a header, by case-insensitive name ("" when absent). */
export function headerValue(headers: HeaderMap, name: string): string {
  return headers[name.toLowerCase()]?.[0] ?? '';
}
