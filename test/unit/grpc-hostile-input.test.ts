// What the CRI fuzzer found at the gRPC layer, one test each: request bytes that do not decode (bad
// UTF-8, not protobuf) get INVALID_ARGUMENT naming the field instead of grpc-js' bare INTERNAL; a
// request-supplied timeout too large for a deadline no longer throws outside the call; an error
// quoting a huge value is cut to a size a client accepts; an exec of a command runc cannot run names cmd[0].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { GrpcServer, bindService, type Handlers } from '../../common/grpc-server.js';
import { ServiceClient, unixChannel } from '../../common/grpc-client.js';
import { CrispError, isGrpcError, notFound } from '../../common/errors.js';
import { stringsAsBytesRoot } from '../../common/undecodable-request.js';
import { toStatus, MAX_STATUS_DETAILS } from '../../cri/instrument.js';
import { commandStartError } from '../../sandbox/containers/exec-sync.js';
import { ProberName, type ProberMethods } from '../../gen/crisp.test.js';

async function withProber(fn: (client: ServiceClient<ProberMethods>, raw: (body: Buffer) => Promise<grpc.ServiceError | null>) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-hostile-'));
  const sock = join(dir, 's.sock');
  const server = new GrpcServer();
  const handlers: Handlers<ProberMethods> = {
    Echo: async (req) => ({ text: req.text }),
    Watch: async () => undefined,
  };
  bindService(server, ProberName, handlers, (_call, _req, run) => run(), toStatus);
  await server.listen(sock);
  const channel = unixChannel(sock);
  const client = new ServiceClient<ProberMethods>(channel, ProberName, () => ({ metadata: {}, timeoutMs: 5000 }));
  const rawChannel = new grpc.Client(`unix://${sock}`, grpc.credentials.createInsecure());
  const raw = (body: Buffer) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      rawChannel.makeUnaryRequest(`/${ProberName}/Echo`, (b: Buffer) => b, (b: Buffer) => b, body, new grpc.Metadata(), {}, (err) => resolve(err)),
    );
  try {
    await fn(client, raw);
  } finally {
    channel.close();
    rawChannel.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

const encodeLenient = (value: Record<string, unknown>) => {
  const type = stringsAsBytesRoot().lookupType('crisp.test.Ping');
  return Buffer.from(type.encode(type.fromObject(value)).finish());
};

test('a string that is not UTF-8 fails INVALID_ARGUMENT naming the field, nested and in maps too', async () => {
  await withProber(async (_client, raw) => {
    const top = await raw(encodeLenient({ text: Buffer.from([0x61, 0xff]) }));
    assert.equal(top?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(top?.details, 'text: not valid UTF-8');
    const nested = await raw(encodeLenient({ children: [{}, { labels: { k: Buffer.from([0xc0, 0x80]) } }] }));
    assert.equal(nested?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(nested?.details, 'children[1].labels["k"]: not valid UTF-8');
  });
});

test('bytes that are not the message fail INVALID_ARGUMENT naming the type', async () => {
  await withProber(async (_client, raw) => {
    const err = await raw(Buffer.from([0x0a, 0x7f, 0x01]));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err!.details, /^request is not a valid crisp\.test\.Ping: /);
  });
});

test('a timeout beyond what a deadline can hold is capped, not thrown outside the call', async () => {
  await withProber(async (client) => {
    for (const timeoutMs of [1e15, 9.2e21, Number.POSITIVE_INFINITY]) {
      const res = await client.unary('Echo', { text: 'far' }, { timeoutMs });
      assert.equal(res.text, 'far');
    }
  });
});

test('status details quoting a huge value are cut to MAX_STATUS_DETAILS, and the client receives them', async () => {
  const huge = 'x'.repeat(1 << 20);
  const status = toStatus(notFound(`container "${huge}" not found`));
  assert.ok(status.details!.length < MAX_STATUS_DETAILS + 100);
  assert.match(status.details!, /characters in all\)$/);
  const server = new GrpcServer();
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-hostile-'));
  const sock = join(dir, 's.sock');
  bindService(server, ProberName, { Echo: async (req) => Promise.reject(notFound(`ping "${req.text}" not found`)), Watch: async () => undefined } as Handlers<ProberMethods>, (_c, _r, run) => run(), toStatus);
  await server.listen(sock);
  const channel = unixChannel(sock);
  const client = new ServiceClient<ProberMethods>(channel, ProberName, () => ({ metadata: {}, timeoutMs: 10_000 }));
  try {
    await assert.rejects(client.unary('Echo', { text: huge }), (err: unknown) => isGrpcError(err, grpc.status.NOT_FOUND) && err.details.startsWith('ping "xxx'));
  } finally {
    channel.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an exec runc cannot start for want of the command is INVALID_ARGUMENT naming cmd[0]; other failures pass through', () => {
  const runc = Object.assign(new Error('x'), {
    code: grpc.status.UNKNOWN,
    details: 'OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": executable file not found in $PATH: unknown',
  });
  const mapped = commandStartError(['nope', 'secret-arg'], 'c1', runc);
  assert.ok(mapped instanceof CrispError && mapped.kind === 'INVALID_ARGUMENT');
  assert.match(mapped.message, /^cmd\[0\]: "nope" cannot be run in container c1: .*executable file not found/);
  assert.doesNotMatch(mapped.message, /secret-arg/);
  const other = new Error('shim gone');
  assert.equal(commandStartError(['true'], 'c1', other), other);
});
