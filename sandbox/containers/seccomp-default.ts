// crisp's RuntimeDefault seccomp profile, and the loader for Localhost profiles (Docker/OCI JSON).
//
// Policy: deny by default with EPERM; allow the system calls ordinary programs make; allow the calls
// the kernel already guards with a capability only when the container holds that capability (so adding
// SYS_ADMIN to a non-privileged container still lets it mount); never allow the calls that reach the
// whole host whatever the capabilities (module loading, kexec, reboot, swap, bpf, perf, the kernel
// keyring which is not namespaced, io_uring, userfaultfd). Namespace creation through clone/unshare is
// refused without SYS_ADMIN, which is what blocks CLONE_NEWUSER as a privilege-escalation step.
// Privileged containers get no profile at all (the spec builder decides that).
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { release } from 'node:os';
import { invalidArgument, errorMessage } from '../../common/errors.js';
import type { LinuxSeccomp, LinuxSeccompArg, LinuxSyscall, SeccompAction, SeccompOperator } from './oci-types.js';

const EPERM = 1;
const ENOSYS = 38;

/** Every namespace flag clone(2) takes; the exit-signal byte is left alone. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
/** The same plus CLONE_NEWTIME, which only unshare(2) and clone3 accept. */
const UNSHARE_NAMESPACE_FLAGS = CLONE_NAMESPACE_FLAGS | 0x80;

