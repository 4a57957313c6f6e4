// Registry credentials for `crisp pull`, from where they do not show in the process list: `--creds -`
// reads "user:password" from stdin, and without --creds the CRISP_CREDS environment variable is used.
// A value given with --creds itself still works (as with crictl), but sits in argv for anyone to read.
import { invalidArgument } from '../common/errors.js';

export const CREDS_ENV = 'CRISP_CREDS';

export interface PullCreds {
  username: string;
  password: string;
}

/** "user[:password]" → credentials; the password may itself hold colons. */
export function parseCreds(value: string, source: string): PullCreds {
  const at = value.indexOf(':');
  const username = at < 0 ? value : value.slice(0, at);
  if (username === '') throw invalidArgument(`${source}: expected USER[:PASSWORD], got an empty user name`);
  return { username, password: at < 0 ? '' : value.slice(at + 1) };
}

/** Up to the first newline (or the end): on a terminal, Enter ends the input without Ctrl-D. */
async function readFirstLine(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    chunks.push(b);
    if (b.includes(0x0a)) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The credentials a pull uses: --creds (or "-" for stdin), else $CRISP_CREDS, else none. */
export async function resolvePullCreds(flag: string | undefined, env: NodeJS.ProcessEnv, stdin: NodeJS.ReadableStream): Promise<PullCreds | null> {
  if (flag === '-') {
    // One line; its line ending (LF or CRLF) is not part of the password.
    const line = (await readFirstLine(stdin)).split(/\r?\n/)[0] ?? '';
    if (line === '') throw invalidArgument('--creds -: nothing read from stdin (expected USER[:PASSWORD])');
    return parseCreds(line, '--creds - (stdin)');
  }
  if (flag !== undefined) return parseCreds(flag, '--creds');
  const fromEnv = env[CREDS_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return parseCreds(fromEnv, CREDS_ENV);
  return null;
}
