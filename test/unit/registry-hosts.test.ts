import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCrispError } from '../../common/errors.js';
import {
  configRoots,
  defaultServer,
  endpointsFor,
  hostDirectoryNames,
  isLocalhost,
  loadEndpoints,
  parseGoDuration,
  parseHostsToml,
} from '../../backend/registry/hosts.js';

const brief = (eps: { scheme: string; host: string; path: string }[]) => eps.map((e) => `${e.scheme}://${e.host}${e.path}`);

test('default servers: docker.io, remote hosts, localhost rules, plain-HTTP overrides', () => {
  assert.deepEqual(brief([defaultServer('docker.io')]), ['https://registry-1.docker.io/v2']);
  assert.deepEqual(brief([defaultServer('quay.io')]), ['https://quay.io/v2']);
  const local = defaultServer('127.0.0.1:5000');
  assert.equal(local.scheme, 'https');
  assert.equal(local.httpFallback, true, 'localhost with a port: TLS first, then plain HTTP');
  assert.equal(local.skipVerify, true);
  assert.equal(defaultServer('localhost').httpFallback, false);
  assert.equal(defaultServer('localhost:443').scheme, 'https');
  assert.equal(defaultServer('localhost:80').scheme, 'http');
  assert.equal(defaultServer('[::1]:5000').httpFallback, true);
  assert.equal(defaultServer('10.0.0.1:5000').httpFallback, false);
  assert.equal(defaultServer('10.0.0.1:5000', { plainHttpHosts: ['10.0.0.1:*'] }).scheme, 'http');
  assert.equal(defaultServer('10.0.0.1:5000', { plainHttpHosts: ['10.0.0.1:5000'] }).scheme, 'http');
  assert.equal(defaultServer('10.0.0.1:5001', { plainHttpHosts: ['10.0.0.1:5000'] }).scheme, 'https');
  assert.equal(defaultServer('r.example', { plainHttpHosts: ['*'] }).scheme, 'http');
  assert.ok(isLocalhost('127.1.2.3:1') && isLocalhost('localhost') && isLocalhost('[::1]:5000') && !isLocalhost('localhost.example'));
});

test('host directory names follow containerd order', () => {
  assert.deepEqual(hostDirectoryNames('myregistry.io:5000'), ['myregistry.io_5000_', 'myregistry.io:5000', '_default']);
  assert.deepEqual(hostDirectoryNames('docker.io'), ['docker.io', '_default']);
  assert.deepEqual(hostDirectoryNames('[::1]:5000'), ['[::1]_5000_', '[::1]:5000', '_default']);
  assert.deepEqual(configRoots('/a:/b'), ['/a', '/b']);
  assert.deepEqual(configRoots(['/a']), ['/a']);
  assert.deepEqual(configRoots(undefined), []);
});

test('hosts.toml: mirrors in file order, then the server; settings per host', () => {
  const toml = `
server = "https://registry-1.docker.io"
ca = "root-ca.pem"

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]

[host."http://10.0.0.5:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  dial_timeout = "1s"
  [host."http://10.0.0.5:5000".header]
    x-custom = ["a", "b"]
    x-single = "c"

[host."https://mirror.example.com/prefix/"]
  ca = ["/etc/certs/a.pem", "b.pem"]
  client = [["/etc/certs/c.cert", "/etc/certs/c.key"], "/etc/certs/d.pem"]

[host."https://odd.example.com/v2/upstream"]
  override_path = true
`;
  const eps = parseHostsToml(toml, 'docker.io', '/etc/containerd/certs.d/docker.io');
  assert.deepEqual(brief(eps), [
    'https://public-mirror.example.com/v2',
    'http://10.0.0.5:5000/v2',
    'https://mirror.example.com/prefix/v2',
    'https://odd.example.com/v2/upstream',
    'https://registry-1.docker.io/v2',
  ]);
  assert.deepEqual(eps[0]!.capabilities, ['pull']);
  assert.deepEqual(eps[1]!.capabilities, ['pull', 'resolve']);
  assert.deepEqual(eps[2]!.capabilities, ['pull', 'resolve', 'push'], 'default: all capabilities');
  assert.equal(eps[1]!.skipVerify, true);
  assert.equal(eps[1]!.dialTimeoutMs, 1000);
  assert.deepEqual(eps[1]!.header, { 'x-custom': ['a', 'b'], 'x-single': ['c'] });
  assert.deepEqual(eps[2]!.caFiles, ['/etc/certs/a.pem', '/etc/containerd/certs.d/docker.io/b.pem']);
  assert.deepEqual(eps[2]!.clientCertificates, [{ cert: '/etc/certs/c.cert', key: '/etc/certs/c.key' }, { cert: '/etc/certs/d.pem' }]);
  assert.deepEqual(eps[4]!.caFiles, ['/etc/containerd/certs.d/docker.io/root-ca.pem'], 'root settings belong to the server');
  assert.deepEqual(eps.map((e) => e.mirror), [true, true, true, true, false]);
  assert.deepEqual(brief(endpointsFor('resolve', eps)), [
    'http://10.0.0.5:5000/v2',
    'https://mirror.example.com/prefix/v2',
    'https://odd.example.com/v2/upstream',
    'https://registry-1.docker.io/v2',
  ]);
});

