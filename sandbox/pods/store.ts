// Pods persisted crash-safely, with kubelet's unique pod name reserved per id.
import type { Logger } from '../../common/logger.js';
import { RecordStore } from '../record-store.js';
import { podFullName, type PodRecord } from './types.js';

export const POD_RECORD_FILE = 'pod.json';

export class PodStore extends RecordStore<PodRecord> {
  constructor(dir: string, log: Logger) {
    super(dir, 'pod', POD_RECORD_FILE, (p) => podFullName(p.spec.metadata), log);
  }

  podDir(id: string): string {
    return this.recordDir(id);
  }

  override require(id: string): PodRecord {
    return super.require(id, 'pod sandbox');
  }
}
