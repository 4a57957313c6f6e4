/*
 * crisp-untar: extracts one OCI image layer blob into a directory that becomes an overlayfs upper dir,
 * and prints the layer's diff id (sha256 of the uncompressed stream).
 *
 *   crisp-untar [--compression gzip|zstd|none] [--made-dirs] [--follow SIZE [--follow-idle-ms N]] BLOB DEST
 *
 * BLOB is a regular file (gzip, zstd or plain tar; without --compression the magic bytes decide).
 * --follow: BLOB is still being written (a download's ingest file) and will hold SIZE bytes; reading
 * waits for it to grow (inotify, and a look every 250 ms) instead of taking its end for the blob's end, and
 * stops at SIZE. It fails when the file stays short for N ms (default 60000) or gets shorter than
 * what was read. --compression is then required (the first bytes may not be there yet). Only the
 * diff id vouches for what was read: the caller checks it, as without --follow.
 * DEST is an existing directory; nothing is created or changed outside it. On success stdout gets
 * exactly "sha256:<64 hex>\n" (every decompressed byte up to EOF, end blocks and padding included)
 * and the exit code is 0. Failure: one stderr line "crisp-untar: <entry>: <reason>", exit 1, and DEST
 * is left half-written (the caller removes it). Bad arguments: exit 2.
 *
 * Semantics (OCI image-spec layer.md, as containerd's applier does on an overlay upper dir):
 *   - names are cleaned lexically ("/", ".", ".." never climb above DEST); each entry's parent is opened
 *     with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) relative to DEST, so a
 *     symlink of the layer (absolute or "../..") is resolved as if DEST were "/", and the last
 *     component is made or changed through that parent's fd without following it;
 *   - missing parents are made 0755 root:root (--made-dirs lists them after the diff id, NUL-terminated,
 *     for the caller to give them the lower layers' mode and owner); an existing entry is replaced (a directory over a
 *     directory only gets the new metadata); hardlink targets resolve in-root too;
 *   - ".wh.NAME" becomes a 0:0 character device NAME, ".wh..wh..opq" sets trusted.overlay.opaque=y on
 *     its directory, other ".wh..wh." names (aufs metadata) are skipped;
 *   - numeric uid/gid, then mode (chown clears setuid), then xattrs (SCHILY.xattr.*; ENOTSUP is
 *     skipped, and user.* on symlinks, devices and fifos, where the kernel refuses it), then times; directory times are set last, deepest first.
 * One process per layer; it exits on the first error, so there is no cleanup path. It is killed when its
 * parent exits (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <signal.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#else
#include <zlib.h>
#endif

#define IN_SIZE (1u << 20)
#define OUT_SIZE (2u << 20)
#define MAX_META (16u << 20) /* cap on a PAX or GNU long-name record */
#define BLOCK 512

/* ---------- errors ---------- */

static const char *cur_entry; /* the entry being extracted, for messages */

static void put_escaped(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p < 0x20 || *p == 0x7f || *p == '\\') fprintf(stderr, "\\x%02x", *p);
    else fputc(*p, stderr);
  }
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
  fputs("crisp-untar: ", stderr);
  if (cur_entry) {
    put_escaped(cur_entry);
    fputs(": ", stderr);
  }
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) fail("out of memory");
  return p;
}

/* ---------- the blob, read to its end or followed while it is written ---------- */

struct blob {
  int fd;
  /* --follow: the size the file will reach, the inotify fd watching it, how long it may stay short */
  bool follow;
  uint64_t size, consumed;
  int watch;
  int idle_ms;
};

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the followed file may have grown: an inotify event, or 250 ms (a missed event costs no more). */
static void wait_for_growth(struct blob *b) {
  struct pollfd pfd = {.fd = b->watch, .events = POLLIN};
  int n = poll(&pfd, 1, 250);
  if (n < 0 && errno != EINTR) fail("waiting for the layer blob to grow: %s", strerror(errno));
  if (n > 0) {
    char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    /* the events only wake us; what matters is the file's size, read again by the caller */
    while (read(b->watch, events, sizeof events) > 0) continue;
  }
}

/* read(2) of the blob: 0 only at its end (SIZE when following). */
static size_t blob_read(struct blob *b, void *buf, size_t cap) {
  if (b->follow) {
    if (b->consumed >= b->size) return 0;
    if (cap > b->size - b->consumed) cap = (size_t)(b->size - b->consumed);
  }
  long long idle_since = 0;
  for (;;) {
    ssize_t n = read(b->fd, buf, cap);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read layer blob: %s", strerror(errno));
    if (n > 0 || !b->follow) {
      b->consumed += (uint64_t)n;
      return (size_t)n;
    }
    struct stat st;
    if (fstat(b->fd, &st) < 0) fail("stat layer blob: %s", strerror(errno));
    if ((uint64_t)st.st_size < b->consumed) fail("the layer blob shrank below the %" PRIu64 " bytes read", b->consumed);
    long long now = now_ms();
    if (idle_since == 0) idle_since = now;
    else if (now - idle_since >= b->idle_ms)
      fail("the layer blob stayed at %" PRIu64 " of %" PRIu64 " bytes for %d ms", b->consumed, b->size, b->idle_ms);
    wait_for_growth(b);
  }
}

/* ---------- decompressing, hashing reader ---------- */

enum compression { C_NONE, C_GZIP, C_ZSTD };

struct reader {
  struct blob blob;
  enum compression kind;
  uint8_t *in, *out;
  size_t in_pos, in_len, out_pos, out_len;
  bool in_eof, eof, member_done;
  EVP_MD_CTX *md;
#ifdef HAVE_ISAL
  struct inflate_state isal;
#else
  z_stream z;
#endif
  ZSTD_DStream *zs;
};

