// Shared plumbing for client commands: the --endpoint option and clean error output.
import type { Command } from 'commander';
import { CriClient, DEFAULT_ENDPOINT } from '../cri/client.js';
import { errorMessage } from '../common/errors.js';

export function endpointOf(program: Command): string {
  return (program.opts<{ endpoint?: string }>().endpoint ?? process.env.CRISP_ENDPOINT ?? DEFAULT_ENDPOINT) as string;
}

export async function withClient(program: Command, fn: (cri: CriClient) => Promise<void>): Promise<void> {
  const cri = new CriClient(endpointOf(program));
  try {
    await fn(cri);
  } catch (err) {
    console.error(`crisp: ${errorMessage(err)}`);
    process.exitCode = 1;
  } finally {
    cri.close();
  }
}
