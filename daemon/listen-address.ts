// A TCP listen address from the configuration (metrics_address): parsed and checked at config time, so a
// bad value stops the daemon before anything starts, naming the key.
import { invalidArgument } from '../common/errors.js';

export interface ListenAddress {
  /** "" = every interface. */
  host: string;
  port: number;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every interface); port 0 = a free port. Errors name `key`. */
export function parseListenAddress(key: string, value: string): ListenAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw invalidArgument(`config key "${key}": expected HOST:PORT (e.g. "127.0.0.1:9099"), got ${JSON.stringify(value)}`);
  }
  return { host: m[1] ?? m[2] ?? '', port };
}
