// The daemon's structured JSON logger (pino). Created once in the daemon wiring and passed down.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
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
    destination ?? process.stderr,
  );
}
