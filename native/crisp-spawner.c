/*
 * crisp-spawner: runs short-lived commands for crispd. A fork from crispd's Node process copies the
 * page tables of a ~80 MiB process and blocks its event loop for 6-8 ms per exec (libuv forks); this
 * small, single-threaded process starts the commands instead (posix_spawn, a vfork-style clone) and
 * hands back what they wrote and how they ended. One spawner serves many commands at once.
 *
 * crispd starts it with pipes on stdin/stdout and talks in frames, every integer a little-endian u32:
 *
 *   request  = len op id body            (len counts op, id and body)
 *     op 1 run:  argc envc stdin_len flags, then NUL-terminated strings
 *                file cwd argv[0..argc) env[0..envc), then stdin_len bytes for the command's stdin
 *                (file must be an absolute path; cwd "" keeps the spawner's; flags: none yet, 0)
 *     op 2 kill: signal                  (sent to the command of run `id`, if it still runs)
 *   response = len id kind value out_len err_len out err
 *     kind 0 exited (value = exit code), 1 killed by signal (value = signal number),
 *     kind 2 could not start (value = errno; out and err empty)
 *     out/err hold at most OUTPUT_CAP bytes each; what comes beyond is read and dropped.
 *
 * A run answers once the command has exited and closed stdout and stderr (as Node's child_process
 * does). The spawner exits when its stdin reaches EOF (crispd gone); commands still running go on,
 * reparented like any orphan. Bad frames end the spawner with a line on stderr: crispd starts a new one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define OP_RUN 1
#define OP_KILL 2
#define KIND_EXITED 0
#define KIND_SIGNALED 1
#define KIND_SPAWN_FAILED 2
#define MAX_FRAME (64u << 20)
#define OUTPUT_CAP (16u << 20)
#define MAX_JOBS 1024

struct buf {
    char *data;
    size_t len, cap;
};

struct job {
    bool used;
    uint32_t id;
    pid_t pid;
    int pidfd, in_fd, out_fd, err_fd;
    char *input;
    size_t input_len, input_off;
    struct buf out, err;
    bool exited;
    int status;
};

static struct job jobs[MAX_JOBS];
static struct buf inbox;

static void die(const char *what, int err) {
    fprintf(stderr, "crisp-spawner: %s: %s\n", what, strerror(err));
    exit(1);
}

static void buf_append(struct buf *b, const char *p, size_t n, size_t cap) {
    if (b->len >= cap) return;
    if (n > cap - b->len) n = cap - b->len;
    if (b->len + n > b->cap) {
        size_t want = b->cap ? b->cap * 2 : 4096;
        while (want < b->len + n) want *= 2;
        char *d = realloc(b->data, want);
        if (!d) die("realloc", ENOMEM);
        b->data = d;
        b->cap = want;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static uint32_t get_u32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static void put_u32(char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i));
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("write to crispd", errno); /* crispd gone: nobody to answer */
        p += w;
        n -= (size_t)w;
    }
}

