// Output formats, list filters, pull result lines and error lines of the crisp CLI (pure functions).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { parse as parseYaml } from 'yaml';
import { ContainerState, PodSandboxState } from '../../gen/runtime.v1.js';
import { newestFirst, parseInfo, parseLabelSelector, parseOutputFormat, parseRegexFilter, protoJson, renderDocument, nanosToIso } from '../../cli/output.js';
import { containerInspectDoc, containerInspectTable, parseContainerState, psQuery } from '../../cli/container-commands.js';
import { parsePodState, podsQuery } from '../../cli/pod-commands.js';
import { imageMatches, pullResultLine } from '../../cli/image-commands.js';
import { describeError, readInputFile } from '../../cli/client-context.js';
import { codecFor } from '../../common/proto-registry.js';
import { notFound } from '../../common/errors.js';
import type { Container, ContainerStatus, PodSandbox } from '../../gen/runtime.v1.js';

const container = codecFor<Container>('runtime.v1.Container').normalize({
  id: 'c'.repeat(64),
  podSandboxId: 'p'.repeat(64),
  metadata: { name: 'web', attempt: 2 },
  image: { image: 'busybox' },
  state: ContainerState.CONTAINER_EXITED,
  createdAt: 1_700_000_000_123_000_000,
  labels: { app: 'web' },
});

test('-o: json, yaml or table (any case); anything else is refused naming the choices', () => {
  assert.equal(parseOutputFormat(undefined, 'table'), 'table');
  assert.equal(parseOutputFormat('JSON', 'table'), 'json');
  assert.equal(parseOutputFormat('yaml', 'json'), 'yaml');
  assert.throws(() => parseOutputFormat('xml', 'table'), /unknown output format "xml" \(want json, yaml or table\)/);
});

test('JSON and YAML documents show CRI objects as crictl does: enum names, field order', () => {
  const obj = protoJson('runtime.v1.Container', container);
  assert.deepEqual(Object.keys(obj).slice(0, 3), ['id', 'podSandboxId', 'metadata']);
  assert.equal(obj.state, 'CONTAINER_EXITED');
  assert.deepEqual(obj.labels, { app: 'web' });
  const json = renderDocument('json', { containers: [obj] });
  assert.ok(json.endsWith('}\n'));
  assert.equal((JSON.parse(json) as { containers: { metadata: { attempt: number } }[] }).containers[0]!.metadata.attempt, 2);
  const yaml = renderDocument('yaml', { containers: [obj] });
  assert.deepEqual(parseYaml(yaml), JSON.parse(json));
  const pod = protoJson('runtime.v1.PodSandbox', { id: 'x', state: PodSandboxState.SANDBOX_NOTREADY });
  assert.equal(pod.state, 'SANDBOX_NOTREADY');
});

test('inspect: readable times, info parsed, a table of the fields people look for', () => {
  const st = codecFor<ContainerStatus>('runtime.v1.ContainerStatus').normalize({
    id: 'abc',
    metadata: { name: 'web' },
    state: ContainerState.CONTAINER_EXITED,
    createdAt: Date.UTC(2024, 0, 2, 3, 4, 5) * 1e6,
    exitCode: 3,
    reason: 'Error',
    logPath: '/var/log/pods/x/web/0.log',
  });
  const doc = containerInspectDoc(st, { info: JSON.stringify({ pid: 42, runtimeSpec: { ociVersion: '1.1.0' } }) });
  assert.equal((doc.status as Record<string, unknown>).createdAt, '2024-01-02T03:04:05.000Z');
  assert.equal((doc.status as Record<string, unknown>).finishedAt, '');
  assert.equal((doc.info as { pid: number }).pid, 42);
  const rows = Object.fromEntries(containerInspectTable(st));
  assert.equal(rows['State'], 'Exited');
  assert.equal(rows['Exit code'], '3');
  assert.equal(rows['Reason'], 'Error');
  assert.deepEqual(parseInfo({ a: '{"b":1}', c: 'not json' }), { a: { b: 1 }, c: 'not json' });
  assert.equal(nanosToIso(0), '');
});

test('ps filters: state (crictl names), label selector, name regex, pod, latest/last', () => {
  assert.equal(parseContainerState('Running'), ContainerState.CONTAINER_RUNNING);
  assert.equal(parseContainerState('CONTAINER_EXITED'), ContainerState.CONTAINER_EXITED);
  assert.throws(() => parseContainerState('dead'), /bad --state "dead" \(want created, running, exited or unknown\)/);
  const running = psQuery({ label: [] });
  assert.deepEqual(running.filter, { podSandboxId: '', state: { state: ContainerState.CONTAINER_RUNNING }, labelSelector: {} });
  assert.equal(psQuery({ label: [], all: true }).filter.state, null);
  const q = psQuery({ label: ['app=web', 'tier=a=b'], all: false, state: 'exited', pod: 'abc', name: '^w', last: '3' });
  assert.deepEqual(q.filter, { podSandboxId: 'abc', state: { state: ContainerState.CONTAINER_EXITED }, labelSelector: { app: 'web', tier: 'a=b' } });
  assert.ok(q.name!.test('web') && !q.name!.test('xweb'));
  assert.deepEqual(q.last, { latest: undefined, last: 3 });
  assert.throws(() => parseLabelSelector(['novalue']), /bad --label "novalue" \(want key=value\)/);
  assert.throws(() => parseRegexFilter('--name', '(('), /bad --name pattern/);
  assert.throws(() => psQuery({ label: [], last: '-1' }), /bad --last/);
  const items = [{ createdAt: 1, n: 'a' }, { createdAt: 3, n: 'c' }, { createdAt: 2, n: 'b' }];
  assert.deepEqual(newestFirst(items, {}).map((i) => i.n), ['a', 'c', 'b'], 'order kept without --latest/--last');
  assert.deepEqual(newestFirst(items, { latest: true }).map((i) => i.n), ['c']);
  assert.deepEqual(newestFirst(items, { last: 2 }).map((i) => i.n), ['c', 'b']);
  assert.deepEqual(newestFirst(items, { last: 0 }).map((i) => i.n), ['c', 'b', 'a']);
});

