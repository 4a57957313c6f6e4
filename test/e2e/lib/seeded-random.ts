// A small seeded PRNG (mulberry32) so fault moments are random but a failing run can be replayed.
export function seededRandom(seed: number): { next(): number; between(lo: number, hi: number): number } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, between: (lo, hi) => Math.floor(lo + next() * (hi - lo)) };
}

/** A positive integer from the environment (test sizes on demand), or `fallback`. */
export function envCount(name: string, fallback: number): number {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isInteger(v) && v > 0 ? v : fallback;
}
