// What the debug log may show of a CRI request: never credentials, env values or exec arguments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loggable } from '../../cri/instrument.js';

test('credentials, env values and exec arguments are redacted; the rest stays', () => {
  const create = loggable({ podSandboxId: 'p', config: { metadata: { name: 'c' }, envs: [{ key: 'TOKEN', value: Buffer.from('s3cret') }] } });
  assert.deepEqual(create, { podSandboxId: 'p', config: { metadata: { name: 'c' }, envs: [{ key: 'TOKEN', value: '[redacted]' }] } });
  assert.deepEqual(loggable({ containerId: 'c', cmd: ['sh', '-c', 'curl -H "Authorization: Bearer abc"'], timeout: 5 }), {
    containerId: 'c',
    cmd: ['sh', '[redacted] (2 args)'],
    timeout: 5,
  });
  assert.deepEqual(loggable({ image: { image: 'x' }, auth: { username: 'u', password: 'p' } }), { image: { image: 'x' }, auth: '[redacted]' });
  assert.equal(JSON.stringify(loggable({ config: { envs: [{ key: 'A', value: 'visible?' }] } })).includes('visible?'), false);
});
