import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  isPlayLogDirectory,
  parsePodManifest,
  planPod,
  parseQuantity,
  podIdentity,
  restartDelayMs,
  shouldRestart,
  withAttempt,
  PLAY_LABEL,
  PLAY_LOG_DIR_ANNOTATION,
} from '../../cli/play-plan.js';
import { NamespaceMode } from '../../gen/runtime.v1.js';

const MANIFEST = `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: demo, labels: {app: web}}
spec:
  shareProcessNamespace: true
  volumes:
  - {name: data, emptyDir: {}}
  - {name: host, hostPath: {path: /srv/www}}
  containers:
  - name: httpd
    image: busybox
    command: [httpd, -f]
    args: [-p, "8080"]
    env: [{name: A, value: "1"}]
    ports: [{containerPort: 8080, hostPort: 18080}]
    volumeMounts: [{name: data, mountPath: /data}, {name: host, mountPath: /www, readOnly: true}]
    resources: {limits: {memory: 64Mi, cpu: 500m}}
    securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`;

test('a Pod manifest becomes a pod config and container configs', () => {
  const plan = planPod(parsePodManifest(MANIFEST), { logRoot: '/var/log/pods', stateDir: '/var/lib/crisp', uid: 'u1' });
  assert.equal(plan.name, 'web');
  assert.equal(plan.pod.metadata?.namespace, 'demo');
  assert.equal(plan.pod.labels?.[PLAY_LABEL], 'demo_web');
  assert.equal(plan.pod.linux?.securityContext?.namespaceOptions?.pid, NamespaceMode.POD);
  assert.deepEqual(plan.pod.portMappings?.map((p) => [p?.containerPort, p?.hostPort]), [[8080, 18080]]);
  const c = plan.containers[0]!.config;
  assert.deepEqual(c.command, ['httpd', '-f']);
  assert.deepEqual(c.args, ['-p', '8080']);
  assert.equal(c.linux?.resources?.memoryLimitInBytes, 64 * 2 ** 20);
  assert.equal(c.linux?.resources?.cpuQuota, 50_000);
  assert.equal(c.linux?.securityContext?.runAsUser?.value, 1000);
  assert.equal(c.mounts?.[0]?.hostPath, '/var/lib/crisp/play/demo_web/u1/volumes/data');
  assert.equal(c.mounts?.[1]?.readonly, true);
  assert.deepEqual(plan.emptyDirs, ['/var/lib/crisp/play/demo_web/u1/volumes/data']);
  assert.equal(plan.podStateDir, '/var/lib/crisp/play/demo_web');
  assert.equal(plan.logDirectory, '/var/log/pods/demo_web_u1');
  assert.equal(plan.pod.annotations?.[PLAY_LOG_DIR_ANNOTATION], '/var/log/pods/demo_web_u1');
  assert.equal(plan.restartPolicy, 'Always');
});

test('quantities, and what play refuses', () => {
  assert.equal(parseQuantity('1Gi'), 2 ** 30);
  assert.equal(parseQuantity('250m'), 0.25);
  assert.equal(parseQuantity('2k'), 2000);
  assert.throws(() => parsePodManifest('kind: Deployment\n'), /no "kind: Pod"/);
  assert.throws(
    () => planPod(parsePodManifest('kind: Pod\nmetadata: {name: x}\nspec: {volumes: [{name: c, configMap: {name: y}}], containers: [{name: a, image: b}]}\n'), { logRoot: '/l', stateDir: '/s' }),
    /only hostPath and emptyDir/,
  );
});

const pod = (spec: string) => parsePodManifest(`kind: Pod\nmetadata: {name: p, namespace: n}\nspec: ${spec}\n`);
const opts = { logRoot: '/logs', stateDir: '/state' };

test('the pod\'s namespace options are every container\'s (kubelet\'s namespacesForPod)', () => {
  const cases: [string, { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode }][] = [
    ['{}', { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD }],
    ['{shareProcessNamespace: true}', { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD }],
    ['{hostPID: true, shareProcessNamespace: true}', { network: NamespaceMode.POD, pid: NamespaceMode.NODE, ipc: NamespaceMode.POD }],
    ['{hostIPC: true}', { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.NODE }],
    ['{hostNetwork: true}', { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD }],
  ];
  for (const [extra, want] of cases) {
    const spec = `${extra.slice(0, -1)}${extra === '{}' ? '' : ', '}initContainers: [{name: i, image: b}], containers: [{name: a, image: b}, {name: c, image: b}]}`;
    const plan = planPod(pod(spec), opts);
    assert.deepEqual({ ...plan.pod.linux?.securityContext?.namespaceOptions }, want, extra);
    for (const c of [...plan.initContainers, ...plan.containers]) {
      assert.deepEqual({ ...c.config.linux?.securityContext?.namespaceOptions }, want, `${extra}: ${c.name}`);
    }
  }
});

