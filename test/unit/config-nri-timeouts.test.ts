// The NRI timeout keys: defaults, overrides (fractions allowed), rejection naming the key, and their
// place in `crisp config default`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import { resolveConfig, defaultConfigToml } from '../../daemon/config.js';
import { isCrispError } from '../../common/errors.js';

test('NRI timeouts default to 5 s (registration) and 2 s (request), as upstream NRI', () => {
  const c = resolveConfig();
  assert.equal(c.nri_registration_timeout, 5);
  assert.equal(c.nri_request_timeout, 2);
});

test('NRI timeouts can be set from the file, fractions included', () => {
  const text = 'nri_registration_timeout = 10\nnri_request_timeout = 0.5\n';
  const c = resolveConfig(parse(text) as Record<string, unknown>);
  assert.equal(c.nri_registration_timeout, 10);
  assert.equal(c.nri_request_timeout, 0.5);
});

test('bad NRI timeouts are rejected naming the key', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ nri_request_timeout: 0 }, /"nri_request_timeout": must be a number of seconds above 0, got 0/],
    [{ nri_request_timeout: -2 }, /"nri_request_timeout": must be a number of seconds above 0/],
    [{ nri_registration_timeout: '5s' }, /"nri_registration_timeout": expected a number/],
    [{ nri_registration_timeout: Number.POSITIVE_INFINITY }, /"nri_registration_timeout": must be a number of seconds above 0/],
    [{ nri_registration_timeout: Number.NaN }, /"nri_registration_timeout": must be a number of seconds above 0/],
  ];
  for (const [layer, message] of cases) {
    assert.throws(() => resolveConfig(layer), (err: unknown) => isCrispError(err, 'INVALID_ARGUMENT') && message.test(err.message), JSON.stringify(layer));
  }
});

test('`crisp config default` documents both keys with their defaults', () => {
  const text = defaultConfigToml();
  assert.match(text, /# seconds a connected NRI plugin has to register[^\n]*\nnri_registration_timeout = 5\n/);
  assert.match(text, /# seconds an NRI plugin has to answer one call[^\n]*\nnri_request_timeout = 2\n/);
  const parsed = parse(text) as Record<string, unknown>;
  assert.equal(parsed.nri_registration_timeout, 5);
  assert.equal(parsed.nri_request_timeout, 2);
});
