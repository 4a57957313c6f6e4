// charts/crisp rendered with the test renderer (helm is not installable here), with default values and
// variations: every object fits its @kubernetes/client-node type, the config file is one crisp accepts
// with exactly the values given, and values that would break a node (two runtimes on one socket,
// unknown keys, unreachable metrics) are refused by the chart's `fail`.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { HelmChart } from '../lib/helm-render.js';
import { checkAgainstModel, modelName } from '../lib/k8s-schema.js';
import { DEFAULT_CONFIG, resolveConfig } from '../../daemon/config.js';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);
const CHART = join(REPO, 'charts', 'crisp');

type Obj = Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> } };
type Container = { name: string; image: string; command?: string[]; args?: string[]; env?: { name: string; value: string }[]; ports?: { name: string; containerPort: number }[]; securityContext?: { privileged?: boolean }; volumeMounts?: { name: string; mountPath: string }[]; resources?: unknown };
type PodSpec = {
  hostPID?: boolean;
  hostNetwork?: boolean;
  initContainers?: Container[];
  containers: Container[];
  volumes: { name: string; hostPath?: { path: string }; configMap?: { name: string } }[];
  tolerations?: unknown[];
  nodeSelector?: Record<string, string>;
  affinity?: unknown;
  imagePullSecrets?: unknown[];
};
type DaemonSet = Obj & { spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec } } };

