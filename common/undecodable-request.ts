// Why a request's bytes do not decode, in words a client can act on: the field whose string is not
// valid UTF-8 (proto3 requires it; protobufjs rejects the whole message without saying where), or
// that the bytes are not the message at all. grpc-js would answer either with a bare INTERNAL.
import protobuf from 'protobufjs';
import { descriptor } from '../gen/descriptor.js';
import { invalidArgument, errorMessage, type CrispError } from './errors.js';

let lenientRoot: protobuf.Root | undefined;

/** The schema with every string field read as bytes, so a message with bad UTF-8 still decodes. */
export function stringsAsBytesRoot(): protobuf.Root {
  if (lenientRoot) return lenientRoot;
  const copy = structuredClone(descriptor);
  const walk = (node: unknown) => {
    if (!node || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (n.fields && typeof n.fields === 'object') {
      for (const f of Object.values(n.fields as Record<string, Record<string, unknown>>)) if (f.type === 'string') f.type = 'bytes';
    }
    for (const v of Object.values(n)) walk(v);
  };
  walk(copy);
  const root = protobuf.Root.fromJSON(copy as protobuf.INamespace);
  root.resolveAll();
  lenientRoot = root;
  return root;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function validUtf8(b: Uint8Array): boolean {
  try {
    strictUtf8.decode(b);
    return true;
  } catch {
    return false; // the fatal decoder's only way of saying "not UTF-8"
  }
}

/** camelCase field name → the proto's snake_case, as CRI error messages name fields. */
const protoName = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();

/** Path of the first string field (or map value) in `msg` that is not valid UTF-8. */
function badUtf8Field(type: protobuf.Type, msg: Record<string, unknown>, path: string): string | undefined {
  for (const f of type.fieldsArray) {
    const v = msg[f.name];
    if (v === undefined || v === null) continue;
    const name = path ? `${path}.${protoName(f.name)}` : protoName(f.name);
    const check = (x: unknown, at: string): string | undefined => {
      if (f.resolvedType instanceof protobuf.Type) return badUtf8Field(f.resolvedType, x as Record<string, unknown>, at);
      if (f.type === 'bytes' && x instanceof Uint8Array && !validUtf8(x)) return at;
      return undefined;
    };
    if (f.map) {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        const hit = check(x, `${name}[${JSON.stringify(k)}]`);
        if (hit) return hit;
      }
    } else if (f.repeated) {
      for (const [i, x] of (v as unknown[]).entries()) {
        const hit = check(x, `${name}[${i}]`);
        if (hit) return hit;
      }
    } else {
      const hit = check(v, name);
      if (hit) return hit;
    }
  }
  return undefined;
}

/**
 * INVALID_ARGUMENT for request bytes of `typeName` that failed to decode with `err`: names the field
 * whose string is not UTF-8 when that is the cause.
 */
export function undecodableRequest(typeName: string, bytes: Uint8Array, err: unknown): CrispError {
  try {
    const type = stringsAsBytesRoot().lookupType(typeName);
    const field = badUtf8Field(type, type.decode(bytes) as unknown as Record<string, unknown>, '');
    if (field) return invalidArgument(`${field}: not valid UTF-8`);
  } catch {
    // not decodable even with strings as bytes: the bytes are not this message, said below
  }
  return invalidArgument(`request is not a valid ${typeName}: ${errorMessage(err)}`);
}
