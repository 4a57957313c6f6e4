// The streaming server against the real stack, driven by independent clients: the `ws` package as a
// WebSocket client of the channel protocols, and kubectl (client-go: SPDY/3.1 through Go's spdystream,
// and WebSocket v5) through a fake API server that proxies its upgrade requests to crisp's URLs, as the
// real API server does to a kubelet. Exec with and without a tty, stdin, resize, exit codes, attach,
// port-forward, concurrency, single-use and expiring tokens, and no exec process left behind.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { get as httpGet, request as httpRequest } from 'node:http';
import { WebSocket, type RawData } from 'ws';
import * as grpc from '@grpc/grpc-js';
import { startStack, type Stack } from './lib/stack.js';
import { CLI, pidsWhere } from './lib/crispd.js';
import { startFakeApiServer, findKubectl, type FakeApiServer } from './fixtures/fake-apiserver.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';

const TOKEN_TTL_MS = 4000;

interface WsResult {
  protocol: string;
  /** Bytes per channel, in arrival order (the port-forward prefix included). */
  channels: Map<number, Buffer>;
  stdout: string;
  stderr: string;
  error: string;
  closeCode: number;
}

interface WsOptions {
  protocols?: string[];
  /** Sent on stdin (channel 0) once open, in order. */
  stdin?: string[];
  /** v5 CLOSE signal for stdin after the input. */
  closeStdin?: boolean;
  resize?: { Width: number; Height: number };
  /** Stop (terminate) once this holds. */
  until?: (r: WsResult) => boolean;
  timeoutMs?: number;
  /** Extra messages (already framed) sent after open. */
  raw?: (Buffer | string)[];
  /** Called once open with a way to send more stdin later. */
  onOpen?: (sendStdin: (s: string) => void) => void;
  /** Called after each message. */
  onMessage?: (r: WsResult) => void;
}

/** A WebSocket client of the Kubernetes channel protocols, written against the protocol, not the server. */
function wsSession(url: string, opts: WsOptions = {}): Promise<WsResult> {
  const protocols = opts.protocols ?? ['v5.channel.k8s.io'];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    const r: WsResult = { protocol: '', channels: new Map(), stdout: '', stderr: '', error: '', closeCode: 0 };
    const base64 = () => r.protocol.includes('base64');
    const send = (ch: number, data: Buffer) => ws.send(base64() ? `${String.fromCharCode(48 + ch)}${data.toString('base64')}` : Buffer.concat([Buffer.from([ch]), data]));
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`WebSocket session timed out; so far: ${JSON.stringify({ stdout: r.stdout, stderr: r.stderr, error: r.error })}`));
    }, opts.timeoutMs ?? 20_000);
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode }));
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.once('open', () => {
      r.protocol = ws.protocol;
      if (opts.resize) send(4, Buffer.from(JSON.stringify(opts.resize)));
      for (const s of opts.stdin ?? []) send(0, Buffer.from(s));
      if (opts.closeStdin) ws.send(Buffer.from([255, 0]));
      for (const m of opts.raw ?? []) ws.send(m);
      opts.onOpen?.((text) => send(0, Buffer.from(text)));
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      let msg = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
      if (msg.length === 0) return;
      let ch = msg[0]!;
      if (!isBinary) {
        ch -= 48;
        msg = Buffer.concat([Buffer.from([ch]), Buffer.from(msg.subarray(1).toString(), 'base64')]);
      }
      const payload = msg.subarray(1);
      r.channels.set(ch, Buffer.concat([r.channels.get(ch) ?? Buffer.alloc(0), payload]));
      if (ch === 1) r.stdout += payload.toString();
      if (ch === 2) r.stderr += payload.toString();
      if (ch === 3) r.error += payload.toString();
      opts.onMessage?.(r);
      if (opts.until?.(r)) ws.terminate();
    });
    ws.once('close', (code) => {
      clearTimeout(timer);
      r.closeCode = code;
      resolve(r);
    });
  });
}

function statusOf(r: WsResult): { status: string; reason?: string; details?: { causes: { reason?: string; message?: string }[] }; message?: string } {
  return JSON.parse(r.error) as ReturnType<typeof statusOf>;
}