static void fill_in(struct reader *r) {
  size_t n = blob_read(&r->blob, r->in, IN_SIZE);
  r->in_pos = 0;
  r->in_len = n;
  if (n == 0) r->in_eof = true;
}

/* Produces the next chunk of uncompressed data into r->out; sets r->eof at the end. */
static void refill(struct reader *r) {
  r->out_pos = r->out_len = 0;
  if (r->eof) return;
  if (r->kind == C_NONE) {
    size_t n = blob_read(&r->blob, r->out, OUT_SIZE);
    if (n == 0) r->eof = true;
    r->out_len = n;
  }
  while (r->out_len == 0 && !r->eof) {
    if (r->in_pos == r->in_len && !r->in_eof) fill_in(r);
    bool no_input = r->in_pos == r->in_len; /* only at EOF of the blob */
    if (r->member_done && no_input) {
      r->eof = true;
      return;
    }
    if (r->kind == C_GZIP) {
      if (r->member_done) { /* another gzip member follows (multi-member stream) */
        if (r->in[r->in_pos] != 0x1f) fail("trailing data after the gzip stream"); /* Go's gzip reader refuses it too */
#ifdef HAVE_ISAL
        isal_inflate_reset(&r->isal);
        r->isal.crc_flag = ISAL_GZIP;
#else
        if (inflateReset(&r->z) != Z_OK) fail("zlib: inflateReset failed");
#endif
        r->member_done = false;
      }
#ifdef HAVE_ISAL
      r->isal.next_in = r->in + r->in_pos;
      r->isal.avail_in = (uint32_t)(r->in_len - r->in_pos);
      r->isal.next_out = r->out;
      r->isal.avail_out = OUT_SIZE;
      int ret = isal_inflate(&r->isal);
      r->in_pos = r->in_len - r->isal.avail_in;
      r->out_len = OUT_SIZE - r->isal.avail_out;
      if (ret < 0 || ret == ISAL_NEED_DICT) fail("gzip data is corrupt (isa-l error %d)", ret);
      if (r->isal.block_state == ISAL_BLOCK_FINISH) r->member_done = true;
#else
      r->z.next_in = r->in + r->in_pos;
      r->z.avail_in = (uInt)(r->in_len - r->in_pos);
      r->z.next_out = r->out;
      r->z.avail_out = OUT_SIZE;
      int ret = inflate(&r->z, Z_NO_FLUSH);
      r->in_pos = r->in_len - r->z.avail_in;
      r->out_len = OUT_SIZE - r->z.avail_out;
      if (ret == Z_STREAM_END) r->member_done = true;
      else if (ret != Z_OK && ret != Z_BUF_ERROR) fail("gzip data is corrupt (%s)", r->z.msg ? r->z.msg : "zlib error");
#endif
    } else {
      ZSTD_inBuffer zin = {r->in, r->in_len, r->in_pos};
      ZSTD_outBuffer zout = {r->out, OUT_SIZE, 0};
      size_t ret = ZSTD_decompressStream(r->zs, &zout, &zin);
      if (ZSTD_isError(ret)) fail("zstd data is corrupt (%s)", ZSTD_getErrorName(ret));
      r->in_pos = zin.pos;
      r->out_len = zout.pos;
      r->member_done = ret == 0; /* 0: the frame is complete and flushed; another may follow */
    }
    /* no input left, the stream not finished and nothing more came out: the blob was cut short */
    if (r->out_len == 0 && no_input && !r->member_done) fail("compressed data is truncated");
  }
  if (r->out_len > 0) EVP_DigestUpdate(r->md, r->out, r->out_len);
}

static size_t avail(struct reader *r) {
  if (r->out_pos == r->out_len) refill(r);
  return r->out_len - r->out_pos;
}

/* Reads exactly n bytes; returns false if the stream ends first (after reading what there was). */
static bool read_full(struct reader *r, void *buf, size_t n, size_t *got) {
  size_t done = 0;
  while (done < n) {
    size_t a = avail(r);
    if (a == 0) break;
    size_t k = a < n - done ? a : n - done;
    memcpy((uint8_t *)buf + done, r->out + r->out_pos, k);
    r->out_pos += k;
    done += k;
  }
  if (got) *got = done;
  return done == n;
}

static void skip(struct reader *r, uint64_t n) {
  while (n > 0) {
    size_t a = avail(r);
    if (a == 0) fail("tar archive is truncated");
    size_t k = a < n ? a : (size_t)n;
    r->out_pos += k;
    n -= k;
  }
}

/* ---------- tar headers ---------- */

struct xattr {
  char *name;
  char *value;
  size_t len;
};

struct entry {
  char type;
  char *name;     /* as in the archive (after PAX / GNU long name) */
  char *linkname; /* for hardlinks and symlinks */
  uint64_t size;
  int64_t uid, gid;
  uint32_t mode;
  struct timespec mtime, atime;
  bool has_atime;
  uint32_t devmajor, devminor;
  struct xattr *xattrs;
  size_t nxattrs;
};

/* Overrides collected from 'x', 'L' and 'K' records for the next real entry. */
struct pending {
  char *path, *linkpath;
  bool has_size, has_uid, has_gid, has_mtime, has_atime;
  uint64_t size;
  int64_t uid, gid;
  struct timespec mtime, atime;
  struct xattr *xattrs;
  size_t nxattrs;
  bool sparse;
  bool any;
};

