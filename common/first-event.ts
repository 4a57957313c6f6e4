// Waiting for whichever of a few events comes first (a stream's 'drain' or 'close', 'finish' or
// 'close'), with every listener removed afterwards so long-lived streams do not collect them.
import type { EventEmitter } from 'node:events';

/** Resolves at the first of `events` on `emitter`; never rejects. */
export function firstEvent(emitter: EventEmitter, events: readonly string[]): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const e of events) emitter.off(e, done);
      resolve();
    };
    for (const e of events) emitter.on(e, done);
  });
}
