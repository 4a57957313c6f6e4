// An NRI host for a test crispd with everything below one directory: the socket, the plugin dir
// (made here, for pre-installed plugins) and the plugin config dir.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export interface NriTestDir {
  socket: string;
  pluginDir: string;
  /** The crispd config keys that turn that NRI host on. */
  config: Record<string, unknown>;
}

export function nriTestDir(dir: string): NriTestDir {
  const pluginDir = join(dir, 'plugins');
  mkdirSync(pluginDir, { recursive: true });
  const socket = join(dir, 'nri.sock');
  return { socket, pluginDir, config: { nri_enabled: true, nri_socket: socket, nri_plugin_dir: pluginDir, nri_plugin_config_dir: join(dir, 'conf') } };
}
