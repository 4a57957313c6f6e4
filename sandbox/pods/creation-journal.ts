// RunPodSandbox's intent, written beside the pod record before each side effect: what has been (or is
// about to be) made for a pod whose creation has not finished. A crispd killed mid-call leaves this
// file and no record; at the next start every journaled pod is taken apart (CNI DEL, pid holder,
// /dev/shm, idmapped files, pinned namespaces, cgroup, directories), so a retry starts clean and
// nothing is leaked. The journal goes once the record is saved.
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { isENOENT } from '../../common/errors.js';
import type { PodRecord } from './types.js';

const JOURNAL_FILE = 'creating.json';

/** The pod as far as it got; `networkAttempted` is set before CNI ADD (DEL is safe either way). */
export type JournaledPod = PodRecord & { networkAttempted?: boolean };

/**
 * Written before a side effect, without fsync: it must survive a crash of crispd, and after a power
 * cut there are no namespaces or mounts left to undo (cgroups and CNI state are re-derived from it).
 */
export async function writeJournal(pod: JournaledPod): Promise<void> {
  await writeFileAtomic(join(pod.dir, JOURNAL_FILE), JSON.stringify(pod), 0o600, { durable: false });
}

export async function removeJournal(podDir: string): Promise<void> {
  await rm(join(podDir, JOURNAL_FILE), { force: true });
}

/** Pods below `podsDir` whose creation never finished (a journal, no record file `recordFile`). */
export async function unfinishedPods(podsDir: string, recordFile: string): Promise<JournaledPod[]> {
  let ids: string[];
  try {
    ids = await readdir(podsDir);
  } catch (err) {
    if (isENOENT(err)) return [];
    throw err;
  }
  const out: JournaledPod[] = [];
  for (const id of ids) {
    const dir = join(podsDir, id);
    try {
      await readFile(join(dir, recordFile));
      continue; // finished: the record is what counts
    } catch (err) {
      if (!isENOENT(err)) continue; // unreadable records are the record store's to report
    }
    try {
      out.push(JSON.parse(await readFile(join(dir, JOURNAL_FILE), 'utf8')) as JournaledPod);
    } catch (err) {
      // No journal either: a directory from before the first journal write; only the dir to remove.
      if (isENOENT(err)) out.push({ id, dir } as JournaledPod);
    }
  }
  return out;
}
