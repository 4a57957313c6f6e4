/*
 * crisp-fetch: downloads the rest of a blob into a content ingest's data file for crispd
 * (backend/images/native-fetch.ts: a pool slot of a pull runs one `crisp-fetch --serve` for its
 * downloads, one after another). It does what blob-fetch-worker.ts does on a worker thread, with libcurl
 * instead of node's HTTP client: GET the prepared request, follow redirects by hand, write the body at
 * the file's offset and hash the whole blob (the bytes already in the file first) with SHA-256.
 *
 *   crisp-fetch           one job: the request is all of stdin, the answer one line on stdout
 *   crisp-fetch --serve   jobs one after another: each request is a little-endian u32 length and that
 *                         many bytes on stdin, each answered with its line (flushed); EOF ends it. A
 *                         SIGTERM aborts the running job, and any later one (crispd sends no more)
 *
 * A request, on stdin only (the Authorization header never appears in argv, the environment or a
 * message): NUL-terminated "key=value" strings, in any order:
 *   url=U            the blob's URL (http or https)
 *   header=Name: v   a request header (repeatable; Range is one of them when resuming)
 *   authorization=A  sent to U's origin only, never after a redirect to another origin
 *   ca=PATH          a CA file trusted besides the system's roots (repeatable)
 *   cert=PATH        a client certificate chain, followed by key=PATH (empty: the key is in the cert file)
 *   insecure=1       do not verify the server's certificate
 *   connect-ms=N response-ms=N idle-ms=N   TCP+TLS connect; request to response headers; longest silence
 *   max-redirects=N  file=PATH offset=N size=N
 * TLS settings (ca, cert, insecure) apply to U's origin only; other origins get the system's roots.
 *
 * Answer: one line on stdout, "<end> <at> <text>", at = the bytes the file holds from the start:
 *   done <size> sha256:<hex>      the file holds the whole blob; hex is its SHA-256
 *   fallback <offset> <why>       no byte written: an answer that is not the blob (a status other than
 *                                 200 from 0 or 206 from the offset, too many redirects) or none at all;
 *                                 crispd redoes the request on its own path (challenges, mirrors, errors);
                                 also a request that does not parse in --serve mode ("bad input")
 *   broken <at> <why>             the body broke off; the bytes written stay for the resume
 *   overlong <at> <why>           more bytes than size (the caller discards the file)
 *   aborted <at> aborted          SIGTERM or SIGINT; every byte that arrived is written
 *   io <at> <why>                 the file could not be read or written
 * Exit 2 with a line on stderr for bad input in the one-job mode. What arrives is written at least every
 * FLUSH_MS, so the file's size is the progress crispd polls. The process dies with its parent
 * (PR_SET_PDEATHSIG): no download outlives crispd.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define INPUT_CAP (1u << 20)
#define MAX_LIST 64
#define READ_CHUNK (1u << 20)
/* curl's receive buffer: larger reads mean fewer system calls per MiB, but every page of it (and of the
 * batch) costs a page fault on first touch, which is dear in a VM: 256 KiB each measured 3-5 % less CPU per
 * 30 MiB layer than 512 KiB + 1 MiB (650-710 page faults per run instead of 970). */
#define RECV_BUFFER (256L * 1024)
/* curl hands the body over in pieces of at most 16 KiB; they are written in batches of up to BATCH bytes,
 * and at least every FLUSH_MS while bytes arrive (the file's size is crispd's progress and stall watch). */
#define BATCH (256u * 1024)
#define FLUSH_MS 200
#define POLL_MS 100

struct request {
    const char *url, *authorization, *file;
    const char *headers[MAX_LIST];
    size_t nheaders;
    const char *cas[MAX_LIST];
    size_t ncas;
    const char *certs[MAX_LIST], *keys[MAX_LIST];
    size_t ncerts;
    bool insecure;
    long connect_ms, response_ms, idle_ms, max_redirects;
    uint64_t offset, size;
};

enum end { END_NONE, END_DONE, END_FALLBACK, END_BROKEN, END_OVERLONG, END_ABORTED, END_IO, END_REDIRECT };