test('pods filters: state, name and namespace regexes, labels, id', () => {
  assert.equal(parsePodState('Ready'), PodSandboxState.SANDBOX_READY);
  assert.equal(parsePodState('NotReady'), PodSandboxState.SANDBOX_NOTREADY);
  assert.equal(parsePodState('SANDBOX_NOTREADY'), PodSandboxState.SANDBOX_NOTREADY);
  assert.throws(() => parsePodState('running'), /want ready or notready/);
  const q = podsQuery({ label: ['app=web'], name: 'we', namespace: '^prod$', id: '12', state: 'ready' });
  assert.deepEqual(q.filter, { id: '12', state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: { app: 'web' } });
  const pod = (name: string, namespace: string) => ({ metadata: { name, namespace, uid: '', attempt: 0 } }) as PodSandbox;
  assert.equal(q.match(pod('web-1', 'prod')), true);
  assert.equal(q.match(pod('web-1', 'production')), false);
  assert.equal(q.match(pod('db', 'prod')), false);
});

test('pull: "Image is up to date" only when the node had that image already', () => {
  const id = 'sha256:' + 'a'.repeat(64);
  assert.equal(pullResultLine('busybox', id, id), `Image is up to date for ${id}`);
  assert.equal(pullResultLine('busybox', undefined, id), `Downloaded busybox: ${id}`);
  assert.equal(pullResultLine('busybox', 'sha256:' + 'b'.repeat(64), id), `Downloaded newer image for busybox: ${id}`);
  assert.equal(pullResultLine('busybox', id, id, 0), `Image is up to date for ${id}`);
  assert.equal(pullResultLine('busybox', id, id, 1024), `Downloaded missing layers of busybox: ${id}`, 'bytes seen arriving (GC took layers)');
});

test('images REF: repository, repository:tag, digest or id prefix', () => {
  const img = { id: 'sha256:0123456789ab', repoTags: ['docker.io/library/busybox:1.36'], repoDigests: ['docker.io/library/busybox@sha256:ff'] };
  assert.equal(imageMatches(img, undefined), true);
  assert.equal(imageMatches(img, 'docker.io/library/busybox'), true);
  assert.equal(imageMatches(img, 'docker.io/library/busybox:1.36'), true);
  assert.equal(imageMatches(img, 'docker.io/library/busybox:1.35'), false);
  assert.equal(imageMatches(img, 'docker.io/library/busybox@sha256:ff'), true);
  assert.equal(imageMatches(img, '01234'), true);
  assert.equal(imageMatches(img, 'sha256:01234'), true);
  assert.equal(imageMatches(img, 'nginx'), false);
});

test('error lines: an unreachable daemon in words, file errors without stacks, crispd errors as they are', () => {
  const ep = 'unix:///run/crisp/crisp.sock';
  const grpcError = (code: number, details: string) => Object.assign(new Error(`${code} ${details}`), { code, details });
  const noSocket = grpcError(status.UNAVAILABLE, 'No connection established. Last error: Error: connect ENOENT /run/crisp/crisp.sock. Resolution note: ');
  assert.equal(describeError(noSocket, ep), 'cannot reach crispd at unix:///run/crisp/crisp.sock: is it running?');
  assert.equal(describeError(grpcError(status.UNAVAILABLE, 'connect ECONNREFUSED /x'), ep), `cannot reach crispd at ${ep}: is it running?`);
  assert.match(describeError(grpcError(status.UNAVAILABLE, 'No connection established. Last error: connect EACCES /x'), ep), /permission denied/);
  assert.equal(describeError(grpcError(status.UNAVAILABLE, 'containerd is not available'), ep), 'containerd is not available');
  assert.equal(describeError(grpcError(status.NOT_FOUND, 'container "x" not found'), ep), 'container "x" not found');
  assert.equal(describeError(notFound('image "y" not found'), ep), 'image "y" not found');
  assert.equal(describeError(new Error('two\nlines'), ep), 'two lines');
  assert.throws(() => readInputFile('/nonexistent/pod.yaml', 'pod manifest'), { message: 'cannot read pod manifest /nonexistent/pod.yaml: no such file or directory' });
  assert.throws(() => readInputFile('/', 'pod manifest'), { message: 'cannot read pod manifest /: is a directory' });
});