static void xattrs_free(struct xattr *xattrs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(xattrs[i].name);
    free(xattrs[i].value);
  }
  free(xattrs);
}

static void pending_clear(struct pending *p) {
  free(p->path);
  free(p->linkpath);
  xattrs_free(p->xattrs, p->nxattrs);
  memset(p, 0, sizeof *p);
}

/* Numeric header field: octal (space/NUL padded) or base-256 (first byte's top bit set). */
static bool parse_num(const uint8_t *f, size_t len, int64_t *out) {
  if (f[0] & 0x80) {
    if (f[0] == 0xff) return false; /* negative */
    uint64_t v = f[0] & 0x7f;
    for (size_t i = 1; i < len; i++) {
      if (v >> 55) return false;
      v = (v << 8) | f[i];
    }
    if (v > INT64_MAX) return false;
    *out = (int64_t)v;
    return true;
  }
  size_t i = 0;
  while (i < len && (f[i] == ' ' || f[i] == 0)) i++;
  uint64_t v = 0;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60) return false;
    v = v * 8 + (uint64_t)(f[i] - '0');
  }
  for (; i < len; i++) /* an all-blank field is 0 */
    if (f[i] != ' ' && f[i] != 0) return false;
  *out = (int64_t)v;
  return true;
}

static char *field_str(const uint8_t *f, size_t len) {
  size_t n = strnlen((const char *)f, len);
  char *s = xmalloc(n + 1);
  memcpy(s, f, n);
  s[n] = 0;
  return s;
}

static bool parse_dec(const char *s, size_t len, int64_t *out) {
  if (len == 0 || len > 19) return false;
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

/* PAX time: [-]SECONDS[.FRACTION] */
static bool parse_pax_time(const char *s, size_t len, struct timespec *ts) {
  bool neg = len > 0 && s[0] == '-';
  size_t i = neg ? 1 : 0;
  size_t dot = i;
  while (dot < len && s[dot] != '.') dot++;
  int64_t sec;
  if (!parse_dec(s + i, dot - i, &sec)) return false;
  long nsec = 0;
  if (dot < len) {
    long scale = 100000000;
    for (size_t j = dot + 1; j < len; j++) {
      if (s[j] < '0' || s[j] > '9') return false;
      nsec += (s[j] - '0') * scale;
      scale /= 10;
    }
  }
  if (neg) {
    sec = -sec;
    if (nsec) {
      sec -= 1;
      nsec = 1000000000 - nsec;
    }
  }
  ts->tv_sec = sec;
  ts->tv_nsec = nsec;
  return true;
}

static char *dup_value(const char *v, size_t len, const char *key) {
  if (memchr(v, 0, len)) fail("PAX record %s contains a NUL byte", key);
  char *s = xmalloc(len + 1);
  memcpy(s, v, len);
  s[len] = 0;
  return s;
}

static void parse_pax(const char *buf, size_t size, struct pending *p, bool global) {
  size_t off = 0;
  while (off < size) {
    /* "LEN key=value\n", LEN counting the whole record */
    size_t i = off, len = 0;
    while (i < size && buf[i] >= '0' && buf[i] <= '9' && len < size) len = len * 10 + (size_t)(buf[i++] - '0');
    if (i == off || i >= size || buf[i] != ' ' || len == 0 || len > size - off) {
      if (global) return;
      fail("malformed PAX header");
    }
    const char *rec = buf + i + 1, *end = buf + off + len; /* end points past '\n' */
    if (end[-1] != '\n') fail("malformed PAX record (no newline)");
    const char *eq = memchr(rec, '=', (size_t)(end - 1 - rec));
    if (!eq) fail("malformed PAX record (no '=')");
    size_t klen = (size_t)(eq - rec);
    const char *v = eq + 1;
    size_t vlen = (size_t)(end - 1 - v);
    off += len;
    if (global) continue;
#define KEY_IS(k) (klen == sizeof(k) - 1 && memcmp(rec, k, klen) == 0)
    if (KEY_IS("path")) {
      free(p->path);
      p->path = dup_value(v, vlen, "path");
    } else if (KEY_IS("linkpath")) {
      free(p->linkpath);
      p->linkpath = dup_value(v, vlen, "linkpath");
    } else if (KEY_IS("size")) {
      int64_t n;
      if (!parse_dec(v, vlen, &n)) fail("invalid PAX size");
      p->size = (uint64_t)n;
      p->has_size = true;
    } else if (KEY_IS("uid") || KEY_IS("gid")) {
      int64_t n;
      if (!parse_dec(v, vlen, &n) || n > UINT32_MAX - 1) fail("invalid PAX %.3s", rec);
      if (rec[0] == 'u') p->uid = n, p->has_uid = true;
      else p->gid = n, p->has_gid = true;
    } else if (KEY_IS("mtime")) {
      if (!parse_pax_time(v, vlen, &p->mtime)) fail("invalid PAX mtime");
      p->has_mtime = true;
    } else if (KEY_IS("atime")) {
      if (!parse_pax_time(v, vlen, &p->atime)) fail("invalid PAX atime");
      p->has_atime = true;
    } else if (klen > 13 && memcmp(rec, "SCHILY.xattr.", 13) == 0) {
      struct xattr x = {dup_value(rec + 13, klen - 13, "xattr name"), xmalloc(vlen), vlen};
      memcpy(x.value, v, vlen);
      p->xattrs = realloc(p->xattrs, (p->nxattrs + 1) * sizeof *p->xattrs);
      if (!p->xattrs) fail("out of memory");
      p->xattrs[p->nxattrs++] = x;
    } else if (klen > 11 && memcmp(rec, "GNU.sparse.", 11) == 0) {
      p->sparse = true;
    }
#undef KEY_IS
  }
}

static char *read_meta(struct reader *r, uint64_t size, const char *what) {
  if (size > MAX_META) fail("%s record of %llu bytes is too large", what, (unsigned long long)size);
  char *buf = xmalloc((size_t)size + 1);
  if (!read_full(r, buf, (size_t)size, NULL)) fail("tar archive is truncated");
  buf[size] = 0;
  skip(r, (BLOCK - size % BLOCK) % BLOCK);
  return buf;
}

static bool header_checksum_ok(const uint8_t *h) {
  int64_t want;
  if (!parse_num(h + 148, 8, &want)) return false;
  int64_t u = 0, s = 0;
  for (int i = 0; i < BLOCK; i++) {
    uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];
    u += c;
    s += (int8_t)c;
  }
  return want == u || want == s;
}