/** Calls a normal workload makes: files, memory, processes, signals, time, sockets, IPC. */
const ALLOWED: readonly string[] = [
  // files and directories
  'access', 'faccessat', 'faccessat2', 'chdir', 'fchdir', 'chmod', 'fchmod', 'fchmodat', 'fchmodat2',
  'chown', 'chown32', 'fchown', 'fchown32', 'fchownat', 'lchown', 'lchown32', 'close', 'close_range',
  'creat', 'dup', 'dup2', 'dup3', 'fadvise64', 'fadvise64_64', 'arm_fadvise64_64', 'fallocate', 'fcntl',
  'fcntl64', 'fdatasync', 'fsync', 'sync', 'syncfs', 'sync_file_range', 'sync_file_range2',
  'arm_sync_file_range', 'flock', 'fstat', 'fstat64', 'fstatat64', 'newfstatat', 'stat', 'stat64',
  'lstat', 'lstat64', 'statx', 'statfs', 'statfs64', 'fstatfs', 'fstatfs64', 'ftruncate', 'ftruncate64',
  'truncate', 'truncate64', 'getcwd', 'getdents', 'getdents64', 'link', 'linkat', 'symlink',
  'symlinkat', 'unlink', 'unlinkat', 'rename', 'renameat', 'renameat2', 'mkdir', 'mkdirat', 'rmdir',
  'mknod', 'mknodat', 'open', 'openat', 'openat2', 'read', 'readv', 'pread64', 'preadv', 'preadv2',
  'write', 'writev', 'pwrite64', 'pwritev', 'pwritev2', 'lseek', '_llseek', 'readlink', 'readlinkat',
  'readahead', 'sendfile', 'sendfile64', 'splice', 'tee', 'vmsplice', 'copy_file_range', 'utime',
  'utimes', 'utimensat', 'utimensat_time64', 'futimesat', 'umask', 'getxattr', 'lgetxattr',
  'fgetxattr', 'listxattr', 'llistxattr', 'flistxattr', 'setxattr', 'lsetxattr', 'fsetxattr',
  'removexattr', 'lremovexattr', 'fremovexattr', 'memfd_create', 'ioctl', 'fanotify_mark',
  'inotify_init', 'inotify_init1', 'inotify_add_watch', 'inotify_rm_watch',
  // asynchronous I/O (io_uring is left out: a steady source of kernel exploits)
  'io_setup', 'io_destroy', 'io_submit', 'io_cancel', 'io_getevents', 'io_pgetevents',
  'io_pgetevents_time64',
  // waiting on descriptors
  'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_wait', 'epoll_wait_old',
  'epoll_pwait', 'epoll_pwait2', 'poll', 'ppoll', 'ppoll_time64', 'select', '_newselect', 'pselect6',
  'pselect6_time64', 'eventfd', 'eventfd2', 'signalfd', 'signalfd4', 'timerfd_create',
  'timerfd_settime', 'timerfd_settime64', 'timerfd_gettime', 'timerfd_gettime64', 'pipe', 'pipe2',
  // memory
  'brk', 'mmap', 'mmap2', 'munmap', 'mremap', 'mprotect', 'pkey_mprotect', 'pkey_alloc', 'pkey_free',
  'madvise', 'mincore', 'mlock', 'mlock2', 'mlockall', 'munlock', 'munlockall', 'msync',
  'remap_file_pages', 'membarrier',
  // processes and threads
  'arch_prctl', 'prctl', 'capget', 'capset', 'fork', 'vfork', 'execve', 'execveat', 'exit',
  'exit_group', 'wait4', 'waitid', 'waitpid', 'kill', 'tkill', 'tgkill', 'getpid', 'getppid', 'gettid',
  'getpgid', 'getpgrp', 'setpgid', 'getsid', 'setsid', 'getuid', 'getuid32', 'geteuid', 'geteuid32',
  'getgid', 'getgid32', 'getegid', 'getegid32', 'getresuid', 'getresuid32', 'getresgid',
  'getresgid32', 'setuid', 'setuid32', 'setgid', 'setgid32', 'setreuid', 'setreuid32', 'setregid',
  'setregid32', 'setresuid', 'setresuid32', 'setresgid', 'setresgid32', 'setfsuid', 'setfsuid32',
  'setfsgid', 'setfsgid32', 'getgroups', 'getgroups32', 'setgroups', 'setgroups32', 'getpriority',
  'setpriority', 'nice', 'getrlimit', 'ugetrlimit', 'setrlimit', 'prlimit64', 'getrusage', 'times',
  'sched_yield', 'sched_getaffinity', 'sched_setaffinity', 'sched_getparam', 'sched_setparam',
  'sched_getscheduler', 'sched_setscheduler', 'sched_get_priority_max', 'sched_get_priority_min',
  'sched_rr_get_interval', 'sched_rr_get_interval_time64', 'sched_getattr', 'sched_setattr',
  'set_tid_address', 'set_robust_list', 'get_robust_list', 'futex', 'futex_time64', 'futex_waitv',
  'futex_wake', 'futex_wait', 'futex_requeue', 'rseq', 'restart_syscall', 'set_thread_area',
  'get_thread_area', 'set_tls', 'breakpoint', 'cacheflush', 'ioprio_get', 'ioprio_set', 'getcpu',
  'pidfd_open', 'pidfd_send_signal', 'seccomp', 'landlock_create_ruleset', 'landlock_add_rule',
  'landlock_restrict_self', 'uname', 'sysinfo', 'getrandom',
  // debugging: since Linux 4.8 ptrace cannot be used to step around seccomp, and the kernel's own
  // ptrace access checks still apply (the container's pids only, CAP_SYS_PTRACE for others' processes)
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd', 'process_madvise',
  // signals
  'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigpending',
  'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'rt_sigtimedwait', 'rt_sigtimedwait_time64', 'sigaction',
  'sigprocmask', 'sigreturn', 'sigsuspend', 'sigpending', 'sigaltstack', 'pause',
  // time (reading it; setting it needs CAP_SYS_TIME, below)
  'nanosleep', 'clock_nanosleep', 'clock_nanosleep_time64', 'clock_gettime', 'clock_gettime64',
  'clock_getres', 'clock_getres_time64', 'gettimeofday', 'time', 'getitimer', 'setitimer', 'alarm',
  'timer_create', 'timer_settime', 'timer_settime64', 'timer_gettime', 'timer_gettime64',
  'timer_getoverrun', 'timer_delete', 'adjtimex',
  // sockets
  'socket', 'socketpair', 'socketcall', 'bind', 'connect', 'listen', 'accept', 'accept4',
  'getsockname', 'getpeername', 'getsockopt', 'setsockopt', 'send', 'sendto', 'sendmsg', 'sendmmsg',
  'recv', 'recvfrom', 'recvmsg', 'recvmmsg', 'recvmmsg_time64', 'shutdown',
  // System V and POSIX IPC (namespaced with the pod's ipc namespace)
  'ipc', 'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedsend_time64', 'mq_timedreceive',
  'mq_timedreceive_time64', 'mq_notify', 'mq_getsetattr', 'msgget', 'msgsnd', 'msgrcv', 'msgctl',
  'semget', 'semop', 'semtimedop', 'semtimedop_time64', 'semctl', 'shmget', 'shmat', 'shmdt', 'shmctl',
];

