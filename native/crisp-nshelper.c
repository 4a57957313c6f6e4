/*
 * crisp-nshelper: the few namespace and mount steps a multithreaded Node process cannot do itself
 * (unshare(CLONE_NEWUSER) and setns() need a single-threaded caller). Each run does one thin step
 * and exits; crispd calls it as a child process.
 *
 * Contract (argv in, one JSON line on stdout out):
 *
 *   pin --dir DIR [--net [--lo-up]] [--ipc] [--uts]
 *       [--user --uid-map "C H L[,C H L...]" --gid-map "C H L[,...]"] [--hostname NAME]
 *       Creates the asked namespaces in one unshare() (the kernel creates the user namespace first,
 *       so the others are owned by it), writes the id maps, sets the hostname in the new uts ns and
 *       bind-mounts /proc/<child>/ns/<kind> onto DIR/<kind>. DIR must exist. Refuses if a target is
 *       already a mount; on failure undoes every mount and file it made. --lo-up sets the new net
 *       namespace's loopback link up (what the CNI loopback plugin does, without its exec).
 *       --shm PATH --shm-size BYTES also mounts the pod's /dev/shm: a tmpfs (mode 1777, nosuid,
 *       nodev, noexec, size BYTES) on PATH, created if absent; a PATH that is already a mount is
 *       kept as it is (a retried pin); undone with the rest on failure.
 *       -> {"user":"DIR/user","net":"DIR/net","ipc":"DIR/ipc","uts":"DIR/uts"}  (asked kinds only)
 *   unpin --dir DIR
 *       Detaches and removes DIR/{user,net,ipc,uts}; absent files are fine.   -> {"ok":true}
 *   sysctl [--netns FILE] [--ipcns FILE] [--utsns FILE] KEY=VALUE...
 *       Joins the given namespaces and writes /proc/sys/<KEY with dots as slashes>. A key is only
 *       written when the namespace it belongs to was given (net.* -> netns; kernel.shm*, kernel.msg*,
 *       kernel.sem*, fs.mqueue.* -> ipcns; kernel.hostname, kernel.domainname -> utsns), so a
 *       mistake can never change the host. Keys with ".." or "/" are refused.   -> {"ok":true}
 *   idmap-mount --userns FILE --src PATH --dst PATH [--recursive]
 *       open_tree(CLONE) of src, mount_setattr(MOUNT_ATTR_IDMAP, userns), move_mount onto dst (which
 *       must exist). On-disk id N shows as the host id that N maps to in the user namespace.
 *       -> {"ok":true}
 *   ro-mount --src PATH --dst PATH
 *       Recursive read-only bind for runtimes without runc 1.2's "rro": open_tree(CLONE|RECURSIVE)
 *       of src, mount_setattr(AT_RECURSIVE, RDONLY, private propagation) on the detached tree, then
 *       move_mount onto dst (which must exist). Every submount below src is read-only too, and a
 *       bind of dst (runc's) keeps that.   -> {"ok":true}
 *   probe-idmap --dir TMPDIR
 *       Tries an idmapped mount on TMPDIR's filesystem and an overlay whose lowerdir is that idmapped
 *       mount, in a scratch dir it removes again.
 *       -> {"idmap":BOOL,"overlayOverIdmap":BOOL,"reason":"..."}  (reason is "" when both work)
 *   pidns --dir DIR [--userns FILE] [--name NAME]
 *       For pods with a shared pid namespace: joins the user namespace FILE (so it owns the new pid
 *       namespace), unshares a pid namespace and forks its pid 1, a tiny init that reaps orphans and
 *       exits 0 on SIGTERM. The init is detached (own session, stdio on /dev/null, other fds closed,
 *       parent is the host's init once the in-between starter exits), named NAME (default
 *       crisp-pidinit), runs as uid/gid 0 of FILE's namespace (which must map 0), without
 *       capabilities and not dumpable. Its /proc/<pid>/ns/pid is bind-mounted onto DIR/pid. On
 *       failure the init is killed and the file and mount are removed; exit 3 when DIR/pid is
 *       already a mount.
 *       -> {"pid":HOST_PID_OF_INIT,"path":"DIR/pid"}
 *   pidns-stop --dir DIR --pid PID
 *       If PID is pid 1 of the namespace pinned at DIR/pid (same st_dev/st_ino), SIGKILLs it and
 *       waits until it has exited, which the kernel only lets happen after every other process in the
 *       namespace is gone; then detaches and removes DIR/pid. A gone PID, a PID in another namespace
 *       (reused) or a missing file is fine; a PID inside the namespace that is not its init is refused.
 *       -> {"ok":true,"killed":BOOL}
 *   portfwd --netns FILE --port PORT [--host ADDR]
 *       For port forwarding into a pod: joins the network namespace FILE, connects to ADDR:PORT (an
 *       IPv4 or IPv6 literal; default 127.0.0.1, then ::1) and relays stdin -> socket and socket ->
 *       stdout until both directions have ended: stdin EOF half-closes the socket (SHUT_WR), the
 *       socket's EOF closes stdout. Unlike the other subcommands, stdout carries the connection's
 *       bytes, not JSON. Dies with its parent (PR_SET_PDEATHSIG). A refused connection fails as
 *       usual (stderr line, exit 1); a reset or a broken pipe on the pod's side ends that direction,
 *       and a closed stdout (the client went away) ends the relay, both with 0: Kubernetes clients
 *       tear down a whole port-forward session on any reported error.
 *
 * Failure: one line "crisp-nshelper: <step>: <strerror>" on stderr and exit 1; exit 3 when pin finds a
 * target already mounted (already pinned); bad arguments exit 2 with "crisp-nshelper: usage: <what>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

/* glibc 2.36 / older kernel headers may lack the new mount API: the numbers are the same on every
 * architecture but alpha since the syscall tables were unified (5.0). */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

/* Our own name so it cannot clash with the struct glibc's <sys/mount.h> may or may not declare. */
struct nsh_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

static int nsh_open_tree(int dfd, const char *path, unsigned int flags) {
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}
static int nsh_mount_setattr(int dfd, const char *path, unsigned int flags, struct nsh_mount_attr *attr) {
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr));
}
static int nsh_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned int flags) {
    return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}
static int nsh_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int nsh_pidfd_send_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

/* capset(2) ABI, version 3 (two 32-bit words per set); declared here to need no kernel headers */
struct nsh_cap_header {
    uint32_t version;
    int pid;
};
struct nsh_cap_data {
    uint32_t effective, permitted, inheritable;
};
#define NSH_CAP_VERSION_3 0x20080522

/* ---- errors: the first failure is kept and printed once by main ---- */

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_ALREADY_PINNED = 3 };

static char g_step[512];
static char g_detail[256];

static int failv(const char *detail, const char *fmt, va_list ap) {
    if (g_step[0] != '\0') return -1; /* keep the first cause; undo steps may fail after it */
    vsnprintf(g_step, sizeof g_step, fmt, ap);
    snprintf(g_detail, sizeof g_detail, "%s", detail);
    return -1;
}
/* Records "<step>: strerror(err)" and returns -1. */
static int fail(int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(strerror(err), fmt, ap);
    va_end(ap);
    return -1;
}
static int fail_msg(const char *detail, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(detail, fmt, ap);
    va_end(ap);
    return -1;
}