/* Reads the next real entry into e (data not consumed). Returns false at the end of the archive. */
static bool next_entry(struct reader *r, struct entry *e, struct pending *p) {
  uint8_t h[BLOCK];
  for (;;) {
    size_t got;
    cur_entry = NULL;
    if (!read_full(r, h, BLOCK, &got)) {
      if (got == 0 && !p->any) return false; /* EOF at a header boundary without end blocks (Go's reader accepts it) */
      fail("tar archive is truncated");
    }
    bool zero = true;
    for (int i = 0; i < BLOCK; i++)
      if (h[i]) {
        zero = false;
        break;
      }
    if (zero) {
      if (p->any) fail("tar archive ends after an extended header");
      return false;
    }
    if (!header_checksum_ok(h)) fail("invalid tar header checksum (corrupt or not a tar archive)");
    char type = (char)h[156];
    int64_t size;
    if (!parse_num(h + 124, 12, &size)) fail("invalid size field in tar header");
    switch (type) {
    case 'x': {
      char *buf = read_meta(r, (uint64_t)size, "PAX");
      parse_pax(buf, (size_t)size, p, false);
      free(buf);
      p->any = true;
      continue;
    }
    case 'g': {
      char *buf = read_meta(r, (uint64_t)size, "PAX global");
      free(buf);
      continue;
    }
    case 'L':
      free(p->path);
      p->path = read_meta(r, (uint64_t)size, "GNU long name");
      p->any = true;
      continue;
    case 'K':
      free(p->linkpath);
      p->linkpath = read_meta(r, (uint64_t)size, "GNU long link");
      p->any = true;
      continue;
    default:
      break;
    }

    memset(e, 0, sizeof *e);
    e->type = type;
    bool ustar = memcmp(h + 257, "ustar\0", 6) == 0; /* POSIX: has the prefix field (GNU's magic is "ustar  ") */
    if (p->path) {
      e->name = p->path;
      p->path = NULL;
    } else {
      char *name = field_str(h, 100);
      if (ustar && h[345]) {
        char *prefix = field_str(h + 345, 155);
        char *full = xmalloc(strlen(prefix) + strlen(name) + 2);
        sprintf(full, "%s/%s", prefix, name);
        free(prefix);
        free(name);
        name = full;
      }
      e->name = name;
    }
    cur_entry = e->name;
    if (p->linkpath) {
      e->linkname = p->linkpath;
      p->linkpath = NULL;
    } else {
      e->linkname = field_str(h + 157, 100);
    }
    int64_t v;
    if (!parse_num(h + 100, 8, &v)) fail("invalid mode field");
    e->mode = (uint32_t)v & 07777;
    if (p->has_uid) e->uid = p->uid;
    else if (!parse_num(h + 108, 8, &e->uid) || e->uid > UINT32_MAX - 1) fail("invalid uid field");
    if (p->has_gid) e->gid = p->gid;
    else if (!parse_num(h + 116, 8, &e->gid) || e->gid > UINT32_MAX - 1) fail("invalid gid field");
    if (p->has_mtime) e->mtime = p->mtime;
    else {
      if (!parse_num(h + 136, 12, &v)) fail("invalid mtime field");
      e->mtime.tv_sec = v;
    }
    e->atime = p->atime;
    e->has_atime = p->has_atime;
    e->size = p->has_size ? p->size : (uint64_t)size;
    if (type == '3' || type == '4') {
      if (!parse_num(h + 329, 8, &v) || v > UINT32_MAX) fail("invalid devmajor field");
      e->devmajor = (uint32_t)v;
      if (!parse_num(h + 337, 8, &v) || v > UINT32_MAX) fail("invalid devminor field");
      e->devminor = (uint32_t)v;
    }
    /* header-only types carry no data whatever the size field says (as Go's reader) */
    if (type == '1' || type == '2' || type == '3' || type == '4' || type == '5' || type == '6') e->size = 0;
    e->xattrs = p->xattrs;
    e->nxattrs = p->nxattrs;
    p->xattrs = NULL;
    p->nxattrs = 0;
    bool sparse = p->sparse;
    pending_clear(p);
    if (sparse) fail("sparse files (GNU.sparse PAX records) are not supported");
    return true;
  }
}

static void entry_free(struct entry *e) {
  free(e->name);
  free(e->linkname);
  xattrs_free(e->xattrs, e->nxattrs);
  memset(e, 0, sizeof *e);
}

/* ---------- paths ---------- */

/*
 * Cleans name lexically: no leading "/", no "." or empty components, ".." removes the previous
 * component and never climbs above the root. Returns a new string ("" = the root itself).
 */
