// The cleanup of a multi-step create: each step that made something pushes how to undo it; on failure
// the steps are undone newest first, every one tried, each failure logged with the step's name (a
// failed undo must not hide the error that caused it, nor stop the undos after it).
import type { Logger } from './logger.js';
import { errorMessage } from './errors.js';

export class UndoStack {
  private readonly steps: { what: string; run: () => Promise<unknown> | void }[] = [];

  /** `run` may be synchronous (closing a client) or async. */
  push(what: string, run: () => Promise<unknown> | void): void {
    this.steps.push({ what, run });
  }

  /** Runs every undo, newest first; returns the names of the steps whose undo failed. */
  async unwind(log: Logger, context: string): Promise<string[]> {
    const failed: string[] = [];
    for (const s of this.steps.splice(0).reverse()) {
      try {
        await s.run();
      } catch (err) {
        failed.push(s.what);
        log.error({ step: s.what, err: errorMessage(err) }, `${context}: undoing "${s.what}" failed`);
      }
    }
    return failed;
  }
}

/**
 * Promise.all for steps of a create that run at once: it waits until every step has finished before it
 * throws the first failure. With Promise.all, a quick failure (containerd down) starts the undo while a
 * slower step is still making its part (a directory, a containerd record), which then outlives the undo.
 */
export async function allSteps<T extends readonly unknown[] | []>(steps: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = (await Promise.allSettled(steps)) as PromiseSettledResult<unknown>[];
  const values: unknown[] = [];
  for (const r of results) {
    if (r.status === 'rejected') throw r.reason;
    values.push(r.value);
  }
  return values as { -readonly [K in keyof T]: Awaited<T[K]> };
}
