/*
 * crisp-logger: writes one container's stdout/stderr to its CRI log file. containerd's runc shim
 * starts it for a task created with stdout "binary:///ABS/crisp-logger?log=..&pid=..&ack=..", so the
 * log keeps being written while crispd is down or restarting (the shim, not crispd, is its parent).
 *
 * Shim contract (containerd 1.6 pkg/process/io.go, runtime/v2/runc/platform.go):
 *   fd 3 = container stdout (read end), fd 4 = container stderr (read end), fd 5 = write end of a
 *   pipe the shim reads until EOF before it starts the container; env CONTAINER_ID and
 *   CONTAINER_NAMESPACE and nothing else (no PATH); cwd is the bundle dir; fds 0-2 are /dev/null.
 *   Every query key k with value v becomes the two arguments "k" "v", in random (Go map) order, so
 *   the arguments are read as order-free key/value pairs.
 *
 * Arguments (pairs, any order, each key once):
 *   log PATH   CRI log file, opened O_WRONLY|O_APPEND|O_CREAT mode 0640 (its dir must exist)
 *   pid PATH   our pid is written here (tmp + rename) before fd 5 is closed; removed on exit
 *   ack PATH   state as one JSON line (tmp + rename), written at start, after every SIGUSR1 and
 *              at exit: {"pid":N,"reopens":N,"error":"","droppedBytes":N,"writeErrors":N,"exited":B}
 *   max BYTES  optional; the log file starts over (truncated) once it grows past BYTES
 *   tty 0|1    optional; 1 for a terminal task: the shim then sends the console on fd 3 and never
 *              closes the write end of fd 4, so fd 4 is closed unread and only fd 3's EOF ends us
 *   stdout FIFO, stderr FIFO
 *              optional, together: FIFO mode for tasks with stdin (the shim connects stdin only
 *              for plain FIFO stdio, never with binary://). crispd starts us detached, we open both
 *              FIFOs for reading before the ack is written, and the shim writes the container's
 *              output into them; EOF on both (the shim closes them after the exit) ends us. fd 5,
 *              if open, is closed once the ack is written, as in shim mode (crispd waits on it).
 *   All paths absolute. The ack file exists once fd 5 is closed, so the caller can tell a logger
 *   that started from one that failed (the shim starts the container either way).
 *
 * Output: "<RFC3339Nano UTC> <stdout|stderr> <F|P> <message>\n" per record, message without its
 * newline; a line longer than 16 KiB becomes 16 KiB "P" records and a last "F" record; an unfinished
 * line followed by 100 ms without output is written as a "P" record (as CRI-O's conmon does), so
 * attach and log readers see prompts; a partial line at EOF or at SIGTERM is written as "F" (an
 * empty "F" ends a line already written as "P"), so every line ends with an F record.
 * Timestamps never go backwards.
 *
 * Signals: SIGUSR1 reopens the log path (after a rename by kubelet's rotation) and then rewrites the
 * ack with reopens+1 (and "error" set if the open failed; the old file is then kept). SIGTERM/SIGINT
 * (the shim sends SIGTERM on task delete, right after closing its pipe ends): read what is readable
 * for at most 2 s, flush, exit 0. SIGPIPE, SIGHUP, SIGUSR2 are ignored.
 *
 * A failed write (disk full) drops that data and counts it; the pipes keep being drained so the
 * container never blocks on logging.
 *
 * Exit: 0 after EOF on both streams or SIGTERM; 1 when setup fails (log, pid, ack or FIFO); 2 on bad
 * arguments. Diagnostics: "crisp-logger[<CONTAINER_ID>]: <step>: <detail>" on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORD 16384 /* kubelet's CRI log line limit: longer lines are split into P records */
#define READ_CHUNK 65536
#define OUT_CAP (256 * 1024)
#define DRAIN_MS 2000
#define PARTIAL_FLUSH_MS 100 /* an unfinished line is written as a P record after this much quiet */
#define FD_STDOUT 3
#define FD_STDERR 4
#define FD_READY 5

#ifndef SYS_close_range
#define SYS_close_range 436 /* the same on every architecture since 5.9 */
#endif

struct stream {
  int fd; /* -1 once at EOF */
  const char *name;
  size_t pend_len;
  bool line_open; /* a P record went out for a line whose end has not come yet */
  char pend[MAX_RECORD]; /* an unfinished line, never more than one record */
};

