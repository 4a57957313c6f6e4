// One crispd per state directory: a pid file that a live crispd holds. A stale file (dead pid, or a
// pid reused by another program) is taken over.
import { mkdirSync, readFileSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { failedPrecondition } from '../common/errors.js';

function liveCrispd(pid: number): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes('daemon') && argv.some((a) => a.endsWith('main.js') || a.endsWith('crisp') || a.endsWith('crispd'));
  } catch {
    return false;
  }
}

export interface StateLock {
  release(): void;
}

export function lockStateDir(stateDir: string): StateLock {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, 'crispd.pid');
  let holder: number | undefined;
  try {
    holder = Number.parseInt(readFileSync(file, 'utf8'), 10);
  } catch {
    holder = undefined;
  }
  if (holder && holder !== process.pid && liveCrispd(holder)) {
    throw failedPrecondition(`another crispd (pid ${holder}) is using state directory ${stateDir}; stop it first or choose another --state`);
  }
  writeFileSync(file, `${process.pid}\n`, { mode: 0o600 });
  return {
    release: () => {
      try {
        if (Number.parseInt(readFileSync(file, 'utf8'), 10) === process.pid) unlinkSync(file);
      } catch {
        // already gone
      }
    },
  };
}