let chart: HelmChart;
const render = (values: Record<string, unknown> = {}, releaseName = 'crisp') => chart.objects({ values, releaseName }) as Obj[];
const find = <T extends Obj>(objs: Obj[], kind: string, name?: string) => {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  assert.ok(o, `no ${kind} ${name ?? ''} among ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o as T;
};
const env = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value;
/** Every core object against its client-node model; CRDs (monitoring.coreos.com) are checked by hand. */
function assertTyped(objs: Obj[]): void {
  for (const o of objs) {
    if (o.apiVersion.startsWith('monitoring.coreos.com/')) continue;
    assert.deepEqual(checkAgainstModel(o, modelName(o.apiVersion, o.kind)), [], `${o.kind}/${o.metadata.name}`);
  }
}
function configOf(objs: Obj[]): { text: string; parsed: Record<string, unknown> } {
  const cm = find<Obj & { data: Record<string, string> }>(objs, 'ConfigMap');
  const text = cm.data['config.toml']!;
  return { text, parsed: parseToml(text) as Record<string, unknown> };
}

before(() => {
  chart = new HelmChart(CHART);
});

describe('default values', () => {
  test('a ConfigMap and one privileged hostPID DaemonSet, both fitting their Kubernetes types', () => {
    const objs = render();
    assert.deepEqual(objs.map((o) => `${o.kind}/${o.metadata.name}`), ['ConfigMap/crisp', 'DaemonSet/crisp']);
    assertTyped(objs);
    const ds = find<DaemonSet>(objs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostPID, true);
    assert.equal(pod.hostNetwork, true);
    for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) assert.equal(ds.spec.template.metadata.labels[k], v, `selector label ${k}`);
    const install = pod.initContainers![0]!;
    assert.equal(install.securityContext?.privileged, true);
    assert.equal(install.image, `crisp-installer:${String(chart.meta.appVersion)}`);
    assert.deepEqual(install.command, ['/bin/sh', '/installer/install.sh']);
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
  });

  test('the pod mounts only /etc/crisp and the staging directory from the host: node state is out of its reach', () => {
    const pod = find<DaemonSet>(render(), 'DaemonSet').spec.template.spec;
    const hostPaths = pod.volumes.flatMap((v) => (v.hostPath ? [v.hostPath.path] : [])).sort();
    assert.deepEqual(hostPaths, ['/etc/crisp', '/var/cache/crisp-installer']);
    const install = pod.initContainers![0]!;
    const mounts = Object.fromEntries(install.volumeMounts!.map((m) => [m.name, m.mountPath]));
    assert.equal(env(install, 'CONFIG_DIR'), mounts['host-etc-crisp']);
    assert.equal(env(install, 'STAGE_DIR'), mounts['host-stage']);
    assert.equal(env(install, 'HOST_STAGE_DIR'), '/var/cache/crisp-installer');
    assert.equal(env(install, 'CONFIG_SOURCE'), `${mounts.installer}/config.toml`);
  });

  test('the ConfigMap carries files/install.sh verbatim and a config.toml crisp accepts; the pod template hashes both', () => {
    const objs = render();
    const cm = find<Obj & { data: Record<string, string> }>(objs, 'ConfigMap');
    assert.equal(cm.data['install.sh'], readFileSync(join(CHART, 'files', 'install.sh'), 'utf8'));
    const { text, parsed } = configOf(objs);
    const config = resolveConfig(parsed);
    assert.equal(config.socket, DEFAULT_CONFIG.socket);
    const ann = find<DaemonSet>(objs, 'DaemonSet').spec.template.metadata.annotations!;
    assert.equal(ann['checksum/config'], createHash('sha256').update(text).digest('hex'));
    const changed = configOf(render({ config: { log_level: 'debug' } })).text;
    assert.notEqual(find<DaemonSet>(render({ config: { log_level: 'debug' } }), 'DaemonSet').spec.template.metadata.annotations!['checksum/config'], ann['checksum/config']);
    assert.match(changed, /^log_level = "debug"$/m);
  });

  test('values.yaml: config lists only crisp keys, at crisp\'s defaults; Chart appVersion is the package version', () => {
    const values = chart.defaults as { config: Record<string, unknown> };
    for (const [k, v] of Object.entries(values.config)) {
      assert.ok(k in DEFAULT_CONFIG, `values.yaml config.${k} is not a crisp key`);
      assert.deepEqual(v, DEFAULT_CONFIG[k as keyof typeof DEFAULT_CONFIG], `values.yaml config.${k} differs from crisp's default`);
    }
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    assert.equal(chart.meta.appVersion, pkg.version);
  });

  test('values.yaml documents every field: each key has a comment above it (free-form maps excepted)', () => {
    const freeForm = new Set(['resources', 'requests', 'limits', 'nodeSelector']);
    const lines = readFileSync(join(CHART, 'values.yaml'), 'utf8').split('\n');
    const parents: { indent: number; key: string }[] = [];
    const undocumented: string[] = [];
    lines.forEach((line, i) => {
      const m = /^( *)([A-Za-z0-9_.-]+):/.exec(line);
      if (!m) return;
      const indent = m[1]!.length;
      while (parents.length && parents[parents.length - 1]!.indent >= indent) parents.pop();
      const parent = parents[parents.length - 1]?.key;
      parents.push({ indent, key: m[2]! });
      if (parent && freeForm.has(parent)) return;
      if (!/^\s*#/.test(lines[i - 1] ?? '')) undocumented.push(`${i + 1}: ${line.trim()}`);
    });
    assert.deepEqual(undocumented, []);
  });
});

describe('config.toml from values', () => {
  test('every crisp key round-trips: all of DEFAULT_CONFIG as values gives back DEFAULT_CONFIG', () => {
    const { parsed } = configOf(render({ config: structuredClone(DEFAULT_CONFIG) }));
    assert.deepEqual(resolveConfig(parsed), DEFAULT_CONFIG);
  });

  test('strings with quotes, backslashes and non-ASCII, lists, fractions and dotted handler names stay what they were', () => {
    const config = {
      cgroup_parent: 'a "quoted" \\ path ü',
      image_pinned: ['registry.k8s.io/pause:3.10', 'x<&>y'],
      nri_request_timeout: 0.5,
      containerd_timeout: 45,
      streaming_allow_insecure_remote: true,
      runtimes: { 'kata.v2': { runtime_type: 'io.containerd.kata.v2', binary_name: '/opt/kata/bin/runtime', privileged_without_host_devices: true } },
    };
    const resolved = resolveConfig(configOf(render({ config })).parsed);
    assert.equal(resolved.cgroup_parent, config.cgroup_parent);
    assert.deepEqual(resolved.image_pinned, config.image_pinned);
    assert.equal(resolved.nri_request_timeout, 0.5);
    assert.equal(resolved.containerd_timeout, 45);
    assert.equal(resolved.streaming_allow_insecure_remote, true);
    assert.deepEqual(resolved.runtimes['kata.v2'], config.runtimes['kata.v2']);
    assert.deepEqual(resolved.runtimes.runc, DEFAULT_CONFIG.runtimes.runc);
  });

  test('installer.writeConfig false leaves the node\'s config alone (CONFIG_SOURCE empty)', () => {
    const install = find<DaemonSet>(render({ installer: { writeConfig: false, aptUpdate: false } }), 'DaemonSet').spec.template.spec.initContainers![0]!;
    assert.equal(env(install, 'CONFIG_SOURCE'), '');
    assert.equal(env(install, 'APT_UPDATE'), '0');
  });
});