/* One download: the file, the hash and where the body stands. */
struct state {
    const struct request *req;
    int fd;
    EVP_MD_CTX *hash;
    /* Bytes in the file (from the start), and the batch received after them. */
    uint64_t at;
    char *batch;
    size_t pending;
    uint64_t flushed_at_ms;
    bool body, hashed_prefix;
    enum end end;
    char why[512];
    /* The response being read (reset at each status line: 1xx answers come before the real one). */
    long status;
    char location[8192];
    char content_range[256];
    uint64_t last_activity;
};

static volatile sig_atomic_t aborting;
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    aborting = 1;
    if (wake_pipe[1] >= 0) {
        ssize_t r = write(wake_pipe[1], "x", 1);
        (void)r; /* full pipe: a wake-up is pending anyway */
    }
    errno = saved;
}

static void usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("crisp-fetch: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_end(struct state *s, enum end e, const char *fmt, ...) {
    if (s->end != END_NONE) return;
    s->end = e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    /* One line out: no newline may hide in a server-provided text. */
    for (char *p = s->why; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

static bool origin_of(const char *url, char *out, size_t outlen);

/* Why the last input did not parse. */
static char parse_error[256];

#define BAD_INPUT(...) (snprintf(parse_error, sizeof parse_error, __VA_ARGS__), false)

static bool parse_u64(const char *key, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-') return BAD_INPUT("%s: not a number: \"%s\"", key, v);
    *out = (uint64_t)n;
    return true;
}

static bool parse_ms(const char *key, const char *v, long *out) {
    uint64_t n;
    if (!parse_u64(key, v, &n) || n > 86400000u) return BAD_INPUT("%s: not a number of milliseconds: \"%s\"", key, v);
    *out = (long)n;
    return true;
}

/* Parse one request (the buffer is modified and referenced); false with parse_error set when it is bad. */
static bool parse_input(struct request *r, char *buf, size_t len) {
    memset(r, 0, sizeof *r);
    r->connect_ms = r->response_ms = r->idle_ms = 60000;
    r->max_redirects = 5;
    bool have_offset = false, have_size = false;
    for (size_t i = 0; i < len;) {
        char *item = buf + i;
        size_t n = strnlen(item, len - i);
        if (i + n >= len) return BAD_INPUT("input does not end with NUL");
        i += n + 1;
        char *eq = strchr(item, '=');
        if (!eq) return BAD_INPUT("input item without '='");
        *eq = '\0';
        const char *k = item, *v = eq + 1;
        if (!strcmp(k, "url")) r->url = v;
        else if (!strcmp(k, "authorization")) r->authorization = v;
        else if (!strcmp(k, "file")) r->file = v;
        else if (!strcmp(k, "header")) {
            if (r->nheaders == MAX_LIST) return BAD_INPUT("too many headers");
            r->headers[r->nheaders++] = v;
        } else if (!strcmp(k, "ca")) {
            if (r->ncas == MAX_LIST) return BAD_INPUT("too many CA files");
            r->cas[r->ncas++] = v;
        } else if (!strcmp(k, "cert")) {
            if (r->ncerts == MAX_LIST) return BAD_INPUT("too many client certificates");
            r->certs[r->ncerts] = v;
            r->keys[r->ncerts++] = v;
        } else if (!strcmp(k, "key")) {
            if (r->ncerts == 0) return BAD_INPUT("key before cert");
            if (*v) r->keys[r->ncerts - 1] = v;
        } else if (!strcmp(k, "insecure")) r->insecure = !strcmp(v, "1");
        else if (!strcmp(k, "connect-ms")) {
            if (!parse_ms(k, v, &r->connect_ms)) return false;
        } else if (!strcmp(k, "response-ms")) {
            if (!parse_ms(k, v, &r->response_ms)) return false;
        } else if (!strcmp(k, "idle-ms")) {
            if (!parse_ms(k, v, &r->idle_ms)) return false;
        } else if (!strcmp(k, "max-redirects")) {
            if (!parse_ms(k, v, &r->max_redirects)) return false;
        } else if (!strcmp(k, "offset")) {
            if (!parse_u64(k, v, &r->offset)) return false;
            have_offset = true;
        } else if (!strcmp(k, "size")) {
            if (!parse_u64(k, v, &r->size)) return false;
            have_size = true;
        } else {
            return BAD_INPUT("unknown input key \"%s\"", k);
        }
    }
    if (!r->url || !r->file || !have_offset || !have_size) return BAD_INPUT("url, file, offset and size are required");
    if (r->offset >= r->size) return BAD_INPUT("offset %" PRIu64 " is not below size %" PRIu64, r->offset, r->size);
    for (size_t i = 0; i < r->nheaders; i++)
        if (strpbrk(r->headers[i], "\r\n") || !strchr(r->headers[i], ':')) return BAD_INPUT("bad header");
    if (r->authorization && strpbrk(r->authorization, "\r\n")) return BAD_INPUT("bad authorization");
    char origin[1024];
    if (!origin_of(r->url, origin, sizeof origin)) return BAD_INPUT("url: not a URL");
    return true;
}

/* Feed the file's first `length` bytes into the hash: a resumed download's digest covers the whole blob. */
static int hash_prefix(struct state *s) {
    uint64_t length = s->req->offset;
    if (length == 0) return 0;
    char *buf = malloc(READ_CHUNK);
    if (!buf) return ENOMEM;
    for (uint64_t at = 0; at < length;) {
        size_t want = length - at < READ_CHUNK ? (size_t)(length - at) : READ_CHUNK;
        ssize_t n = pread(s->fd, buf, want, (off_t)at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            free(buf);
            if (err) return err;
            set_end(s, END_IO, "the ingest file ends at byte %" PRIu64 ", before the %" PRIu64 " bytes the download resumes after", at, length);
            return -1;
        }
        EVP_DigestUpdate(s->hash, buf, (size_t)n);
        at += (uint64_t)n;
    }
    free(buf);
    return 0;
}

/* The origin of a URL: scheme, host (lower case) and port (the scheme's default when absent). */
static bool origin_of(const char *url, char *out, size_t outlen) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    if (ok) {
        for (char *p = host; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        snprintf(out, outlen, "%s://%s:%s", scheme, host, port);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

/* `location` resolved against `base`, or NULL. Only http and https are followed. */
static char *resolve_location(const char *base, const char *location) {
    CURLU *u = curl_url();
    char *out = NULL, *scheme = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK && curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && (!strcasecmp(scheme, "http") || !strcasecmp(scheme, "https")))
        curl_url_get(u, CURLUPART_URL, &out, 0);
    curl_free(scheme);
    curl_url_cleanup(u);
    return out;
}

/* The registry's TLS settings, on its own origin only: its CA files on top of the system roots (which
 * curl has loaded by now), its client certificates. */
static CURLcode tls_setup(CURL *curl, void *ssl_ctx, void *arg) {
    (void)curl;
    const struct request *r = arg;
    SSL_CTX *ctx = ssl_ctx;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    for (size_t i = 0; i < r->ncas; i++)
        if (X509_STORE_load_file(store, r->cas[i]) != 1) return CURLE_SSL_CACERT_BADFILE;
    for (size_t i = 0; i < r->ncerts; i++) {
        if (SSL_CTX_use_certificate_chain_file(ctx, r->certs[i]) != 1) return CURLE_SSL_CERTPROBLEM;
        if (SSL_CTX_use_PrivateKey_file(ctx, r->keys[i], SSL_FILETYPE_PEM) != 1) return CURLE_SSL_CERTPROBLEM;
    }
    return CURLE_OK;
}

static bool header_is(const char *line, size_t len, const char *name) {
    size_t n = strlen(name);
    return len > n && line[n] == ':' && !strncasecmp(line, name, n);
}

static void header_value(const char *line, size_t len, size_t skip, char *out, size_t outlen) {
    const char *v = line + skip, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t n = (size_t)(end - v) < outlen - 1 ? (size_t)(end - v) : outlen - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* Decide at the end of a response's headers: a redirect, the blob (the body starts), or anything else. */
static bool headers_done(struct state *s, CURL *curl) {
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    s->status = status;
    if (status >= 100 && status < 200) return true;
    if (status >= 300 && status < 400 && status != 304) {
        set_end(s, END_REDIRECT, "redirect %ld", status);
        return false;
    }
    uint64_t offset = s->req->offset;
    bool ok = status == 200 && offset == 0;
    if (status == 206) {
        const char *cr = s->content_range;
        unsigned long long start;
        char *end;
        ok = !strncmp(cr, "bytes ", 6) && cr[6] >= '0' && cr[6] <= '9' && (start = strtoull(cr + 6, &end, 10), *end == '-') && start == offset;
    }
    if (!ok) {
        set_end(s, END_FALLBACK, "answer %ld", status);
        return false;
    }
    if (!s->hashed_prefix) {
        int err = hash_prefix(s);
        if (err > 0) set_end(s, END_IO, "reading %s: %s", s->req->file, strerror(err));
        if (err) return false;
        s->hashed_prefix = true;
    }
    s->body = true;
    return true;
}

/* The handle being transferred (one at a time), for the header callback's getinfo. */
static CURL *current_handle;

static size_t on_header(char *line, size_t size, size_t nitems, void *arg) {
    struct state *s = arg;
    size_t len = size * nitems;
    s->last_activity = now_ms();
    if (len >= 5 && !strncmp(line, "HTTP/", 5)) {
        s->location[0] = s->content_range[0] = '\0';
        return len;
    }
    if (header_is(line, len, "location")) header_value(line, len, 9, s->location, sizeof s->location);
    else if (header_is(line, len, "content-range")) header_value(line, len, 14, s->content_range, sizeof s->content_range);
    else if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        if (!headers_done(s, current_handle)) return 0;
    }
    return len;
}

/* Write the batch at `at`. False (and the end set) when the file cannot take it. */
static bool flush(struct state *s) {
    s->flushed_at_ms = now_ms();
    for (size_t done = 0; done < s->pending;) {
        ssize_t w = pwrite(s->fd, s->batch + done, s->pending - done, (off_t)(s->at + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            set_end(s, END_IO, "writing %s: %s", s->req->file, w < 0 ? strerror(errno) : "short write");
            s->at += done;
            s->pending = 0;
            return false;
        }
        done += (size_t)w;
    }
    s->at += s->pending;
    s->pending = 0;
    return true;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg) {
    struct state *s = arg;
    size_t n = size * nmemb;
    s->last_activity = now_ms();
    if (!s->body || aborting) return 0;
    if (s->at + s->pending + n > s->req->size) {
        /* Bad content: the batch is dropped, the caller discards the file anyway. */
        s->pending = 0;
        set_end(s, END_OVERLONG, "more data than the expected %" PRIu64 " bytes", s->req->size);
        return 0;
    }
    EVP_DigestUpdate(s->hash, data, n);
    while (n > 0) {
        size_t take = BATCH - s->pending < n ? BATCH - s->pending : n;
        memcpy(s->batch + s->pending, data, take);
        s->pending += take;
        data += take;
        n -= take;
        if (s->pending == BATCH && !flush(s)) return 0;
    }
    return size * nmemb;
}

/* One request to `url`. Returns the redirect target (to free) when the answer was one, else NULL. */
static char *hop(CURLM *multi, struct state *s, const char *url, bool same_origin) {
    const struct request *r = s->req;
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    if (!curl) {
        set_end(s, END_FALLBACK, "curl_easy_init failed");
        return NULL;
    }
    current_handle = curl;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *h = r->headers[i];
        const char *colon = strchr(h, ':');
        const char *v = colon + 1;
        while (*v == ' ') v++;
        /* curl drops "Name:" with an empty value; "Name;" sends it empty. */
        if (*v) {
            headers = curl_slist_append(headers, h);
        } else {
            char *line = strndup(h, (size_t)(colon - h) + 1);
            if (line) line[colon - h] = ';';
            headers = line ? curl_slist_append(headers, line) : headers;
            free(line);
        }
    }
    if (same_origin && r->authorization) {
        size_t n = strlen(r->authorization) + 32;
        char *line = malloc(n);
        if (line) {
            snprintf(line, n, "Authorization: %s", r->authorization);
            headers = curl_slist_append(headers, line);
            explicit_bzero(line, n);
            free(line);
        }
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(curl, CURLOPT_PROXY, ""); /* as crispd's own client: no proxy from the environment */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, r->connect_ms);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, RECV_BUFFER);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
    /* A cached store would carry one origin's CA files over to the next. */
    curl_easy_setopt(curl, CURLOPT_CA_CACHE_TIMEOUT, 0L);
    if (same_origin) {
        if (r->insecure) {
            curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (r->ncas > 0 || r->ncerts > 0) {
            curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, tls_setup);
            curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, (void *)r);
        }
    }
    s->location[0] = s->content_range[0] = '\0';
    s->status = 0;
    curl_multi_add_handle(multi, curl);
    uint64_t started = now_ms();
    s->last_activity = started;
    int running = 1;
    struct curl_waitfd wake = {.fd = wake_pipe[0], .events = CURL_WAIT_POLLIN};
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK) break;
        if (!running) break;
        if (aborting) break;
        uint64_t t = now_ms();
        if (s->pending > 0 && t - s->flushed_at_ms >= FLUSH_MS && !flush(s)) break;
        if (!s->body && s->status == 0 && t - started >= (uint64_t)r->response_ms) {
            set_end(s, END_FALLBACK, "no response within %ld ms", r->response_ms);
            break;
        }
        if (t - s->last_activity >= (uint64_t)r->idle_ms) {
            set_end(s, s->body ? END_BROKEN : END_FALLBACK, "connection idle for %ld ms", r->idle_ms);
            break;
        }
        curl_multi_poll(multi, &wake, 1, POLL_MS, NULL);
    }
    CURLcode result = CURLE_OK;
    bool finished = false;
    int queued;
    for (CURLMsg *m; (m = curl_multi_info_read(multi, &queued));)
        if (m->msg == CURLMSG_DONE && m->easy_handle == curl) result = m->data.result, finished = true;
    char *next = NULL;
    /* Every byte that arrived goes into the file (a broken or aborted download resumes after them). */
    if (s->pending > 0) flush(s);
    if (aborting) set_end(s, END_ABORTED, "aborted");
    if (s->end == END_REDIRECT) {
        s->end = END_NONE;
        if (!s->location[0]) set_end(s, END_FALLBACK, "redirect %ld", s->status);
        else if (!(next = resolve_location(url, s->location))) set_end(s, END_FALLBACK, "redirect %ld to an unusable location", s->status);
    } else if (s->end == END_NONE) {
        const char *why = errbuf[0] ? errbuf : curl_easy_strerror(result);
        if (!finished) set_end(s, s->body ? END_BROKEN : END_FALLBACK, "transfer stopped");
        else if (!s->body) set_end(s, END_FALLBACK, "%s", result == CURLE_OK ? "no answer" : why);
        else if (result != CURLE_OK) set_end(s, END_BROKEN, "%s", why);
        else if (s->at < r->size) set_end(s, END_BROKEN, "download ended at byte %" PRIu64 " of %" PRIu64, s->at, r->size);
        else set_end(s, END_DONE, "done");
    }
    curl_multi_remove_handle(multi, curl);
    curl_easy_cleanup(curl);
    current_handle = NULL;
    curl_slist_free_all(headers);
    return next;
}

