// HPACK (RFC 7541) for a server: a decoder of request header blocks with the dynamic table the client
// fills, and an encoder of the few header fields a gRPC server answers with. The encoder never indexes
// (literal without indexing), so it never needs a table of its own or a size update.
import { HuffmanError, huffmanDecode } from './huffman.js';

/** The static table (RFC 7541, Appendix A): index 1..61 → [name, value]. */
// prettier-ignore
const STATIC: readonly (readonly [string, string])[] = [
  ['', ''],
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC.length - 1;
/** What an entry costs in the table: its name and value octets and 32 (RFC 7541, 4.1). */
const ENTRY_OVERHEAD = 32;
/** The largest integer accepted in a header block: more is an attack, not a header. */
const MAX_INTEGER = 2 ** 28;

/** A header block that is not valid HPACK: the connection's shared table is lost (COMPRESSION_ERROR). */
export class CompressionError extends Error {}

/** Decoded request headers: name → value, or values when the name came more than once. */
export type HeaderMap = Record<string, string | string[]>;

export interface DecodedBlock {
  headers: HeaderMap;
  /** Octets of names and values plus 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts. */
  listSize: number;
}

/** One connection's decoder; blocks must be decoded in the order they arrived, every one of them. */
export class HpackDecoder {
  /** Newest entry last; dynamic index 1 is the last element. */
  private readonly entries: [string, string][] = [];
  private size = 0;
  private maxSize: number;

  /** `limit` is SETTINGS_HEADER_TABLE_SIZE as this side advertised it (4096 unless changed). */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit;
  }

  decode(block: Uint8Array): DecodedBlock {
    const headers: HeaderMap = Object.create(null) as HeaderMap;
    let listSize = 0;
    let pos = 0;
    let fieldsSeen = false;
    const end = block.length;
    const integer = (prefixBits: number): number => {
      if (pos >= end) throw new CompressionError('header block ends inside an integer');
      const mask = (1 << prefixBits) - 1;
      let value = block[pos++]! & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (pos >= end) throw new CompressionError('header block ends inside an integer');
        const b = block[pos++]!;
        value += (b & 0x7f) * 2 ** shift;
        if (value > MAX_INTEGER) throw new CompressionError('integer too large in header block');
        if ((b & 0x80) === 0) return value;
        shift += 7;
      }
    };
    const string = (): string => {
      if (pos >= end) throw new CompressionError('header block ends before a string');
      const huffman = (block[pos]! & 0x80) !== 0;
      const length = integer(7);
      if (pos + length > end) throw new CompressionError('string runs past the end of the header block');
      const start = pos;
      pos += length;
      if (!huffman) return latin1(block, start, pos);
      try {
        return huffmanDecode(block, start, pos);
      } catch (err) {
        if (err instanceof HuffmanError) throw new CompressionError(err.message);
        throw err;
      }
    };
    const add = (name: string, value: string): void => {
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      const prior = headers[name];
      if (prior === undefined) headers[name] = value;
      else if (typeof prior === 'string') headers[name] = [prior, value];
      else prior.push(value);
    };
    while (pos < end) {
      const first = block[pos]!;
      if (first & 0x80) {
        const [name, value] = this.entry(integer(7));
        add(name, value);
        fieldsSeen = true;
      } else if (first & 0x40) {
        const index = integer(6);
        const name = index === 0 ? string() : this.entry(index)[0];
        const value = string();
        this.insert(name, value);
        add(name, value);
        fieldsSeen = true;
      } else if (first & 0x20) {
        if (fieldsSeen) throw new CompressionError('dynamic table size update after a header field');
        const size = integer(5);
        if (size > this.limit) throw new CompressionError(`dynamic table size update to ${size} above the ${this.limit} allowed`);
        this.maxSize = size;
        this.evict(0);
      } else {
        // literal without indexing (0000) or never indexed (0001): not added to the table
        const index = integer(4);
        const name = index === 0 ? string() : this.entry(index)[0];
        add(name, string());
        fieldsSeen = true;
      }
    }
    return { headers, listSize };
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new CompressionError('header index 0');
    if (index <= STATIC_COUNT) return STATIC[index]!;
    const dynamic = this.entries.length - (index - STATIC_COUNT);
    if (dynamic < 0) throw new CompressionError(`header index ${index} beyond the tables`);
    return this.entries[dynamic]!;
  }

  private insert(name: string, value: string): void {
    const cost = name.length + value.length + ENTRY_OVERHEAD;
    this.evict(cost);
    // An entry larger than the whole table empties it and is not added (RFC 7541, 4.4).
    if (cost > this.maxSize) return;
    this.entries.push([name, value]);
    this.size += cost;
  }

  /** Evicts oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    let drop = 0;
    while (this.size + room > this.maxSize && drop < this.entries.length) {
      const [n, v] = this.entries[drop]!;
      this.size -= n.length + v.length + ENTRY_OVERHEAD;
      drop++;
    }
    if (drop > 0) this.entries.splice(0, drop);
  }
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  // Short strings (most header names and values) are cheaper built here than through a Buffer view.
  if (end - start < 32) {
    let s = '';
    for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]!);
    return s;
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
}

/** An HPACK integer with the top bits of its first byte set to `flags`. */
function writeInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(flags | value);
    return;
  }
  out.push(flags | mask);
  let rest = value - mask;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function writeString(out: number[], text: string): void {
  const bytes = Buffer.from(text, 'latin1');
  writeInteger(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/**
 * A header block of `fields` (name, value), each a literal without indexing: with the static table's index
 * for the name where it has one, the full field where the static table holds it (:status 200).
 */
export function encodeHeaderBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const full = STATIC.findIndex(([n, v], i) => i > 0 && n === name && v === value);
    if (full > 0) {
      writeInteger(out, full, 7, 0x80);
      continue;
    }
    const named = STATIC.findIndex(([n], i) => i > 0 && n === name);
    if (named > 0) {
      writeInteger(out, named, 4, 0x00);
    } else {
      out.push(0x00);
      writeString(out, name);
    }
    writeString(out, value);
  }
  return Buffer.from(out);
}

/** Test helper's view: integer encoding as the decoder reads it. */
export function encodeInteger(value: number, prefixBits: number, flags: number): Buffer {
  const out: number[] = [];
  writeInteger(out, value, prefixBits, flags);
  return Buffer.from(out);
}
