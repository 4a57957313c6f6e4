// crispd's logs at run time, against a real daemon: log_format = "text" prints logfmt lines; SIGUSR1
// (sent by pid) switches to debug and back; SIGHUP re-reads log_level from the config file — only that
// key — and a bad value there changes nothing and says so. Each change is a "log level changed" line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestCrispd } from './lib/crispd.js';
import { sleep } from '../../common/time.js';

let d: TestCrispd;

/** Lines after `offset` of crispd's output. */
const linesSince = (offset: number) => d.logs.slice(offset).split('\n').filter(Boolean);

async function waitForLine(offset: number, re: RegExp, what: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const line = linesSince(offset).find((l) => re.test(l));
    if (line) return line;
    await sleep(50);
  }
  throw new Error(`no line ${what} (${re}) in:\n${d.logs.slice(offset).slice(-3000)}`);
}

/** A Version call, and whether crispd logged it at debug. */
async function versionLoggedAtDebug(): Promise<boolean> {
  const offset = d.logs.length;
  await d.client.runtime.unary('Version', { version: 'v1' });
  // A failing call is logged at warn whatever the level: its line marks the end of what the calls logged.
  await d.client.runtime.unary('ContainerStatus', { containerId: 'log-control-absent' }).catch(() => undefined);
  await waitForLine(offset, /msg="cri request failed" .*method=ContainerStatus/, 'for the failed call');
  return linesSince(offset).some((l) => /level=debug msg="cri request" .*method=Version/.test(l));
}

before(async () => {
  d = new TestCrispd({ config: { log_level: 'info', log_format: 'text' } });
  await d.start();
});
after(async () => {
  await d?.cleanup();
});

test('text format: logfmt lines with time, level, msg and the fields', () => {
  const serving = linesSince(0).find((l) => l.includes('msg="crispd is serving CRI"'));
  assert.ok(serving, d.logs.slice(-2000));
  assert.match(serving, /^time=\d{4}-\d\d-\d\dT\S+Z level=info msg="crispd is serving CRI" socket=\S+crisp\.sock$/);
  assert.ok(!d.logs.split('\n').some((l) => l.startsWith('{')), 'no JSON line');
});

test('SIGUSR1 toggles debug and back, SIGHUP re-reads log_level only, each change logged', async () => {
  const pid = d.child!.pid!;
  assert.equal(await versionLoggedAtDebug(), false, 'info: no debug lines');

  let offset = d.logs.length;
  process.kill(pid, 'SIGUSR1');
  await waitForLine(offset, /level=info msg="log level changed" from=info to=debug signal=SIGUSR1$/, 'info → debug');
  assert.equal(await versionLoggedAtDebug(), true, 'debug after SIGUSR1');

  offset = d.logs.length;
  process.kill(pid, 'SIGUSR1');
  await waitForLine(offset, /msg="log level changed" from=debug to=info signal=SIGUSR1$/, 'debug → info');
  assert.equal(await versionLoggedAtDebug(), false, 'back to info after a second SIGUSR1');

  // SIGHUP: the file now says debug, and something that would need a restart, which is not applied.
  d.writeConfig({ log_level: 'debug', log_format: 'json' });
  offset = d.logs.length;
  process.kill(pid, 'SIGHUP');
  await waitForLine(offset, new RegExp(`msg="log level changed" from=info to=debug signal=SIGHUP source="log_level in ${d.configFile}"$`), 'SIGHUP → debug');
  assert.equal(await versionLoggedAtDebug(), true, 'debug after SIGHUP');
  assert.ok(!linesSince(offset).some((l) => l.startsWith('{')), 'log_format is not reloaded');

  // With debug configured, SIGUSR1 goes to info and back.
  offset = d.logs.length;
  process.kill(pid, 'SIGUSR1');
  await waitForLine(offset, /msg="log level changed" from=debug to=info signal=SIGUSR1$/, 'configured debug → info');

  // warn: the change is said at warn so it is seen; info lines stop.
  d.writeConfig({ log_level: 'warn', log_format: 'text' });
  offset = d.logs.length;
  process.kill(pid, 'SIGHUP');
  await waitForLine(offset, /level=warn msg="log level changed" from=info to=warn signal=SIGHUP/, 'SIGHUP → warn');

  // A bad value: nothing changes, the reason names the key.
  d.writeConfig({ log_level: 'loud' });
  offset = d.logs.length;
  process.kill(pid, 'SIGHUP');
  const refused = await waitForLine(offset, /level=error msg="log level not changed/, 'refusal');
  assert.match(refused, /config key \\"log_level\\": \\"loud\\" is not one of trace, debug/);
  assert.equal(await versionLoggedAtDebug(), false);
  assert.equal(d.child!.exitCode, null, 'crispd still runs');
});
