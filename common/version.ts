// crisp's own version, from package.json (dist/common/version.js → ../../package.json).
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function crispVersion(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}

export const RUNTIME_NAME = 'crisp';
export const CRI_API_VERSION = 'v1';