static const char *end_name(enum end e) {
    switch (e) {
    case END_DONE: return "done";
    case END_FALLBACK: return "fallback";
    case END_BROKEN: return "broken";
    case END_OVERLONG: return "overlong";
    case END_ABORTED: return "aborted";
    case END_IO: return "io";
    default: return "broken";
    }
}

/* One download, answered with one line on stdout. The handles are the process's, reused job after job. */
static void run_job(const struct request *req, CURLM *multi, EVP_MD_CTX *hash, char *batch) {
    struct state s = {.req = req, .fd = -1, .at = req->offset, .hash = hash, .batch = batch, .flushed_at_ms = now_ms()};
    char first_origin[1024], origin[1024];
    origin_of(req->url, first_origin, sizeof first_origin);
    s.fd = open(req->file, O_RDWR | O_CLOEXEC);
    if (s.fd < 0) {
        set_end(&s, END_IO, "%s: %s", req->file, strerror(errno));
    } else if (EVP_DigestInit_ex(hash, EVP_sha256(), NULL) != 1) {
        set_end(&s, END_FALLBACK, "SHA-256 unavailable");
    } else {
        char *url = strdup(req->url);
        if (!url) set_end(&s, END_FALLBACK, "out of memory");
        for (long hops = 0; url && s.end == END_NONE; hops++) {
            bool same = origin_of(url, origin, sizeof origin) && !strcmp(origin, first_origin);
            char *next = aborting ? (set_end(&s, END_ABORTED, "aborted"), NULL) : hop(multi, &s, url, same);
            free(url);
            url = next;
            if (url && hops >= req->max_redirects) {
                set_end(&s, END_FALLBACK, "redirect %ld", s.status);
                free(url);
                url = NULL;
            }
        }
    }
    if (s.fd >= 0 && close(s.fd) != 0 && s.end == END_DONE) set_end(&s, END_IO, "closing %s: %s", req->file, strerror(errno));
    /* A fallback wrote nothing: the caller starts again from the offset. */
    uint64_t at = s.end == END_FALLBACK ? req->offset : s.at;
    if (s.end == END_DONE) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_DigestFinal_ex(hash, md, &mdlen);
        printf("done %" PRIu64 " sha256:", at);
        for (unsigned i = 0; i < mdlen; i++) printf("%02x", md[i]);
        printf("\n");
    } else {
        printf("%s %" PRIu64 " %s\n", end_name(s.end), at, s.why[0] ? s.why : "failed");
    }
}

