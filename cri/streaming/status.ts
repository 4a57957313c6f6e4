// The Kubernetes Status objects the error stream carries at the end of an exec or attach, as kubectl
// reads them (v4+ protocols: JSON; older ones: plain text, and nothing at all on success).

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** The metav1.Status fields the remote command protocol uses, in the order Go marshals them. */
export interface KubeStatus {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: StatusCause[] };
  code?: number;
}

export const NON_ZERO_EXIT_CODE_REASON = 'NonZeroExitCode';
export const EXIT_CODE_CAUSE = 'ExitCode';

export function successStatus(): KubeStatus {
  return { metadata: {}, status: 'Success' };
}

/** A command that exited non-zero: kubectl turns the ExitCode cause into its own exit code. */
export function exitCodeStatus(code: number, detail = ''): KubeStatus {
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: ${detail || `exit status ${code}`}`,
    reason: NON_ZERO_EXIT_CODE_REASON,
    details: { causes: [{ reason: EXIT_CODE_CAUSE, message: String(code) }] },
  };
}

/** The session failed for another reason (the runtime could not run the command, ...). */
export function internalErrorStatus(message: string): KubeStatus {
  return {
    metadata: {},
    status: 'Failure',
    message: `Internal error occurred: ${message}`,
    reason: 'InternalError',
    details: { causes: [{ message }] },
    code: 500,
  };
}

export function statusFor(result: { exitCode: number } | { error: string }): KubeStatus {
  if ('error' in result) return internalErrorStatus(result.error);
  return result.exitCode === 0 ? successStatus() : exitCodeStatus(result.exitCode);
}

/**
 * The bytes to write on the error stream: JSON for v4 and later; for older protocols the message text
 * of a failure and nothing on success.
 */
export function encodeStatus(status: KubeStatus, jsonProtocol: boolean): Buffer {
  if (jsonProtocol) return Buffer.from(JSON.stringify(status));
  return status.status === 'Success' ? Buffer.alloc(0) : Buffer.from(status.message ?? 'unknown error');
}

/** Reads a Status from the error stream, as a client: the exit code it stands for, or its message. */
export function exitCodeOf(status: KubeStatus): { exitCode: number } | { error: string } {
  if (status.status === 'Success') return { exitCode: 0 };
  if (status.reason === NON_ZERO_EXIT_CODE_REASON) {
    const cause = status.details?.causes.find((c) => c.reason === EXIT_CODE_CAUSE);
    const code = Number(cause?.message);
    if (Number.isInteger(code) && code >= 0 && code <= 255) return { exitCode: code };
  }
  return { error: status.message ?? 'unknown error' };
}
