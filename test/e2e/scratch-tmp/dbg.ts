import { startStack } from '../lib/stack.js';
import { WebSocket } from 'ws';
import { sleep } from '../../../common/time.js';
const s = await startStack();
try {
  const pod = await s.runPod('dbg');
  const variant = process.argv[2] ?? 'a';
  const cmds: Record<string, [string[], object]> = {
    a: [['cat'], { stdin: true, tty: true }],
    b: [['cat'], { stdin: true, stdinOnce: true, tty: true }],
    c: [['sh', '-c', 'read line; echo got-$line; exit 0'], { stdin: true, tty: true }],
    d: [['sh', '-c', 'read line; echo got-$line; exit 0'], { stdin: true, stdinOnce: true, tty: true }],
  };
  const [cmd, extra] = cmds[variant]!;
  const once = await s.runContainer(pod, 'once', cmd, extra);
  await sleep(500);
  const st = await s.d.client.runtime.unary('ContainerStatus', { containerId: once });
  console.log('state', st.status?.state, st.status?.logPath);
  const url = (await s.d.client.runtime.unary('Attach', { containerId: once, stdin: true, stdout: true, tty: true })).url;
  const ws = new WebSocket(url, ['v5.channel.k8s.io']);
  ws.on('message', (d: Buffer) => console.log('msg', d[0], JSON.stringify(d.subarray(1).toString())));
  ws.on('open', () => ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('abc\r')])));
  await sleep(3000);
  const st2 = await s.d.client.runtime.unary('ContainerStatus', { containerId: once });
  console.log('state2', st2.status?.state);
  const { readFileSync } = await import('node:fs');
  console.log('LOG', readFileSync(st.status!.logPath, 'utf8'));
  console.log(s.d.logs.split('\n').filter((l) => /stream|attach|stdin/i.test(l)).slice(-20).join('\n'));
  ws.terminate();
} finally {
  await s.teardown();
}