static char *clean_path(const char *name) {
  size_t n = strlen(name);
  char *out = xmalloc(n + 1);
  size_t o = 0;
  const char *s = name;
  while (*s) {
    while (*s == '/') s++;
    const char *c = s;
    while (*s && *s != '/') s++;
    size_t len = (size_t)(s - c);
    if (len == 0 || (len == 1 && c[0] == '.')) continue;
    if (len == 2 && c[0] == '.' && c[1] == '.') {
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--; /* the slash */
      continue;
    }
    if (o > 0) out[o++] = '/';
    memcpy(out + o, c, len);
    o += len;
  }
  out[o] = 0;
  return out;
}

static int dest_fd;

static int openat2_in_root(const char *path, uint64_t flags) {
  struct open_how how = {.flags = flags, .mode = 0, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
  for (;;) {
    long fd = syscall(SYS_openat2, dest_fd, path, &how, sizeof how);
    if (fd < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    return (int)fd;
  }
}

/* The one cached parent directory fd (consecutive entries mostly share their parent). */
static char *cache_path;
static int cache_fd = -1;
static bool cache_stale; /* something was removed: the cached path may now resolve elsewhere */

static void cache_drop(void) {
  if (cache_fd >= 0) close(cache_fd);
  cache_fd = -1;
  free(cache_path);
  cache_path = NULL;
}

/* Directories made because an entry needed them, not from an entry of their own (see --made-dirs). */
static char **made_dirs;
static size_t nmade_dirs, cap_made_dirs;

static void record_made_dir(const char *path) {
  if (nmade_dirs == cap_made_dirs) {
    cap_made_dirs = cap_made_dirs ? cap_made_dirs * 2 : 16;
    made_dirs = realloc(made_dirs, cap_made_dirs * sizeof *made_dirs);
    if (!made_dirs) fail("out of memory");
  }
  made_dirs[nmade_dirs] = strdup(path);
  if (!made_dirs[nmade_dirs]) fail("out of memory");
  nmade_dirs++;
}

/*
 * Opens directory `dir` (a cleaned path, "" = DEST) in-root. With `create`, missing directories are
 * made 0755 root:root, also where a dangling symlink of the layer points (its target is made, in-root,
 * as containerd's applier does). Without, returns -1 (errno set) when it cannot be opened.
 */
static int open_dir_depth(const char *dir, bool create, int depth) {
  if (dir[0] == 0) return dup(dest_fd);
  int fd = openat2_in_root(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0 || !create) return fd;
  if (errno != ENOENT) fail("parent directory %s: %s", dir, strerror(errno));
  if (depth > 40) fail("parent directory %s: too many levels of symbolic links", dir);
  /* make the missing ones, component by component (each resolved in-root from DEST) */
  char *buf = strdup(dir);
  if (!buf) fail("out of memory");
  int parent = dup(dest_fd);
  char *c = buf;
  for (;;) {
    char *slash = strchr(c, '/');
    if (slash) *slash = 0;
    int next = openat2_in_root(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (next < 0 && errno == ENOENT) {
      if (mkdirat(parent, c, 0755) == 0) {
        if (fchownat(parent, c, 0, 0, AT_SYMLINK_NOFOLLOW) < 0) fail("chown parent directory %s: %s", buf, strerror(errno));
        record_made_dir(buf);
      } else if (errno == EEXIST) {
        /* a dangling symlink: make its target, taken lexically from where the link is */
        char target[PATH_MAX];
        ssize_t n = readlinkat(parent, c, target, sizeof target - 1);
        if (n < 0) fail("parent directory %s: %s", buf, strerror(errno));
        target[n] = 0;
        size_t plen = (size_t)(c - buf);
        char *joined = xmalloc(plen + (size_t)n + 2);
        if (target[0] == '/') strcpy(joined, target);
        else sprintf(joined, "%.*s%s", (int)plen, buf, target);
        char *to = clean_path(joined);
        int t = open_dir_depth(to, true, depth + 1);
        close(t);
        free(to);
        free(joined);
      } else {
        fail("make parent directory %s: %s", buf, strerror(errno));
      }
      next = openat2_in_root(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (next < 0) fail("parent directory %s: %s", buf, strerror(errno));
    close(parent);
    parent = next;
    if (!slash) break;
    *slash = '/';
    c = slash + 1;
  }
  free(buf);
  return parent;
}

static int open_dir(const char *dir, bool create) {
  return open_dir_depth(dir, create, 0);
}

/* The cached parent fd for dir (do not close it). */
static int parent_fd(const char *dir) {
  if (cache_path && !cache_stale && strcmp(cache_path, dir) == 0) return cache_fd;
  cache_drop();
  cache_stale = false;
  cache_fd = open_dir(dir, true);
  cache_path = strdup(dir);
  if (!cache_path) fail("out of memory");
  return cache_fd;
}

static void split(char *clean, char **dir, char **base) {
  char *slash = strrchr(clean, '/');
  if (slash) {
    *slash = 0;
    *dir = clean;
    *base = slash + 1;
  } else {
    *dir = "";
    *base = clean;
  }
}

static void remove_tree_at(int pfd, const char *name) {
  int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) fail("open %s to replace it: %s", name, strerror(errno));
  DIR *d = fdopendir(fd);
  if (!d) fail("read directory %s: %s", name, strerror(errno));
  struct dirent *de;
  while ((errno = 0, de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) fail("stat %s/%s: %s", name, de->d_name, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
      remove_tree_at(fd, de->d_name);
    } else if (unlinkat(fd, de->d_name, 0) < 0) {
      fail("remove %s/%s: %s", name, de->d_name, strerror(errno));
    }
  }
  if (errno) fail("read directory %s: %s", name, strerror(errno));
  closedir(d);
  if (unlinkat(pfd, name, AT_REMOVEDIR) < 0) fail("remove directory %s: %s", name, strerror(errno));
}

/*
 * Makes room for a new entry `name` in pfd: returns true if a directory is there and is kept (keep_dir),
 * else removes whatever is there.
 */
static bool make_room(int pfd, const char *name, bool keep_dir) {
  struct stat st;
  if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return false;
    fail("stat: %s", strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    if (keep_dir) return true;
    remove_tree_at(pfd, name);
  } else if (unlinkat(pfd, name, 0) < 0) {
    fail("replace existing entry: %s", strerror(errno));
  }
  /* a removed directory or symlink may have been on the cached path; the caller's fd stays open until the next lookup */
  cache_stale = true;
  return false;
}

/* ---------- metadata ---------- */

static void set_xattrs_fd(int fd, const struct entry *e) {
  for (size_t i = 0; i < e->nxattrs; i++) {
    if (fsetxattr(fd, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].len, 0) < 0 && errno != ENOTSUP)
      fail("set xattr %s: %s", e->xattrs[i].name, strerror(errno));
  }
}

/* xattrs on an entry we do not open (symlink, device, fifo): the path goes through our parent fd. */
static void set_xattrs_at(int pfd, const char *name, const struct entry *e) {
  if (e->nxattrs == 0) return;
  char path[64 + NAME_MAX];
  if ((size_t)snprintf(path, sizeof path, "/proc/self/fd/%d/%s", pfd, name) >= sizeof path) fail("name too long");
  for (size_t i = 0; i < e->nxattrs; i++) {
    if (lsetxattr(path, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].len, 0) == 0 || errno == ENOTSUP) continue;
    /* the kernel allows user.* only on files and directories: such an xattr cannot exist here, skip it */
    if (errno == EPERM && strncmp(e->xattrs[i].name, "user.", 5) == 0) continue;
    fail("set xattr %s: %s", e->xattrs[i].name, strerror(errno));
  }
}

static void entry_times(const struct entry *e, struct timespec ts[2]) {
  ts[1] = e->mtime;
  ts[0] = e->mtime; /* atime: the later of atime and mtime, as containerd */
  if (e->has_atime && (e->atime.tv_sec > e->mtime.tv_sec || (e->atime.tv_sec == e->mtime.tv_sec && e->atime.tv_nsec > e->mtime.tv_nsec)))
    ts[0] = e->atime;
}

struct dir_time {
  char *path; /* cleaned */
  int depth;
  size_t seq;
  struct timespec ts[2];
};
static struct dir_time *dir_times;
static size_t ndir_times, cap_dir_times;

static void record_dir_time(const char *path, const struct entry *e) {
  if (ndir_times == cap_dir_times) {
    cap_dir_times = cap_dir_times ? cap_dir_times * 2 : 256;
    dir_times = realloc(dir_times, cap_dir_times * sizeof *dir_times);
    if (!dir_times) fail("out of memory");
  }
  struct dir_time *d = &dir_times[ndir_times];
  d->path = strdup(path);
  if (!d->path) fail("out of memory");
  d->depth = 0;
  for (const char *s = path; *s; s++) d->depth += *s == '/';
  d->seq = ndir_times++;
  entry_times(e, d->ts);
}

static int by_depth_desc(const void *a, const void *b) {
  const struct dir_time *x = a, *y = b;
  if (x->depth != y->depth) return y->depth - x->depth;
  return x->seq < y->seq ? -1 : x->seq > y->seq; /* later records win */
}

static void apply_dir_times(void) {
  if (ndir_times == 0) return;
  qsort(dir_times, ndir_times, sizeof *dir_times, by_depth_desc);
  for (size_t i = 0; i < ndir_times; i++) {
    struct dir_time *d = &dir_times[i];
    cur_entry = d->path;
    char *copy = strdup(d->path), *dir, *base;
    if (!copy) fail("out of memory");
    split(copy, &dir, &base);
    int pfd = open_dir(dir, false);
    if (pfd < 0) { /* removed by a later entry */
      free(copy);
      continue;
    }
    struct stat st;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
        utimensat(pfd, base, d->ts, AT_SYMLINK_NOFOLLOW) < 0)
      fail("set times: %s", strerror(errno));
    close(pfd);
    free(copy);
  }
}

/*
 * With --made-dirs: after the diff id line, each directory made only as a parent (no entry of the layer
 * gave its metadata) as its path below DEST, NUL-terminated. The caller copies their mode and owner
 * from the lower layers, which this process cannot see (the parent chain may not be unpacked yet).
 */
static void print_made_dirs(void) {
  for (size_t i = 0; i < nmade_dirs; i++) {
    bool explicit_entry = false;
    for (size_t k = 0; k < ndir_times && !explicit_entry; k++) explicit_entry = strcmp(dir_times[k].path, made_dirs[i]) == 0;
    if (explicit_entry) continue;
    if (fputs(made_dirs[i], stdout) < 0 || fputc(0, stdout) < 0) fail("write stdout: %s", strerror(errno));
  }
}

/* ---------- extraction ---------- */

static void write_data(struct reader *r, int fd, uint64_t size) {
  while (size > 0) {
    size_t a = avail(r);
    if (a == 0) fail("tar archive is truncated");
    size_t k = a < size ? a : (size_t)size;
    const uint8_t *p = r->out + r->out_pos;
    size_t left = k;
    while (left > 0) {
      ssize_t w = write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail("write: %s", strerror(errno));
      p += w;
      left -= (size_t)w;
    }
    r->out_pos += k;
    size -= k;
  }
}

static void chown_at(int pfd, const char *name, const struct entry *e) {
  if (fchownat(pfd, name, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) < 0) fail("chown: %s", strerror(errno));
}

static void extract_whiteout(const char *dir, const char *base, const struct entry *e) {
  int pfd = parent_fd(dir);
  if (strcmp(base, ".wh..wh..opq") == 0) {
    if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) < 0) fail("set trusted.overlay.opaque: %s", strerror(errno));
    return;
  }
  if (strncmp(base, ".wh..wh.", 8) == 0) return; /* aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not for overlay */
  const char *name = base + 4;
  if (name[0] == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) fail("invalid whiteout name");
  make_room(pfd, name, false);
  if (mknodat(pfd, name, S_IFCHR, makedev(0, 0)) < 0) fail("make whiteout device: %s", strerror(errno));
  chown_at(pfd, name, e);
}