static int usage(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "crisp-nshelper: usage: %s\n", msg);
    return EXIT_USAGE;
}

/* ---- JSON output ---- */

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* ---- small helpers ---- */

static int join_path(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) return fail(ENAMETOOLONG, "path %s/%s", dir, name);
    return 0;
}

/* Reads exactly len bytes; returns the count read (short on EOF) or -1. */
static ssize_t read_full(int fd, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static int write_file(const char *path, const char *data, const char *step) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fail(errno, "%s: open %s", step, path);
    size_t len = strlen(data);
    /* id maps must arrive in a single write(); sysctls are short too */
    ssize_t n = write(fd, data, len);
    int err = errno;
    close(fd);
    if (n < 0) return fail(err, "%s", step);
    if ((size_t)n != len) return fail(EIO, "%s: short write", step);
    return 0;
}

/* True when path is the root of a mount (bind-mounted ns files live on nsfs, so st_dev differs too). */
static int is_mount_point(const char *path, const struct stat *parent, bool *out) {
    struct statx stx;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0) return -1;
    bool root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
    dev_t dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    *out = root || dev != parent->st_dev;
    return 0;
}

/* "C H L,C H L" -> "C H L\nC H L\n" as /proc/<pid>/{uid,gid}_map wants it. */
static int parse_idmap(const char *spec, const char *what, char *out, size_t size) {
    size_t used = 0;
    int entries = 0;
    const char *p = spec;
    out[0] = '\0';
    while (*p) {
        unsigned long long v[3];
        for (int k = 0; k < 3; k++) {
            if (k > 0) {
                if (*p != ' ') return usage("%s: want \"C H L[,C H L]\", got \"%s\"", what, spec);
                p++;
            }
            if (*p < '0' || *p > '9') return usage("%s: want \"C H L[,C H L]\", got \"%s\"", what, spec);
            char *end;
            errno = 0;
            v[k] = strtoull(p, &end, 10);
            if (errno || v[k] > UINT32_MAX) return usage("%s: number out of range in \"%s\"", what, spec);
            p = end;
        }
        if (v[2] == 0 || v[0] + v[2] > (unsigned long long)UINT32_MAX + 1 ||
            v[1] + v[2] > (unsigned long long)UINT32_MAX + 1)
            return usage("%s: bad range in \"%s\"", what, spec);
        if (++entries > 340) return usage("%s: more than 340 ranges", what);
        int n = snprintf(out + used, size - used, "%llu %llu %llu\n", v[0], v[1], v[2]);
        if (n < 0 || (size_t)n >= size - used) return usage("%s: too long", what);
        used += (size_t)n;
        if (*p == ',') {
            p++;
            if (*p == '\0') return usage("%s: trailing comma in \"%s\"", what, spec);
        } else if (*p != '\0') {
            return usage("%s: want \"C H L[,C H L]\", got \"%s\"", what, spec);
        }
    }
    if (entries == 0) return usage("%s: empty", what);
    return 0;
}

/* ---- a child that holds new namespaces until the parent has pinned them ----
 * The child reports the outcome of its own steps through `report`, then waits for EOF on `hold`
 * (the parent closing it, or dying) and exits. */

struct child_report {
    int ok;
    char step[sizeof g_step];
    char detail[sizeof g_detail];
};

struct ns_child {
    pid_t pid;
    int hold_w; /* parent's end; closing it releases the child */
};

/* Sets `lo` up in the caller's (new) network namespace. */
static int loopback_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(errno, "socket for lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = 0;
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) rc = fail(errno, "lo flags");
    else if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) rc = fail(errno, "lo up");
    }
    close(fd);
    return rc;
}