describe('variations', () => {
  test('scheduling and resource values reach the pod; names follow the release', () => {
    const values = {
      nodeSelector: { 'crisp.io/runtime': 'crisp' },
      tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] }] }] } } },
      resources: { limits: { memory: '32Mi', cpu: 1 } },
      imagePullSecrets: [{ name: 'regcred' }],
      image: { repository: 'registry.example/crisp-installer', tag: '0.2.0' },
      podAnnotations: { 'example.com/a': 'b' },
      updateStrategy: { maxUnavailable: '10%' },
    };
    const objs = render(values, 'node-runtime');
    assertTyped(objs);
    const ds = find<DaemonSet>(objs, 'DaemonSet', 'node-runtime-crisp');
    const pod = ds.spec.template.spec;
    assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux', ...values.nodeSelector }, 'maps merge into the chart\'s defaults, as helm does');
    assert.deepEqual(pod.tolerations, values.tolerations);
    assert.deepEqual(pod.affinity, values.affinity);
    assert.deepEqual(pod.imagePullSecrets, values.imagePullSecrets);
    assert.deepEqual((pod.containers[0]!.resources as { limits: unknown }).limits, values.resources.limits);
    assert.equal(pod.initContainers![0]!.image, 'registry.example/crisp-installer:0.2.0');
    assert.equal(ds.spec.template.metadata.annotations!['example.com/a'], 'b');
    assert.equal((ds.spec as unknown as { updateStrategy: { rollingUpdate: { maxUnavailable: string } } }).updateStrategy.rollingUpdate.maxUnavailable, '10%');
    assert.equal(pod.volumes.find((v) => v.name === 'installer')!.configMap!.name, 'node-runtime-crisp');
  });

  test('PodMonitor and ServiceMonitor scrape the pods\' metrics port, which is crispd\'s metrics_address port', () => {
    const objs = render({ config: { metrics_address: ':9099' }, metrics: { podMonitor: { enabled: true, labels: { release: 'prom' } }, serviceMonitor: { enabled: true } } });
    assertTyped(objs);
    const ds = find<DaemonSet>(objs, 'DaemonSet');
    const port = ds.spec.template.spec.containers[0]!.ports!.find((p) => p.name === 'metrics')!;
    assert.equal(port.containerPort, 9099);
    const podLabels = ds.spec.template.metadata.labels;
    type Monitor = Obj & { spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints?: { port: string; path: string }[]; endpoints?: { port: string; path: string }[] } };
    const pm = find<Monitor>(objs, 'PodMonitor');
    assert.equal(pm.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(pm.metadata.labels!.release, 'prom');
    for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) assert.equal(podLabels[k], v);
    assert.deepEqual(pm.spec.podMetricsEndpoints!.map((e) => [e.port, e.path]), [['metrics', '/metrics']]);
    const svc = find<Obj & { spec: { clusterIP: string; selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] } }>(objs, 'Service');
    assert.equal(svc.spec.clusterIP, 'None');
    for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v);
    assert.deepEqual(svc.spec.ports, [{ name: 'metrics', port: 9099, targetPort: 'metrics', protocol: 'TCP' }]);
    const sm = find<Monitor>(objs, 'ServiceMonitor');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svc.metadata.labels![k], v);
    assert.deepEqual(sm.spec.endpoints!.map((e) => [e.port, e.path]), [['metrics', '/metrics']]);
  });

  test('an enabled NRI plugin gets its DaemonSet: identity env, the NRI socket directory, the host\'s crisp read-only', () => {
    const objs = render({ nriPlugins: { 'ulimit-policy': { enabled: true } } });
    assertTyped(objs);
    const ds = find<DaemonSet>(objs, 'DaemonSet', 'crisp-nri-ulimit-policy');
    const pod = ds.spec.template.spec;
    const c = pod.containers[0]!;
    assert.equal(env(c, 'NRI_PLUGIN_NAME'), 'ulimit-policy');
    assert.equal(env(c, 'NRI_PLUGIN_IDX'), '50');
    assert.deepEqual(c.command, ['node', '/usr/lib/crisp/dist/examples/nri-ulimit-policy/main.js']);
    assert.deepEqual(c.args!.slice(-2), ['--socket', '/var/run/nri/nri.sock']);
    assert.deepEqual(pod.volumes.map((v) => v.hostPath?.path), ['/var/run/nri', '/usr/lib/crisp']);
    assert.equal(pod.hostPID, undefined);
    assert.equal(c.securityContext?.privileged, undefined);

    const moved = render({ config: { nri_socket: '/run/crisp-nri/nri.sock' }, nriPlugins: { 'ulimit-policy': { enabled: true, mountHostLib: false } } });
    const pod2 = find<DaemonSet>(moved, 'DaemonSet', 'crisp-nri-ulimit-policy').spec.template.spec;
    assert.deepEqual(pod2.volumes.map((v) => v.hostPath?.path), ['/run/crisp-nri']);
    assert.deepEqual(pod2.containers[0]!.args!.slice(-2), ['--socket', '/run/crisp-nri/nri.sock']);
    assert.equal(render().filter((o) => o.metadata.name.includes('nri')).length, 0, 'plugins are off by default');
  });

  test('using the node\'s existing containerd (containerd_address = its socket) is allowed', () => {
    const { parsed } = configOf(render({ config: { containerd_address: '/run/containerd/containerd.sock' } }));
    assert.equal(resolveConfig(parsed).containerd_address, '/run/containerd/containerd.sock');
  });
});

