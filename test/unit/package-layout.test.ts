// scripts/package.mjs: the pure parts (production package set, Depends, versions, config example), the
// staged tree (installed layout, native helpers in /usr/libexec/crisp and found there, no run-time
// client-node, maintainer scripts that keep state and containers) and, where dpkg-deb exists, the .deb itself (dpkg-deb -I / -c).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { resolveConfig, DEFAULT_CONFIG, defaultConfigToml } from '../../daemon/config.js';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);

interface StageInfo {
  name: string;
  version: string;
  arch: string;
  depends: string[];
  natives: string[];
  installedKiB: number;
}
interface PackageScript {
  PREFIX: string;
  RUNTIME_DEPENDS: string[];
  productionPackages(lock: unknown): string[];
  nodeDependency(engines: unknown): string;
  glibcVersion(buffers: Buffer[]): string | undefined;
  libraryDependencies(buffers: Buffer[]): string[];
  debianVersion(version: string): string;
  exampleConfig(defaultToml: string): string;
  render(template: string, fields: Record<string, unknown>): string;
  stage(opts: { repo?: string; stageDir: string; arch?: string }): Promise<StageInfo>;
  buildDeb(stageDir: string, outFile: string, opts?: { compression?: string; level?: number }): string;
  removeTree(dir: string): void;
}

const load = async () => (await import(pathToFileURL(join(REPO, 'scripts', 'package.mjs')).href)) as PackageScript;

