// One protobufjs root for every package crisp speaks (CRI, containerd, NRI), built from the descriptor
// that scripts/gen-proto-types.mjs writes, with encode/decode between wire bytes and plain objects
// shaped like the generated interfaces in gen/.
import protobuf from 'protobufjs';
import { descriptor } from '../gen/descriptor.js';

/** Partial, writable form of a generated message type: what callers pass to encode. */
export type Input<T> = T extends Buffer
  ? T
  : T extends (infer U)[]
    ? Input<U>[]
    : T extends object
      ? { [K in keyof T]?: Input<NonNullable<T[K]>> | null }
      : T;

export interface Codec<T> {
  encode(value: Input<T>): Buffer;
  decode(bytes: Uint8Array): T;
  /** Normalise a plain input into the fully defaulted decoded shape (no wire round trip for callers). */
  normalize(value: Input<T>): T;
}

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: Number,
  enums: Number,
  bytes: Buffer,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: false,
};

/** protobufjs's writer already hands out a Buffer under Node: wrap, never copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

let rootCache: protobuf.Root | undefined;
const codecs = new Map<string, Codec<unknown>>();

export function protoRoot(): protobuf.Root {
  if (!rootCache) {
    const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace) as protobuf.Root;
    root.resolveAll();
    rootCache = root;
  }
  return rootCache;
}

export function lookupType(fullName: string): protobuf.Type {
  return protoRoot().lookupType(fullName);
}

export function lookupService(fullName: string): protobuf.Service {
  return protoRoot().lookupService(fullName);
}

export function codecFor<T>(fullName: string): Codec<T> {
  const cached = codecs.get(fullName);
  if (cached) return cached as Codec<T>;
  const type = lookupType(fullName);
  const toPlain = (msg: protobuf.Message) => {
    const obj = type.toObject(msg, TO_OBJECT) as T;
    return obj;
  };
  const codec: Codec<T> = {
    encode: (value) => asBuffer(type.encode(type.fromObject(value as Record<string, unknown>)).finish()),
    decode: (bytes) => toPlain(type.decode(bytes)),
    normalize: (value) => toPlain(type.fromObject(value as Record<string, unknown>)),
  };
  codecs.set(fullName, codec as Codec<unknown>);
  return codec;
}

/** google.protobuf.Any as protobufjs's built-in definition names its fields (type_url keeps its case). */
export interface AnyMessage {
  type_url: string;
  value: Buffer;
}