static uint64_t extract_entry(struct reader *r, struct entry *e, const char *dir, const char *base);

static void extract(struct reader *r, struct entry *e) {
  char *clean = clean_path(e->name);
  char *dir, *base;
  split(clean, &dir, &base);
  uint64_t data = e->size; /* bytes still to consume (regular files write them) */
  if (base[0] == 0) { /* the root itself ("./"): nothing to create, as containerd */
  } else if (strncmp(base, ".wh.", 4) == 0) {
    extract_whiteout(dir, base, e);
  } else {
    data = extract_entry(r, e, dir, base);
  }
  skip(r, data + (BLOCK - e->size % BLOCK) % BLOCK);
  free(clean);
}

/* Creates one non-whiteout entry; returns how many data bytes are left unread. */
static uint64_t extract_entry(struct reader *r, struct entry *e, const char *dir, const char *base) {
  int pfd;
  uint64_t data_left = e->size;
  struct timespec ts[2];
  entry_times(e, ts);
  switch (e->type) {
  case '0':
  case '\0':
  case '7': {
    pfd = parent_fd(dir);
    make_room(pfd, base, false);
    int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) fail("create: %s", strerror(errno));
    write_data(r, fd, e->size);
    data_left = 0;
    if (fchown(fd, (uid_t)e->uid, (gid_t)e->gid) < 0) fail("chown: %s", strerror(errno));
    if (fchmod(fd, e->mode) < 0) fail("chmod: %s", strerror(errno));
    set_xattrs_fd(fd, e);
    if (futimens(fd, ts) < 0) fail("set times: %s", strerror(errno));
    if (close(fd) < 0) fail("close: %s", strerror(errno));
    break;
  }
  case '5': {
    pfd = parent_fd(dir);
    if (!make_room(pfd, base, true) && mkdirat(pfd, base, 0700) < 0) fail("mkdir: %s", strerror(errno));
    int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) fail("open directory: %s", strerror(errno));
    if (fchown(fd, (uid_t)e->uid, (gid_t)e->gid) < 0) fail("chown: %s", strerror(errno));
    if (fchmod(fd, e->mode) < 0) fail("chmod: %s", strerror(errno));
    set_xattrs_fd(fd, e);
    close(fd);
    char *full = clean_path(e->name);
    record_dir_time(full, e);
    free(full);
    break;
  }
  case '2':
    pfd = parent_fd(dir);
    make_room(pfd, base, false);
    if (symlinkat(e->linkname, pfd, base) < 0) fail("symlink: %s", strerror(errno));
    chown_at(pfd, base, e);
    set_xattrs_at(pfd, base, e); /* no chmod: Linux symlinks have no mode of their own */
    if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0) fail("set times: %s", strerror(errno));
    break;
  case '1': {
    char *target = clean_path(e->linkname);
    char *tdir, *tbase;
    split(target, &tdir, &tbase);
    if (tbase[0] == 0) fail("hardlink target %s is the layer root", e->linkname);
    pfd = parent_fd(dir);
    int tfd = open_dir(tdir, false);
    if (tfd < 0) fail("hardlink target %s does not exist in the layer", e->linkname);
    struct stat tst, st;
    if (fstatat(tfd, tbase, &tst, AT_SYMLINK_NOFOLLOW) < 0) fail("hardlink target %s: %s", e->linkname, strerror(errno));
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == tst.st_dev && st.st_ino == tst.st_ino) {
      close(tfd); /* already that file */
      free(target);
      break;
    }
    if (S_ISDIR(tst.st_mode)) fail("hardlink target %s is a directory", e->linkname);
    make_room(pfd, base, false);
    if (linkat(tfd, tbase, pfd, base, 0) < 0) fail("hardlink to %s: %s", e->linkname, strerror(errno));
    close(tfd);
    free(target);
    break;
  }
  case '3':
  case '4':
  case '6': {
    pfd = parent_fd(dir);
    make_room(pfd, base, false);
    mode_t kind = e->type == '3' ? S_IFCHR : e->type == '4' ? S_IFBLK : S_IFIFO;
    dev_t dev = e->type == '6' ? 0 : makedev(e->devmajor, e->devminor);
    if (mknodat(pfd, base, kind | (e->mode & 0777), dev) < 0) fail("mknod: %s", strerror(errno));
    chown_at(pfd, base, e);
    if (fchmodat(pfd, base, e->mode, AT_SYMLINK_NOFOLLOW) < 0) fail("chmod: %s", strerror(errno));
    set_xattrs_at(pfd, base, e);
    if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0) fail("set times: %s", strerror(errno));
    break;
  }
  default:
    if (e->type >= 0x20 && e->type < 0x7f) fail("unsupported tar entry type '%c'", e->type);
    fail("unsupported tar entry type 0x%02x", (unsigned char)e->type);
  }
  return data_left;
}

