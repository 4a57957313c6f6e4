// Small time helpers shared across layers.
import { setTimeout as delay } from 'node:timers/promises';

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return delay(ms, undefined, signal ? { signal } : undefined);
}

/** Nanoseconds since the epoch, as CRI timestamps are (int64 carried as a JS number). */
export function nowNanos(): number {
  return Date.now() * 1_000_000;
}

export function nanosToDate(nanos: number): Date {
  return new Date(Math.floor(nanos / 1_000_000));
}