static int spawn_ns_child(int flags, const char *hostname, bool lo_up, struct ns_child *out) {
    int report[2], hold[2];
    if (pipe2(report, O_CLOEXEC) < 0) return fail(errno, "pipe");
    if (pipe2(hold, O_CLOEXEC) < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return fail(err, "pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        close(hold[0]);
        close(hold[1]);
        return fail(err, "fork");
    }
    if (pid == 0) {
        close(report[0]);
        close(hold[1]);
        struct child_report r;
        memset(&r, 0, sizeof r);
        if (unshare(flags) < 0) fail(errno, "unshare");
        else if (hostname && sethostname(hostname, strlen(hostname)) < 0) fail(errno, "sethostname");
        else if (lo_up) loopback_up();
        r.ok = g_step[0] == '\0';
        memcpy(r.step, g_step, sizeof r.step);
        memcpy(r.detail, g_detail, sizeof r.detail);
        if (write(report[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
        close(report[1]);
        char c;
        while (read(hold[0], &c, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    close(report[1]);
    close(hold[0]);
    struct child_report r;
    ssize_t n = read_full(report[0], &r, sizeof r);
    int err = errno;
    close(report[0]);
    out->pid = pid;
    out->hold_w = hold[1];
    if (n == (ssize_t)sizeof r && r.ok) return 0;
    if (n < 0) fail(err, "read child report");
    else if (n != (ssize_t)sizeof r) fail_msg("exited before reporting", "child");
    else {
        r.step[sizeof r.step - 1] = '\0';
        r.detail[sizeof r.detail - 1] = '\0';
        fail_msg(r.detail, "%s", r.step);
    }
    return -1;
}

/* Releases the child and reaps it. */
static void release_ns_child(struct ns_child *c, bool kill_it) {
    if (c->pid <= 0) return;
    if (kill_it) kill(c->pid, SIGKILL);
    close(c->hold_w);
    while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    c->pid = 0;
}

static int write_idmaps(pid_t pid, const char *uid_map, const char *gid_map) {
    char path[64];
    /* As root with CAP_SETGID in the parent namespace, gid_map needs no setgroups=deny, and leaving
     * setgroups allowed lets containers call setgroups(2). */
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (write_file(path, uid_map, "write uid_map") < 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    if (write_file(path, gid_map, "write gid_map") < 0) return -1;
    return 0;
}

/* ---- pin / unpin ---- */

enum { NS_USER, NS_NET, NS_IPC, NS_UTS, NS_COUNT };
static const char *const NS_NAME[NS_COUNT] = {"user", "net", "ipc", "uts"};
static const int NS_FLAG[NS_COUNT] = {CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS};

static char g_idmap_buf[2][340 * 36 + 1];

/* The pod's /dev/shm tmpfs on path (made if absent). An existing mount there is kept: a pin retried
 * after a crash finds the tmpfs of the first try. Says what it made, for the undo. */
static int mount_shm(const char *path, unsigned long long bytes, bool *made, bool *mounted) {
    if (mkdir(path, 0755) == 0) *made = true;
    else if (errno != EEXIST) return fail(errno, "mkdir %s", path);
    struct stat st, parent;
    char up[PATH_MAX];
    if (snprintf(up, sizeof up, "%s/..", path) >= (int)sizeof up) return fail(ENAMETOOLONG, "path %s", path);
    if (lstat(path, &st) < 0) return fail(errno, "stat %s", path);
    if (!S_ISDIR(st.st_mode)) return fail(ENOTDIR, "stat %s", path);
    if (stat(up, &parent) < 0) return fail(errno, "stat %s", up);
    bool mnt;
    if (is_mount_point(path, &parent, &mnt) < 0) return fail(errno, "statx %s", path);
    if (mnt) return 0;
    char opts[64];
    snprintf(opts, sizeof opts, "mode=1777,size=%llu", bytes);
    if (mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0) return fail(errno, "mount tmpfs on %s", path);
    *mounted = true;
    return 0;
}

static int cmd_pin(int argc, char **argv) {
    const char *dir = NULL, *uid_spec = NULL, *gid_spec = NULL, *hostname = NULL, *shm = NULL, *shm_size = NULL;
    bool want[NS_COUNT] = {false}, lo_up = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--net")) want[NS_NET] = true;
        else if (!strcmp(a, "--lo-up")) lo_up = true;
        else if (!strcmp(a, "--ipc")) want[NS_IPC] = true;
        else if (!strcmp(a, "--uts")) want[NS_UTS] = true;
        else if (!strcmp(a, "--user")) want[NS_USER] = true;
        else if (!strcmp(a, "--dir") && has_value) dir = argv[++i];
        else if (!strcmp(a, "--uid-map") && has_value) uid_spec = argv[++i];
        else if (!strcmp(a, "--gid-map") && has_value) gid_spec = argv[++i];
        else if (!strcmp(a, "--hostname") && has_value) hostname = argv[++i];
        else if (!strcmp(a, "--shm") && has_value) shm = argv[++i];
        else if (!strcmp(a, "--shm-size") && has_value) shm_size = argv[++i];
        else return usage("pin: unexpected argument \"%s\"", a);
    }
    if ((shm == NULL) != (shm_size == NULL)) return usage("pin: --shm goes with --shm-size");
    unsigned long long shm_bytes = 0;
    if (shm) {
        char *end;
        errno = 0;
        shm_bytes = strtoull(shm_size, &end, 10);
        if (!*shm || shm[0] != '/') return usage("pin: --shm must be an absolute path");
        if (errno || end == shm_size || *end || shm_bytes == 0) return usage("pin: --shm-size must be a positive byte count, got \"%s\"", shm_size);
    }
    if (!dir || !*dir) return usage("pin: --dir is required");
    if (!want[NS_USER] && !want[NS_NET] && !want[NS_IPC] && !want[NS_UTS])
        return usage("pin: ask for at least one of --user --net --ipc --uts");
    if (want[NS_USER] != (uid_spec != NULL) || want[NS_USER] != (gid_spec != NULL))
        return usage("pin: --user goes with both --uid-map and --gid-map");
    /* without a new uts namespace sethostname would rename the host */
    if (hostname && !want[NS_UTS]) return usage("pin: --hostname needs --uts");
    /* without a new net namespace it would be the host's loopback */
    if (lo_up && !want[NS_NET]) return usage("pin: --lo-up needs --net");
    if (hostname && (!*hostname || strlen(hostname) > 64)) return usage("pin: hostname must be 1-64 bytes");
    if (want[NS_USER]) {
        int rc = parse_idmap(uid_spec, "--uid-map", g_idmap_buf[0], sizeof g_idmap_buf[0]);
        if (rc) return rc;
        rc = parse_idmap(gid_spec, "--gid-map", g_idmap_buf[1], sizeof g_idmap_buf[1]);
        if (rc) return rc;
    }

    struct stat dst;
    if (stat(dir, &dst) < 0) {
        fail(errno, "stat %s", dir);
        return EXIT_FAILED;
    }
    if (!S_ISDIR(dst.st_mode)) {
        fail(ENOTDIR, "stat %s", dir);
        return EXIT_FAILED;
    }

    char path[NS_COUNT][PATH_MAX];
    bool created[NS_COUNT] = {false}, mounted[NS_COUNT] = {false};
    int flags = 0;
    /* check every target before touching any, so a refusal changes nothing */
    for (int k = 0; k < NS_COUNT; k++) {
        if (!want[k]) continue;
        flags |= NS_FLAG[k];
        if (join_path(path[k], sizeof path[k], dir, NS_NAME[k]) < 0) return EXIT_FAILED;
        bool mnt;
        if (is_mount_point(path[k], &dst, &mnt) < 0) {
            if (errno != ENOENT) {
                fail(errno, "statx %s", path[k]);
                return EXIT_FAILED;
            }
        } else if (mnt) {
            fail(EBUSY, "%s is already a mount", path[k]);
            return EXIT_ALREADY_PINNED;
        }
    }

    struct ns_child child = {0, -1};
    bool shm_made = false, shm_mounted = false;
    if (shm && mount_shm(shm, shm_bytes, &shm_made, &shm_mounted) < 0) goto undo;
    for (int k = 0; k < NS_COUNT; k++) {
        if (!want[k]) continue;
        int fd = open(path[k], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (fd >= 0) {
            close(fd);
            created[k] = true;
        } else if (errno != EEXIST) {
            fail(errno, "create %s", path[k]);
            goto undo;
        }
    }
    if (spawn_ns_child(flags, hostname, lo_up, &child) < 0) goto undo;
    if (want[NS_USER] && write_idmaps(child.pid, g_idmap_buf[0], g_idmap_buf[1]) < 0) goto undo;
    for (int k = 0; k < NS_COUNT; k++) {
        if (!want[k]) continue;
        char src[64];
        snprintf(src, sizeof src, "/proc/%d/ns/%s", (int)child.pid, NS_NAME[k]);
        if (mount(src, path[k], NULL, MS_BIND, NULL) < 0) {
            fail(errno, "bind %s onto %s", src, path[k]);
            goto undo;
        }
        mounted[k] = true;
    }
    release_ns_child(&child, false);

    printf("{");
    bool first = true;
    for (int k = 0; k < NS_COUNT; k++) {
        if (!want[k]) continue;
        printf("%s\"%s\":", first ? "" : ",", NS_NAME[k]);
        json_string(stdout, path[k]);
        first = false;
    }
    printf("}\n");
    return 0;

undo:
    release_ns_child(&child, true);
    for (int k = NS_COUNT - 1; k >= 0; k--) {
        if (mounted[k]) umount2(path[k], MNT_DETACH);
        if (created[k]) unlink(path[k]);
    }
    if (shm_mounted) umount2(shm, MNT_DETACH);
    if (shm_made) rmdir(shm);
    return EXIT_FAILED;
}

static int cmd_unpin(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else return usage("unpin: unexpected argument \"%s\"", argv[i]);
    }
    if (!dir || !*dir) return usage("unpin: --dir is required");
    int rc = 0;
    for (int k = 0; k < NS_COUNT; k++) {
        char path[PATH_MAX];
        if (join_path(path, sizeof path, dir, NS_NAME[k]) < 0) return EXIT_FAILED;
        /* a retried pin could in theory have stacked mounts; peel until none is left */
        for (int tries = 0; tries < 16; tries++) {
            if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
            if (errno != EINVAL && errno != ENOENT) rc = fail(errno, "umount %s", path);
            break;
        }
        if (unlink(path) < 0 && errno != ENOENT) rc = fail(errno, "remove %s", path);
    }
    if (rc < 0) return EXIT_FAILED;
    printf("{\"ok\":true}\n");
    return 0;
}

/* ---- sysctl ---- */

enum { SC_NET, SC_IPC, SC_UTS, SC_NONE };

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int write_all_once(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int err = errno;
    close(fd);
    if (n >= 0 && (size_t)n != len) err = EIO;
    errno = err;
    return n >= 0 && (size_t)n == len ? 0 : -1;
}

/* Host root may write most namespaced sysctls, but ipc sysctls of an ipc namespace owned by a child
 * user namespace only grant write to that namespace's root (the kernel compares the euid, not
 * capabilities), and their files are owned by it. So on EACCES retry with that owner as euid/egid. */
static int write_sysctl(const char *path, const char *key, const char *value) {
    if (write_all_once(path, value) == 0) return 0;
    if (errno != EACCES) return fail(errno, "write %s", key);
    struct stat st;
    if (stat(path, &st) < 0 || st.st_uid == 0) return fail(EACCES, "write %s", key);
    /* gid first: changing the euid away from 0 drops the capability to change the gid */
    if (setresgid(-1, st.st_gid, -1) < 0) return fail(errno, "write %s: setegid %u", key, (unsigned)st.st_gid);
    if (setresuid(-1, st.st_uid, -1) < 0) {
        int err = errno;
        setresgid(-1, 0, -1);
        return fail(err, "write %s: seteuid %u", key, (unsigned)st.st_uid);
    }
    int rc = write_all_once(path, value);
    int err = errno;
    /* back to euid 0, which also restores the effective capabilities, then egid */
    if (setresuid(-1, 0, -1) < 0 || setresgid(-1, 0, -1) < 0) return fail(errno, "restore euid/egid 0");
    if (rc < 0) return fail(err, "write %s as uid %u", key, (unsigned)st.st_uid);
    return 0;
}

/* Which namespace a sysctl lives in; SC_NONE for host-wide ones we must never write here. */
static int sysctl_ns(const char *key) {
    if (has_prefix(key, "net.")) return SC_NET;
    if (has_prefix(key, "kernel.shm") || has_prefix(key, "kernel.msg") || has_prefix(key, "kernel.sem") ||
        has_prefix(key, "fs.mqueue."))
        return SC_IPC;
    if (!strcmp(key, "kernel.hostname") || !strcmp(key, "kernel.domainname")) return SC_UTS;
    return SC_NONE;
}

static int cmd_sysctl(int argc, char **argv) {
    static const char *const ns_opt[] = {"--netns", "--ipcns", "--utsns"};
    static const int ns_flag[] = {CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS};
    const char *ns_file[3] = {NULL, NULL, NULL};
    int first_kv = argc;
    for (int i = 0; i < argc; i++) {
        int k;
        for (k = 0; k < 3; k++)
            if (!strcmp(argv[i], ns_opt[k])) break;
        if (k < 3 && i + 1 < argc) {
            ns_file[k] = argv[++i];
            continue;
        }
        if (argv[i][0] == '-') return usage("sysctl: unexpected argument \"%s\"", argv[i]);
        first_kv = i;
        break;
    }
    if (!ns_file[0] && !ns_file[1] && !ns_file[2]) return usage("sysctl: give at least one of --netns --ipcns --utsns");
    if (first_kv >= argc) return usage("sysctl: no KEY=VALUE given");

    /* validate everything before joining anything */
    for (int i = first_kv; i < argc; i++) {
        const char *kv = argv[i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) return usage("sysctl: want KEY=VALUE, got \"%s\"", kv);
        size_t klen = (size_t)(eq - kv);
        char key[256];
        if (klen >= sizeof key) return usage("sysctl: key too long");
        memcpy(key, kv, klen);
        key[klen] = '\0';
        if (strchr(key, '/') || strstr(key, "..") || key[0] == '.' || key[klen - 1] == '.')
            return usage("sysctl: bad key \"%s\"", key);
        int ns = sysctl_ns(key);
        if (ns == SC_NONE) return usage("sysctl: %s is not a namespaced sysctl", key);
        if (!ns_file[ns]) return usage("sysctl: %s needs %s", key, ns_opt[ns]);
    }

    /* single-threaded, so setns() of the whole process is allowed; it only lasts this run */
    for (int k = 0; k < 3; k++) {
        if (!ns_file[k]) continue;
        int fd = open(ns_file[k], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fail(errno, "open %s", ns_file[k]);
            return EXIT_FAILED;
        }
        if (setns(fd, ns_flag[k]) < 0) {
            int err = errno;
            close(fd);
            fail(err, "setns %s", ns_file[k]);
            return EXIT_FAILED;
        }
        close(fd);
    }
    /* /proc/sys resolves per-namespace tables by the opening task's namespaces, so after setns the
     * plain host /proc/sys paths reach the pinned namespaces. */
    for (int i = first_kv; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        char key[256], path[PATH_MAX];
        size_t klen = (size_t)(eq - argv[i]);
        memcpy(key, argv[i], klen);
        key[klen] = '\0';
        snprintf(path, sizeof path, "/proc/sys/%s", key);
        for (char *p = path + strlen("/proc/sys/"); *p; p++)
            if (*p == '.') *p = '/';
        if (write_sysctl(path, key, eq + 1) < 0) return EXIT_FAILED;
    }
    printf("{\"ok\":true}\n");
    return 0;
}

/* ---- idmapped mounts ---- */

/* Clones src as a detached mount, idmaps it with the user namespace behind userns_fd and attaches it
 * on dst. */
static int idmap_mount(int userns_fd, const char *src, const char *dst, bool recursive) {
    unsigned int rec = recursive ? AT_RECURSIVE : 0;
    int tree = nsh_open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (tree < 0) return fail(errno, "open_tree %s", src);
    struct nsh_mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = (uint64_t)userns_fd;
    if (nsh_mount_setattr(tree, "", AT_EMPTY_PATH | rec, &attr) < 0) {
        int err = errno;
        close(tree);
        return fail(err, "mount_setattr idmap %s", src);
    }
    if (nsh_move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        int err = errno;
        close(tree);
        return fail(err, "move_mount onto %s", dst);
    }
    close(tree);
    return 0;
}

static int cmd_idmap_mount(int argc, char **argv) {
    const char *userns = NULL, *src = NULL, *dst = NULL;
    bool recursive = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--recursive")) recursive = true;
        else if (!strcmp(a, "--userns") && has_value) userns = argv[++i];
        else if (!strcmp(a, "--src") && has_value) src = argv[++i];
        else if (!strcmp(a, "--dst") && has_value) dst = argv[++i];
        else return usage("idmap-mount: unexpected argument \"%s\"", a);
    }
    if (!userns || !src || !dst || !*userns || !*src || !*dst)
        return usage("idmap-mount: --userns, --src and --dst are required");
    struct stat st;
    if (stat(dst, &st) < 0) {
        fail(errno, "stat %s", dst);
        return EXIT_FAILED;
    }
    int fd = open(userns, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(errno, "open %s", userns);
        return EXIT_FAILED;
    }
    int rc = idmap_mount(fd, src, dst, recursive);
    close(fd);
    if (rc < 0) return EXIT_FAILED;
    printf("{\"ok\":true}\n");
    return 0;
}

/* ---- recursive read-only binds ---- */

static int cmd_ro_mount(int argc, char **argv) {
    const char *src = NULL, *dst = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--src") && has_value) src = argv[++i];
        else if (!strcmp(a, "--dst") && has_value) dst = argv[++i];
        else return usage("ro-mount: unexpected argument \"%s\"", a);
    }
    if (!src || !dst || !*src || !*dst) return usage("ro-mount: --src and --dst are required");
    int tree = nsh_open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) {
        fail(errno, "open_tree %s", src);
        return EXIT_FAILED;
    }
    struct nsh_mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY;
    attr.propagation = MS_PRIVATE;
    if (nsh_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0) {
        fail(errno, "mount_setattr rdonly %s", src);
        close(tree);
        return EXIT_FAILED;
    }
    if (nsh_move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        fail(errno, "move_mount onto %s", dst);
        close(tree);
        return EXIT_FAILED;
    }
    close(tree);
    printf("{\"ok\":true}\n");
    return 0;
}

/* ---- probe-idmap ---- */

#define PROBE_HOST_BASE 3000000000u /* any range works: nothing is written with these ids */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (type == FTW_DP) rmdir(path);
    else unlink(path);
    return 0;
}

/* Runs the probe steps; returns -1 when a feature is missing (reason in g_step/g_detail). */
static int probe_steps(const char *base, bool *idmap_ok, bool *overlay_ok, bool *idmapped_mounted,
                       bool *overlay_mounted) {
    char lower[PATH_MAX], upper[PATH_MAX], work[PATH_MAX], merged[PATH_MAX], idm[PATH_MAX], file[PATH_MAX];
    if (join_path(lower, sizeof lower, base, "lower") < 0 || join_path(upper, sizeof upper, base, "upper") < 0 ||
        join_path(work, sizeof work, base, "work") < 0 || join_path(merged, sizeof merged, base, "merged") < 0 ||
        join_path(idm, sizeof idm, base, "idmapped") < 0 || join_path(file, sizeof file, lower, "f") < 0)
        return -1;
    const char *dirs[] = {lower, upper, work, merged, idm};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        if (mkdir(dirs[i], 0755) < 0) return fail(errno, "mkdir %s", dirs[i]);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return fail(errno, "create %s", file);
    close(fd);
    if (chown(file, 0, 0) < 0) return fail(errno, "chown %s", file);

    struct ns_child child = {0, -1};
    if (spawn_ns_child(CLONE_NEWUSER, NULL, false, &child) < 0) {
        release_ns_child(&child, true);
        return -1;
    }
    char map[64];
    snprintf(map, sizeof map, "0 %u 65536\n", PROBE_HOST_BASE);
    int userns = -1;
    if (write_idmaps(child.pid, map, map) == 0) {
        char ns[64];
        snprintf(ns, sizeof ns, "/proc/%d/ns/user", (int)child.pid);
        userns = open(ns, O_RDONLY | O_CLOEXEC);
        if (userns < 0) fail(errno, "open %s", ns);
    }
    release_ns_child(&child, userns < 0);
    if (userns < 0) return -1;

    int rc = idmap_mount(userns, lower, idm, false);
    close(userns);
    if (rc < 0) return -1;
    *idmapped_mounted = true;
    struct stat st;
    char seen[PATH_MAX];
    if (join_path(seen, sizeof seen, idm, "f") < 0) return -1;
    if (stat(seen, &st) < 0) return fail(errno, "stat %s", seen);
    if (st.st_uid != PROBE_HOST_BASE) return fail_msg("ownership not remapped", "idmapped mount");
    *idmap_ok = true;

    char opts[4 * PATH_MAX + 64];
    for (const char *p = base; *p; p++)
        if (*p == ',' || *p == ':' || *p == '\\') return fail_msg("path has , : or \\", "overlay options");
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", idm, upper, work);
    if (mount("overlay", merged, "overlay", 0, opts) < 0) return fail(errno, "mount overlay over idmapped lowerdir");
    *overlay_mounted = true;
    if (join_path(seen, sizeof seen, merged, "f") < 0) return -1;
    if (stat(seen, &st) < 0) return fail(errno, "stat %s", seen);
    if (st.st_uid != PROBE_HOST_BASE) return fail_msg("lower ownership not remapped", "overlay");
    *overlay_ok = true;
    return 0;
}

static int cmd_probe_idmap(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else return usage("probe-idmap: unexpected argument \"%s\"", argv[i]);
    }
    if (!dir || !*dir) return usage("probe-idmap: --dir is required");
    char base[PATH_MAX];
    int n = snprintf(base, sizeof base, "%s/crisp-idmap-probe-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof base) {
        fail(ENAMETOOLONG, "probe dir in %s", dir);
        return EXIT_FAILED;
    }
    if (!mkdtemp(base)) {
        fail(errno, "mkdtemp in %s", dir);
        return EXIT_FAILED;
    }

    bool idmap_ok = false, overlay_ok = false, idm_mounted = false, ovl_mounted = false;
    probe_steps(base, &idmap_ok, &overlay_ok, &idm_mounted, &ovl_mounted);
    char reason[sizeof g_step + sizeof g_detail + 2] = "";
    if (g_step[0]) snprintf(reason, sizeof reason, "%s: %s", g_step, g_detail);
    g_step[0] = '\0';

    /* clean up; removal only after every mount is gone, and nftw never crosses a mount (FTW_MOUNT) */
    const char *mounts[2] = {ovl_mounted ? "merged" : NULL, idm_mounted ? "idmapped" : NULL};
    for (int i = 0; i < 2; i++) {
        char path[PATH_MAX];
        if (!mounts[i]) continue;
        if (join_path(path, sizeof path, base, mounts[i]) < 0) return EXIT_FAILED;
        if (umount2(path, MNT_DETACH) < 0) {
            fail(errno, "umount %s", path);
            return EXIT_FAILED;
        }
    }
    if (nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0) {
        fail(errno, "remove %s", base);
        return EXIT_FAILED;
    }
    if (access(base, F_OK) == 0) {
        fail(ENOTEMPTY, "remove %s", base);
        return EXIT_FAILED;
    }

    printf("{\"idmap\":%s,\"overlayOverIdmap\":%s,\"reason\":", idmap_ok ? "true" : "false",
           overlay_ok ? "true" : "false");
    json_string(stdout, reason);
    printf("}\n");
    return 0;
}

/* ---- pidns / pidns-stop ----
 * A pod with shareProcessNamespace needs a pid 1 that lives as long as the pod and reaps orphans.
 * Process tree while starting: helper -> starter (setns user, unshare pid) -> init (pid 1). The
 * starter keeps the init as its unreaped child until the helper has pinned the namespace, so the
 * init's pid cannot be reused meanwhile; when the starter exits the init is reparented to the host's
 * init (or a subreaper) and no longer depends on crispd. */

#define PIDINIT_DEFAULT_NAME "crisp-pidinit"
#define PIDNS_STOP_WAIT_MS 10000

enum { REPORT_STARTER, REPORT_INIT };

struct pidns_report {
    int who;
    int ok;
    pid_t pid; /* starter: the init's pid in the helper's pid namespace */
    char step[sizeof g_step];
    char detail[sizeof g_detail];
};

/* argv strings of this process, overwritten by the init so ps shows its name, not the helper's */
static char *g_argv_area;
static size_t g_argv_area_len;

static void send_report(int fd, int who, pid_t pid) {
    struct pidns_report r;
    memset(&r, 0, sizeof r);
    r.who = who;
    r.ok = g_step[0] == '\0';
    r.pid = pid;
    memcpy(r.step, g_step, sizeof r.step);
    memcpy(r.detail, g_detail, sizeof r.detail);
    /* one write below PIPE_BUF is atomic, so starter and init reports never interleave */
    while (write(fd, &r, sizeof r) < 0 && errno == EINTR) {
    }
}

static void close_fds_from(unsigned int first) {
    if (syscall(SYS_close_range, first, ~0U, 0) == 0) return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < (max > 0 ? max : 1024); fd++) close((int)fd);
}

static void set_process_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0); /* comm, truncated by the kernel to 15 bytes */
    if (!g_argv_area || g_argv_area_len < 2) return;
    size_t n = strlen(name);
    if (n > g_argv_area_len - 1) n = g_argv_area_len - 1;
    /* name first (it may live inside the area), then clear the rest so cmdline is just the name */
    memmove(g_argv_area, name, n);
    memset(g_argv_area + n, 0, g_argv_area_len - n);
}

