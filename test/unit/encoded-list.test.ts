// cri/runtime/encoded-list.ts: a list kept in wire form is byte for byte what protobufjs encodes for the
// whole response, reuses an item's encoding only while its view is unchanged, and travels through the
// gRPC server as it is (common/grpc-server.ts Encoded).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codecFor, type Input } from '../../common/proto-registry.js';
import type { Container, ListContainersResponse } from '../../gen/runtime.v1.js';
import { EncodedList } from '../../cri/runtime/encoded-list.js';

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
