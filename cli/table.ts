// Plain-text tables and small formatters for CLI output.
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('   ').trimEnd();
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

export const shortId = (id: string): string => id.replace(/^sha256:/, '').slice(0, 13);

/** "5 seconds ago" from a CRI nanosecond timestamp. */
export function age(nanos: number): string {
  const s = Math.max(0, Math.round((Date.now() - nanos / 1e6) / 1000));
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)}${units[i]}`;
}

/** `Key: value` lines, keys padded to one column (inspect -o table). */
export function printKeyValues(rows: string[][]): void {
  const width = Math.max(...rows.map((r) => r[0]!.length)) + 1;
  for (const [k, v] of rows) console.log(`${`${k}:`.padEnd(width)} ${v}`.trimEnd());
}
