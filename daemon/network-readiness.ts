// NetworkReady for Status: true once the CNI conf dir holds a valid network configuration.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CrispConfig } from './config.js';
import type { Condition } from '../sandbox/node-status.js';

export function networkReadiness(config: CrispConfig): () => Promise<Condition> {
  return async () => {
    let files: string[];
    try {
      files = readdirSync(config.cni_conf_dir).filter((f) => /\.(conflist|conf|json)$/.test(f)).sort();
    } catch {
      files = [];
    }
    const problems: string[] = [];
    for (const f of files) {
      try {
        const parsed = JSON.parse(readFileSync(join(config.cni_conf_dir, f), 'utf8')) as { plugins?: unknown[]; type?: string };
        if ((Array.isArray(parsed.plugins) && parsed.plugins.length > 0) || typeof parsed.type === 'string') {
          return { ready: true, reason: '', message: '' };
        }
        problems.push(`${f}: no plugins`);
      } catch (err) {
        problems.push(`${f}: ${(err as Error).message}`);
      }
    }
    return {
      ready: false,
      reason: 'NetworkPluginNotReady',
      message: `no valid CNI network configuration in ${config.cni_conf_dir}${problems.length ? ` (${problems.join('; ')})` : ''}`,
    };
  };
}