describe('package script: pure parts', () => {
  test('production packages: what npm ci --omit=dev installs, outermost folders only', async () => {
    const p = await load();
    const lock = {
      lockfileVersion: 3,
      packages: {
        '': { name: 'crisp' },
        'node_modules/a': {},
        'node_modules/a/node_modules/b': {},
        'node_modules/@s/c': {},
        'node_modules/typescript': { dev: true },
        'node_modules/eslint/node_modules/x': { dev: true },
        'node_modules/opt': { devOptional: true },
        'node_modules/linked': { link: true },
      },
    };
    assert.deepEqual(p.productionPackages(lock), ['node_modules/@s/c', 'node_modules/a', 'node_modules/opt']);
    assert.throws(() => p.productionPackages({ lockfileVersion: 1, dependencies: {} }), /lockfileVersion 2 or 3/);
    // The real lockfile: the runtime dependencies in, the toolchain out.
    const real = p.productionPackages(JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')));
    for (const dep of Object.keys((JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { dependencies: object }).dependencies)) {
      assert.ok(real.includes(`node_modules/${dep}`), dep);
    }
    for (const dev of ['typescript', 'eslint', '@eslint/js']) assert.ok(!real.includes(`node_modules/${dev}`), dev);
  });

  test('Depends: nodejs from engines, libc from the helpers, versions for dpkg', async () => {
    const p = await load();
    assert.equal(p.nodeDependency({ node: '>=20.5' }), 'nodejs (>= 20.5)');
    assert.throws(() => p.nodeDependency({ node: '^20' }), /engines\.node/);
    assert.equal(p.glibcVersion([Buffer.from('x\0GLIBC_2.2.5\0GLIBC_2.34\0y'), Buffer.from('GLIBC_2.17\0GLIBC_2.4\0')]), '2.34');
    assert.equal(p.glibcVersion([Buffer.from('GLIBC_2.3.4\0GLIBC_2.3\0')]), '2.3.4');
    assert.equal(p.glibcVersion([Buffer.from('static')]), undefined);
    assert.deepEqual(p.libraryDependencies([Buffer.from('\0libc.so.6\0libzstd.so.1\0'), Buffer.from('x\0libcrypto.so.3\0libisal.so.2\0')]), ['libssl3', 'libzstd1', 'libisal2']);
    // libssl and libcrypto come from one package, named once.
    assert.deepEqual(p.libraryDependencies([Buffer.from('\0libcurl.so.4\0libssl.so.3\0libcrypto.so.3\0')]), ['libssl3', 'libcurl4']);
    assert.deepEqual(p.libraryDependencies([Buffer.from('libz.so.10\0')]), [], 'a soname matches whole');
    assert.equal(p.debianVersion('0.1.0'), '0.1.0');
    assert.equal(p.debianVersion('1.2.0-rc.1'), '1.2.0~rc.1', 'a pre-release sorts before the release');
    assert.throws(() => p.debianVersion('one'), /not semver/);
    assert.equal(p.render('A: @X@\nB: @Y@', { X: 1, Y: 'two' }), 'A: 1\nB: two\n');
    assert.throws(() => p.render('@Z@', {}), /@Z@ has no value/);
  });

  test('the config example: every key commented out; uncommented it is exactly the defaults', async () => {
    const p = await load();
    const example = p.exampleConfig(defaultConfigToml());
    assert.deepEqual(Object.keys(parseToml(example)), [], 'as shipped it sets nothing');
    for (const line of example.split('\n')) assert.ok(line === '' || line.startsWith('#'), line);
    assert.match(example, /^# metrics_address = ""$/m);
    const uncommented = example
      .split('\n')
      .map((l) => (/^# ([a-z_]+ = |\[)/.test(l) || /^# (runtime_type|binary_name|privileged_without_host_devices) = /.test(l) ? l.slice(2) : l))
      .join('\n');
    assert.deepEqual(resolveConfig(parseToml(uncommented) as Record<string, unknown>), DEFAULT_CONFIG);
  });
});

const haveNative = existsSync(join(REPO, 'native', 'build', 'crisp-logger')) && existsSync(join(REPO, 'native', 'build', 'crisp-nshelper'));
describe('package script: staged tree and .deb', { skip: haveNative ? false : 'native/build is not built (make -C native)' }, () => {
  const dir = mkdtempSync('/tmp/crisp-package-');
  const stageDir = join(dir, 'stage');
  let info: StageInfo;
  let p: PackageScript;
  before(async () => {
    p = await load();
    info = await p.stage({ stageDir });
  });
  after(async () => {
    (await load()).removeTree(dir);
  });
  const lib = () => join(stageDir, p.PREFIX);

  test('layout: dist without tests, bench or maps; package.json; production node_modules; helpers; wrapper; unit', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
    assert.equal(info.version, pkg.version.replace('-', '~'));
    assert.ok(existsSync(join(lib(), 'dist', 'cli', 'main.js')));
    assert.ok(existsSync(join(lib(), 'dist', 'daemon', 'crispd.js')));
    assert.ok(existsSync(join(lib(), 'dist', 'gen', 'descriptor.js')));
    assert.ok(!existsSync(join(lib(), 'dist', 'test')));
    assert.ok(!existsSync(join(lib(), 'dist', 'bench')));
    const maps = spawnSync('find', [join(lib(), 'dist'), '-name', '*.map'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(maps, '', 'no source maps');
    const installed = JSON.parse(readFileSync(join(lib(), 'package.json'), 'utf8')) as { type: string; version: string };
    assert.equal(installed.type, 'module', 'dist/*.js are ES modules');
    assert.equal(installed.version, pkg.version);
    for (const dep of Object.keys(pkg.dependencies)) assert.ok(existsSync(join(lib(), 'node_modules', dep, 'package.json')), dep);
    for (const dev of ['typescript', 'eslint', '@eslint/js', '.bin']) assert.ok(!existsSync(join(lib(), 'node_modules', dev)), dev);
    assert.deepEqual(info.natives, ['crisp-fetch', 'crisp-logger', 'crisp-nshelper', 'crisp-shim-start', 'crisp-spawner', 'crisp-untar']);
    for (const n of info.natives) assert.equal(statSync(join(stageDir, 'usr', 'libexec', 'crisp', n)).mode & 0o777, 0o755, n);
    assert.ok(!existsSync(join(lib(), 'native')), 'no build tree inside /usr/lib/crisp');
    // Types only at build time: the CLI's play command needs no client-node at run time (~40 MiB less).
    assert.ok(!existsSync(join(lib(), 'node_modules', '@kubernetes')), '@kubernetes/client-node is not shipped');
    const wrapper = readFileSync(join(stageDir, 'usr', 'bin', 'crisp'), 'utf8');
    assert.equal(statSync(join(stageDir, 'usr', 'bin', 'crisp')).mode & 0o777, 0o755);
    assert.match(wrapper, /^#!\/bin\/sh\n/);
    assert.match(wrapper, /^main="\$\{CRISP_LIB:-\/usr\/lib\/crisp\}\/dist\/cli\/main\.js"$/m);
    assert.match(wrapper, /^exec "\$\{CRISP_NODE:-\/usr\/bin\/node\}" "\$main" "\$@"$/m);
    assert.equal(spawnSync('sh', ['-n', join(stageDir, 'usr', 'bin', 'crisp')]).status, 0);
    assert.equal(readFileSync(join(stageDir, 'lib', 'systemd', 'system', 'crisp.service'), 'utf8'), readFileSync(join(REPO, 'packaging', 'crisp.service'), 'utf8'));
    assert.ok(existsSync(join(stageDir, 'usr', 'share', 'crisp', 'config.toml.example')));
    assert.ok(!existsSync(join(stageDir, 'etc')), 'no conffile: postinst creates /etc/crisp/config.toml when absent');
    assert.ok(!readFileSync(join(stageDir, 'DEBIAN', 'md5sums'), 'utf8').includes('DEBIAN/'));
  });

  test('the installed program runs from its own tree and finds its helpers in /usr/libexec/crisp', () => {
    const main = join(lib(), 'dist', 'cli', 'main.js');
    // The client's own version: needs no running daemon.
    const version = spawnSync(process.execPath, [main, '--client-version'], { encoding: 'utf8' });
    assert.equal(version.status, 0, version.stderr);
    assert.match(version.stdout, new RegExp(`^${info.version.replace('~', '-').replace(/\./g, '\\.')}`));
    const paths = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const l = await import(${JSON.stringify(pathToFileURL(join(lib(), 'dist', 'native', 'logger.js')).href)});
         const n = await import(${JSON.stringify(pathToFileURL(join(lib(), 'dist', 'native', 'nshelper.js')).href)});
         await import(${JSON.stringify(pathToFileURL(join(lib(), 'dist', 'daemon', 'crispd.js')).href)});
         console.log(JSON.stringify([l.loggerPath(), n.nshelperPath(), l.loggerUri({ logPath: '/var/log/pods/p/c/0.log', pidFile: '/run/crisp/c/logger.pid', ackFile: '/run/crisp/c/logger.ack' })]));`,
      ],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '/' },
    );
    assert.equal(paths.status, 0, paths.stderr);
    const [logger, nshelper, uri] = JSON.parse(paths.stdout) as string[];
    assert.equal(logger, '/usr/libexec/crisp/crisp-logger', 'the shim-started logger is the installed one (absolute)');
    assert.equal(nshelper, '/usr/libexec/crisp/crisp-nshelper');
    assert.ok(uri!.startsWith('binary:///usr/libexec/crisp/crisp-logger?'), uri);
    // `crisp config default` documents both keys and where an empty one points.
    const defaults = spawnSync(process.execPath, [main, 'config', 'default'], { encoding: 'utf8', cwd: '/' });
    assert.equal(defaults.status, 0, defaults.stderr);
    assert.match(defaults.stdout, /^nshelper_path = ""$/m);
    assert.match(defaults.stdout, /^logger_path = ""$/m);
    assert.match(defaults.stdout, /\/usr\/libexec\/crisp\/crisp-logger/);
  });

  test('crisp play runs from the installed tree without @kubernetes/client-node', () => {
    // No module of the installed program imports client-node at run time (type imports are erased)...
    const hits = spawnSync('grep', ['-rlE', `(from|import\\() *['"]@kubernetes/client-node`, join(lib(), 'dist')], { encoding: 'utf8' });
    assert.equal(hits.stdout, '', `run-time imports of client-node:\n${hits.stdout}`);
    // ...and play loads, reads the manifest and gets as far as dialling the daemon.
    const manifest = join(dir, 'pod.yaml');
    writeFileSync(manifest, 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox}]\n');
    const play = spawnSync(process.execPath, [join(lib(), 'dist', 'cli', 'main.js'), '--endpoint', `unix://${join(dir, 'absent.sock')}`, 'play', manifest], {
      encoding: 'utf8',
      cwd: '/',
      timeout: 20_000,
    });
    assert.doesNotMatch(play.stderr, /ERR_MODULE_NOT_FOUND|Cannot find (module|package)/, play.stderr);
    assert.notEqual(play.status, 0);
    assert.match(play.stderr, /absent\.sock|connect|unavailable|ENOENT/i, play.stderr);
  });

  test('maintainer scripts: valid sh, never remove state, stop crispd only on removal', () => {
    for (const script of ['postinst', 'prerm', 'postrm']) {
      const path = join(stageDir, 'DEBIAN', script);
      assert.equal(statSync(path).mode & 0o777, 0o755, script);
      assert.equal(spawnSync('sh', ['-n', path]).status, 0, `${script} parses`);
      const text = readFileSync(path, 'utf8');
      for (const line of text.split('\n').filter((l) => !l.trim().startsWith('#'))) {
        assert.doesNotMatch(line, /rm\s.*(\/var\/lib\/crisp|\/run\/crisp|\/var\/log)/, `${script} removes state: ${line}`);
        assert.doesNotMatch(line, /containerd|runc|kill|ctr\s/, `${script} touches containers: ${line}`);
      }
    }
    const prerm = readFileSync(join(stageDir, 'DEBIAN', 'prerm'), 'utf8');
    assert.match(prerm, /if \[ "\$1" = remove \]/, 'an upgrade stops nothing (postinst restarts crispd)');
    assert.match(prerm, /stop crisp\.service/);
    const postinst = readFileSync(join(stageDir, 'DEBIAN', 'postinst'), 'utf8');
    assert.match(postinst, /if \[ -n "\$2" \]; then\s+action=try-restart/, 'an upgrade restarts crispd only if it runs');
    assert.match(postinst, /\s+action=start/, 'a first install starts it');
    const code = (text: string) => text.split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
    assert.doesNotMatch(code(prerm), /restart/, 'prerm never restarts');
    const postrm = readFileSync(join(stageDir, 'DEBIAN', 'postrm'), 'utf8');
    assert.doesNotMatch(code(postrm), /\b(stop|restart)\b/, 'postrm stops nothing');
    // KillMode=process: the unit's restart signals crispd only, so the shims and containers survive it.
    assert.match(readFileSync(join(stageDir, 'lib', 'systemd', 'system', 'crisp.service'), 'utf8'), /^KillMode=process$/m);
    assert.match(postinst, /if \[ ! -e "\$CONFIG" \] && \[ ! -L "\$CONFIG" \]/, 'an existing config is never replaced');
  });

  const haveDpkgDeb = spawnSync('dpkg-deb', ['--version']).status === 0;
  test('the .deb: control fields and contents (dpkg-deb -I / -c)', { skip: haveDpkgDeb ? false : 'dpkg-deb is not installed' }, () => {
    const deb = p.buildDeb(stageDir, join(dir, `crisp_${info.version}_${info.arch}.deb`), { compression: 'gzip', level: 1 });
    const field = (name: string) => {
      const res = spawnSync('dpkg-deb', ['-f', deb, name], { encoding: 'utf8' });
      assert.equal(res.status, 0, res.stderr);
      return res.stdout.trim();
    };
    assert.equal(field('Package'), 'crisp');
    assert.equal(field('Version'), info.version);
    assert.equal(field('Architecture'), info.arch);
    const depends = field('Depends').split(/,\s*/);
    for (const d of ['containerd', 'runc', 'containernetworking-plugins', 'util-linux', 'iproute2', 'iptables']) assert.ok(depends.includes(d), d);
    assert.ok(depends.some((d) => /^nodejs \(>= 20(\.\d+)*\)$/.test(d)), field('Depends'));
    assert.ok(depends.some((d) => /^libc6( \(>= 2\.\d+\))?$/.test(d)), field('Depends'));
    // crisp-untar's libraries; gzip goes through isa-l when libisal-dev was there at build time, else zlib.
    for (const d of ['libssl3', 'libzstd1']) assert.ok(depends.includes(d), d);
    // crisp-fetch's libcurl (OpenSSL flavour).
    assert.ok(depends.includes('libcurl4'), field('Depends'));
    assert.ok(depends.includes('libisal2') || depends.includes('zlib1g'), field('Depends'));
    assert.ok(Number(field('Installed-Size')) > 1000);
    const infoOut = spawnSync('dpkg-deb', ['-I', deb], { encoding: 'utf8' }).stdout;
    for (const s of ['postinst', 'prerm', 'postrm', 'md5sums']) assert.match(infoOut, new RegExp(`\\s${s}\\s`), s);

    const listing = spawnSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(listing.status, 0, listing.stderr);
    const entries = new Map(
      listing.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const parts = l.split(/\s+/);
          return [parts.slice(5).join(' ').replace(/^\.\//, '/'), { mode: parts[0]!, owner: parts[1]! }] as const;
        }),
    );
    for (const [path, e] of entries) assert.equal(e.owner, 'root/root', path);
    const expect = (path: string, mode: string) => assert.equal(entries.get(path)?.mode, mode, path);
    expect('/usr/bin/crisp', '-rwxr-xr-x');
    expect('/lib/systemd/system/crisp.service', '-rw-r--r--');
    expect('/usr/libexec/crisp/crisp-logger', '-rwxr-xr-x');
    expect('/usr/libexec/crisp/crisp-nshelper', '-rwxr-xr-x');
    expect('/usr/libexec/crisp/crisp-spawner', '-rwxr-xr-x');
    expect('/usr/libexec/crisp/crisp-untar', '-rwxr-xr-x');
    expect('/usr/libexec/crisp/crisp-shim-start', '-rwxr-xr-x');
    expect('/usr/libexec/crisp/crisp-fetch', '-rwxr-xr-x');
    expect('/usr/lib/crisp/dist/cli/main.js', '-rw-r--r--');
    expect('/usr/lib/crisp/package.json', '-rw-r--r--');
    expect('/usr/share/crisp/config.toml.example', '-rw-r--r--');
    expect('/usr/lib/crisp/node_modules/prom-client/package.json', '-rw-r--r--');
    for (const path of entries.keys()) {
      assert.ok(/^\/(usr\/(bin\/crisp|lib\/crisp|libexec\/crisp|share\/crisp)|lib\/systemd\/system)(\/|$)|^\/(usr|usr\/lib|usr\/libexec|usr\/share|usr\/bin|lib|lib\/systemd)?\/?$/.test(path), `unexpected path ${path}`);
      assert.ok(!path.startsWith('/usr/lib/crisp/dist/test') && !(path.startsWith('/usr/lib/crisp/dist/') && path.endsWith('.map')), path);
    }
    assert.ok(!readdirSync(dir).some((n) => n.endsWith('.tmp')));
  });
});