static void respond(uint32_t id, uint32_t kind, int32_t value, const struct buf *out, const struct buf *err) {
    size_t out_len = out ? out->len : 0, err_len = err ? err->len : 0;
    char head[24];
    put_u32(head, (uint32_t)(20 + out_len + err_len));
    put_u32(head + 4, id);
    put_u32(head + 8, kind);
    put_u32(head + 12, (uint32_t)value);
    put_u32(head + 16, (uint32_t)out_len);
    put_u32(head + 20, (uint32_t)err_len);
    write_all(STDOUT_FILENO, head, sizeof head);
    if (out_len) write_all(STDOUT_FILENO, out->data, out_len);
    if (err_len) write_all(STDOUT_FILENO, err->data, err_len);
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void finish(struct job *j) {
    if (WIFSIGNALED(j->status)) respond(j->id, KIND_SIGNALED, WTERMSIG(j->status), &j->out, &j->err);
    else respond(j->id, KIND_EXITED, WEXITSTATUS(j->status), &j->out, &j->err);
    close_fd(&j->pidfd);
    close_fd(&j->in_fd);
    free(j->input);
    free(j->out.data);
    free(j->err.data);
    memset(j, 0, sizeof *j);
}

/* Reads the NUL-terminated string at *p (within end); NULL when the frame ends first. */
static const char *take_string(const char **p, const char *end) {
    const char *s = *p;
    const char *nul = memchr(s, '\0', (size_t)(end - s));
    if (!nul) return NULL;
    *p = nul + 1;
    return s;
}

static void bad_frame(const char *why) {
    fprintf(stderr, "crisp-spawner: bad request: %s\n", why);
    exit(2);
}

static struct job *free_slot(void) {
    for (int i = 0; i < MAX_JOBS; i++)
        if (!jobs[i].used) return &jobs[i];
    return NULL;
}

static int spawn_job(struct job *j, const char *file, const char *cwd, char **argv, char **envp) {
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int rc = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_made = false, attr_made = false;
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        rc = errno;
        goto done;
    }
    if ((rc = posix_spawn_file_actions_init(&fa))) goto done;
    fa_made = true;
    if ((rc = posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO)) ||
        (rc = posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO)) ||
        (rc = posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO)))
        goto done;
    if (*cwd && (rc = posix_spawn_file_actions_addchdir_np(&fa, cwd))) goto done;
    if ((rc = posix_spawnattr_init(&attr))) goto done;
    attr_made = true;
    /* the command starts with every signal at its default and none blocked, whatever the spawner has */
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    if ((rc = posix_spawnattr_setsigdefault(&attr, &all)) || (rc = posix_spawnattr_setsigmask(&attr, &none)) ||
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)))
        goto done;
    pid_t pid;
    if ((rc = posix_spawn(&pid, file, &fa, &attr, argv, envp))) goto done;
    j->pid = pid;
    /* our own unreaped child: its pid cannot be reused before we wait for it */
    j->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (j->pidfd < 0) die("pidfd_open", errno);
    j->in_fd = in[1];
    j->out_fd = out[0];
    j->err_fd = err[0];
    in[1] = out[0] = err[0] = -1;
    fcntl(j->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(j->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(j->err_fd, F_SETFL, O_NONBLOCK);
done:
    if (fa_made) posix_spawn_file_actions_destroy(&fa);
    if (attr_made) posix_spawnattr_destroy(&attr);
    for (int k = 0; k < 2; k++) {
        if (in[k] >= 0) close(in[k]);
        if (out[k] >= 0) close(out[k]);
        if (err[k] >= 0) close(err[k]);
    }
    return rc;
}

static void handle_run(uint32_t id, const char *body, const char *end) {
    if (end - body < 16) bad_frame("short run header");
    uint32_t argc = get_u32(body), envc = get_u32(body + 4), in_len = get_u32(body + 8);
    const char *p = body + 16;
    if (argc == 0 || argc > 65536 || envc > 65536) bad_frame("argc/envc out of range");
    const char *file = take_string(&p, end), *cwd = file ? take_string(&p, end) : NULL;
    if (!file || !cwd) bad_frame("file/cwd");
    char **argv = calloc(argc + 1, sizeof *argv), **envp = calloc(envc + 1, sizeof *envp);
    if (!argv || !envp) die("calloc", ENOMEM);
    for (uint32_t i = 0; i < argc; i++)
        if (!(argv[i] = (char *)take_string(&p, end))) bad_frame("argv");
    for (uint32_t i = 0; i < envc; i++)
        if (!(envp[i] = (char *)take_string(&p, end))) bad_frame("env");
    if ((size_t)(end - p) != in_len) bad_frame("stdin length");

    struct job *j = free_slot();
    int rc = EAGAIN;
    if (j) {
        memset(j, 0, sizeof *j);
        j->pidfd = j->in_fd = j->out_fd = j->err_fd = -1;
        rc = file[0] == '/' ? spawn_job(j, file, cwd, argv, envp) : EINVAL;
    }
    free(argv);
    free(envp);
    if (rc) {
        respond(id, KIND_SPAWN_FAILED, rc, NULL, NULL);
        return;
    }
    j->used = true;
    j->id = id;
    if (in_len) {
        j->input = malloc(in_len);
        if (!j->input) die("malloc", ENOMEM);
        memcpy(j->input, p, in_len);
        j->input_len = in_len;
    } else {
        close_fd(&j->in_fd);
    }
}

static void handle_kill(uint32_t id, const char *body, const char *end) {
    if (end - body < 4) bad_frame("short kill");
    int sig = (int)get_u32(body);
    for (int i = 0; i < MAX_JOBS; i++) {
        struct job *j = &jobs[i];
        /* the pidfd names exactly our child; after it exited the signal is a no-op */
        if (j->used && j->id == id && !j->exited) syscall(SYS_pidfd_send_signal, j->pidfd, sig, NULL, 0);
    }
}

/* Handles every complete frame in the inbox; keeps the partial rest. */
static void handle_frames(void) {
    size_t at = 0;
    while (inbox.len - at >= 4) {
        uint32_t len = get_u32(inbox.data + at);
        if (len < 8 || len > MAX_FRAME) bad_frame("frame length");
        if (inbox.len - at - 4 < len) break;
        const char *f = inbox.data + at + 4;
        uint32_t op = get_u32(f), id = get_u32(f + 4);
        if (op == OP_RUN) handle_run(id, f + 8, f + len);
        else if (op == OP_KILL) handle_kill(id, f + 8, f + len);
        else bad_frame("unknown op");
        at += 4 + len;
    }
    memmove(inbox.data, inbox.data + at, inbox.len - at);
    inbox.len -= at;
}

/* Drains a command's pipe; closes it at EOF. */
static void drain(int *fd, struct buf *b) {
    char chunk[65536];
    for (;;) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n > 0) {
            buf_append(b, chunk, (size_t)n, OUTPUT_CAP);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        close_fd(fd); /* EOF, or an error that ends this pipe just the same */
        return;
    }
}