static uint64_t g_max_bytes; /* 0: no bound */
static uint64_t g_log_size;
static struct stream g_streams[2] = {{.fd = -1, .name = "stdout"}, {.fd = -1, .name = "stderr"}};
static const char *g_log_path, *g_pid_path, *g_ack_path;
static const char *g_fifo_paths[2]; /* FIFO mode: stdout and stderr FIFOs instead of fds 3 and 4 */
static bool g_tty;
static const char *g_id = "";

static int g_log_fd = -1;
static char g_out[OUT_CAP];
static size_t g_out_len;
static char g_read_buf[READ_CHUNK];
static char g_ts[48];
static size_t g_ts_len;
static struct timespec g_last_ts;

static uint64_t g_reopens, g_dropped_bytes, g_write_errors;
static int g_last_write_errno;
static char g_reopen_error[160];

static volatile sig_atomic_t g_want_reopen, g_want_stop;
static sigset_t g_wait_mask; /* the mask during ppoll: our signals unblocked */

static void report(const char *step, const char *fmt, ...) {
  char detail[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  fprintf(stderr, "crisp-logger[%s]: %s: %s\n", g_id, step, detail);
}

static int usage(const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  fprintf(stderr, "crisp-logger[%s]: usage: %s (args: log PATH pid PATH ack PATH [tty 0|1 | stdout FIFO stderr FIFO])\n", g_id, what);
  return 2;
}

/* ---- arguments ---- */

static int set_path(const char **slot, const char *key, const char *value) {
  if (*slot) return usage("%s given twice", key);
  if (value[0] != '/') return usage("%s must be an absolute path, got \"%s\"", key, value);
  if (strlen(value) > PATH_MAX - 32) return usage("%s is too long", key);
  *slot = value;
  return 0;
}

static int parse_args(int argc, char **argv) {
  bool tty_seen = false;
  if ((argc - 1) % 2 != 0) return usage("arguments must be key/value pairs, got %d", argc - 1);
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    int rc = 0;
    if (strcmp(k, "log") == 0) rc = set_path(&g_log_path, k, v);
    else if (strcmp(k, "pid") == 0) rc = set_path(&g_pid_path, k, v);
    else if (strcmp(k, "ack") == 0) rc = set_path(&g_ack_path, k, v);
    else if (strcmp(k, "stdout") == 0) rc = set_path(&g_fifo_paths[0], k, v);
    else if (strcmp(k, "stderr") == 0) rc = set_path(&g_fifo_paths[1], k, v);
    else if (strcmp(k, "tty") == 0) {
      if (tty_seen) return usage("tty given twice");
      if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) return usage("tty must be 0 or 1, got \"%s\"", v);
      tty_seen = true;
      g_tty = v[0] == '1';
    } else if (strcmp(k, "max") == 0) {
      char *end = NULL;
      errno = 0;
      unsigned long long n = strtoull(v, &end, 10);
      if (errno || !end || *end || v[0] < '1' || v[0] > '9') return usage("max must be a positive byte count, got \"%s\"", v);
      g_max_bytes = (uint64_t)n;
    } else
      return usage("unknown key \"%s\"", k);
    if (rc) return rc;
  }
  if (!g_log_path || !g_pid_path || !g_ack_path) return usage("log, pid and ack are required");
  if (!g_fifo_paths[0] != !g_fifo_paths[1]) return usage("stdout and stderr go together");
  if (g_fifo_paths[0] && g_tty) return usage("tty 1 is for the shim's fds, not for FIFOs");
  return 0;
}

/* ---- small file helpers ---- */

static bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* The shim's fds are close-on-exec, but whatever started containerd may have leaked some into it;
 * a long-lived logger holding a stranger's pipe end would keep that pipe from ever reaching EOF. */
static void close_fds_from(unsigned int first) {
  if (syscall(SYS_close_range, first, ~0U, 0) == 0) return;
  for (int fd = (int)first; fd < 1024; fd++) close(fd);
}

