// One reader of /proc/<pid>/mountinfo tables (proc(5)) for what crisp takes from them: cgroup
// hierarchies (cgroups.ts, cgroup-stats.ts) and a mount's propagation (containers/mount-propagation.ts).
export interface MountinfoLine {
  /** Where it is mounted, its octal escapes (\040 for a space, …) undone. */
  mountPoint: string;
  /** The optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`. */
  optional: string[];
  fstype: string;
  /** The filesystem's own options (a v1 cgroup hierarchy names its controllers here). */
  superOptions: string[];
}

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The lines of a mountinfo table, in its order; malformed lines are skipped. */
export function parseMountinfo(text: string): MountinfoLine[] {
  const out: MountinfoLine[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const end = fields.indexOf('-', 6);
    if (end < 0 || fields.length < end + 4) continue;
    out.push({ mountPoint: unescape(fields[4]!), optional: fields.slice(6, end), fstype: fields[end + 1]!, superOptions: fields[end + 3]!.split(',') });
  }
  return out;
}
