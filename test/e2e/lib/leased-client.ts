// A client of a test crispd's embedded containerd (namespace k8s.io) holding a lease of its own: a GC
// root for what a test makes beside crispd (content, views, snapshots).
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
