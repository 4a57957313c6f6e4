// cri/runtime/encoded-list.ts: a list kept in wire form is byte for byte what protobufjs encodes for the
// whole response, reuses an item's encoding only while its view is unchanged, and travels through the
// gRPC server as it is (common/grpc-server.ts Encoded).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codecFor, type Input } from '../../common/proto-registry.js';
import type { Container, ListContainersResponse, ListPodSandboxResponse, VersionResponse } from '../../gen/runtime.v1.js';
import { EncodedList } from '../../cri/runtime/encoded-list.js';
import { frameMessage } from '../../common/grpc-wire.js';
import { podList } from '../../cri/runtime/list-pod-sandbox.js';
import { toCriPodSandbox } from '../../cri/runtime/pod-mapping.js';
import { version, versionResponse } from '../../cri/runtime/version.js';
import type { PodRecord } from '../../sandbox/pods/types.js';

interface Rec {
  id: string;
  state: number;
  labels: Record<string, string>;
  image: string;
  createdAt: number;
}

const view = (r: Rec): Input<Container> => ({
  id: r.id,
  podSandboxId: `pod-${r.id}`,
  metadata: { name: `n-${r.id}`, attempt: 1 },
  image: { image: r.image, userSpecifiedImage: '' },
  imageRef: `sha256:${'ab'.repeat(32)}`,
  state: r.state,
  createdAt: r.createdAt,
  labels: r.labels,
  annotations: { 'io.kubernetes.container.restartCount': '0' },
});

const records = (): Rec[] =>
  Array.from({ length: 4 }, (_, i) => ({
    id: `${i}`.repeat(64).slice(0, 64),
    state: i % 3,
    labels: { app: `a${i}`, 'io.kubernetes.pod.name': `pod-${i}`, long: 'x'.repeat(200 * i) },
    image: `registry.example/busybox:${i}`,
    createdAt: 1_733_540_000_000_000_000 + i,
  }));

const response = codecFor<ListContainersResponse>('runtime.v1.ListContainersResponse');

test('the list is byte for byte the encoding of the whole response, empty included', () => {
  const list = new EncodedList<Rec, Container>('runtime.v1.Container', 1, view);
  const recs = records();
  assert.deepEqual(list.encode(recs), response.encode({ containers: recs.map(view) }));
  assert.deepEqual(list.encode(recs.slice(1, 3)), response.encode({ containers: recs.slice(1, 3).map(view) }));
  assert.equal(list.encode([]).length, 0);
  assert.deepEqual(response.decode(list.encode([])).containers, []);
});

test('an item is re-encoded when a value of its view changes, and reused while none does', () => {
  const list = new EncodedList<Rec, Container>('runtime.v1.Container', 1, view);
  const [a] = records();
  const first = list.item(a!);
  assert.equal(list.item(a!), first);
  a!.state = 2;
  const exited = list.item(a!);
  assert.notEqual(exited, first);
  assert.equal(response.decode(list.encode([a!])).containers[0]!.state, 2);
  a!.image = 'registry.example/other:1';
  assert.equal(response.decode(list.encode([a!])).containers[0]!.image!.image, 'registry.example/other:1');
  a!.labels = { app: 'b' };
  assert.deepEqual(response.decode(list.encode([a!])).containers[0]!.labels, { app: 'b' });
});

test('answer() is the same message, framed as the gRPC server sends it', () => {
  const list = new EncodedList<Rec, Container>('runtime.v1.Container', 1, view);
  const recs = records();
  assert.deepEqual(list.answer(recs).frame(), frameMessage(list.encode(recs)));
  assert.deepEqual(list.answer(recs).bytes, list.encode(recs));
  assert.deepEqual(list.answer([]).frame(), frameMessage(Buffer.alloc(0)));
});

test('ListPodSandbox in wire form is what protobufjs encodes for the response; a state change shows', () => {
  const pod = (i: number, state: PodRecord['state']): PodRecord =>
    ({
      id: `${i}`.repeat(64),
      state,
      createdAt: 1_733_540_000_000_000_000 + i,
      spec: {
        metadata: { name: `p${i}`, uid: `u${i}`, namespace: 'ns', attempt: i },
        labels: { app: `a${i}` },
        annotations: { note: 'x'.repeat(300 * i) },
        runtimeHandler: i ? 'runc' : '',
      },
    }) as unknown as PodRecord;
  const pods = [pod(0, 'ready'), pod(1, 'notready'), pod(2, 'ready')];
  const codec = codecFor<ListPodSandboxResponse>('runtime.v1.ListPodSandboxResponse');
  assert.deepEqual(podList.answer(pods).bytes, codec.encode({ items: pods.map(toCriPodSandbox) }));
  pods[0]!.state = 'notready';
  assert.deepEqual(podList.answer(pods).bytes, codec.encode({ items: pods.map(toCriPodSandbox) }));
  assert.equal(codec.decode(podList.answer(pods).bytes).items[0]!.state, codec.decode(podList.answer([pods[1]!]).bytes).items[0]!.state);
});

test('Version answers the encoding of its response, the same object every call', async () => {
  const first = await version({ version: 'v1' });
  assert.equal(await version({ version: 'v1' }), first);
  assert.deepEqual(first.bytes, codecFor<VersionResponse>('runtime.v1.VersionResponse').encode(versionResponse()));
});
