// Disk usage of a directory tree (bytes in allocated blocks and inodes), as `du` counts them: each
// inode once, hard links not double-counted, other filesystems not crossed.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface DirUsage {
  bytes: number;
  inodes: number;
}

export async function dirUsage(root: string): Promise<DirUsage> {
  const seen = new Set<string>();
  let bytes = 0;
  let inodes = 0;
  let rootDev: number | undefined;
  const walk = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path);
    } catch {
      return;
    }
    rootDev ??= st.dev;
    if (st.dev !== rootDev) return;
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    inodes++;
    bytes += st.blocks * 512;
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = await readdir(path);
    } catch {
      return;
    }
    // Bounded fan-out: deep trees would otherwise open too many directories at once.
    for (let i = 0; i < names.length; i += 64) {
      await Promise.all(names.slice(i, i + 64).map((n) => walk(join(path, n))));
    }
  };
  await walk(root);
  return { bytes, inodes };
}
