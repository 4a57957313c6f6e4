// One protobufjs root for the packages crisp speaks (CRI, containerd, NRI), built from the descriptor
// that scripts/gen-proto-types.mjs writes, with encode/decode between wire bytes and plain objects
// shaped like the generated interfaces in gen/. A package enters the root on its first lookup, with the
// packages its types refer to: a daemon with NRI off never builds the NRI types, nor the containerd
// services it does not call (bench/README.md, "Where the memory goes").
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

type Json = Record<string, unknown>;
/** A proto package in the descriptor: its own types, enums and services (not its sub-packages). */
interface Package {
  name: string;
  own: Record<string, Json>;
}

const SCALARS = new Set(['double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'bool', 'string', 'bytes']);
const isDefinition = (v: Json) => 'fields' in v || 'values' in v || 'methods' in v;
const nestedOf = (v: Json) => (v.nested ?? {}) as Record<string, Json>;

let packageIndex: Map<string, Package> | undefined;
/** Packages by name: every namespace of the descriptor that holds a definition of its own. */
function packages(): Map<string, Package> {
  if (packageIndex) return packageIndex;
  const index = new Map<string, Package>();
  const walk = (ns: Json, prefix: string) => {
    const own: Record<string, Json> = {};
    for (const [name, v] of Object.entries(nestedOf(ns))) {
      if (isDefinition(v)) own[name] = v;
      else walk(v, prefix ? `${prefix}.${name}` : name);
    }
    if (Object.keys(own).length > 0) index.set(prefix, { name: prefix, own });
  };
  walk(descriptor, '');
  packageIndex = index;
  return index;
}

/** The package that defines `fullName` (a type, enum, service or a name nested in one). */
function packageOf(fullName: string): Package | undefined {
  const index = packages();
  for (let name = fullName.replace(/^\./, ''); name.includes('.'); ) {
    name = name.slice(0, name.lastIndexOf('.'));
    const pkg = index.get(name);
    if (pkg) return pkg;
  }
  return undefined;
}

/** True when the descriptor defines `fullName`. */
function defined(fullName: string): boolean {
  let node: Json | undefined = descriptor;
  for (const part of fullName.split('.')) {
    node = node ? nestedOf(node)[part] : undefined;
    if (!node) return false;
  }
  return true;
}

/** Packages whose types `pkg` refers to, resolving names from the inside out as protobuf does. */
function dependencies(pkg: Package): Set<Package> {
  const deps = new Set<Package>();
  const refer = (ref: string, scope: string) => {
    if (SCALARS.has(ref)) return;
    let target: string | undefined;
    if (ref.startsWith('.')) target = ref.slice(1);
    else {
      for (let s = scope; target === undefined; s = s.includes('.') ? s.slice(0, s.lastIndexOf('.')) : '') {
        const candidate = s ? `${s}.${ref}` : ref;
        if (defined(candidate)) target = candidate;
        else if (s === '') break;
      }
    }
    const owner = target === undefined ? undefined : packageOf(target);
    if (!owner) throw new Error(`proto descriptor: ${scope}: type ${ref} is not defined`);
    if (owner !== pkg) deps.add(owner);
  };
  const visit = (name: string, v: Json) => {
    for (const f of Object.values((v.fields ?? {}) as Record<string, Json>)) refer(f.type as string, name);
    for (const m of Object.values((v.methods ?? {}) as Record<string, Json>)) {
      refer(m.requestType as string, name);
      refer(m.responseType as string, name);
    }
    for (const [child, c] of Object.entries(nestedOf(v))) visit(`${name}.${child}`, c);
  };
  for (const [name, v] of Object.entries(pkg.own)) visit(pkg.name ? `${pkg.name}.${name}` : name, v);
  return deps;
}

const root = new protobuf.Root();
const built = new Set<Package>();
const codecs = new Map<string, Codec<unknown>>();

/** Put `pkg` and the packages it refers to into the root, resolved. */
function build(pkg: Package): void {
  if (built.has(pkg)) return;
  built.add(pkg);
  for (const dep of dependencies(pkg)) build(dep);
  const ns = pkg.name ? root.define(pkg.name) : root;
  ns.addJSON(pkg.own as Record<string, protobuf.AnyNestedObject>);
  for (const name of Object.keys(pkg.own)) {
    const added = ns.get(name);
    if (added instanceof protobuf.Namespace) added.resolveAll(); // types and services; enums refer to nothing
  }
}

/** The root with every package of the descriptor in it. */
export function protoRoot(): protobuf.Root {
  for (const pkg of packages().values()) build(pkg);
  return root;
}

function rootFor(fullName: string): protobuf.Root {
  const pkg = packageOf(fullName);
  if (pkg) build(pkg);
  return root;
}

export function lookupType(fullName: string): protobuf.Type {
  return rootFor(fullName).lookupType(fullName);
}

export function lookupService(fullName: string): protobuf.Service {
  return rootFor(fullName).lookupService(fullName);
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
