// Builds the Debian package build/crisp_<version>_<arch>.deb with dpkg-deb (`npm run package`, which
// builds dist/ and native/build first). No network: the production node_modules are copied from the
// tree `npm ci` installed, chosen by package-lock.json exactly as `npm ci --omit=dev` would install them.
//
// Installed layout (nothing refers to the build tree at run time):
//   /usr/lib/crisp/{package.json,dist/,node_modules/}   the daemon and CLI (dist/ without tests, bench, maps)
//   /usr/libexec/crisp/crisp-{nshelper,logger,spawner,untar,fetch,shim-start}  native helpers: the defaults of config keys
//                                                       nshelper_path and logger_path when crispd runs
//                                                       without a build tree (native/helper-paths.ts); the
//                                                       binary:// URI the shim runs the logger from names it;
//                                                       crisp-spawner (no key) runs crispd's short commands;
//                                                       crisp-untar (no key) extracts image layers,
//                                                       crisp-fetch (no key) downloads them;
//                                                       crisp-shim-start (no key) runs shim starts
//   /usr/bin/crisp                                      wrapper: exec /usr/bin/node /usr/lib/crisp/dist/cli/main.js
//   /lib/systemd/system/crisp.service                   the unit (packaging/crisp.service)
//   /usr/share/crisp/config.toml.example                every key commented out with its default; postinst
//                                                       copies it to /etc/crisp/config.toml when that is absent
//   DEBIAN/{control,postinst,prerm,postrm,md5sums}      packaging/debian/*
//
// Usage: node scripts/package.mjs [--out-dir build] [--stage-dir build/stage] [--keep-stage]
//                                 [--compression xz|gzip|zstd|none] [--level N] [--stage-only]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const PREFIX = 'usr/lib/crisp';
/** Where the native helpers go (native/helper-paths.ts INSTALLED_HELPER_DIR). */
export const LIBEXEC = 'usr/libexec/crisp';
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Debian packages crisp runs with (besides nodejs and libc, computed). */
export const RUNTIME_DEPENDS = ['containerd', 'runc', 'containernetworking-plugins', 'util-linux', 'iproute2', 'iptables'];

/** Debian bookworm's package for each shared library (DT_NEEDED soname) the native helpers may link. */
export const LIBRARY_PACKAGES = {
  'libcrypto.so.3': 'libssl3',
  'libssl.so.3': 'libssl3',
  'libcurl.so.4': 'libcurl4',
  'libz.so.1': 'zlib1g',
  'libzstd.so.1': 'libzstd1',
  'libisal.so.2': 'libisal2',
};

/** The packages of the libraries the helper binaries name (a soname appears NUL-terminated in .dynstr). */
export function libraryDependencies(buffers) {
  const text = buffers.map((b) => b.toString('latin1'));
  const packages = Object.entries(LIBRARY_PACKAGES)
    .filter(([soname]) => text.some((t) => t.includes(`\0${soname}\0`)))
    .map(([, pkg]) => pkg);
  return [...new Set(packages)];
}

/** dist/ folders that are not part of the installed program. */
const DIST_EXCLUDE = new Set(['test', 'bench']);

/**
 * The node_modules paths `npm ci --omit=dev` installs, from a lockfile (v2/v3): every package not marked
 * dev (devOptional ones stay, as npm keeps them), outermost only (a copied folder brings its nested
 * node_modules along), links and the root skipped.
 */
export function productionPackages(lock) {
  const packages = lock.packages;
  if (!packages || typeof packages !== 'object') throw new Error('package-lock.json has no "packages" (lockfileVersion 2 or 3 needed)');
  const keep = Object.entries(packages)
    .filter(([path, meta]) => path.startsWith('node_modules/') && !meta.dev && !meta.link)
    .map(([path]) => path)
    .sort();
  return keep.filter((path) => !keep.some((outer) => outer !== path && path.startsWith(`${outer}/node_modules/`)));
}

/** `nodejs (>= X)` from package.json's engines.node (">=20.5"): the package has no native addons, so any node that new runs it. */
export function nodeDependency(engines) {
  const m = /^\s*>=\s*v?(\d+(?:\.\d+){0,2})\s*$/.exec(engines?.node ?? '');
  if (!m) throw new Error(`package.json engines.node must be ">=X.Y" to derive the nodejs dependency, got ${JSON.stringify(engines?.node)}`);
  return `nodejs (>= ${m[1]})`;
}

/** The newest GLIBC_x.y symbol version the binaries need ("2.34"), or undefined for none. */
export function glibcVersion(buffers) {
  let best;
  for (const buf of buffers) {
    for (const m of buf.toString('latin1').matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?\0/g)) {
      const v = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
      if (!best || v[0] > best[0] || (v[0] === best[0] && (v[1] > best[1] || (v[1] === best[1] && v[2] > best[2])))) best = v;
    }
  }
  return best ? (best[2] ? best.join('.') : `${best[0]}.${best[1]}`) : undefined;
}