describe('refused values', () => {
  const refuses = (values: Record<string, unknown>, why: RegExp) => assert.throws(() => render(values), why);

  test('crisp on another runtime\'s socket (containerd, CRI-O, k3s, docker; /var/run and unix:// spellings too)', () => {
    for (const socket of ['/run/containerd/containerd.sock', '/var/run/containerd/containerd.sock', 'unix:///var/run/crio/crio.sock', '/run/crio/crio.sock', '/run/k3s/containerd/containerd.sock', '/var/run/docker.sock', '/run/cri-dockerd.sock']) {
      refuses({ config: { socket } }, /config\.socket: .* is another runtime's socket .*two runtimes cannot serve one socket/);
    }
    refuses({ config: { socket: '/run/kata/cri.sock' }, extraRuntimeSockets: ['/var/run/kata/cri.sock'] }, /config\.socket: .*another runtime's socket \(\/var\/run\/kata\/cri\.sock\)/);
  });

  test('containerd_address equal to crisp\'s own socket; NRI on the CRI socket or on another runtime\'s', () => {
    refuses({ config: { containerd_address: '/run/crisp/crisp.sock' } }, /config\.containerd_address: .* is crisp's own socket/);
    refuses({ config: { socket: '/var/run/crisp.sock', containerd_address: '/run/crisp.sock' } }, /config\.containerd_address/);
    refuses({ config: { nri_socket: '/run/crisp/crisp.sock' } }, /config\.nri_socket: .* is config\.socket/);
    refuses({ config: { nri_socket: '/var/run/crio/crio.sock' } }, /config\.nri_socket: .* another runtime's socket/);
  });

  test('unknown config keys, a relative or non-string socket, an empty image', () => {
    refuses({ config: { log_levle: 'debug' } }, /config\.log_levle: crisp has no such key/);
    refuses({ config: { socket: 'crisp.sock' } }, /config\.socket: crisp\.sock is not an absolute path/);
    refuses({ config: { socket: 5 } }, /config\.socket: must be a path/);
    refuses({ image: { repository: '' } }, /image\.repository is required/);
  });

  test('monitors without a metrics address or with a loopback one; plugins with NRI off', () => {
    refuses({ metrics: { podMonitor: { enabled: true } } }, /set config\.metrics_address/);
    refuses({ config: { metrics_address: '127.0.0.1:9099' }, metrics: { serviceMonitor: { enabled: true } } }, /loopback address/);
    refuses({ config: { metrics_address: '[::1]:9099' }, metrics: { podMonitor: { enabled: true } } }, /loopback address/);
    refuses({ config: { nri_enabled: false }, nriPlugins: { 'ulimit-policy': { enabled: true } } }, /nriPlugins\.ulimit-policy\.enabled: needs config\.nri_enabled/);
  });
});

// The renderer against helm itself, where a helm binary exists (`helm` on PATH, or CRISP_HELM naming
// one): the same objects, or the same refusal, for values that exercise every template branch.
const HELM = process.env.CRISP_HELM ?? (spawnSync('helm', ['version', '--short'], { encoding: 'utf8' }).status === 0 ? 'helm' : undefined);
test('real helm renders the same objects and refuses the same values', { skip: HELM ? false : 'no helm binary (helm on PATH or CRISP_HELM)' }, () => {
  const cases: Record<string, unknown>[] = [
    {},
    {
      config: { metrics_address: ':9099', image_pinned: ['a', 'b'], nri_request_timeout: 0.5, cgroup_parent: 'a "q" \\ ü', runtimes: { 'kata.v2': { runtime_type: 'io.containerd.kata.v2' } } },
      metrics: { podMonitor: { enabled: true, labels: { release: 'prom' } }, serviceMonitor: { enabled: true } },
      nriPlugins: { 'ulimit-policy': { enabled: true }, other: { enabled: true, index: '20', image: 'img', command: [], socketFlag: false, env: [{ name: 'A', value: '1' }] } },
    },
    { nodeSelector: { a: 'b' }, tolerations: [], podLabels: { l: 'on' }, updateStrategy: { maxUnavailable: '10%' }, installer: { writeConfig: false }, fullnameOverride: 'rt', config: { containerd_timeout: 1000000 } },
    { config: { socket: '/var/run/containerd/containerd.sock' } },
    { config: { containerd_address: '/var/run/crisp/crisp.sock' } },
    { config: { log_levle: 'x' } },
    { image: { repository: '' } },
    { config: { nri_enabled: false }, nriPlugins: { 'ulimit-policy': { enabled: true } } },
  ];
  const dir = mkdtempSync('/tmp/crisp-helm-compare-');
  try {
    cases.forEach((values, i) => {
      const file = join(dir, `values-${i}.json`);
      writeFileSync(file, JSON.stringify(values));
      const helm = spawnSync(HELM!, ['template', 'crisp', CHART, '-n', 'kube-system', '--kube-version', '1.30.0', '-f', file], { encoding: 'utf8' });
      const key = (o: Obj) => `${o.kind}/${o.metadata.name}`;
      const sorted = (objs: Obj[]) => objs.map((o) => [key(o), o] as const).sort((a, b) => a[0].localeCompare(b[0]));
      if (helm.status !== 0) {
        const why = /execution error at \([^)]*\): (.*)/.exec(helm.stderr)?.[1];
        assert.ok(why, helm.stderr);
        assert.throws(() => render(values), (err: Error) => err.message.endsWith(why), `case ${i}: helm refused with ${why}`);
        return;
      }
      const theirs = parseAllDocuments(helm.stdout, { version: '1.1' })
        .map((d) => d.toJS() as Obj | null)
        .filter((o): o is Obj => o !== null);
      assert.deepEqual(sorted(render(values)), sorted(theirs), `case ${i}`);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