static int drop_capabilities(void) {
    struct nsh_cap_header hdr = {NSH_CAP_VERSION_3, 0};
    struct nsh_cap_data data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) < 0) return fail(errno, "init: drop capabilities");
    return 0;
}

/* Everything the init sets up before it reports; the first failure is kept in g_step. */
static int pid_init_prepare(int *report_fd, const char *name, bool in_userns, sigset_t *wait_set) {
    if (setsid() < 0) return fail(errno, "init: setsid");
    if (chdir("/") < 0) return fail(errno, "init: chdir /");
    /* stdio must not stay on the helper's pipes: crispd waits for EOF on them */
    int keep = fcntl(*report_fd, F_DUPFD_CLOEXEC, 3);
    if (keep < 0) return fail(errno, "init: dup report pipe");
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) return fail(errno, "init: open /dev/null");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(null, fd) < 0) return fail(errno, "init: dup2 /dev/null");
    if (keep != 3 && dup3(keep, 3, O_CLOEXEC) < 0) return fail(errno, "init: dup report pipe");
    *report_fd = 3;
    close_fds_from(4);

    if (in_userns) {
        /* run as the pod's root (a mapped host id), not as host root seen as "nobody" */
        if (setgroups(0, NULL) < 0) return fail(errno, "init: setgroups in user namespace");
        if (setresgid(0, 0, 0) < 0) return fail(errno, "init: setresgid 0 in user namespace");
        if (setresuid(0, 0, 0) < 0) return fail(errno, "init: setresuid 0 in user namespace");
    }

    /* SIGTERM and SIGCHLD are blocked and taken with sigwaitinfo; the rest is ignored, so nothing
     * queues up on us (blocked signals would). glibc refuses its two internal signals; fine. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        sa.sa_handler = sig == SIGTERM || sig == SIGCHLD ? SIG_DFL : SIG_IGN;
        sigaction(sig, &sa, NULL);
    }
    sigemptyset(wait_set);
    sigaddset(wait_set, SIGTERM);
    sigaddset(wait_set, SIGCHLD);
    if (sigprocmask(SIG_SETMASK, wait_set, NULL) < 0) return fail(errno, "init: sigprocmask");

    set_process_name(name);
    /* Not dumpable: the init shares the host's mount namespace, so /proc/1/root seen from the pod
     * would be the host's "/". This limits /proc/<init>/{root,cwd,environ,mem} to host CAP_SYS_PTRACE
     * (the mm belongs to the host user namespace since the init never execs). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return fail(errno, "init: prctl dumpable");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return fail(errno, "init: prctl no_new_privs");
    return drop_capabilities();
}

/* pid 1 of the new namespace; never returns. */
static _Noreturn void run_pid_init(int report_fd, const char *name, bool in_userns) {
    sigset_t wait_set;
    int rc = pid_init_prepare(&report_fd, name, in_userns, &wait_set);
    send_report(report_fd, REPORT_INIT, getpid());
    close(report_fd);
    if (rc < 0) _exit(1);
    for (;;) {
        /* reap first: a SIGCHLD that arrives after this loop stays pending for sigwaitinfo */
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (sigwaitinfo(&wait_set, NULL) == SIGTERM) _exit(0);
    }
}