/** A Debian version from an npm one: "1.2.3-rc.1" sorts before "1.2.3" only as "1.2.3~rc.1". */
export function debianVersion(version) {
  if (!/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/.test(version)) throw new Error(`package.json version ${JSON.stringify(version)} is not semver`);
  return version.replace('-', '~');
}

/** The config example: `crisp config default` with every setting commented out, under a header. */
export function exampleConfig(defaultToml) {
  const body = defaultToml
    .split('\n')
    .filter((line, i) => !(i === 0 && line.startsWith('# crispd configuration')))
    .map((line) => (line === '' || line.startsWith('#') ? line : `# ${line}`))
    .join('\n');
  return [
    '# /etc/crisp/config.toml: crispd configuration, created by the crisp package from',
    '# /usr/share/crisp/config.toml.example when absent. Upgrades never change it; purging the package',
    '# removes it only while every line is still a comment.',
    '# Every key is shown commented out with its default: uncomment a line to change it. Unknown keys and',
    '# bad values stop the daemon at start naming the key. `crisp config default` prints the defaults.',
    '#',
    '# After a change: systemctl restart crisp (restarts crispd only; containers keep running).',
    '',
    body.replace(/^\n+/, ''),
  ].join('\n');
}

/** Fill @NAME@ placeholders; an unknown or unfilled one is an error. */
export function render(template, fields) {
  const out = template.replace(/@([A-Z_]+)@/g, (_, name) => {
    if (!(name in fields)) throw new Error(`template placeholder @${name}@ has no value`);
    return String(fields[name]);
  });
  return out.endsWith('\n') ? out : `${out}\n`;
}

export function debArchitecture() {
  const res = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' });
  if (res.status === 0 && res.stdout.trim()) return res.stdout.trim();
  const map = { x64: 'amd64', arm64: 'arm64', arm: 'armhf', ppc64: 'ppc64el', s390x: 's390x', riscv64: 'riscv64' };
  const arch = map[process.arch];
  if (!arch) throw new Error(`no Debian architecture for ${process.arch}`);
  return arch;
}

function walk(dir, visit) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = lstatSync(p);
    visit(p, st);
    if (st.isDirectory()) walk(p, visit);
  }
}

function run(cmd, args) {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  if (res.error) throw new Error(`${cmd}: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${res.stderr.trim()}`);
}

/** cp -a (several times faster than fs.cpSync on thousands of small files). */
function copyTree(src, dst) {
  mkdirSync(dirname(dst), { recursive: true });
  run('cp', ['-a', '--', src, dst]);
}

export function removeTree(dir) {
  run('rm', ['-rf', '--', dir]);
}

/**
 * Lay the package tree out under `stageDir` (emptied first) from `repo`'s build. Returns what the control
 * file says. Needs dist/ (npm run build), native/build (make -C native) and node_modules (npm ci).
 */
