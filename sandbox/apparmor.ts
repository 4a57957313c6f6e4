// crisp's AppArmor default profile (what RuntimeDefault means on a host with AppArmor): loaded with
// apparmor_parser at daemon start, and used only once the kernel lists it, so a spec never names a
// profile that is not loaded (runc would fail the start). Localhost profiles must be loaded by the
// operator; crisp checks the kernel's list before naming one.
import { readFile } from 'node:fs/promises';
import { runChecked } from '../native/spawner.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { APPARMOR_DEFAULT_PROFILE } from './containers/oci-spec.js';

const PROFILES_FILE = '/sys/kernel/security/apparmor/profiles';

/**
 * The default profile: everything a container normally does, minus what lets it reach the host —
 * writes to most of /proc and /sys, mounting, kernel memory and security files, and ptrace of
 * processes outside the profile.
 */
export function defaultProfileText(name = APPARMOR_DEFAULT_PROFILE): string {
  return `#include <tunables/global>

profile ${name} flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  signal (receive) peer=unconfined,
  signal (send,receive) peer=${name},
  ptrace (trace,read,tracedby,readby) peer=${name},

  deny mount,
  deny @{PROC}/* w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
`;
}

/** Profile names the kernel has loaded (first field of each line of its profiles list). */
export function parseLoadedProfiles(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .map((l) => l.replace(/\s+\((enforce|complain|kill|unconfined|prompt)\)\s*$/, '').trim())
      .filter(Boolean),
  );
}

export async function loadedProfiles(file = PROFILES_FILE): Promise<Set<string>> {
  try {
    return parseLoadedProfiles(await readFile(file, 'utf8'));
  } catch {
    // no AppArmor, or securityfs not mounted: nothing is loaded
    return new Set();
  }
}

/**
 * Loads crisp's default profile unless the kernel has it already. Returns whether it is loaded; a
 * host where apparmor_parser is missing or fails runs RuntimeDefault containers without a profile,
 * and says so in the log.
 */
export async function ensureDefaultProfile(log: Logger, parser = 'apparmor_parser'): Promise<boolean> {
  if ((await loadedProfiles()).has(APPARMOR_DEFAULT_PROFILE)) return true;
  try {
    await runChecked(parser, ['-Kr'], { input: defaultProfileText() });
  } catch (err) {
    log.warn({ err: errorMessage(err) }, `AppArmor is enabled but its default profile ${APPARMOR_DEFAULT_PROFILE} could not be loaded; RuntimeDefault containers run without an AppArmor profile`);
    return false;
  }
  return (await loadedProfiles()).has(APPARMOR_DEFAULT_PROFILE);
}