/* Writes path via a sibling temp file and rename, so a reader never sees half a file. */
static int write_atomic(const char *path, const char *data, const char *what) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0640);
  if (fd < 0) {
    report(what, "open %s: %s", tmp, strerror(errno));
    return -1;
  }
  size_t len = strlen(data), off = 0;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      report(what, "write %s: %s", tmp, n < 0 ? strerror(errno) : "short write");
      close(fd);
      unlink(tmp);
      return -1;
    }
    off += (size_t)n;
  }
  if (close(fd) != 0) {
    report(what, "close %s: %s", tmp, strerror(errno));
    unlink(tmp);
    return -1;
  }
  if (rename(tmp, path) != 0) {
    report(what, "rename to %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

static void json_escape(char *out, size_t size, const char *s) {
  size_t o = 0;
  for (; *s && o + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
}

static int write_ack(bool exited) {
  char err[sizeof g_reopen_error * 6 + 1], line[sizeof err + 256];
  json_escape(err, sizeof err, g_reopen_error);
  snprintf(line, sizeof line,
           "{\"pid\":%d,\"reopens\":%" PRIu64 ",\"error\":\"%s\",\"droppedBytes\":%" PRIu64
           ",\"writeErrors\":%" PRIu64 ",\"exited\":%s}\n",
           (int)getpid(), g_reopens, err, g_dropped_bytes, g_write_errors, exited ? "true" : "false");
  return write_atomic(g_ack_path, line, "write ack");
}

/* True when the pidfile still names us: a later logger may own the path by now. */
static bool pidfile_is_ours(void) {
  char buf[32];
  int fd = open(g_pid_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return strtol(buf, NULL, 10) == (long)getpid();
}

/* FIFO mode: a non-blocking read end opens at once, before the shim has opened its write end, and
 * poll reports neither data nor hang-up on a FIFO that never had a writer: so the logger can be
 * ready before Tasks.Create and still see EOF only when the shim closes its ends at the exit. */
static int open_fifos(void) {
  for (int i = 0; i < 2; i++) {
    int fd = open(g_fifo_paths[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      report("open fifo", "%s: %s", g_fifo_paths[i], strerror(errno));
      return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
      report("open fifo", "%s: not a FIFO", g_fifo_paths[i]);
      close(fd);
      return -1;
    }
    g_streams[i].fd = fd;
  }
  return 0;
}

/* O_NOFOLLOW: a symlink planted at the log path must not redirect a container's output elsewhere. */
static int open_log(void) {
  int fd = open(g_log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0640);
  struct stat st;
  if (fd >= 0) g_log_size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
  return fd;
}

/* With "max": a file past that size starts over (attach-only output of a container without a log
 * path must not grow without bound; readers notice the shrink and read from the start). */
static void bound_log_size(size_t written) {
  g_log_size += written;
  if (!g_max_bytes || g_log_size <= g_max_bytes) return;
  if (ftruncate(g_log_fd, 0) == 0) g_log_size = 0;
}

/* ---- records ---- */

/* Go's time.RFC3339Nano in UTC: fraction without trailing zeros, none at all for whole seconds. */
static void stamp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec < g_last_ts.tv_sec || (ts.tv_sec == g_last_ts.tv_sec && ts.tv_nsec < g_last_ts.tv_nsec))
    ts = g_last_ts; /* a clock step back must not reorder the log for readers using --since-time */
  g_last_ts = ts;
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(g_ts, sizeof g_ts, "%Y-%m-%dT%H:%M:%S", &tm);
  if (ts.tv_nsec != 0) {
    char frac[16];
    int len = snprintf(frac, sizeof frac, ".%09ld", (long)ts.tv_nsec);
    while (frac[len - 1] == '0') len--;
    memcpy(g_ts + n, frac, (size_t)len);
    n += (size_t)len;
  }
  g_ts[n++] = 'Z';
  g_ts_len = n;
}

static void out_flush(void) {
  size_t off = 0;
  while (off < g_out_len) {
    ssize_t n = write(g_log_fd, g_out + off, g_out_len - off);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int err = n < 0 ? errno : EIO;
    g_write_errors++;
    g_dropped_bytes += g_out_len - off;
    if (err != g_last_write_errno) report("write log", "%s (dropping output until writes work again)", strerror(err));
    g_last_write_errno = err;
    g_out_len = 0;
    return;
  }
  if (off > 0 && g_last_write_errno != 0) {
    report("write log", "works again after dropping %" PRIu64 " bytes", g_dropped_bytes);
    g_last_write_errno = 0;
  }
  bound_log_size(off);
  g_out_len = 0;
}

static void emit(struct stream *s, char tag, const char *msg, size_t len) {
  s->line_open = tag == 'P';
  size_t need = g_ts_len + 1 + 6 + 3 + len + 1;
  if (g_out_len + need > OUT_CAP) out_flush();
  char *o = g_out + g_out_len;
  memcpy(o, g_ts, g_ts_len);
  o += g_ts_len;
  *o++ = ' ';
  memcpy(o, s->name, 6);
  o += 6;
  *o++ = ' ';
  *o++ = tag;
  *o++ = ' ';
  memcpy(o, msg, len);
  o += len;
  *o++ = '\n';
  g_out_len = (size_t)(o - g_out);
}

/* Splits a chunk into records; an unfinished line waits in s->pend. A P record is written only
 * when more than MAX_RECORD bytes have no newline, so a line of exactly MAX_RECORD stays one F. */
static void feed(struct stream *s, const char *p, size_t len) {
  while (len > 0) {
    const char *nl = memchr(p, '\n', len);
    size_t seg = nl ? (size_t)(nl - p) : len;
    if (nl && s->pend_len == 0 && seg <= MAX_RECORD) {
      emit(s, 'F', p, seg);
    } else {
      const char *q = p;
      size_t rest = seg;
      while (rest > 0) {
        if (s->pend_len == MAX_RECORD) {
          emit(s, 'P', s->pend, s->pend_len);
          s->pend_len = 0;
        }
        size_t take = rest < MAX_RECORD - s->pend_len ? rest : MAX_RECORD - s->pend_len;
        memcpy(s->pend + s->pend_len, q, take);
        s->pend_len += take;
        q += take;
        rest -= take;
      }
      if (nl) {
        emit(s, 'F', s->pend, s->pend_len);
        s->pend_len = 0;
      }
    }
    size_t used = seg + (nl ? 1 : 0);
    p += used;
    len -= used;
  }
}

/* At EOF: the unfinished line ends here (an empty F closes one whose start went out as P). */
static void flush_partial(struct stream *s) {
  if (s->pend_len == 0 && !s->line_open) return;
  stamp_now();
  emit(s, 'F', s->pend, s->pend_len);
  s->pend_len = 0;
}

static void close_stream(struct stream *s) {
  flush_partial(s);
  close(s->fd);
  s->fd = -1;
}

/* One read per poll wake-up keeps the two streams fair and never blocks (poll said readable). */
static void read_once(struct stream *s) {
  ssize_t n = read(s->fd, g_read_buf, sizeof g_read_buf);
  if (n > 0) {
    stamp_now();
    feed(s, g_read_buf, (size_t)n);
    return;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n < 0) report("read", "%s: %s", s->name, strerror(errno));
  close_stream(s);
}

static int fill_pollfds(struct pollfd *pfds, struct stream **map) {
  int n = 0;
  for (int i = 0; i < 2; i++) {
    if (g_streams[i].fd < 0) continue;
    pfds[n] = (struct pollfd){.fd = g_streams[i].fd, .events = POLLIN};
    map[n++] = &g_streams[i];
  }
  return n;
}

static void handle_ready(struct pollfd *pfds, struct stream **map, int n) {
  for (int i = 0; i < n; i++) {
    if (pfds[i].revents & POLLNVAL) {
      map[i]->fd = -1; /* not ours to close */
      flush_partial(map[i]);
    } else if (pfds[i].revents) {
      read_once(map[i]);
    }
  }
  out_flush();
}

/* ---- lifecycle ---- */

static void reopen_log(void) {
  g_reopens++;
  int fd = open_log();
  if (fd < 0) {
    snprintf(g_reopen_error, sizeof g_reopen_error, "open: %s", strerror(errno));
    report("reopen", "%s: %s (still writing to the old file)", g_log_path, strerror(errno));
    return;
  }
  close(g_log_fd);
  g_log_fd = fd;
  g_reopen_error[0] = '\0';
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After SIGTERM: take what is already in the pipes (the shim closed its ends first), bounded in
 * time because a still-running writer could keep them readable forever. */
static void drain(void) {
  int64_t deadline = now_ms() + DRAIN_MS;
  struct pollfd pfds[2];
  struct stream *map[2];
  while (now_ms() < deadline) {
    int n = fill_pollfds(pfds, map);
    if (n == 0) break;
    if (poll(pfds, (nfds_t)n, 0) <= 0) break;
    handle_ready(pfds, map, n);
  }
}

static void flush_partials(void) {
  for (int i = 0; i < 2; i++) {
    struct stream *s = &g_streams[i];
    if (s->pend_len == 0) continue;
    stamp_now();
    emit(s, 'P', s->pend, s->pend_len);
    s->pend_len = 0;
  }
  out_flush();
}

static void run(void) {
  struct pollfd pfds[2];
  struct stream *map[2];
  for (;;) {
    if (g_want_stop) {
      drain();
      return;
    }
    if (g_want_reopen) {
      g_want_reopen = 0;
      reopen_log();
      write_ack(false);
    }
    int n = fill_pollfds(pfds, map);
    if (n == 0) return;
    /* An unfinished line waits only briefly for the rest of it (a prompt, `echo -n`): then it is
     * written as a "P" record, as CRI-O's conmon does, so log readers and attach see it. */
    bool pending = g_streams[0].pend_len > 0 || g_streams[1].pend_len > 0;
    const struct timespec partial_wait = {.tv_nsec = PARTIAL_FLUSH_MS * 1000 * 1000};
    /* signals stay blocked outside ppoll, so a flag set just before it is never slept over */
    int ready = ppoll(pfds, (nfds_t)n, pending ? &partial_wait : NULL, &g_wait_mask);
    if (ready < 0) {
      if (errno != EINTR) {
        report("poll", "%s", strerror(errno));
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
      }
      continue;
    }
    if (ready == 0) {
      flush_partials();
      continue;
    }
    handle_ready(pfds, map, n);
  }
}

static void on_reopen(int sig) {
  (void)sig;
  g_want_reopen = 1;
}

static void on_stop(int sig) {
  (void)sig;
  g_want_stop = 1;
}

static void setup_signals(void) {
  sigset_t ours, old;
  sigemptyset(&ours);
  sigaddset(&ours, SIGUSR1);
  sigaddset(&ours, SIGTERM);
  sigaddset(&ours, SIGINT);
  sigprocmask(SIG_BLOCK, &ours, &old);
  g_wait_mask = old;
  sigdelset(&g_wait_mask, SIGUSR1);
  sigdelset(&g_wait_mask, SIGTERM);
  sigdelset(&g_wait_mask, SIGINT);

  struct sigaction sa = {0};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_reopen;
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* a logger that dies takes the container with it (its writes then get EPIPE), so these must not kill */
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
}

int main(int argc, char **argv) {
  /* handlers before anything else: SIGUSR1's default action would end us */
  setup_signals();
  const char *id = getenv("CONTAINER_ID");
  if (id) g_id = id;

  /* remember which of fds 3-5 we were given before any open() can land on a free number */
  bool have_out = fd_is_open(FD_STDOUT), have_err = fd_is_open(FD_STDERR), have_ready = fd_is_open(FD_READY);
  close_fds_from(FD_READY + 1);
  for (int fd = 0; fd <= 2; fd++) {
    if (fd_is_open(fd)) continue;
    /* keep our diagnostics from ever landing in a file opened later */
    if (open("/dev/null", O_RDWR) < 0) return 1;
  }

  int rc = parse_args(argc, argv);
  if (rc) return rc;
  if (chdir("/") != 0) report("chdir", "/: %s", strerror(errno)); /* do not pin the bundle dir */

  if (g_fifo_paths[0]) {
    /* started by crispd, not the shim: fds 3 and 4 are nothing of ours; fd 5, when given, is
     * crispd's end of a readiness pipe, closed like the shim's once the ack is written */
    close(FD_STDOUT);
    close(FD_STDERR);
    have_out = have_err = false;
    if (open_fifos() != 0) return 1;
  }

  g_log_fd = open_log();
  if (g_log_fd < 0) {
    report("open log", "%s: %s", g_log_path, strerror(errno));
    return 1;
  }
  char pid_line[32];
  snprintf(pid_line, sizeof pid_line, "%d\n", (int)getpid());
  if (write_atomic(g_pid_path, pid_line, "write pidfile") != 0) return 1;
  if (write_ack(false) != 0) {
    unlink(g_pid_path);
    return 1;
  }

  if (have_out) g_streams[0].fd = FD_STDOUT;
  if (have_err) {
    if (g_tty) close(FD_STDERR); /* the shim never closes its end for a terminal task */
    else g_streams[1].fd = FD_STDERR;
  }
  if (have_ready) close(FD_READY); /* the shim starts the container now */

  run();

  for (int i = 0; i < 2; i++)
    if (g_streams[i].fd >= 0) close_stream(&g_streams[i]);
  out_flush();
  close(g_log_fd);
  if (g_dropped_bytes) report("exit", "dropped %" PRIu64 " bytes in %" PRIu64 " failed writes", g_dropped_bytes, g_write_errors);
  if (pidfile_is_ours()) {
    write_ack(true);
    unlink(g_pid_path);
  }
  return 0;
}