test('every plan has a new pod uid, hence its own log directory and emptyDirs', () => {
  const manifest = pod('{volumes: [{name: v, emptyDir: {}}], containers: [{name: a, image: b, volumeMounts: [{name: v, mountPath: /v}]}]}');
  const a = planPod(manifest, opts);
  const b = planPod(manifest, opts);
  assert.notEqual(a.uid, b.uid);
  assert.match(a.uid, /^[0-9a-f-]{36}$/);
  assert.equal(a.pod.metadata?.uid, a.uid);
  assert.equal(a.logDirectory, `/logs/n_p_${a.uid}`);
  assert.notEqual(a.logDirectory, b.logDirectory);
  assert.notEqual(a.emptyDirs[0], b.emptyDirs[0]);
  assert.equal(a.podStateDir, b.podStateDir, '--down removes every run\'s state');
  const withUid = planPod(parsePodManifest('kind: Pod\nmetadata: {name: p, uid: fixed}\nspec: {containers: [{name: a, image: b}]}\n'), opts);
  assert.notEqual(withUid.uid, 'fixed', 'a manifest uid is not reused');
});

test('init containers: in order, before the app containers; sidecars marked; names unique', () => {
  const plan = planPod(
    pod('{initContainers: [{name: one, image: b}, {name: side, image: b, restartPolicy: Always}, {name: two, image: b}], containers: [{name: app, image: b}]}'),
    opts,
  );
  assert.deepEqual(plan.initContainers.map((c) => [c.name, c.sidecar ?? false]), [['one', false], ['side', true], ['two', false]]);
  assert.deepEqual(plan.containers.map((c) => c.name), ['app']);
  assert.equal(plan.initContainers[0]!.config.logPath, 'one/0.log');
  assert.throws(() => planPod(pod('{initContainers: [{name: a, image: b}], containers: [{name: a, image: b}]}'), opts), /container name "a" is used twice/);
  assert.throws(() => planPod(pod('{initContainers: [{name: i, image: b, restartPolicy: Never}], containers: [{name: a, image: b}]}'), opts), /only Always, for a sidecar/);
  assert.throws(() => planPod(pod('{containers: [{name: a}]}'), opts), /container "a": image is required/);
});

test('restartPolicy: validated; restarts as kubelet decides them, with its back-off', () => {
  assert.equal(planPod(pod('{restartPolicy: OnFailure, containers: [{name: a, image: b}]}'), opts).restartPolicy, 'OnFailure');
  assert.throws(() => planPod(pod('{restartPolicy: Sometimes, containers: [{name: a, image: b}]}'), opts), /spec.restartPolicy "Sometimes"/);
  assert.equal(shouldRestart('Always', 0), true);
  assert.equal(shouldRestart('OnFailure', 0), false);
  assert.equal(shouldRestart('OnFailure', 137), true);
  assert.equal(shouldRestart('Never', 1), false);
  assert.equal(shouldRestart('Never', 0, true), true, 'sidecars always restart');
  assert.deepEqual([0, 1, 2, 3, 6, 20].map((n) => restartDelayMs(n, 1000)), [0, 10_000, 20_000, 40_000, 300_000, 300_000]);
  assert.equal(restartDelayMs(5, 11 * 60_000), 0, 'a container that ran 10 minutes starts over');
  const c = planPod(pod('{containers: [{name: web, image: b}]}'), opts).containers[0]!;
  const next = withAttempt(c, 3);
  assert.deepEqual([next.metadata?.name, next.metadata?.attempt, next.logPath], ['web', 3, 'web/3.log']);
  assert.equal(c.config.metadata?.attempt, 0, 'the plan is not changed');
});

test('--down removes only the log directory play made for that pod', () => {
  const p = { namespace: 'n', name: 'p', uid: 'u-1' };
  assert.equal(isPlayLogDirectory('/var/log/pods/n_p_u-1', p), true);
  assert.equal(isPlayLogDirectory('/var/log/pods/n_p_u-1/', p), true);
  assert.equal(isPlayLogDirectory('/var/log/pods/n_p_u-2', p), false);
  assert.equal(isPlayLogDirectory('/var/log/pods', p), false);
  assert.equal(isPlayLogDirectory('/', p), false);
  assert.equal(isPlayLogDirectory('relative/n_p_u-1', p), false);
  assert.equal(isPlayLogDirectory('/x/../n_p_u-1', p), false);
  assert.equal(isPlayLogDirectory(undefined, p), false);
  assert.equal(isPlayLogDirectory('/var/log/pods/n_p_', { ...p, uid: '' }), false);
});

test('bad manifests: one clear message each', () => {
  assert.throws(() => parsePodManifest('kind: Pod\nmetadata: {name: [\n'), (e: Error) => /^bad YAML: /.test(e.message) && !e.message.includes('\n') && !e.message.endsWith(':'));
  assert.throws(() => parsePodManifest(''), /no "kind: Pod" document found \(the file is empty\)/);
  assert.throws(() => parsePodManifest('- a\n- b\n'), /kinds: \(no kind\)/);
  assert.throws(() => parsePodManifest('kind: Service\n---\nkind: Deployment\n'), /kinds: Service, Deployment/);
  assert.throws(() => podIdentity(parsePodManifest('kind: Pod\n')), /metadata.name is required/);
  assert.deepEqual(podIdentity(parsePodManifest('kind: Pod\nmetadata: {name: x}\n')), { name: 'x', namespace: 'default' });
  assert.throws(() => planPod(parsePodManifest('kind: Pod\nmetadata: {name: x}\n'), opts), /spec.containers must list at least one container/);
});
