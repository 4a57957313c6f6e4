// Ended spans wait in a bounded queue and leave in batches, one export at a time, off the calls that
// made them: a slow or unreachable collector fills the queue, and what does not fit is dropped and
// counted, never waited for. (Loaded only with the tracing SDK.)
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';

export interface SpanExportQueueOptions {
  exporter: SpanExporter;
  /** Spans held at most; more are dropped. */
  maxQueue: number;
  /** Spans per export request. */
  maxBatch: number;
  /** Milliseconds between exports of a batch that is not full. */
  intervalMs: number;
  /** Spans dropped: the queue was full, or their export failed. */
  onDropped: (count: number, why: string) => void;
  onExported: (count: number) => void;
}

export class SpanExportQueue implements SpanProcessor {
  private queue: ReadableSpan[] = [];
  private exporting: Promise<void> | undefined;
  /** The batch of the export under way. */
  private inFlight: ReadableSpan[] | undefined;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly opts: SpanExportQueueOptions) {
    this.timer = setInterval(() => void this.exportNext(), opts.intervalMs);
    // Exporting is never a reason for the daemon to stay alive.
    this.timer.unref();
  }

  get queued(): number {
    return this.queue.length;
  }

  onStart(): void {
    // Spans are only of interest once ended.
  }

  onEnd(span: ReadableSpan): void {
    if (this.stopped) return;
    if (this.queue.length >= this.opts.maxQueue) {
      this.opts.onDropped(1, 'queue full');
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.opts.maxBatch && !this.exporting) setImmediate(() => void this.exportNext());
  }

  /** Exports one batch unless one is on its way already (then that one's completion). */
  private exportNext(): Promise<void> {
    if (this.exporting) return this.exporting;
    if (this.queue.length === 0) return Promise.resolve();
    const batch = this.queue.splice(0, this.opts.maxBatch);
    this.inFlight = batch;
    this.exporting = new Promise<void>((resolve) => {
      const done = (result: ExportResult) => {
        // Counted already when shutdown gave up waiting for it.
        if (this.inFlight !== batch) return resolve();
        this.inFlight = undefined;
        if (result.code === ExportResultCode.SUCCESS) this.opts.onExported(batch.length);
        else this.opts.onDropped(batch.length, result.error?.message ?? 'export failed');
        resolve();
      };
      try {
        this.opts.exporter.export(batch, done);
      } catch (err) {
        done({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
      }
    }).finally(() => {
      this.exporting = undefined;
      if (this.queue.length >= this.opts.maxBatch && !this.stopped) setImmediate(() => void this.exportNext());
    });
    return this.exporting;
  }

  /** Exports what is queued, for at most `timeoutMs`; what is left stays queued. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.queue.length > 0 || this.exporting) && Date.now() < deadline) {
      const left = deadline - Date.now();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exportNext(), new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  }

  forceFlush(): Promise<void> {
    return this.flush(5000);
  }

  /** Last export attempt (bounded), then the exporter closes; what is still queued or on its way is counted as dropped. */
  async shutdown(timeoutMs = 2000): Promise<void> {
    if (this.stopped) return;
    clearInterval(this.timer);
    await this.flush(timeoutMs);
    this.stopped = true;
    const abandoned = (this.inFlight?.length ?? 0) + this.queue.splice(0).length;
    this.inFlight = undefined;
    if (abandoned > 0) this.opts.onDropped(abandoned, 'shutdown');
    // A hung collector must not hold up the daemon's stop: the exporter gets what is left of the bound.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.opts.exporter.shutdown().catch(() => undefined /* nothing left to report it to */),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, 500))),
    ]);
    clearTimeout(timer);
  }
}