/* Between helper and init; never returns. Exits after the helper writes 'r' on hold_fd; on anything
 * else (failure, or the helper died) it kills and reaps the init, so nothing is left behind. */
static _Noreturn void run_pid_starter(int userns_fd, const char *userns, int report_fd, int hold_fd, const char *name) {
    pid_t init = -1;
    if (userns_fd >= 0 && setns(userns_fd, CLONE_NEWUSER) < 0) fail(errno, "setns user %s", userns);
    else if (unshare(CLONE_NEWPID) < 0) fail(errno, "unshare pid");
    else if ((init = fork()) < 0) fail(errno, "fork init");
    else if (init == 0) {
        close(hold_fd);
        run_pid_init(report_fd, name, userns_fd >= 0);
    }
    send_report(report_fd, REPORT_STARTER, init);
    close(report_fd);
    if (init < 0) _exit(1);
    char c = 0;
    while (read(hold_fd, &c, 1) < 0 && errno == EINTR) {
    }
    if (c != 'r') {
        kill(init, SIGKILL);
        while (waitpid(init, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    _exit(0);
}

/* Reads the starter's and the init's reports; returns the init's pid, or -1 (cause in g_step). */
static pid_t read_pidns_reports(int fd) {
    struct pidns_report got[2];
    bool have[2] = {false, false};
    for (;;) {
        struct pidns_report r;
        ssize_t n = read_full(fd, &r, sizeof r);
        if (n < 0) return fail(errno, "read pid init report");
        if (n == 0) break;
        if (n != (ssize_t)sizeof r || (r.who != REPORT_STARTER && r.who != REPORT_INIT))
            return fail_msg("garbled report", "pid init");
        r.step[sizeof r.step - 1] = '\0';
        r.detail[sizeof r.detail - 1] = '\0';
        got[r.who] = r;
        have[r.who] = true;
    }
    if (!have[REPORT_STARTER]) return fail_msg("exited before reporting", "pid namespace starter");
    if (!got[REPORT_STARTER].ok) return fail_msg(got[REPORT_STARTER].detail, "%s", got[REPORT_STARTER].step);
    if (!have[REPORT_INIT]) return fail_msg("exited before reporting", "pid init");
    if (!got[REPORT_INIT].ok) return fail_msg(got[REPORT_INIT].detail, "%s", got[REPORT_INIT].step);
    return got[REPORT_STARTER].pid;
}

static bool valid_init_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64) return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p <= ' ' || *p > '~') return false;
    return true;
}

