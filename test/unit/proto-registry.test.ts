import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { descriptor } from '../../gen/descriptor.js';
import * as registry from '../../common/proto-registry.js';

type Json = Record<string, unknown>;
const nested = (v: Json) => (v.nested ?? {}) as Record<string, Json>;
const isDefinition = (v: Json) => 'fields' in v || 'values' in v || 'methods' in v;

/** Full names of the descriptor's top-level definitions, by the namespace (package) that holds them. */
function definitionsByPackage(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const walk = (ns: Json, prefix: string) => {
    for (const [name, v] of Object.entries(nested(ns))) {
      const full = prefix ? `${prefix}.${name}` : name;
      if (isDefinition(v)) out.set(prefix, [...(out.get(prefix) ?? []), full]);
      else walk(v, full);
    }
  };
  walk(descriptor, '');
  return out;
}

/** A registry module of its own (its root starts empty), as a daemon process has one. */
async function freshRegistry(tag: string): Promise<typeof registry> {
  return (await import(`../../common/proto-registry.js?fresh=${encodeURIComponent(tag)}`)) as typeof registry;
}

test('each package builds on its own with what it refers to, and defines what the whole descriptor defines', async () => {
  const whole = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
  whole.resolveAll();
  const packages = definitionsByPackage();
  assert.ok(packages.has('runtime.v1') && packages.has('nri.pkg.api.v1alpha1') && packages.has('containerd.services.tasks.v1'));
  for (const [pkg, names] of packages) {
    const fresh = await freshRegistry(pkg);
    for (const name of names) {
      const expected = whole.lookup(name)!;
      const got =
        expected instanceof protobuf.Service ? fresh.lookupService(name) : expected instanceof protobuf.Type ? fresh.lookupType(name) : fresh.protoRoot().lookupEnum(name);
      assert.deepEqual(JSON.parse(JSON.stringify(got.toJSON())), JSON.parse(JSON.stringify(expected.toJSON())), name);
    }
  }
});

test('a CRI lookup leaves NRI and the unused containerd services out of the root', async () => {
  const fresh = await freshRegistry('cri-only');
  const svc = fresh.lookupService('runtime.v1.RuntimeService');
  assert.ok(svc.methods.RunPodSandbox!.resolvedRequestType);
  const root = svc.root;
  assert.equal(root.lookup('nri.pkg.api.v1alpha1.Runtime'), null);
  assert.equal(root.lookup('containerd.services.tasks.v1.Tasks'), null);
  // the codec of a message with an enum, a map and nested types from the same package
  const codec = fresh.codecFor<{ config: { metadata: { name: string }; labels: Record<string, string> } }>('runtime.v1.RunPodSandboxRequest');
  const back = codec.decode(codec.encode({ config: { metadata: { name: 'p' }, labels: { a: 'b' } } }));
  assert.equal(back.config.metadata.name, 'p');
  assert.deepEqual(back.config.labels, { a: 'b' });
});

test('a containerd service brings the packages its messages use (containerd.types, google.protobuf)', async () => {
  const fresh = await freshRegistry('tasks');
  const create = fresh.lookupType('containerd.services.tasks.v1.CreateTaskRequest');
  assert.equal(create.fields.rootfs!.resolvedType?.fullName, '.containerd.types.Mount');
  assert.equal(create.fields.options!.resolvedType?.fullName, '.google.protobuf.Any');
  assert.equal(create.root.lookup('runtime.v1.RuntimeService'), null);
});

test('protoRoot holds every package', () => {
  const root = registry.protoRoot();
  for (const name of ['runtime.v1.RuntimeService', 'nri.pkg.api.v1alpha1.Runtime', 'containerd.services.tasks.v1.Tasks', 'ttrpc.Request']) assert.ok(root.lookup(name), name);
});
