// List answers kept in wire form. ListContainers is answered from memory and asked often (kubelet's
// PLEG relists every second; monitoring polls too); most of its cost per call was protobufjs building
// and encoding the same containers again. Each item's encoding is now kept next to the CRI view it was
// made from and reused while a fresh view has the same values; the answer is those encodings
// concatenated as the repeated field.
import { codecFor } from '../../common/proto-registry.js';
import type { Input } from '../../common/proto-registry.js';
import { Encoded } from '../../common/grpc-server.js';
import { FRAME_HEADER } from '../../common/grpc-wire.js';

/** Same values: top-level fields identical, or plain objects (one level down) with identical fields. */
function sameView(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) {
    const x = a[k];
    const y = b[k];
    if (Object.is(x, y)) continue;
    if (!isPlainObject(x) || !isPlainObject(y)) return false;
    const inner = Object.keys(x);
    if (inner.length !== Object.keys(y).length) return false;
    for (const ik of inner) if (!Object.is(x[ik], y[ik])) return false;
  }
  return true;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/** Bytes of a varint. */
function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/**
 * Encodes items of message type `typeName` (the CRI view `view(record)` of each record) as a repeated
 * field `fieldNumber`, reusing each record's encoding while its view holds the same values. The view
 * must be made of the record's own values and objects (a mapping, no copies of nested objects other
 * than one level of fresh plain objects), which is what lets "same values" be a shallow check.
 */
export class EncodedList<R extends object, T> {
  private readonly cache = new WeakMap<R, { view: Record<string, unknown>; bytes: Uint8Array }>();
  private readonly codec;
  private readonly tag: number;

  constructor(
    typeName: string,
    fieldNumber: number,
    private readonly view: (record: R) => Input<T>,
  ) {
    this.codec = codecFor<T>(typeName);
    this.tag = (fieldNumber << 3) | 2;
    if (this.tag >= 0x80) throw new Error(`EncodedList: field number ${fieldNumber} needs a multi-byte tag`);
  }

  /** The encoding of `record`'s view, from the cache while the view is unchanged. */
  item(record: R): Uint8Array {
    const view = this.view(record) as Record<string, unknown>;
    const cached = this.cache.get(record);
    if (cached && sameView(view, cached.view)) return cached.bytes;
    const bytes = this.codec.encode(view as Input<T>);
    this.cache.set(record, { view, bytes });
    return bytes;
  }

  /** A message holding only the repeated field, with `records` in order. */
  encode(records: readonly R[]): Buffer {
    return this.encodeAfter(records, 0);
  }

  /** The same message as a gRPC answer, written once with its length prefix in front. */
  answer<Res>(records: readonly R[]): Encoded<Res> {
    return Encoded.inFrame<Res>(this.encodeAfter(records, FRAME_HEADER));
  }

  /** The message after `room` bytes left for the caller. */
  private encodeAfter(records: readonly R[], room: number): Buffer {
    const items = records.map((r) => this.item(r));
    let size = room;
    for (const b of items) size += 1 + varintLength(b.length) + b.length;
    const out = Buffer.allocUnsafe(size);
    let at = room;
    for (const b of items) {
      out[at++] = this.tag;
      let n = b.length;
      while (n >= 0x80) {
        out[at++] = (n & 0x7f) | 0x80;
        n = Math.floor(n / 128);
      }
      out[at++] = n;
      out.set(b, at);
      at += b.length;
    }
    return out;
  }
}
