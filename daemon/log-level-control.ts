// The log level of a running crispd: SIGUSR1 switches between the configured level and debug (or, when
// debug or trace is the configured level, info), and SIGHUP re-reads log_level from the config file —
// only that key; every other change needs a restart. Each change is logged with where it came from.
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';

export class LogLevelControl {
  /** The level the configuration asks for (at start, or at the last SIGHUP). */
  private configured: string;

  constructor(
    private readonly log: Logger,
    /** log_level as the daemon would resolve it now (defaults < file < flags); throws naming a bad value. */
    private readonly reread: () => { level: string; from: string },
  ) {
    this.configured = log.level;
  }

  /** SIGUSR1: configured level ↔ debug (info ↔ debug when the configured level already shows debug). */
  toggleDebug(): void {
    const alternative = this.configured === 'debug' || this.configured === 'trace' ? 'info' : 'debug';
    this.set(this.log.level === this.configured ? alternative : this.configured, { signal: 'SIGUSR1' });
  }

  /** SIGHUP: log_level from the config file again; a bad file changes nothing and says why. */
  reload(): void {
    let next: { level: string; from: string };
    try {
      next = this.reread();
    } catch (err) {
      this.log.error({ signal: 'SIGHUP', err: errorMessage(err) }, 'log level not changed: the configuration could not be read (only log_level is reloaded)');
      return;
    }
    this.configured = next.level;
    this.set(next.level, { signal: 'SIGHUP', source: next.from });
  }

  private set(to: string, why: Record<string, string>): void {
    const from = this.log.level;
    this.log.level = to;
    // Said at info, or at the least severe level still shown, so the change is always visible.
    const at = this.log.isLevelEnabled('info') ? 'info' : (this.log.level as 'warn' | 'error' | 'fatal');
    this.log[at]({ from, to, ...why }, 'log level changed');
  }

  /** Handles SIGUSR1 and SIGHUP from now on (either would otherwise end the process or open the inspector). */
  install(proc: NodeJS.Process = process): void {
    proc.on('SIGUSR1', () => this.toggleDebug());
    proc.on('SIGHUP', () => this.reload());
  }
}