test('hosts.toml without server falls back to the namespace default; scheme-less URLs are https', () => {
  const eps = parseHostsToml('[host."mirror.local:5000"]\n', 'docker.io', '/x');
  assert.deepEqual(brief(eps), ['https://mirror.local:5000/v2', 'https://registry-1.docker.io/v2']);
  const only = parseHostsToml('server = "registry.internal"\n', 'registry.internal', '/x');
  assert.deepEqual(brief(only), ['https://registry.internal/v2']);
  assert.equal(only[0]!.mirror, false);
  const local = parseHostsToml('skip_verify = false\n', '127.0.0.1:5000', '/x');
  assert.equal(local[0]!.skipVerify, false, 'an explicit root skip_verify wins over the localhost default');
});

test('hosts.toml errors name the file', () => {
  const bad: [string, RegExp][] = [
    ['[host."https://m"]\ncapabilities = ["fly"]\n', /unknown capability "fly"/],
    ['server = 5\n', /"server" must be a string/],
    ['server = "ftp://x"\n', /scheme must be http or https/],
    ['[host."https://m"]\nskip_verify = "yes"\n', /skip_verify/],
    ['[host."https://m"]\ndial_timeout = "soon"\n', /bad dial_timeout/],
    ['this is not toml', /hosts\.toml/],
  ];
  for (const [text, why] of bad) {
    assert.throws(
      () => parseHostsToml(text, 'r.example', '/etc/certs.d/r.example'),
      (err: unknown) => {
        assert.ok(isCrispError(err, 'FAILED_PRECONDITION'), String(err));
        assert.match(err.message, why);
        assert.match(err.message, /\/etc\/certs\.d\/r\.example\/hosts\.toml/);
        return true;
      },
    );
  }
});

test('Go durations', () => {
  assert.equal(parseGoDuration('1s'), 1000);
  assert.equal(parseGoDuration('300ms'), 300);
  assert.equal(parseGoDuration('1m30s'), 90_000);
  assert.equal(parseGoDuration('1.5s'), 1500);
  assert.equal(parseGoDuration('0'), 0);
  assert.equal(parseGoDuration('5'), undefined);
  assert.equal(parseGoDuration('1x'), undefined);
});

test('loadEndpoints reads the config dir: host_port_ before host:port, _default, docker cert files', async () => {
  const root = mkdtempSync(join(tmpdir(), 'crisp-unit-hosts-'));
  try {
    mkdirSync(join(root, 'r.example_5000_'));
    writeFileSync(join(root, 'r.example_5000_', 'hosts.toml'), 'server = "http://r.example:5000"\n');
    mkdirSync(join(root, 'r.example:5000'));
    writeFileSync(join(root, 'r.example:5000', 'hosts.toml'), 'server = "https://wrong.example"\n');
    mkdirSync(join(root, '_default'));
    writeFileSync(join(root, '_default', 'hosts.toml'), '[host."https://catch-all.example"]\ncapabilities = ["pull", "resolve"]\n');
    mkdirSync(join(root, 'certs.example'));
    writeFileSync(join(root, 'certs.example', 'ca.crt'), 'x');
    writeFileSync(join(root, 'certs.example', 'client.cert'), 'x');
    writeFileSync(join(root, 'certs.example', 'client.key'), 'x');

    assert.deepEqual(brief(await loadEndpoints('r.example:5000', { configPath: root })), ['http://r.example:5000/v2']);
    const viaDefault = await loadEndpoints('other.example', { configPath: root });
    assert.deepEqual(brief(viaDefault), ['https://catch-all.example/v2', 'https://other.example/v2'], '_default mirror, then the real upstream');
    const certs = await loadEndpoints('certs.example', { configPath: root });
    assert.deepEqual(brief(certs), ['https://certs.example/v2']);
    assert.deepEqual(certs[0]!.caFiles, [join(root, 'certs.example', 'ca.crt')]);
    assert.deepEqual(certs[0]!.clientCertificates, [{ cert: join(root, 'certs.example', 'client.cert'), key: join(root, 'certs.example', 'client.key') }]);
    assert.deepEqual(brief(await loadEndpoints('docker.io', { configPath: join(root, 'missing') })), ['https://registry-1.docker.io/v2']);
    assert.deepEqual(brief(await loadEndpoints('docker.io')), ['https://registry-1.docker.io/v2']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
