// Iterations alternate between the runtimes (crisp, peer, crisp, peer, …) so that load from elsewhere on
// the machine, which comes and goes, lands on both alike. A runtime whose iteration throws drops out of
// the remaining iterations (its pods are removed) and the error is returned for the notes.
import type { RuntimeName, Side } from './env.js';

export interface DroppedRuntime {
  runtime: RuntimeName;
  iteration: number;
  message: string;
}

export const describeDropped = (d: DroppedRuntime) => `${d.runtime} dropped out at iteration ${d.iteration}: ${d.message}`;

export async function interleave(
  sides: Side[],
  iterations: number,
  body: (side: Side, i: number) => Promise<void>,
): Promise<DroppedRuntime[]> {
  const errors: DroppedRuntime[] = [];
  let active = [...sides];
  for (let i = 0; i < iterations && active.length; i++) {
    // Alternate which runtime goes first, too.
    const order = i % 2 === 0 ? active : [...active].reverse();
    for (const side of order) {
      try {
        await body(side, i);
      } catch (err) {
        errors.push({ runtime: side.name, iteration: i, message: err instanceof Error ? err.message : String(err) });
        active = active.filter((s) => s !== side);
        await side.removeAllPods().catch(() => undefined);
      }
    }
  }
  return errors;
}