/** Calls the kernel guards with a capability: allowed exactly when the container holds it. */
const BY_CAPABILITY: readonly { cap: string; names: string[] }[] = [
  {
    cap: 'CAP_SYS_ADMIN',
    names: [
      'mount', 'umount', 'umount2', 'mount_setattr', 'move_mount', 'open_tree', 'fsopen', 'fsconfig',
      'fsmount', 'fspick', 'pivot_root', 'sethostname', 'setdomainname', 'setns', 'clone', 'clone3',
      'unshare', 'name_to_handle_at', 'fanotify_init', 'quotactl', 'quotactl_fd',
    ],
  },
  { cap: 'CAP_SYS_CHROOT', names: ['chroot'] },
  { cap: 'CAP_SYS_TIME', names: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64', 'clock_adjtime', 'clock_adjtime64'] },
  { cap: 'CAP_SYS_NICE', names: ['mbind', 'get_mempolicy', 'set_mempolicy', 'set_mempolicy_home_node', 'migrate_pages', 'move_pages'] },
  { cap: 'CAP_SYSLOG', names: ['syslog'] },
  { cap: 'CAP_SYS_PACCT', names: ['acct'] },
  { cap: 'CAP_SYS_RAWIO', names: ['iopl', 'ioperm'] },
  { cap: 'CAP_SYS_TTY_CONFIG', names: ['vhangup'] },
  // open_by_handle_at bypasses path lookup: the classic container breakout without this capability
  { cap: 'CAP_DAC_READ_SEARCH', names: ['open_by_handle_at'] },
];

/** Never allowed by RuntimeDefault, whatever the capabilities (listed for documentation and tests). */
export const ALWAYS_DENIED: readonly string[] = [
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'create_module',
  'query_module', 'get_kernel_syms', 'reboot', 'swapon', 'swapoff', 'bpf', 'perf_event_open', 'keyctl',
  'add_key', 'request_key', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'lookup_dcookie', 'nfsservctl', 'uselib', 'ustat', 'sysfs', '_sysctl', 'vm86', 'vm86old',
];

/** personality(2) values that only select a Linux flavour, plus the 0xffffffff query. */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/** libseccomp architecture names for a node arch: the native one and what it also runs. */
export function seccompArchitectures(arch: string = process.arch): string[] {
  switch (arch) {
    case 'x64':
    case 'x86_64':
    case 'amd64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
    case 'aarch64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    default:
      return []; // libseccomp then filters the native architecture only
  }
}

export interface RuntimeDefaultOptions {
  /** The container's bounding set (CAP_* names); the capability-guarded calls follow it. */
  capabilities?: readonly string[];
  /** node's process.arch (or a libseccomp/Go name); default: this host. */
  arch?: string;
}

/** crisp's RuntimeDefault profile for a container holding `capabilities`. */
export function runtimeDefaultSeccomp(opts: RuntimeDefaultOptions = {}): LinuxSeccomp {
  const caps = new Set(opts.capabilities ?? []);
  const allowed = new Set(ALLOWED);
  for (const g of BY_CAPABILITY) if (caps.has(g.cap)) for (const n of g.names) allowed.add(n);
  const syscalls: LinuxSyscall[] = [{ names: [...allowed], action: 'SCMP_ACT_ALLOW' }];
  // One rule per value: conditions within a rule are ANDed (runc alone ORs same-index conditions).
  for (const v of PERSONALITIES) syscalls.push({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: v, op: 'SCMP_CMP_EQ' }] });
  if (!caps.has('CAP_SYS_ADMIN')) {
    // fork-style clone and unshare of files/fs stay possible; new namespaces do not.
    syscalls.push({ names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
    syscalls.push({ names: ['unshare'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: UNSHARE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
    // clone3 passes its flags in memory, out of seccomp's reach: ENOSYS makes libc fall back to clone.
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  }
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: seccompArchitectures(opts.arch),
    syscalls,
  };
}

// ---- Localhost profiles -------------------------------------------------------------------------

const ACTIONS: readonly SeccompAction[] = [
  'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_NOTIFY',
];
const OPERATORS: readonly SeccompOperator[] = [
  'SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ',
];
const ARCHES = new Set([
  'SCMP_ARCH_X86', 'SCMP_ARCH_X86_64', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64', 'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X', 'SCMP_ARCH_PARISC', 'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64',
]);
const FLAGS = new Set(['SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', 'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV']);

/** Docker-format names of an architecture (as profiles' includes.arches use them) for a node arch. */
function dockerArchNames(arch: string): string[] {
  switch (arch) {
    case 'x64':
    case 'x86_64':
    case 'amd64':
      return ['amd64', 'x86_64'];
    case 'arm64':
    case 'aarch64':
      return ['arm64', 'aarch64'];
    case 'ia32':
    case '386':
      return ['386', 'x86'];
    default:
      return [arch];
  }
}

export interface ProfileContext {
  /** The container's bounding set, for rules with includes/excludes.caps. Default: none. */
  capabilities?: readonly string[];
  /** Default: this host's arch. */
  arch?: string;
  /** Kernel release ("6.1.0-18-amd64"), for minKernel. Default: this host's. */
  kernel?: string;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** "5.10" ≤ "5.10.0-18-amd64"? */
function kernelAtLeast(kernel: string, min: string): boolean {
  const nums = (s: string) => (s.match(/^(\d+)(?:\.(\d+))?(?:\.(\d+))?/) ?? []).slice(1, 4).map((x) => Number(x ?? 0));
  const a = nums(kernel);
  const b = nums(min);
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

interface Filter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

function parseFilter(v: unknown, where: string): Filter {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new Error(`${where} must be an object`);
  const out: Filter = {};
  if (v.caps !== undefined && v.caps !== null) {
    if (!isStringArray(v.caps)) throw new Error(`${where}.caps must be an array of strings`);
    out.caps = v.caps.map((c) => (c.toUpperCase().startsWith('CAP_') ? c.toUpperCase() : `CAP_${c.toUpperCase()}`));
  }
  if (v.arches !== undefined && v.arches !== null) {
    if (!isStringArray(v.arches)) throw new Error(`${where}.arches must be an array of strings`);
    out.arches = v.arches;
  }
  if (v.minKernel !== undefined && v.minKernel !== null && v.minKernel !== '') {
    if (typeof v.minKernel !== 'string' || !/^\d+\.\d+/.test(v.minKernel)) throw new Error(`${where}.minKernel must be a version like "4.8"`);
    out.minKernel = v.minKernel;
  }
  return out;
}

function parseArg(v: unknown, where: string): LinuxSeccompArg {
  if (!isObject(v)) throw new Error(`${where} must be an object`);
  if (!isUint(v.index) || v.index > 5) throw new Error(`${where}.index must be 0..5`);
  if (!isUint(v.value)) throw new Error(`${where}.value must be a non-negative integer`);
  if (v.valueTwo !== undefined && !isUint(v.valueTwo)) throw new Error(`${where}.valueTwo must be a non-negative integer`);
  if (!OPERATORS.includes(v.op as SeccompOperator)) throw new Error(`${where}.op "${String(v.op)}" is not a seccomp operator`);
  const arg: LinuxSeccompArg = { index: v.index, value: v.value, op: v.op as SeccompOperator };
  if (v.valueTwo !== undefined) arg.valueTwo = v.valueTwo;
  return arg;
}

function parseAction(v: unknown, where: string): SeccompAction {
  if (!ACTIONS.includes(v as SeccompAction)) throw new Error(`${where} "${String(v)}" is not a seccomp action`);
  return v as SeccompAction;
}

/**
 * A Docker- or OCI-format seccomp profile → the OCI object for the spec. Docker's extras are settled
 * here for one container: archMap picks this architecture's entry, rules whose includes/excludes
 * (caps, arches, minKernel) do not hold are dropped. Errors name `source`.
 */
export function parseSeccompProfile(text: string, source: string, ctx: ProfileContext = {}): LinuxSeccomp {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`seccomp profile ${source}: invalid JSON: ${errorMessage(err)}`);
  }
  try {
    return convertProfile(doc, ctx);
  } catch (err) {
    throw invalidArgument(`seccomp profile ${source}: ${errorMessage(err)}`);
  }
}

function convertProfile(doc: unknown, ctx: ProfileContext): LinuxSeccomp {
  if (!isObject(doc)) throw new Error('top level must be a JSON object');
  const arch = ctx.arch ?? process.arch;
  const kernel = ctx.kernel ?? release();
  const caps = new Set(ctx.capabilities ?? []);
  const out: LinuxSeccomp = { defaultAction: parseAction(doc.defaultAction, 'defaultAction') };
  if (doc.defaultErrnoRet !== undefined) {
    if (!isUint(doc.defaultErrnoRet)) throw new Error('defaultErrnoRet must be a non-negative integer');
    out.defaultErrnoRet = doc.defaultErrnoRet;
  }

  const hasArchitectures = Array.isArray(doc.architectures) && doc.architectures.length > 0;
  const hasArchMap = Array.isArray(doc.archMap) && doc.archMap.length > 0;
  if (hasArchitectures && hasArchMap) throw new Error('"architectures" and "archMap" are both set; use one');
  if (doc.architectures !== undefined && doc.architectures !== null) {
    if (!isStringArray(doc.architectures)) throw new Error('architectures must be an array of strings');
    out.architectures = doc.architectures;
  } else if (doc.archMap !== undefined && doc.archMap !== null) {
    if (!Array.isArray(doc.archMap)) throw new Error('archMap must be an array');
    const native = seccompArchitectures(arch)[0];
    for (const [i, e] of doc.archMap.entries()) {
      if (!isObject(e) || typeof e.architecture !== 'string') throw new Error(`archMap[${i}].architecture must be a string`);
      const subs = e.subArchitectures ?? [];
      if (!isStringArray(subs)) throw new Error(`archMap[${i}].subArchitectures must be an array of strings`);
      if (e.architecture === native) out.architectures = [e.architecture, ...subs];
    }
  }
  for (const a of out.architectures ?? []) if (!ARCHES.has(a)) throw new Error(`architecture "${a}" is not a libseccomp architecture`);

  if (doc.flags !== undefined && doc.flags !== null) {
    if (!isStringArray(doc.flags)) throw new Error('flags must be an array of strings');
    for (const f of doc.flags) if (!FLAGS.has(f)) throw new Error(`flag "${f}" is not a seccomp filter flag`);
    out.flags = doc.flags;
  }
  if (doc.listenerPath !== undefined && doc.listenerPath !== '') {
    if (typeof doc.listenerPath !== 'string') throw new Error('listenerPath must be a string');
    out.listenerPath = doc.listenerPath;
  }
  if (doc.listenerMetadata !== undefined && doc.listenerMetadata !== '') {
    if (typeof doc.listenerMetadata !== 'string') throw new Error('listenerMetadata must be a string');
    out.listenerMetadata = doc.listenerMetadata;
  }

  const archNames = dockerArchNames(arch);
  const syscalls: LinuxSyscall[] = [];
  const rules = doc.syscalls ?? [];
  if (!Array.isArray(rules)) throw new Error('syscalls must be an array');
  for (const [i, r] of rules.entries()) {
    const where = `syscalls[${i}]`;
    if (!isObject(r)) throw new Error(`${where} must be an object`);
    let names: string[];
    if (r.names !== undefined && r.names !== null) {
      if (!isStringArray(r.names)) throw new Error(`${where}.names must be an array of strings`);
      names = r.names;
    } else if (typeof r.name === 'string') names = [r.name]; // Docker's old single-name form
    else throw new Error(`${where} names no system call`);
    if (names.length === 0 || names.some((n) => !/^[a-z0-9_]+$/.test(n))) throw new Error(`${where}.names: invalid or empty system call names`);
    const action = parseAction(r.action, `${where}.action`);
    const includes = parseFilter(r.includes, `${where}.includes`);
    const excludes = parseFilter(r.excludes, `${where}.excludes`);
    const args = r.args === undefined || r.args === null ? [] : r.args;
    if (!Array.isArray(args)) throw new Error(`${where}.args must be an array`);
    const parsedArgs = args.map((a, j) => parseArg(a, `${where}.args[${j}]`));
    let errnoRet: number | undefined;
    if (r.errnoRet !== undefined && r.errnoRet !== null) {
      if (!isUint(r.errnoRet)) throw new Error(`${where}.errnoRet must be a non-negative integer`);
      errnoRet = r.errnoRet;
    }

    if (includes.caps && !includes.caps.every((c) => caps.has(c))) continue;
    if (includes.arches && !includes.arches.some((a) => archNames.includes(a))) continue;
    if (includes.minKernel && !kernelAtLeast(kernel, includes.minKernel)) continue;
    if (excludes.caps && excludes.caps.some((c) => caps.has(c))) continue;
    if (excludes.arches && excludes.arches.some((a) => archNames.includes(a))) continue;
    if (excludes.minKernel && kernelAtLeast(kernel, excludes.minKernel)) continue;

    const sc: LinuxSyscall = { names, action };
    if (errnoRet !== undefined) sc.errnoRet = errnoRet;
    if (parsedArgs.length > 0) sc.args = parsedArgs;
    syscalls.push(sc);
  }
  if (syscalls.length > 0) out.syscalls = syscalls;
  if ((out.defaultAction === 'SCMP_ACT_NOTIFY' || syscalls.some((s) => s.action === 'SCMP_ACT_NOTIFY')) && !out.listenerPath) {
    throw new Error('SCMP_ACT_NOTIFY needs a listenerPath');
  }
  return out;
}

/** Read and validate a Localhost seccomp profile (an absolute path on the node). */
export async function loadLocalhostProfile(path: string, ctx: ProfileContext = {}): Promise<LinuxSeccomp> {
  if (!isAbsolute(path)) throw invalidArgument(`seccomp profile "${path}": the path must be absolute`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw invalidArgument(`seccomp profile ${path}: cannot read it: ${errorMessage(err)}`, err);
  }
  return parseSeccompProfile(text, path, ctx);
}
