import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import { resolveConfig, defaultConfigToml, DEFAULT_CONFIG } from '../../daemon/config.js';
import { isCrispError } from '../../common/errors.js';

test('defaults resolve, and layers override in order', () => {
  const c = resolveConfig({ log_level: 'warn' }, { log_level: 'debug', socket: '/tmp/x.sock' });
  assert.equal(c.log_level, 'debug');
  assert.equal(c.socket, '/tmp/x.sock');
  assert.equal(c.root, DEFAULT_CONFIG.root);
});

test('unknown keys, wrong types and bad values are rejected naming the key', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ nope: 1 }, /"nope": unknown key/],
    [{ log_level: 3 }, /"log_level": expected a string/],
    [{ log_level: 'loud' }, /"log_level": "loud" is not one of/],
    [{ cni_bin_dirs: 'x' }, /"cni_bin_dirs": expected a list of strings/],
    [{ shutdown_timeout: -1 }, /"shutdown_timeout": must be at least 0/],
    [{ runtimes: { kata: { runtime_type: 'x', bogus: true } } }, /"runtimes.kata.bogus": unknown key/],
    [{ default_runtime_handler: 'kata' }, /no \[runtimes.kata\] table/],
  ];
  for (const [layer, message] of cases) {
    assert.throws(() => resolveConfig(layer), (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && message.test(err.message));
  }
});

test('extra runtime handlers merge with the default one', () => {
  const c = resolveConfig({ runtimes: { kata: { runtime_type: 'io.containerd.kata.v2' } } });
  assert.deepEqual(Object.keys(c.runtimes).sort(), ['kata', 'runc']);
  assert.equal(c.runtimes.kata!.runtime_type, 'io.containerd.kata.v2');
});

test('the printed default config parses back to the defaults', () => {
  const parsed = parse(defaultConfigToml()) as Record<string, unknown>;
  assert.deepEqual(resolveConfig(parsed), DEFAULT_CONFIG);
});

test('streaming on a non-loopback address needs TLS or an explicit insecure opt-in', () => {
  assert.throws(() => resolveConfig({ streaming_address: '0.0.0.0' }), /streaming_address.*not a loopback address.*streaming_allow_insecure_remote/);
  assert.equal(resolveConfig({ streaming_address: '0.0.0.0', streaming_allow_insecure_remote: true }).streaming_address, '0.0.0.0');
  assert.equal(resolveConfig({ streaming_address: '127.0.0.2' }).streaming_address, '127.0.0.2');
  assert.equal(resolveConfig({ streaming_address: '::1' }).streaming_address, '::1');
  assert.throws(() => resolveConfig({ streaming_url_ttl: 0 }), /streaming_url_ttl/);
});