/* ---------- main ---------- */

/* A decimal count of at most `max` (digits only). */
static bool parse_count(const char *s, uint64_t max, uint64_t *out) {
  if (*s < '0' || *s > '9') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max) return false;
  *out = v;
  return true;
}

__attribute__((noreturn)) static void usage(void) {
  fputs("crisp-untar: usage: crisp-untar [--compression gzip|zstd|none] [--made-dirs] [--follow SIZE [--follow-idle-ms N]] BLOB DEST\n", stderr);
  exit(2);
}

int main(int argc, char **argv) {
  int i = 1;
  int kind = -1;
  bool report_made_dirs = false;
  const char *follow = NULL, *idle = NULL;
  while (i < argc && strncmp(argv[i], "--", 2) == 0) {
    const char *v = NULL;
    if (strcmp(argv[i], "--made-dirs") == 0) {
      report_made_dirs = true;
      i++;
      continue;
    }
    if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "--follow-idle-ms") == 0) {
      if (i + 1 >= argc) usage();
      if (strcmp(argv[i], "--follow") == 0) follow = argv[i + 1];
      else idle = argv[i + 1];
      i += 2;
      continue;
    }
    if (strcmp(argv[i], "--compression") == 0) {
      if (i + 1 >= argc) usage();
      v = argv[i + 1];
      i += 2;
    } else if (strncmp(argv[i], "--compression=", 14) == 0) {
      v = argv[i] + 14;
      i++;
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else {
      usage();
    }
    if (strcmp(v, "gzip") == 0) kind = C_GZIP;
    else if (strcmp(v, "zstd") == 0) kind = C_ZSTD;
    else if (strcmp(v, "none") == 0) kind = C_NONE;
    else usage();
  }
  if (argc - i != 2) usage();
  if ((follow || idle) && (!follow || kind < 0)) usage();
  uint64_t follow_size = 0, idle_ms = 60000;
  if ((follow && !parse_count(follow, UINT64_MAX, &follow_size)) || (idle && !parse_count(idle, INT32_MAX, &idle_ms))) usage();
  const char *blob = argv[i], *dest = argv[i + 1];
  umask(0);

  struct reader r;
  memset(&r, 0, sizeof r);
  r.blob.fd = open(blob, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (r.blob.fd < 0) fail("open layer blob %s: %s", blob, strerror(errno));
  struct stat st;
  if (fstat(r.blob.fd, &st) < 0 || !S_ISREG(st.st_mode)) fail("layer blob %s is not a regular file", blob);
  /* No extraction outlives crispd (through crisp-spawner, which exits when crispd does): a follower can
   * wait long for its download, a large layer takes a while, and a new crispd empties the staging dir. */
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl: %s", strerror(errno));
  if (getppid() != parent) exit(1); /* the parent went before the line above */
  if (follow) {
    r.blob.follow = true;
    r.blob.size = follow_size;
    r.blob.idle_ms = (int)idle_ms;
    r.blob.watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r.blob.watch < 0) fail("inotify: %s", strerror(errno));
    /* the path, not the fd: a write through another fd of the same file is what wakes us */
    if (inotify_add_watch(r.blob.watch, blob, IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB) < 0) fail("watch layer blob %s: %s", blob, strerror(errno));
  }
  dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dest_fd < 0) fail("open destination %s: %s", dest, strerror(errno));
  if (kind < 0) {
    uint8_t m[4] = {0};
    ssize_t n = pread(r.blob.fd, m, sizeof m, 0);
    if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) kind = C_GZIP;
    else if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) kind = C_ZSTD;
    else kind = C_NONE;
  }
  r.kind = (enum compression)kind;
  r.in = xmalloc(IN_SIZE);
  r.out = xmalloc(OUT_SIZE);
  r.md = EVP_MD_CTX_new();
  if (!r.md || EVP_DigestInit_ex(r.md, EVP_sha256(), NULL) != 1) fail("sha256 init failed");
  if (r.kind == C_GZIP) {
#ifdef HAVE_ISAL
    isal_inflate_init(&r.isal);
    r.isal.crc_flag = ISAL_GZIP;
#else
    if (inflateInit2(&r.z, 15 + 16) != Z_OK) fail("zlib init failed");
#endif
  } else if (r.kind == C_ZSTD) {
    r.zs = ZSTD_createDStream();
    if (!r.zs) fail("zstd init failed");
    ZSTD_initDStream(r.zs);
  }

  struct entry e;
  struct pending p;
  memset(&p, 0, sizeof p);
  while (next_entry(&r, &e, &p)) {
    extract(&r, &e);
    entry_free(&e);
  }
  cur_entry = NULL;
  /* the rest of the stream (second end block, padding) belongs to the diff id, and decompression must end cleanly */
  while (avail(&r) > 0) r.out_pos = r.out_len;
  apply_dir_times();
  cur_entry = NULL;

  unsigned char digest[32];
  unsigned int dlen = 0;
  if (EVP_DigestFinal_ex(r.md, digest, &dlen) != 1 || dlen != 32) fail("sha256 failed");
  char hex[65];
  for (int k = 0; k < 32; k++) sprintf(hex + 2 * k, "%02x", digest[k]);
  if (printf("sha256:%s\n", hex) < 0) fail("write stdout: %s", strerror(errno));
  if (report_made_dirs) print_made_dirs();
  if (fflush(stdout) != 0) fail("write stdout: %s", strerror(errno));
  return 0;
}
