import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePodManifest, planPod, parseQuantity, PLAY_LABEL } from '../../cli/play-plan.js';
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
  const plan = planPod(parsePodManifest(MANIFEST), { logRoot: '/var/log/pods', stateDir: '/var/lib/crisp' });
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
  assert.equal(c.mounts?.[0]?.hostPath, '/var/lib/crisp/play/demo_web/volumes/data');
  assert.equal(c.mounts?.[1]?.readonly, true);
  assert.deepEqual(plan.emptyDirs, ['/var/lib/crisp/play/demo_web/volumes/data']);
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