static int cmd_pidns(int argc, char **argv) {
    const char *dir = NULL, *userns = NULL, *name = PIDINIT_DEFAULT_NAME;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--dir") && has_value) dir = argv[++i];
        else if (!strcmp(a, "--userns") && has_value) userns = argv[++i];
        else if (!strcmp(a, "--name") && has_value) name = argv[++i];
        else return usage("pidns: unexpected argument \"%s\"", a);
    }
    if (!dir || !*dir) return usage("pidns: --dir is required");
    if (userns && !*userns) return usage("pidns: --userns is empty");
    if (!valid_init_name(name)) return usage("pidns: --name must be 1-64 printable bytes without spaces");
    /* the init overwrites argv, where name may live */
    char name_buf[65];
    snprintf(name_buf, sizeof name_buf, "%s", name);

    struct stat dst;
    if (stat(dir, &dst) < 0) {
        fail(errno, "stat %s", dir);
        return EXIT_FAILED;
    }
    if (!S_ISDIR(dst.st_mode)) {
        fail(ENOTDIR, "stat %s", dir);
        return EXIT_FAILED;
    }
    char path[PATH_MAX];
    if (join_path(path, sizeof path, dir, "pid") < 0) return EXIT_FAILED;
    bool mnt;
    if (is_mount_point(path, &dst, &mnt) < 0) {
        if (errno != ENOENT) {
            fail(errno, "statx %s", path);
            return EXIT_FAILED;
        }
    } else if (mnt) {
        fail(EBUSY, "%s is already a mount", path);
        return EXIT_ALREADY_PINNED;
    }

    int userns_fd = -1;
    if (userns && (userns_fd = open(userns, O_RDONLY | O_CLOEXEC)) < 0) {
        fail(errno, "open %s", userns);
        return EXIT_FAILED;
    }
    bool created = false, mounted = false;
    int report[2] = {-1, -1}, hold[2] = {-1, -1};
    pid_t starter = -1, init = -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd >= 0) {
        close(fd);
        created = true;
    } else if (errno != EEXIST) {
        fail(errno, "create %s", path);
        goto undo;
    }
    if (pipe2(report, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0) {
        fail(errno, "pipe");
        goto undo;
    }
    fflush(stdout);
    starter = fork();
    if (starter < 0) {
        fail(errno, "fork");
        goto undo;
    }
    if (starter == 0) {
        close(report[0]);
        close(hold[1]);
        run_pid_starter(userns_fd, userns, report[1], hold[0], name_buf);
    }
    close(report[1]);
    close(hold[0]);
    report[1] = hold[0] = -1;
    init = read_pidns_reports(report[0]);
    if (init < 0) goto undo;

    char src[64];
    snprintf(src, sizeof src, "/proc/%d/ns/pid", (int)init);
    if (mount(src, path, NULL, MS_BIND, NULL) < 0) {
        fail(errno, "bind %s onto %s", src, path);
        goto undo;
    }
    mounted = true;
    if (write(hold[1], "r", 1) != 1) {
        fail(errno, "release pid namespace starter");
        goto undo;
    }
    close(hold[1]);
    close(report[0]);
    while (waitpid(starter, NULL, 0) < 0 && errno == EINTR) {
    }
    if (userns_fd >= 0) close(userns_fd);

    printf("{\"pid\":%d,\"path\":", (int)init);
    json_string(stdout, path);
    printf("}\n");
    return 0;

undo:
    /* closing hold without 'r' makes the starter kill and reap the init */
    for (int k = 0; k < 2; k++) {
        if (report[k] >= 0) close(report[k]);
        if (hold[k] >= 0) close(hold[k]);
    }
    if (starter > 0)
        while (waitpid(starter, NULL, 0) < 0 && errno == EINTR) {
        }
    if (userns_fd >= 0) close(userns_fd);
    if (mounted) umount2(path, MNT_DETACH);
    if (created) unlink(path);
    return EXIT_FAILED;
}

