// The sd_notify protocol for crispd under systemd (crisp.service is Type=notify): "READY=1" once the CRI
// socket answers, "STOPPING=1" when shutdown begins, "STATUS=…" for `systemctl status`.
//
// The protocol is one datagram on the AF_UNIX socket named by $NOTIFY_SOCKET. Node has no unix datagram
// sockets, so crispd runs systemd's own sender, `systemd-notify` (package systemd; always present where
// systemd set NOTIFY_SOCKET). Run as root by crispd, systemd-notify sends the message with crispd's pid
// as the sender's credentials (its "pretend to be the invoking process" rule, systemd ≥ 246), and waits
// until systemd processed it; the unit still says NotifyAccess=all in case that attribution falls back
// to systemd-notify's own pid.
//
// NOTIFY_SOCKET is taken out of crispd's environment at start: the embedded containerd speaks sd_notify
// itself (READY=1 as soon as *it* serves) and must not announce crispd ready early; shims, CNI and NRI
// plugins inherit nothing either.
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';

export interface SdNotifyOptions {
  /** The sender; default "systemd-notify" looked up in PATH. */
  binary?: string;
  /** How long one message may take (systemd-notify waits for systemd to process it). Default 5000. */
  timeoutMs?: number;
}

export class SdNotify {
  private constructor(
    private readonly socket: string | undefined,
    private readonly log: Logger,
    private readonly opts: SdNotifyOptions,
  ) {}

  /** Take NOTIFY_SOCKET out of `env` (default process.env) and keep it for crispd's own messages. */
  static fromEnvironment(log: Logger, env: NodeJS.ProcessEnv = process.env, opts: SdNotifyOptions = {}): SdNotify {
    const socket = env.NOTIFY_SOCKET;
    delete env.NOTIFY_SOCKET;
    return new SdNotify(socket ? socket : undefined, log, opts);
  }

  /** Whether a service manager asked for notifications. */
  get enabled(): boolean {
    return this.socket !== undefined;
  }

  ready(status: string): Promise<boolean> {
    return this.send(['READY=1', `STATUS=${status}`]);
  }

  stopping(status = 'stopping'): Promise<boolean> {
    return this.send(['STOPPING=1', `STATUS=${status}`]);
  }

  /** Send `fields` (VARIABLE=VALUE); false (and one warn line) when it could not be sent. Never throws. */
  send(fields: string[]): Promise<boolean> {
    const socket = this.socket;
    if (socket === undefined) return Promise.resolve(false);
    const binary = this.opts.binary ?? 'systemd-notify';
    // Newlines would split a field into two assignments.
    const args = fields.map((f) => f.replace(/[\r\n]+/g, ' '));
    return new Promise((resolve) => {
      execFile(binary, args, { env: { ...process.env, NOTIFY_SOCKET: socket }, timeout: this.opts.timeoutMs ?? 5000 }, (err, _stdout, stderr) => {
        if (err) {
          const detail = `${err.message}${stderr ? `: ${String(stderr).trim()}` : ''}`;
          this.log.warn({ fields: args, err: detail }, `sd_notify through ${binary} failed (NOTIFY_SOCKET=${socket})`);
          resolve(false);
          return;
        }
        this.log.debug({ fields: args }, 'sd_notify sent');
        resolve(true);
      });
    });
  }
}
