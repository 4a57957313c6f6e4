// A CRI client that retries as kubelet does when the runtime goes away: a call that fails because
// crispd is gone (UNAVAILABLE, CANCELLED, or a connection reset) waits for the gate to open (the test
// restarted crispd and checked it), reconnects and sends the same request again. Any other outcome is
// the call's result, returned to the caller to judge. Counts how many calls were interrupted.
import * as grpc from '@grpc/grpc-js';
import { CriClient } from '../../../cri/client.js';
import { isGrpcError } from '../../../common/errors.js';
import type { RuntimeServiceMethods } from '../../../gen/runtime.v1.js';
import type { Input } from '../../../common/proto-registry.js';
import { sleep } from '../../../common/time.js';

type Runtime = RuntimeServiceMethods;

/** The runtime went away under the call: kubelet retries these. */
export function isRuntimeGone(err: unknown): boolean {
  return isGrpcError(err, grpc.status.UNAVAILABLE) || isGrpcError(err, grpc.status.CANCELLED) || (isGrpcError(err, grpc.status.INTERNAL) && /RST_STREAM|Received RST|ECONNRESET/.test(String(err)));
}

export class Gate {
  private opened: Promise<void> = Promise.resolve();
  private release: (() => void) | undefined;

  close(): void {
    if (this.release) return;
    this.opened = new Promise((r) => (this.release = r));
  }

  open(): void {
    this.release?.();
    this.release = undefined;
  }

  get closed(): boolean {
    return this.release !== undefined;
  }

  wait(): Promise<void> {
    return this.opened;
  }
}

export class RetryingCri {
  private client: CriClient;
  /** Calls that failed because the runtime was gone and were sent again. */
  interrupted = 0;
  /** Calls that succeeded (the test times its faults by the clients' progress). */
  succeeded = 0;
  /** Retries by method, for the report. */
  readonly retriedMethods: string[] = [];

  constructor(
    private readonly endpoint: string,
    private readonly gate: Gate,
    private readonly timeoutMs = 30_000,
  ) {
    this.client = new CriClient(endpoint, timeoutMs);
  }

  async call<K extends keyof Runtime & string>(method: K, request: Input<Runtime[K]['request']>): Promise<Runtime[K]['response']> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.client.runtime.unary(method, request);
        this.succeeded++;
        return res;
      } catch (err) {
        if (!isRuntimeGone(err) || attempt > 200) throw err;
        if (attempt === 0) {
          this.interrupted++;
          this.retriedMethods.push(method);
        }
        await this.gate.wait();
        // A fresh channel: the old one may sit in reconnect backoff for seconds.
        this.client.close();
        this.client = new CriClient(this.endpoint, this.timeoutMs);
        await sleep(50);
      }
    }
  }

  close(): void {
    this.client.close();
  }
}