/* Read exactly n bytes (a signal meanwhile is only noted); 0 at EOF before the first byte, -1 otherwise. */
static int read_full(char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(0, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return got == 0 && r == 0 ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

int main(int argc, char **argv) {
    bool serve = argc == 2 && !strcmp(argv[1], "--serve");
    if (argc > 1 && !serve) usage("usage: crisp-fetch [--serve] (the request comes on stdin)");
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) return 1;
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) usage("pipe: %s", strerror(errno));
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) usage("curl_global_init failed");
    CURLM *multi = curl_multi_init();
    EVP_MD_CTX *hash = EVP_MD_CTX_new();
    char *batch = malloc(BATCH);
    char *input = malloc(INPUT_CAP);
    if (!multi || !hash || !batch || !input) usage("out of memory");
    struct request req;

    if (!serve) {
        size_t len = 0;
        for (;;) {
            ssize_t n = read(0, input + len, INPUT_CAP - len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) usage("reading stdin: %s", strerror(errno));
            if (n == 0) break;
            len += (size_t)n;
            if (len == INPUT_CAP) usage("input too long");
        }
        if (!parse_input(&req, input, len)) usage("%s", parse_error);
        run_job(&req, multi, hash, batch);
        explicit_bzero(input, len);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    /* Serve: one job after another, each a little-endian u32 length and that many bytes of the same input,
     * each answered with its line. A SIGTERM is never forgotten: it may come just before or after the
     * frame of the job it is meant for, and crispd gives a process it signalled no further job. */
    for (;;) {
        unsigned char head[4];
        int r = read_full((char *)head, sizeof head);
        if (r == 0) return 0;
        if (r < 0) usage("reading stdin: %s", strerror(errno));
        size_t len = (size_t)head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16 | (size_t)head[3] << 24;
        if (len >= INPUT_CAP) usage("job too long");
        if (read_full(input, len) != 1) usage("stdin ended inside a job");
        if (parse_input(&req, input, len)) run_job(&req, multi, hash, batch);
        else printf("fallback 0 bad input: %s\n", parse_error);
        explicit_bzero(input, len);
        if (fflush(stdout) != 0) return 1;
    }
}
