// images/ (installer, kind, k3s) and the chart's references into the installed package, checked
// statically (no container engine, kind or k3s here): every path they name in the package exists in
// the layout scripts/package.mjs stages (staged for real by its stage(), from a repository of symlinks so
// nothing big is copied), what the Dockerfiles COPY exists, and the sockets, cgroup drivers and unit names they give
// kubelet, kind and k3s agree with crisp's config keys and defaults.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_CONFIG, resolveConfig } from '../../daemon/config.js';
import { HelmChart } from '../lib/helm-render.js';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);
const IMAGES = join(REPO, 'images');
const read = (...p: string[]) => readFileSync(join(REPO, ...p), 'utf8');
const CRI_ENDPOINT = `unix://${DEFAULT_CONFIG.socket}`;

interface StageInfo {
  name: string;
  version: string;
  arch: string;
}
let tmp: string;
let stageDir: string;
let info: StageInfo;

/**
 * A repository whose dist/ entries, node_modules/, native/build and packaging are symlinks to this one.
 * Its lockfile lists no packages: the production node_modules (one `cp` each, seconds on a busy
 * machine) are not what these checks look at; package-layout.test.ts covers them.
 */
function symlinkRepo(dst: string): void {
  for (const f of ['package.json', 'packaging']) symlinkSync(join(REPO, f), join(dst, f));
  writeFileSync(join(dst, 'package-lock.json'), JSON.stringify({ lockfileVersion: 3, packages: { '': { name: 'crisp' } } }));
  mkdirSync(join(dst, 'dist'));
  for (const e of readdirSync(join(REPO, 'dist'))) symlinkSync(join(REPO, 'dist', e), join(dst, 'dist', e));
  mkdirSync(join(dst, 'native'));
  symlinkSync(join(REPO, 'native', 'build'), join(dst, 'native', 'build'));
  symlinkSync(join(REPO, 'node_modules'), join(dst, 'node_modules'));
}

/** A path the package installs (absolute, as on the node). */
function installed(path: string): boolean {
  return existsSync(join(stageDir, path));
}

/** COPY instructions (no --from) with ARG defaults substituted: [source, destination]. */
function dockerCopies(dockerfile: string): [string, string][] {
  const args = new Map<string, string>();
  const out: [string, string][] = [];
  for (const line of dockerfile.split('\n')) {
    const arg = /^ARG (\w+)=(\S+)/.exec(line);
    if (arg) args.set(arg[1]!, arg[2]!);
    const copy = /^COPY (?!--from)(\S+) (\S+)$/.exec(line);
    if (copy) out.push([copy[1]!, copy[2]!].map((s) => s.replace(/\$\{(\w+)\}/g, (_, n: string) => args.get(n) ?? assert.fail(`ARG ${n} has no default`))) as [string, string]);
  }
  return out;
}

const globRegExp = (glob: string) => new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);

/** The package file `npm run package` writes, as scripts/package.mjs names it. */
const debPath = () => `build/${info.name}_${info.version}_${info.arch}.deb`;

/** [Section] Key=Value lines of a systemd unit drop-in. */
function unitKeys(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n')) {
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) section = s[1]!;
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (kv) keys.set(`${section}.${kv[1]}`, [...(keys.get(`${section}.${kv[1]}`) ?? []), kv[2]!]);
  }
  return keys;
}

before(async () => {
  tmp = mkdtempSync('/tmp/crisp-node-images-');
  mkdirSync(join(tmp, 'repo'));
  symlinkRepo(join(tmp, 'repo'));
  stageDir = join(tmp, 'stage');
  const pkg = (await import(pathToFileURL(join(REPO, 'scripts', 'package.mjs')).href)) as { stage(o: { repo: string; stageDir: string }): Promise<StageInfo> };
  info = await pkg.stage({ repo: join(tmp, 'repo'), stageDir });
});

after(() => rmSync(tmp, { recursive: true, force: true }));

test('what the chart, the images and the k3s script run from the package is where the package puts it', () => {
  const unit = /^UNIT=(\S+)$/m.exec(read('charts', 'crisp', 'files', 'install.sh'))![1]!;
  assert.ok(installed(`lib/systemd/system/${unit}`), unit);
  const chart = new HelmChart(join(REPO, 'charts', 'crisp'));
  const values = chart.defaults as { installer: { hostLibDir: string }; nriPlugins: Record<string, { command: string[] }> };
  // install.sh checks the config with <hostLibDir>/dist/daemon/config.js; the example plugin runs from the package.
  assert.ok(installed(`${values.installer.hostLibDir}/dist/daemon/config.js`), values.installer.hostLibDir);
  const pluginScript = values.nriPlugins['ulimit-policy']!.command[1]!;
  assert.ok(installed(pluginScript), pluginScript);
  const k3sLib = /^CRISP_LIB=(\S+)$/m.exec(read('images', 'k3s', 'install.sh'))![1]!;
  assert.ok(installed(`${k3sLib}/dist/daemon/config.js`), k3sLib);
  for (const path of read('images', 'kind', 'Dockerfile').matchAll(/test -x (\S+);/g)) assert.ok(installed(path[1]!), path[1]);
  for (const dropIn of [['images', 'kind', 'kubelet-after-crisp.conf'], ['images', 'k3s', 'after-crisp.conf']]) {
    const keys = unitKeys(read(...dropIn));
    assert.deepEqual(keys.get('Unit.After'), [unit], dropIn.join('/'));
    assert.deepEqual(keys.get('Unit.Wants'), [unit], dropIn.join('/'));
    assert.equal(keys.get('Unit.Requires'), undefined, 'a crisp restart must not restart kubelet or k3s');
  }
});

