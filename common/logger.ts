// The daemon's structured logger (pino). Created once in the daemon wiring and passed down. Its level can
// change while crispd runs (logger.level = …): children follow unless given a level of their own.
import { pino, type Logger } from 'pino';
import { formattedDestination, type LogFormat } from './log-format.js';

export type { Logger };

export interface LogOutput {
  format: LogFormat;
  /** stderr is the systemd journal: lines carry their syslog priority. */
  journal: boolean;
}

export function createLogger(level: string, destination?: NodeJS.WritableStream, output: LogOutput = { format: 'json', journal: false }): Logger {
  const out = destination ?? process.stderr;
  return pino(
    {
      level,
      base: { svc: 'crispd' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Credentials never reach the log, whatever a caller passes.
      redact: {
        paths: ['*.password', '*.auth', '*.identityToken', '*.registryToken', '*.auth.*', 'auth', 'password'],
        censor: '[redacted]',
      },
    },
    output.format === 'json' && !output.journal ? out : formattedDestination(output.format, output.journal, out),
  );
}
