// A client of a test crispd's embedded containerd (namespace k8s.io) holding a lease of its own: a GC
// root for what a test makes beside crispd (content, views, snapshots).
import { before, after } from 'node:test';
import { join } from 'node:path';
import { ContainerdClient } from '../../../backend/containerd/client.js';
import type { TestCrispd } from './crispd.js';

export interface LeasedClient {
  ctd: ContainerdClient;
  lease: string;
  /** Deletes the lease (what it held becomes collectable) and closes the client. */
  close(): Promise<void>;
}

export async function leasedClient(d: TestCrispd, lease: string): Promise<LeasedClient> {
  const ctd = new ContainerdClient({ address: join(d.state, 'containerd', 'containerd.sock'), namespace: 'k8s.io', timeoutMs: 10_000 });
  await ctd.leases.unary('Create', { id: lease, labels: {} });
  return {
    ctd,
    lease,
    close: async () => {
      // Gone already (the test's containerd was restarted or removed): nothing left to release.
      await ctd.leases.unary('Delete', { id: lease, sync: true }).catch(() => undefined);
      ctd.close();
    },
  };
}

/**
 * In a describe(): start `d` before its tests and make a leased client of its containerd; after them,
 * release the lease, close the client and clean `d` up. `client()` is for the tests.
 */
export function crispdWithLeasedClient(d: TestCrispd, lease: string): { client(): ContainerdClient } {
  let leased: LeasedClient | undefined;
  before(async () => {
    await d.start();
    leased = await leasedClient(d, lease);
  });
  after(async () => {
    await leased?.close();
    await d.cleanup();
  });
  return {
    client: () => {
      if (!leased) throw new Error('the crispd of this describe() has not started');
      return leased.ctd;
    },
  };
}