/* The pid of `pid` in its own (innermost) pid namespace: the last field of NSpid in its status. */
static long pid_in_own_ns(pid_t pid) {
    char file[64], buf[4096];
    snprintf(file, sizeof file, "/proc/%d/status", (int)pid);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read_full(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0) {
        errno = err;
        return -1;
    }
    buf[n] = '\0';
    char *line = strstr(buf, "\nNSpid:");
    if (!line) {
        errno = ENODATA;
        return -1;
    }
    long last = -1;
    for (char *p = line + strlen("\nNSpid:"); *p && *p != '\n';) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        last = v;
        p = end;
    }
    if (last < 0) errno = ENODATA;
    return last;
}

/* Kills `pid` if it is pid 1 of the namespace pinned at path and waits until it has exited (the
 * kernel kills and reaps every other member of the namespace before the init counts as exited).
 * Returns 1 when it killed, 0 when there was nothing to kill, -1 on failure. */
static int kill_pid_init(pid_t pid, const char *path) {
    struct stat pin;
    if (stat(path, &pin) < 0) {
        if (errno == ENOENT) return 0;
        return fail(errno, "stat %s", path);
    }
    /* the pidfd pins the identity: a pid reused after the checks below cannot be signalled */
    int pidfd = nsh_pidfd_open(pid);
    if (pidfd < 0) {
        if (errno == ESRCH) return 0;
        return fail(errno, "pidfd_open %d", (int)pid);
    }
    char proc_ns[64];
    snprintf(proc_ns, sizeof proc_ns, "/proc/%d/ns/pid", (int)pid);
    struct stat ns;
    int rc = 0;
    if (stat(proc_ns, &ns) < 0) {
        if (errno != ENOENT && errno != ESRCH) rc = fail(errno, "stat %s", proc_ns);
    } else if (ns.st_dev == pin.st_dev && ns.st_ino == pin.st_ino) {
        long inner = pid_in_own_ns(pid);
        if (inner < 0 && errno != ENOENT) rc = fail(errno, "read /proc/%d/status", (int)pid);
        else if (inner >= 0 && inner != 1) rc = fail(EINVAL, "pid %d is in %s but is not its init", (int)pid, path);
        else if (inner == 1) {
            if (nsh_pidfd_send_signal(pidfd, SIGKILL) < 0) {
                if (errno != ESRCH) rc = fail(errno, "kill %d", (int)pid);
            } else {
                rc = 1;
            }
            struct pollfd p = {.fd = pidfd, .events = POLLIN};
            int n;
            while ((n = poll(&p, 1, PIDNS_STOP_WAIT_MS)) < 0 && errno == EINTR) {
            }
            if (n < 0) rc = fail(errno, "wait for pid %d to exit", (int)pid);
            else if (n == 0) rc = fail(ETIMEDOUT, "wait for pid %d to exit", (int)pid);
        }
    }
    close(pidfd);
    return rc;
}

