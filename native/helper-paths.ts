// Where the native helpers are. Config keys `nshelper_path` and `logger_path` name them; empty (the
// default) means the source checkout's native/build/ when crispd runs from a checkout that has built
// them, else the package's /usr/libexec/crisp/. The checkout comes first so a developer on a node with
// the package installed runs the helpers of the code being run; the package ships no native/build/.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { invalidArgument } from '../common/errors.js';

/** The helpers a config key can move. */
export type NativeHelper = 'crisp-nshelper' | 'crisp-logger';
/** Every helper binary, including those found only where the package or the build puts them (no config key). */
export type HelperBinary = NativeHelper | 'crisp-spawner' | 'crisp-untar' | 'crisp-fetch' | 'crisp-shim-start';

/** Where the Debian package installs the helpers. */
export const INSTALLED_HELPER_DIR = '/usr/libexec/crisp';

/** The config key naming each helper. */
export const HELPER_CONFIG_KEY: Record<NativeHelper, 'nshelper_path' | 'logger_path'> = {
  'crisp-nshelper': 'nshelper_path',
  'crisp-logger': 'logger_path',
};

const HERE = dirname(fileURLToPath(import.meta.url));

/** The build tree's copies: compiled code runs from dist/native/, sources from native/. */
export function buildTreeCandidates(name: HelperBinary, moduleDir = HERE): string[] {
  return [join(moduleDir, '..', '..', 'native', 'build', name), join(moduleDir, 'build', name)];
}

/** The path used when the config key is empty. */
export function defaultHelperPath(name: HelperBinary, exists: (path: string) => boolean = existsSync, moduleDir = HERE): string {
  return buildTreeCandidates(name, moduleDir).find(exists) ?? join(INSTALLED_HELPER_DIR, name);
}

/** Whether `path` is an executable regular file (false when it is not there). */
export function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false; // not there, not ours to run: the caller says what that means
  }
}

const configured = new Map<NativeHelper, string>();

/** The helper crisp runs: the configured path, else the default. */
export function helperPath(name: NativeHelper): string {
  return configured.get(name) || defaultHelperPath(name);
}

/**
 * Use `path` for `name` from now on in this process ("" = the default). crispd calls it once at start
 * with its config, after `checkHelper`; tests call it to run a fake.
 */
export function useHelperPath(name: NativeHelper, path: string): void {
  if (path !== '' && !isAbsolute(path)) throw invalidArgument(`config key "${HELPER_CONFIG_KEY[name]}": must be an absolute path, got "${path}"`);
  if (path === '') configured.delete(name);
  else configured.set(name, path);
}

/** The resolved path of `name` for `configuredPath`, checked to be an executable file; errors name the key. */
export function checkHelper(name: NativeHelper, configuredPath: string): string {
  const key = HELPER_CONFIG_KEY[name];
  const path = configuredPath || defaultHelperPath(name);
  const hint = configuredPath ? '' : ` (not set: looked in the source checkout's native/build/ and ${INSTALLED_HELPER_DIR}/; build it with "make -C native" or set ${key})`;
  try {
    if (!statSync(path).isFile()) throw new Error('not a regular file');
    accessSync(path, constants.X_OK);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw invalidArgument(`config key "${key}": ${name} at ${path} is not an executable file: ${why}${hint}`);
  }
  return path;
}