function httpStatus(url: string): Promise<{ code: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function fetchText(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    }).on('error', reject);
  });
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out; stdout=${stdout} stderr=${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

describe('streaming server', () => {
  let s: Stack;
  let pod: string;
  let shell: string;
  before(async () => {
    // Tokens expire quickly, so the expiry case stays short.
    s = await startStack({ streaming_url_ttl: TOKEN_TTL_MS / 1000 });
    pod = await s.runPod('stream');
    shell = await s.runContainer(pod, 'shell', ['sleep', '3600']);
  });
  after(async () => {
    const rules = await s?.teardown();
    assert.deepEqual(rules ?? [], []);
  });

  const execUrl = async (cmd: string[], o: { tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean; id?: string } = {}) =>
    (
      await s.d.client.runtime.unary('Exec', {
        containerId: o.id ?? shell,
        cmd,
        tty: o.tty ?? false,
        stdin: o.stdin ?? false,
        stdout: o.stdout ?? true,
        stderr: o.stderr ?? !o.tty,
      })
    ).url;
  const psArgs = async (id = shell) => (await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd: ['ps', '-o', 'args'], timeout: 10 })).stdout.toString();
  const execDirEntries = () => {
    try {
      return readdirSync(join(s.d.state, 'exec'));
    } catch {
      return [];
    }
  };

  test('Exec hands out single-use URLs on the streaming server', async () => {
    const url = await execUrl(['true']);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]{43}$/);
    const other = await execUrl(['true']);
    assert.notEqual(url.split('/').pop(), other.split('/').pop());
  });

  test('validation: unknown ids, stream flags, exec into a stopped container', async () => {
    const code = async (p: Promise<unknown>) => {
      try {
        await p;
        return 'OK';
      } catch (err) {
        assert.ok(isGrpcError(err), String(err));
        return grpc.status[err.code];
      }
    };
    const rt = s.d.client.runtime;
    assert.equal(await code(rt.unary('Exec', { containerId: 'nope', cmd: ['true'], stdout: true })), 'NOT_FOUND');
    assert.equal(await code(rt.unary('Exec', { containerId: shell, cmd: ['true'], tty: true, stdout: true, stderr: true })), 'INVALID_ARGUMENT');
    assert.equal(await code(rt.unary('Exec', { containerId: shell, cmd: ['true'] })), 'INVALID_ARGUMENT');
    assert.equal(await code(rt.unary('Exec', { containerId: shell, cmd: [], stdout: true })), 'INVALID_ARGUMENT');
    assert.equal(await code(rt.unary('Attach', { containerId: 'nope', stdout: true })), 'NOT_FOUND');
    assert.equal(await code(rt.unary('Attach', { containerId: shell, stdin: true, stdout: true })), 'FAILED_PRECONDITION');
    assert.equal(await code(rt.unary('Attach', { containerId: shell, tty: true, stdout: true })), 'FAILED_PRECONDITION');
    assert.equal(await code(rt.unary('PortForward', { podSandboxId: 'nope', port: [80] })), 'NOT_FOUND');
    assert.equal(await code(rt.unary('PortForward', { podSandboxId: pod, port: [70000] })), 'INVALID_ARGUMENT');
    const done = await s.runContainer(pod, 'done', ['true']);
    await s.waitExited(done);
    assert.equal(await code(rt.unary('Exec', { containerId: done, cmd: ['true'], stdout: true })), 'FAILED_PRECONDITION');
    await rt.unary('RemoveContainer', { containerId: done });
  });

  test('WebSocket exec (v5): stdout, stderr and a non-zero exit code as a Status', async () => {
    const r = await wsSession(await execUrl(['sh', '-c', 'echo out-line; echo err-line >&2; exit 3']));
    assert.equal(r.protocol, 'v5.channel.k8s.io');
    assert.equal(r.stdout, 'out-line\n');
    assert.equal(r.stderr, 'err-line\n');
    const st = statusOf(r);
    assert.equal(st.status, 'Failure');
    assert.equal(st.reason, 'NonZeroExitCode');
    assert.deepEqual(st.details?.causes, [{ reason: 'ExitCode', message: '3' }]);
    assert.equal(r.closeCode, 1000);
    const ok = await wsSession(await execUrl(['true']));
    assert.deepEqual(statusOf(ok), { metadata: {}, status: 'Success' });
  });

  test('WebSocket exec: v4 binary and v4 base64 protocols; pre-v4 sends no status on success', async () => {
    const v4 = await wsSession(await execUrl(['sh', '-c', 'printf abc; exit 2']), { protocols: ['v4.channel.k8s.io'] });
    assert.equal(v4.protocol, 'v4.channel.k8s.io');
    assert.equal(v4.stdout, 'abc');
    assert.equal(statusOf(v4).details?.causes[0]?.message, '2');
    const b64 = await wsSession(await execUrl(['sh', '-c', 'printf "\\001\\377bin"']), { protocols: ['v4.base64.channel.k8s.io'] });
    assert.equal(b64.protocol, 'v4.base64.channel.k8s.io');
    assert.deepEqual([...b64.channels.get(1)!], [1, 255, 98, 105, 110]);
    assert.equal(statusOf(b64).status, 'Success');
    const v1 = await wsSession(await execUrl(['echo', 'old']), { protocols: ['channel.k8s.io'] });
    assert.equal(v1.stdout, 'old\n');
    assert.equal(v1.error, '');
    await assert.rejects(wsSession(await execUrl(['true']), { protocols: ['v9.channel.k8s.io'] }), /HTTP 403/);
  });

  test('WebSocket exec: stdin reaches the process, and the v5 CLOSE signal ends it (cat)', async () => {
    const r = await wsSession(await execUrl(['cat'], { stdin: true }), { stdin: ['hello ', 'through stdin\n', 'x'.repeat(100_000)], closeStdin: true });
    assert.equal(r.stdout, `hello through stdin\n${'x'.repeat(100_000)}`);
    assert.equal(statusOf(r).status, 'Success');
  });

  test('WebSocket exec with a tty: the size the client sends is what stty sees, input is echoed', async () => {
    const r = await wsSession(await execUrl(['stty', 'size'], { tty: true }), { resize: { Width: 123, Height: 45 } });
    assert.equal(r.stdout.trim(), '45 123');
    assert.equal(r.stderr, '');
    const sh = await wsSession(await execUrl(['sh'], { tty: true, stdin: true }), {
      resize: { Width: 80, Height: 24 },
      // One line: an interactive ash asks the terminal for the cursor position after each prompt.
      stdin: ['stty size; echo tty-$((6*7)); exit 5\r'],
    });
    assert.match(sh.stdout, /24 80\r\n/);
    assert.match(sh.stdout, /tty-42\r\n/);
    assert.deepEqual(statusOf(sh).details?.causes, [{ reason: 'ExitCode', message: '5' }]);
  });

  test('a resize during a tty session reaches the process (SIGWINCH, new size)', async () => {
    const url = await execUrl(['sh', '-c', 'trap "stty size" WINCH; echo ready; while true; do sleep 0.1; done'], { tty: true, stdin: true });
    const out = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(url, ['v5.channel.k8s.io']);
      let text = '';
      const timer = setTimeout(() => reject(new Error(`no resize seen: ${text}`)), 15_000);
      ws.on('open', () => ws.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"Width":100,"Height":30}')])));
      ws.on('message', (d: Buffer) => {
        if (d[0] !== 1) return;
        text += d.subarray(1).toString();
        if (text.includes('ready') && !text.includes('#resized')) {
          text += '#resized';
          ws.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"Width":200,"Height":50}')]));
        }
        if (text.includes('50 200')) {
          clearTimeout(timer);
          ws.terminate();
          resolve(text);
        }
      });
      ws.on('error', reject);
    });
    assert.match(out, /50 200/);
  });

  test('exit codes propagate and sessions run concurrently', async () => {
    const results = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (n) => wsSession(await execUrl(['sh', '-c', `sleep 0.5; echo session-${n}; exit ${n}`]))),
    );
    results.forEach((r, n) => {
      assert.equal(r.stdout, `session-${n}\n`);
      if (n === 0) assert.equal(statusOf(r).status, 'Success');
      else assert.equal(statusOf(r).details?.causes[0]?.message, String(n));
    });
  });

  test('tokens: a used URL and an unknown one get a bare 404; so does an expired one', async () => {
    const url = await execUrl(['true']);
    await wsSession(url);
    assert.deepEqual(await httpStatus(url), { code: 404, body: '' });
    await assert.rejects(wsSession(url), /HTTP 404/);
    assert.deepEqual(await httpStatus(url.replace(/[^/]+$/, 'A'.repeat(43))), { code: 404, body: '' });
    // A token for one kind of session does not open another.
    const other = await execUrl(['true']);
    assert.deepEqual(await httpStatus(other.replace('/exec/', '/attach/')), { code: 404, body: '' });
    const late = await execUrl(['true']);
    await sleep(TOKEN_TTL_MS + 500);
    await assert.rejects(wsSession(late), /HTTP 404/);
    // A plain (non-upgrade) request says why it failed and leaves the token for the real upgrade.
    const plain = await execUrl(['echo', 'after-probe']);
    assert.equal((await httpStatus(plain)).code, 400);
    assert.equal((await wsSession(plain)).stdout, 'after-probe\n');
    await assert.rejects(wsSession(plain), /HTTP 404/);
  });

  test('a client that disconnects mid-exec leaves no exec process behind', async () => {
    const marker = `sleep 3${Math.floor(Math.random() * 90 + 10)}`;
    const url = await execUrl(['sh', '-c', `exec ${marker}`], { stdin: true });
    const ws = new WebSocket(url, ['v5.channel.k8s.io']);
    await new Promise((r) => ws.once('open', r));
    // Whole lines: "sleep 360" is a substring of the pod's own "sleep 3600".
    const running = async () => (await psArgs()).split('\n').some((l) => l.trim() === marker);
    let seen = false;
    // Generous bounds: on a loaded 2-core CI machine an exec can take seconds to come up.
    for (let i = 0; i < 150 && !seen; i++) {
      seen = await running();
      if (!seen) await sleep(100);
    }
    assert.ok(seen, 'the exec process ran');
    ws.terminate();
    let gone = false;
    for (let i = 0; i < 200 && !gone; i++) {
      gone = !(await running());
      if (!gone) await sleep(100);
    }
    assert.ok(gone, `${marker} still runs after the client left:\n${await psArgs()}`);
    for (let i = 0; i < 50 && execDirEntries().length > 0; i++) await sleep(100);
    assert.deepEqual(execDirEntries(), []);
  });

  test('attach: output of a running container, and input to one created with stdin', async () => {
    const ticker = await s.runContainer(pod, 'ticker', ['sh', '-c', 'i=0; while true; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.2; done']);
    const url = (await s.d.client.runtime.unary('Attach', { containerId: ticker, stdout: true, stderr: true })).url;
    assert.match(url, /\/attach\//);
    const r = await wsSession(url, { until: (res) => /tick-\d+\n[^]*tick-\d+\n/.test(res.stdout) && res.stderr.includes('tock-') });
    assert.match(r.stdout, /^tick-\d+\n/);
    assert.doesNotMatch(r.stdout, /tock/);
    assert.match(r.stderr, /tock-\d+\n/);

    // Input goes through the container's terminal; sent once, it is echoed and copied once.
    const cat = await s.runContainer(pod, 'cat', ['cat'], { stdin: true, tty: true });
    // An attach shows output from when it started: both sessions must be following before either types.
    // Until both have seen a sync line, the first one types it again (twice a second); then each types once.
    const who = ['first', 'second'] as const;
    const senders = new Map<string, (text: string) => void>();
    const synced = new Set<string>();
    const typed = new Set<string>();
    const typeWhenSynced = () => {
      if (synced.size < 2) return;
      for (const [name, send] of senders) {
        if (typed.has(name)) continue;
        typed.add(name);
        send(`hello from ${name}\r`);
      }
    };
    const sync = setInterval(() => synced.size < 2 && senders.get('first')?.('sync-line\r'), 500);
    let a, b;
    try {
      [a, b] = await Promise.all(
        who.map(async (name) =>
          wsSession((await s.d.client.runtime.unary('Attach', { containerId: cat, stdin: true, stdout: true, tty: true })).url, {
            onOpen: (send) => senders.set(name, send),
            onMessage: (res) => {
              if (res.stdout.includes('sync-line')) synced.add(name);
              typeWhenSynced();
            },
            until: (res) => (res.stdout.match(/hello from first/g) ?? []).length >= 2 && (res.stdout.match(/hello from second/g) ?? []).length >= 2,
          }),
        ),
      );
    } finally {
      clearInterval(sync);
    }
    // Both attached clients see the container's output (the terminal's echo and cat's copy), whoever typed it.
    for (const res of [a!, b!]) {
      assert.match(res.stdout, /hello from first\r\n[^]*hello from first\r\n/);
      assert.match(res.stdout, /hello from second\r\n[^]*hello from second\r\n/);
    }
    await s.d.client.runtime.unary('RemoveContainer', { containerId: ticker });
    await s.d.client.runtime.unary('RemoveContainer', { containerId: cat });
  });

  test('attach ends with a Success status when the container exits', async () => {
    const once = await s.runContainer(pod, 'once', ['sh', '-c', 'read line; echo got-$line; exit 0'], { stdin: true, stdinOnce: true, tty: true });
    const url = (await s.d.client.runtime.unary('Attach', { containerId: once, stdin: true, stdout: true, tty: true })).url;
    const r = await wsSession(url, { stdin: ['abc\r'], timeoutMs: 15_000 });
    assert.match(r.stdout, /got-abc\r\n/);
    // stdin_once: the attach that ended closed the container's stdin; a new one cannot have it.
    await assert.rejects(s.d.client.runtime.unary('Attach', { containerId: once, stdin: true, stdout: true, tty: true }), /FAILED_PRECONDITION/);
    assert.deepEqual(statusOf(r), { metadata: {}, status: 'Success' });
    await s.d.client.runtime.unary('RemoveContainer', { containerId: once });
  });

  describe('port-forward', () => {
    let web: string;
    before(async () => {
      web = await s.runContainer(pod, 'web', ['sh', '-c', 'echo hello-from-pod > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']);
      // Wait until httpd answers inside the pod.
      for (let i = 0; i < 50; i++) {
        const r = await s.d.client.runtime.unary('ExecSync', { containerId: web, cmd: ['wget', '-q', '-O', '-', 'http://127.0.0.1:8080/index.html'], timeout: 5 });
        if (r.stdout.toString().includes('hello-from-pod')) return;
        await sleep(100);
      }
      throw new Error('httpd did not come up in the pod');
    });

    const pfUrl = async (ports: number[]) => (await s.d.client.runtime.unary('PortForward', { podSandboxId: pod, port: ports })).url;

    test('over WebSocket: port prefix on both channels, then the HTTP exchange', async () => {
      const r = await wsSession(await pfUrl([8080]), { protocols: ['v4.channel.k8s.io'], raw: [Buffer.concat([Buffer.from([0]), Buffer.from('GET /index.html HTTP/1.0\r\n\r\n')])] });
      const data = r.channels.get(0)!;
      assert.deepEqual([...data.subarray(0, 2)], [0x90, 0x1f]);
      assert.deepEqual([...r.channels.get(1)!.subarray(0, 2)], [0x90, 0x1f]);
      const http = data.subarray(2).toString();
      assert.match(http, /^HTTP\/1\.[01] 200 OK/);
      assert.match(http, /hello-from-pod/);
      assert.equal(r.channels.get(1)!.subarray(2).toString(), '', 'no error');
    });

    test('over WebSocket: a closed port reports an error on the error channel', async () => {
      const r = await wsSession(await pfUrl([8081]), { protocols: ['v4.channel.k8s.io'] });
      assert.match(r.channels.get(1)!.subarray(2).toString(), /error forwarding port 8081.*refused/i);
    });

    test('the crisp CLI forwards a local port', async () => {
      const child = spawn(process.execPath, [CLI, '--endpoint', s.d.endpoint, 'port-forward', pod, '0:8080'], { stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const port = await new Promise<number>((resolve, reject) => {
          let out = '';
          child.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 8080/.exec(out);
            if (m) resolve(Number(m[1]));
          });
          child.once('exit', (code) => reject(new Error(`crisp port-forward exited ${code}: ${out}`)));
        });
        const [x, y] = await Promise.all([fetchText(port, '/index.html'), fetchText(port, '/index.html')]);
        assert.equal(x, '200 hello-from-pod\n');
        assert.equal(y, '200 hello-from-pod\n');
      } finally {
        child.kill('SIGTERM');
      }
    });
  });

  describe('kubectl (client-go) through a fake API server', { skip: findKubectl() ? false : 'kubectl is not installed' }, () => {
    let api: FakeApiServer;
    let dir: string;
    let catId: string;
    let webId: string;
    const kubectl = (args: string[], opts: { input?: string; spdy?: boolean; timeoutMs?: number } = {}) =>
      run(findKubectl()!, ['--kubeconfig', api.kubeconfig, ...args], {
        ...(opts.input !== undefined ? { input: opts.input } : {}),
        env: {
          KUBECONFIG: api.kubeconfig,
          ...(opts.spdy ? { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false', KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' } : {}),
        },
        timeoutMs: opts.timeoutMs ?? 30_000,
      });

    before(async () => {
      dir = mkdtempSync('/tmp/crisp-e2e-kubectl-');
      api = await startFakeApiServer(s.d.client, dir);
      catId = await s.runContainer(pod, 'kcat', ['cat'], { stdin: true, tty: true });
      webId = await s.runContainer(pod, 'kweb', ['sh', '-c', 'echo served-to-kubectl > /tmp/index.html; exec httpd -f -p 8090 -h /tmp']);
      api.addPod({
        namespace: 'e2e',
        name: 'web',
        podId: pod,
        containers: [
          { name: 'shell', id: shell },
          { name: 'kcat', id: catId, stdin: true, tty: true },
          { name: 'kweb', id: webId },
        ],
      });
    });
    after(async () => {
      await api?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('kubectl exec over SPDY: output, exit code, stdin, and 300 KB through one stream', async () => {
      const r = await kubectl(['exec', 'web', '-c', 'shell', '--', 'sh', '-c', 'echo spdy-out; echo spdy-err >&2; exit 7'], { spdy: true });
      assert.equal(r.stdout, 'spdy-out\n');
      assert.match(r.stderr, /spdy-err/);
      assert.equal(r.code, 7, r.stderr);
      const cat = await kubectl(['exec', '-i', 'web', '-c', 'shell', '--', 'cat'], { spdy: true, input: 'piped through kubectl\n' });
      assert.equal(cat.stdout, 'piped through kubectl\n');
      assert.equal(cat.code, 0, cat.stderr);
      const big = await kubectl(['exec', 'web', '-c', 'shell', '--', 'sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" a'], { spdy: true });
      assert.equal(big.stdout.length, 300_000);
      assert.equal(big.code, 0, big.stderr);
      assert.ok(api.calls.filter((c) => c === 'Exec').length >= 3);
    });

    test('kubectl exec -it over SPDY on a real terminal: the resize stream carries its size', async () => {
      // script(1) gives kubectl a pty of a known size; kubectl sends it on the v4 resize stream.
      const inner = `stty rows 33 cols 77; ${findKubectl()} --kubeconfig ${api.kubeconfig} exec -it web -c shell -- stty size`;
      const r = await run('script', ['-qec', inner, '/dev/null'], { env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' } });
      assert.match(r.stdout, /33 77\r?\n/);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    });

    test('concurrent kubectl sessions over SPDY keep their streams apart', async () => {
      const rs = await Promise.all([1, 2, 3, 4].map((n) => kubectl(['exec', 'web', '-c', 'shell', '--', 'sh', '-c', `sleep 0.3; echo k-${n}; exit ${n}`], { spdy: true })));
      rs.forEach((r, i) => {
        assert.equal(r.stdout, `k-${i + 1}\n`);
        assert.equal(r.code, i + 1);
      });
    });

    test('kubectl exec over WebSocket (v5): exit code and stdin', async () => {
      const r = await kubectl(['exec', 'web', '-c', 'shell', '--', 'sh', '-c', 'echo ws-out; exit 4']);
      assert.equal(r.stdout, 'ws-out\n');
      assert.equal(r.code, 4, r.stderr);
      const cat = await kubectl(['exec', '-i', 'web', '-c', 'shell', '--', 'cat'], { input: 'over websocket\n' });
      assert.equal(cat.stdout, 'over websocket\n');
      assert.equal(cat.code, 0, cat.stderr);
    });

    test('kubectl attach over SPDY sees what the container prints for its input (tty container, no local terminal)', async () => {
      const child = spawn(findKubectl()!, ['--kubeconfig', api.kubeconfig, 'attach', '-i', 'web', '-c', 'kcat'], {
        env: { ...process.env, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      try {
        for (let i = 0; i < 100 && !/attached-line\r?\n/.test(out); i++) {
          child.stdin.write('attached-line\n');
          await sleep(200);
        }
        assert.match(out, /attached-line\r?\n/);
      } finally {
        child.kill('SIGKILL');
      }
    });

    test('kubectl port-forward over SPDY: concurrent connections through one session', async () => {
      const child = spawn(findKubectl()!, ['--kubeconfig', api.kubeconfig, 'port-forward', 'web', ':8090'], {
        env: { ...process.env, KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      try {
        const port = await new Promise<number>((resolve, reject) => {
          let out = '';
          child.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 8090/.exec(out);
            if (m) resolve(Number(m[1]));
          });
          child.stderr.on('data', (c: Buffer) => (out += c.toString()));
          child.once('exit', (code) => reject(new Error(`kubectl port-forward exited ${code}: ${out}`)));
        });
        let body = '';
        for (let i = 0; i < 50 && !body.includes('served'); i++) {
          body = await fetchText(port, '/index.html').catch(() => '');
          if (!body.includes('served')) await sleep(100);
        }
        assert.equal(body, '200 served-to-kubectl\n');
        const many = await Promise.all([1, 2, 3, 4, 5].map(() => fetchText(port, '/index.html')));
        for (const m of many) assert.equal(m, '200 served-to-kubectl\n');
      } finally {
        child.kill('SIGTERM');
      }
    });

    test('a kubectl killed mid-exec (SPDY) leaves no exec process behind', async () => {
      const marker = `sleep 4${Math.floor(Math.random() * 90 + 10)}`;
      const child = spawn(findKubectl()!, ['--kubeconfig', api.kubeconfig, 'exec', 'web', '-c', 'shell', '--', 'sh', '-c', `exec ${marker}`], {
        env: { ...process.env, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const running = async () => (await psArgs()).split('\n').some((l) => l.trim() === marker);
      let seen = false;
      for (let i = 0; i < 100 && !seen; i++) {
        seen = await running();
        if (!seen) await sleep(100);
      }
      assert.ok(seen, 'the exec process ran');
      child.kill('SIGKILL');
      let gone = false;
      for (let i = 0; i < 100 && !gone; i++) {
        gone = !(await running());
        if (!gone) await sleep(100);
      }
      assert.ok(gone, `${marker} still runs after kubectl died`);
    });
  });

  test('crisp exec: -i streams stdin and propagates the exit code, -it uses the terminal; plain exec stays ExecSync', async () => {
    const cli = (args: string[], input = '') => run(process.execPath, [CLI, '--endpoint', s.d.endpoint, ...args], { input });
    const piped = await cli(['exec', '-i', shell, '--', 'sh', '-c', 'cat; exit 6'], 'from the crisp cli\n');
    assert.equal(piped.stdout, 'from the crisp cli\n');
    assert.equal(piped.code, 6, piped.stderr);
    // On a real terminal (script(1) makes one): raw mode, and the terminal's size reaches the process.
    const tty = await run('script', ['-qec', `stty rows 20 cols 60; ${process.execPath} ${CLI} --endpoint ${s.d.endpoint} exec -it ${shell} -- stty size`, '/dev/null']);
    assert.match(tty.stdout, /20 60\r*\n/); // libuv raw mode keeps ONLCR: \r\r\n on the local side
    assert.equal(tty.code, 0, tty.stdout);
    const sync = await cli(['exec', shell, '--', 'sh', '-c', 'echo sync; exit 3']);
    assert.equal(sync.stdout, 'sync\n');
    assert.equal(sync.code, 3);
  });

  // Last: it restarts crispd. Non-tty stdin goes through plain FIFOs and a logger crispd starts
  // detached (the shim connects no stdin with binary:// output), so it must survive crispd too.
  test('attach to a container with stdin and no tty: input arrives once, stdout and stderr apart, across kill -9 and log rotation', async () => {
    const rt = () => s.d.client.runtime;
    const id = await s.runContainer(pod, 'reader', ['sh', '-c', 'while read l; do echo out-$l; echo err-$l >&2; done; echo stdin-closed'], { stdin: true });
    const logPath = (await rt().unary('ContainerStatus', { containerId: id })).status!.logPath;
    const attach = async (line: string) =>
      wsSession((await rt().unary('Attach', { containerId: id, stdin: true, stdout: true, stderr: true })).url, {
        stdin: [`${line}\n`],
        until: (r) => r.stdout.includes(`out-${line}\n`) && r.stderr.includes(`err-${line}\n`),
      });
    const first = await attach('one');
    assert.equal(first.stdout, 'out-one\n', 'sent once, read once, on stdout only');
    assert.equal(first.stderr, 'err-one\n');
    const records = () => readFileSync(logPath, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ').slice(1).join(' '));
    // Two pipes: the order between them is the shim's, not the container's.
    assert.deepEqual(records().sort(), ['stderr F err-one', 'stdout F out-one']);

    const loggers = () => pidsWhere((argv) => argv[0]?.endsWith('crisp-logger') === true && argv.some((a) => a.includes(id)));
    const [logger] = loggers();
    assert.ok(logger, 'a logger runs for the container');
    await s.d.kill9();
    assert.deepEqual(loggers(), [logger], 'the logger outlives crispd');
    await s.d.start();
    await attach('two');
    renameSync(logPath, `${logPath}.1`);
    await rt().unary('ReopenContainerLog', { containerId: id });
    await attach('three');
    assert.deepEqual(records().sort(), ['stderr F err-three', 'stdout F out-three'], 'the reopened file has what came after the rotation');
    const rotated = readFileSync(`${logPath}.1`, 'utf8');
    for (const rec of ['stdout F out-two', 'stderr F err-two']) assert.ok(rotated.includes(rec), `${rec} is in the rotated file`);

    await rt().unary('RemoveContainer', { containerId: id });
    for (let i = 0; i < 50 && loggers().length > 0; i++) await sleep(100);
    assert.deepEqual(loggers(), [], 'no logger left after removal');
  });

  test('stdin_once without a tty: the first attach that ends closes stdin, and the container sees EOF', async () => {
    const rt = s.d.client.runtime;
    const id = await s.runContainer(pod, 'once-plain', ['sh', '-c', 'while read l; do echo got-$l; done; echo eof-seen'], { stdin: true, stdinOnce: true });
    const r = await wsSession((await rt.unary('Attach', { containerId: id, stdin: true, stdout: true })).url, { stdin: ['abc\n'], closeStdin: true, timeoutMs: 15_000 });
    assert.equal(r.stdout, 'got-abc\neof-seen\n');
    assert.deepEqual(await s.waitExited(id), { exitCode: 0, reason: 'Completed' });
    await rt.unary('RemoveContainer', { containerId: id });
  });
  test('attach to a container created without a log_path (critest, crictl): output through a bounded console log', async () => {
    const rt = s.d.client.runtime;
    // critest's shape: `sh` with stdin and stdin_once, no tty, no log_path.
    const id = await s.runContainer(pod, 'no-log-path', ['sh'], { stdin: true, stdinOnce: true, logPath: '' });
    const r = await wsSession((await rt.unary('Attach', { containerId: id, stdin: true, stdout: true, stderr: true })).url, {
      // critest sends `echo -n hello`: output without a newline must reach attach too.
      stdin: ['echo -n hello\n'],
      until: (x) => x.stdout.includes('hello'),
      timeoutMs: 15_000,
    });
    assert.equal(r.stdout, 'hello');
    assert.equal((await rt.unary('ContainerStatus', { containerId: id })).status?.logPath, '', 'the CRI log path stays what was asked');
    await rt.unary('RemoveContainer', { containerId: id });
    // A chatty container without a log path never grows crisp's console log past its bound.
    const chatty = await s.runContainer(pod, 'chatty', ['sh', '-c', 'while true; do echo 0123456789012345678901234567890123456789012345678901234567890123456789; done'], { logPath: '' });
    await sleep(2500);
    const info = JSON.parse((await rt.unary('ContainerStatus', { containerId: chatty, verbose: true })).info.info!) as { consoleLog: string };
    assert.ok(statSync(info.consoleLog).size <= 1024 * 1024 + 256 * 1024, `console log bounded (${statSync(info.consoleLog).size} bytes)`);
    await rt.unary('RemoveContainer', { containerId: chatty });
  });
});