static int cmd_pidns_stop(int argc, char **argv) {
    const char *dir = NULL, *pid_arg = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--pid") && i + 1 < argc) pid_arg = argv[++i];
        else return usage("pidns-stop: unexpected argument \"%s\"", argv[i]);
    }
    if (!dir || !*dir || !pid_arg) return usage("pidns-stop: --dir and --pid are required");
    char *end;
    errno = 0;
    long pid = strtol(pid_arg, &end, 10);
    if (errno || end == pid_arg || *end || pid <= 1 || pid > INT_MAX)
        return usage("pidns-stop: --pid must be a pid above 1, got \"%s\"", pid_arg);
    char path[PATH_MAX];
    if (join_path(path, sizeof path, dir, "pid") < 0) return EXIT_FAILED;

    int killed = kill_pid_init((pid_t)pid, path);
    if (killed < 0) return EXIT_FAILED;
    for (int tries = 0; tries < 16; tries++) {
        if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
        if (errno != EINVAL && errno != ENOENT) {
            fail(errno, "umount %s", path);
            return EXIT_FAILED;
        }
        break;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        fail(errno, "remove %s", path);
        return EXIT_FAILED;
    }
    printf("{\"ok\":true,\"killed\":%s}\n", killed ? "true" : "false");
    return 0;
}

/* ---- portfwd ---- */

#define PORTFWD_BUF 65536

static int write_full(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Connects to addr:port (a literal); returns the socket, or -1 with errno set. */
static int connect_literal(const char *addr, int port) {
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof *v6;
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    while (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Copies stdin -> sock and sock -> stdout until both have ended. A half-close travels on: EOF on
 * stdin becomes shutdown(SHUT_WR), EOF from the socket closes stdout. */
static int relay(int sock) {
    static char buf[PORTFWD_BUF];
    bool in_open = true, out_open = true;
    while (in_open || out_open) {
        struct pollfd p[2];
        int n = 0, at_in = -1, at_out = -1;
        if (in_open) {
            p[n] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
            at_in = n++;
        }
        if (out_open) {
            p[n] = (struct pollfd){.fd = sock, .events = POLLIN};
            at_out = n++;
        }
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            return fail(errno, "poll");
        }
        if (at_in >= 0 && p[at_in].revents) {
            ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
            if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
                /* try again */
            } else if (r <= 0) {
                in_open = false;
                shutdown(sock, SHUT_WR);
            } else if (write_full(sock, buf, (size_t)r) < 0) {
                /* the pod closed or reset its end: nothing more goes that way */
                if (errno != EPIPE && errno != ECONNRESET) return fail(errno, "write to port");
                in_open = false;
            }
        }
        if (at_out >= 0 && p[at_out].revents) {
            ssize_t r = read(sock, buf, sizeof buf);
            if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
                /* try again */
            } else if (r < 0 && errno != ECONNRESET) {
                return fail(errno, "read from port");
            } else if (r <= 0) {
                /* EOF, or a reset: the pod has finished talking either way */
                out_open = false;
                close(STDOUT_FILENO);
            } else if (write_full(STDOUT_FILENO, buf, (size_t)r) < 0) {
                /* crispd closed our stdout: the client is gone, nothing left to do */
                return 0;
            }
        }
    }
    return 0;
}

static int cmd_portfwd(int argc, char **argv) {
    const char *netns = NULL, *port_arg = NULL, *host = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--netns") && i + 1 < argc) netns = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc) port_arg = argv[++i];
        else if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else return usage("portfwd: unexpected argument \"%s\"", argv[i]);
    }
    if (!netns || !*netns || !port_arg) return usage("portfwd: --netns and --port are required");
    char *end;
    errno = 0;
    long port = strtol(port_arg, &end, 10);
    if (errno || end == port_arg || *end || port < 1 || port > 65535)
        return usage("portfwd: --port must be 1-65535, got \"%s\"", port_arg);
    if (host) {
        unsigned char probe[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, host, probe) != 1 && inet_pton(AF_INET6, host, probe) != 1)
            return usage("portfwd: --host must be an IPv4 or IPv6 address, got \"%s\"", host);
    }
    /* a relay nobody reads any more must not outlive crispd */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        fail(errno, "prctl PR_SET_PDEATHSIG");
        return EXIT_FAILED;
    }
    if (getppid() == 1) {
        fail(ESRCH, "parent exited");
        return EXIT_FAILED;
    }
    int fd = open(netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(errno, "open %s", netns);
        return EXIT_FAILED;
    }
    if (setns(fd, CLONE_NEWNET) < 0) {
        int err = errno;
        close(fd);
        fail(err, "setns %s", netns);
        return EXIT_FAILED;
    }
    close(fd);
    int sock;
    if (host) {
        sock = connect_literal(host, (int)port);
        if (sock < 0) {
            fail(errno, "connect %s port %ld", host, port);
            return EXIT_FAILED;
        }
    } else {
        sock = connect_literal("127.0.0.1", (int)port);
        if (sock < 0) {
            int err4 = errno;
            sock = connect_literal("::1", (int)port);
            if (sock < 0) {
                /* report the IPv4 failure: the IPv6 one is usually just "no ::1 in this netns" */
                fail(err4, "connect localhost port %ld", port);
                return EXIT_FAILED;
            }
        }
    }
    int rc = relay(sock);
    close(sock);
    return rc < 0 ? EXIT_FAILED : 0;
}

/* ---- main ---- */

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    /* the argv strings are contiguous in memory; the pid init reuses them for its name */
    if (argc > 0 && argv[0]) {
        g_argv_area = argv[0];
        g_argv_area_len = strlen(argv[0]) + 1;
        for (int i = 1; i < argc && argv[i] == argv[0] + g_argv_area_len; i++) g_argv_area_len += strlen(argv[i]) + 1;
    }
    if (argc < 2) return usage("crisp-nshelper pin|unpin|sysctl|idmap-mount|ro-mount|probe-idmap|pidns|pidns-stop|portfwd [options]");
    const char *cmd = argv[1];
    int rest = argc - 2;
    char **args = argv + 2;
    int rc;
    if (!strcmp(cmd, "pin")) rc = cmd_pin(rest, args);
    else if (!strcmp(cmd, "unpin")) rc = cmd_unpin(rest, args);
    else if (!strcmp(cmd, "sysctl")) rc = cmd_sysctl(rest, args);
    else if (!strcmp(cmd, "idmap-mount")) rc = cmd_idmap_mount(rest, args);
    else if (!strcmp(cmd, "ro-mount")) rc = cmd_ro_mount(rest, args);
    else if (!strcmp(cmd, "probe-idmap")) rc = cmd_probe_idmap(rest, args);
    else if (!strcmp(cmd, "pidns")) rc = cmd_pidns(rest, args);
    else if (!strcmp(cmd, "pidns-stop")) rc = cmd_pidns_stop(rest, args);
    else if (!strcmp(cmd, "portfwd")) rc = cmd_portfwd(rest, args);
    else return usage("unknown subcommand \"%s\"", cmd);
    if (rc == EXIT_FAILED || rc == EXIT_ALREADY_PINNED) fprintf(stderr, "crisp-nshelper: %s: %s\n", g_step[0] ? g_step : "failed", g_step[0] ? g_detail : "unknown error");
    if (rc == 0 && fflush(stdout) != 0) {
        fprintf(stderr, "crisp-nshelper: write stdout: %s\n", strerror(errno));
        return 1;
    }
    return rc;
}