static void feed(struct job *j) {
    while (j->input_off < j->input_len) {
        ssize_t n = write(j->in_fd, j->input + j->input_off, j->input_len - j->input_off);
        if (n > 0) {
            j->input_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        break; /* EPIPE: the command closed its stdin without reading it all, as it may */
    }
    close_fd(&j->in_fd);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    static struct pollfd fds[1 + 4 * MAX_JOBS];
    static struct job *owner[1 + 4 * MAX_JOBS];
    for (;;) {
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        for (int i = 0; i < MAX_JOBS; i++) {
            struct job *j = &jobs[i];
            if (!j->used) continue;
            int mine[4] = {j->exited ? -1 : j->pidfd, j->in_fd, j->out_fd, j->err_fd};
            for (int k = 0; k < 4; k++) {
                if (mine[k] < 0) continue;
                owner[n] = j;
                fds[n++] = (struct pollfd){.fd = mine[k], .events = k == 1 ? POLLOUT : POLLIN};
            }
        }
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll", errno);
        }
        for (nfds_t k = 1; k < n; k++) {
            if (!fds[k].revents) continue;
            struct job *j = owner[k];
            if (fds[k].fd == j->pidfd && !j->exited) {
                if (waitpid(j->pid, &j->status, WNOHANG) == j->pid) j->exited = true;
            } else if (fds[k].fd == j->in_fd) {
                feed(j);
            } else if (fds[k].fd == j->out_fd) {
                drain(&j->out_fd, &j->out);
            } else if (fds[k].fd == j->err_fd) {
                drain(&j->err_fd, &j->err);
            }
        }
        for (int i = 0; i < MAX_JOBS; i++) {
            struct job *j = &jobs[i];
            if (j->used && j->exited && j->out_fd < 0 && j->err_fd < 0) finish(j);
        }
        if (fds[0].revents) {
            char chunk[65536];
            ssize_t r = read(STDIN_FILENO, chunk, sizeof chunk);
            if (r < 0 && errno != EINTR && errno != EAGAIN) die("read from crispd", errno);
            if (r == 0) return 0; /* crispd is gone */
            if (r > 0) {
                buf_append(&inbox, chunk, (size_t)r, MAX_FRAME + 4 + sizeof chunk);
                handle_frames();
            }
        }
    }
}