export async function stage({ repo = REPO, stageDir, arch = debArchitecture() }) {
  const need = (path, how) => {
    if (!existsSync(join(repo, path))) throw new Error(`${path} is missing: ${how} first (npm run package does both)`);
  };
  need('dist/cli/main.js', 'run npm run build');
  need('dist/daemon/config.js', 'run npm run build');
  need('dist/crispd/daemon-cli.js', 'run npm run build');
  need('native/build/crisp-nshelper', 'run make -C native');
  need('native/build/crisp-logger', 'run make -C native');
  need('native/build/crisp-spawner', 'run make -C native');
  need('native/build/crisp-untar', 'run make -C native');
  need('native/build/crisp-fetch', 'run make -C native');
  need('native/build/crisp-shim-start', 'run make -C native');
  need('node_modules', 'run npm ci');

  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8'));
  const version = debianVersion(pkg.version);
  removeTree(stageDir);
  const lib = join(stageDir, PREFIX);
  mkdirSync(lib, { recursive: true });

  // The program: dist/ minus tests, benchmarks and source maps (their sources are not shipped).
  const dist = join(repo, 'dist');
  for (const name of readdirSync(dist).sort()) {
    if (DIST_EXCLUDE.has(name)) continue;
    copyTree(join(dist, name), join(lib, 'dist', name));
  }
  walk(join(lib, 'dist'), (p, st) => {
    if (st.isFile() && p.endsWith('.map')) unlinkSync(p);
  });
  // package.json: "type": "module" for dist/*.js, and the version crispVersion() reads.
  const installedPkg = { name: pkg.name, version: pkg.version, description: pkg.description, type: pkg.type, license: pkg.license, private: true, engines: pkg.engines };
  writeFileSync(join(lib, 'package.json'), `${JSON.stringify(installedPkg, null, 2)}\n`);

  // Production node_modules, as `npm ci --omit=dev` lays them out.
  const missing = [];
  for (const path of productionPackages(lock)) {
    const src = join(repo, path);
    if (!existsSync(src)) {
      missing.push(path);
      continue;
    }
    copyTree(src, join(lib, path));
  }
  if (missing.length > 0) throw new Error(`node_modules lacks production packages (run npm ci): ${missing.join(', ')}`);

  // Native helpers: every executable native/build holds.
  const nativeDir = join(repo, 'native', 'build');
  const natives = readdirSync(nativeDir)
    .filter((n) => statSync(join(nativeDir, n)).isFile() && (statSync(join(nativeDir, n)).mode & 0o111) !== 0)
    .sort();
  mkdirSync(join(stageDir, LIBEXEC), { recursive: true });
  for (const n of natives) copyFileSync(join(nativeDir, n), join(stageDir, LIBEXEC, n));

  const put = (path, content, mode) => {
    const p = join(stageDir, path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
    chmodSync(p, mode);
  };
  const packaging = join(repo, 'packaging');
  put('usr/bin/crisp', readFileSync(join(packaging, 'crisp-wrapper.sh')), 0o755);
  put('lib/systemd/system/crisp.service', readFileSync(join(packaging, 'crisp.service')), 0o644);
  const { defaultConfigToml } = await import(pathToFileURL(join(repo, 'dist', 'daemon', 'config.js')).href);
  put('usr/share/crisp/config.toml.example', exampleConfig(defaultConfigToml()), 0o644);

  // Modes as dpkg expects them: directories 0755, executables 0755, the rest 0644.
  walk(stageDir, (p, st) => {
    if (st.isSymbolicLink()) return;
    chmodSync(p, st.isDirectory() || (st.mode & 0o111) !== 0 ? 0o755 : 0o644);
  });

  // Control area.
  let installedKiB = 0;
  const sums = [];
  walk(stageDir, (p, st) => {
    installedKiB += st.isFile() ? Math.ceil(st.size / 1024) : 1;
    if (st.isFile()) sums.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(stageDir, p).split(sep).join('/')}`);
  });
  const binaries = natives.map((n) => readFileSync(join(nativeDir, n)));
  const glibc = glibcVersion(binaries);
  const depends = [glibc ? `libc6 (>= ${glibc})` : 'libc6', nodeDependency(pkg.engines), ...libraryDependencies(binaries), ...RUNTIME_DEPENDS];
  const control = render(readFileSync(join(packaging, 'debian', 'control.in'), 'utf8'), {
    VERSION: version,
    ARCH: arch,
    MAINTAINER: process.env.CRISP_DEB_MAINTAINER ?? 'crisp developers <crisp@localhost>',
    INSTALLED_SIZE: installedKiB,
    DEPENDS: depends.join(', '),
  });
  const debian = join(stageDir, 'DEBIAN');
  mkdirSync(debian, { mode: 0o755 });
  chmodSync(debian, 0o755);
  put('DEBIAN/control', control, 0o644);
  put('DEBIAN/md5sums', `${sums.join('\n')}\n`, 0o644);
  for (const script of ['postinst', 'prerm', 'postrm']) put(`DEBIAN/${script}`, readFileSync(join(packaging, 'debian', script)), 0o755);
  return { name: 'crisp', version, arch, depends, natives, installedKiB };
}

/** `dpkg-deb --build` the staged tree (files owned by root) into `outFile`. */
export function buildDeb(stageDir, outFile, { compression = 'xz', level } = {}) {
  mkdirSync(dirname(outFile), { recursive: true });
  const args = ['--root-owner-group', `-Z${compression}`, ...(level !== undefined ? [`-z${level}`] : []), '--build', stageDir, outFile];
  const res = spawnSync('dpkg-deb', args, { encoding: 'utf8' });
  if (res.error) throw new Error(`dpkg-deb: ${res.error.message} (install the dpkg package)`);
  if (res.status !== 0) throw new Error(`dpkg-deb ${args.join(' ')} failed:\n${res.stderr}${res.stdout}`);
  return outFile;
}

function parseArgs(argv) {
  const opts = { outDir: join(REPO, 'build'), stageDir: undefined, keepStage: false, compression: 'xz', level: undefined, stageOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--out-dir') opts.outDir = resolve(value());
    else if (a === '--stage-dir') opts.stageDir = resolve(value());
    else if (a === '--keep-stage') opts.keepStage = true;
    else if (a === '--stage-only') opts.stageOnly = opts.keepStage = true;
    else if (a === '--compression') opts.compression = value();
    else if (a === '--level') opts.level = Number(value());
    else throw new Error(`unknown argument ${a}`);
  }
  opts.stageDir ??= join(opts.outDir, 'stage');
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const info = await stage({ stageDir: opts.stageDir });
  if (opts.stageOnly) {
    console.log(`package: staged crisp ${info.version} (${info.arch}) in ${opts.stageDir}`);
    return;
  }
  const out = join(opts.outDir, `${info.name}_${info.version}_${info.arch}.deb`);
  buildDeb(opts.stageDir, out, { compression: opts.compression, level: opts.level });
  if (!opts.keepStage) removeTree(opts.stageDir);
  const mib = (statSync(out).size / 1048576).toFixed(1);
  console.log(`package: ${relative(process.cwd(), out) || out} (${mib} MiB, installed ${Math.round(info.installedKiB / 1024)} MiB, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  console.log(`package: Depends: ${info.depends.join(', ')}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`package: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