test('Dockerfiles COPY the package npm run package builds and files that exist; the installer image puts it where the chart looks', () => {
  for (const image of ['installer', 'kind']) {
    const copies = dockerCopies(read('images', image, 'Dockerfile'));
    assert.ok(copies.length > 0, image);
    for (const [src] of copies) {
      if (src.includes('*')) assert.match(debPath(), globRegExp(src), `${image}: COPY ${src}`);
      else assert.ok(existsSync(join(REPO, src)), `${image}: COPY ${src}`);
    }
  }
  const [[, dest]] = dockerCopies(read('images', 'installer', 'Dockerfile')) as [[string, string]];
  const chart = new HelmChart(join(REPO, 'charts', 'crisp'));
  type Ds = { kind: string; spec: { template: { spec: { initContainers: { image: string; env: { name: string; value: string }[] }[] } } } };
  const ds = chart.objects().find((o) => o.kind === 'DaemonSet') as unknown as Ds;
  const install = ds.spec.template.spec.initContainers[0]!;
  const glob = install.env.find((e) => e.name === 'CRISP_DEB')!.value;
  assert.match(`${dest}${debPath().split('/').pop()}`, globRegExp(glob));
  // The build command the Dockerfile documents makes the image the chart's defaults name.
  assert.match(read('images', 'installer', 'Dockerfile'), new RegExp(`-t ${install.image.replace(/[.]/g, '\\.')} \\.`));
  assert.match(read('images', 'kind', 'Dockerfile'), /^FROM \$\{KIND_NODE_IMAGE\}$/m);
  assert.match(read('images', 'kind', 'Dockerfile'), /^ARG KIND_NODE_IMAGE=kindest\/node:v\d+\.\d+\.\d+$/m);
});

test('kind: kubeadm and kubelet get crisp\'s socket; kubelet\'s cgroup driver is the one crisp is configured with', () => {
  const crisp = resolveConfig(parseToml(read('images', 'kind', 'config.toml')) as Record<string, unknown>);
  const cluster = parseYaml(read('images', 'kind', 'kind-config.yaml')) as { kind: string; apiVersion: string; nodes: { role: string; image: string }[]; kubeadmConfigPatches: string[] };
  assert.equal(cluster.kind, 'Cluster');
  assert.equal(cluster.apiVersion, 'kind.x-k8s.io/v1alpha4');
  const patches = new Map(cluster.kubeadmConfigPatches.map((p) => parseYaml(p) as { kind: string } & Record<string, unknown>).map((p) => [p.kind, p]));
  const endpoint = `unix://${crisp.socket}`;
  assert.equal(endpoint, CRI_ENDPOINT);
  for (const kind of ['InitConfiguration', 'JoinConfiguration']) {
    assert.equal((patches.get(kind) as unknown as { nodeRegistration: { criSocket: string } }).nodeRegistration.criSocket, endpoint, kind);
  }
  const kubelet = patches.get('KubeletConfiguration') as unknown as { containerRuntimeEndpoint: string; cgroupDriver: string };
  assert.equal(kubelet.containerRuntimeEndpoint, endpoint);
  assert.equal(kubelet.cgroupDriver, crisp.cgroup_driver);
  const tag = /-t (\S+) \./.exec(read('images', 'kind', 'Dockerfile'))![1]!;
  for (const node of cluster.nodes) assert.equal(node.image, tag, `${node.role} node uses the image the Dockerfile builds`);
});

test('k3s: container-runtime-endpoint is crisp\'s socket, the kubelet cgroup driver crisp\'s, and install.sh checks both', () => {
  const config = parseYaml(read('images', 'k3s', '50-crisp.yaml')) as Record<string, unknown>;
  assert.equal(config['container-runtime-endpoint'], CRI_ENDPOINT);
  assert.deepEqual(config['kubelet-arg+'], [`cgroup-driver=${DEFAULT_CONFIG.cgroup_driver}`]);
  const script = read('images', 'k3s', 'install.sh');
  assert.equal(/^SOCKET=(\S+)$/m.exec(script)![1], DEFAULT_CONFIG.socket);
  assert.equal(/^CGROUP_DRIVER=(\S+)$/m.exec(script)![1], DEFAULT_CONFIG.cgroup_driver);
  for (const m of script.matchAll(/"\$here\/([^"]+)"/g)) assert.ok(existsSync(join(IMAGES, 'k3s', m[1]!)), `install.sh copies ${m[1]}`);
  assert.match(script, /\/etc\/systemd\/system\/\$unit\.service\.d\/50-crisp\.conf/);
  assert.match(script, /for unit in k3s k3s-agent; do/);
});

test('the shell scripts parse (sh -n) and, where shellcheck is installed, pass it', () => {
  const scripts = [join(IMAGES, 'k3s', 'install.sh'), join(REPO, 'charts', 'crisp', 'files', 'install.sh')];
  for (const script of scripts) {
    const r = spawnSync('sh', ['-n', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${script}: ${r.stderr}`);
  }
  const shellcheck = spawnSync('shellcheck', ['-s', 'sh', ...scripts], { encoding: 'utf8' });
  if (shellcheck.error) return; // not installed: sh -n above is the check
  assert.equal(shellcheck.status, 0, shellcheck.stdout);
});
