// crisp-shim-start: stands in front of the runc v2 shim for crisp's embedded containerd and answers the
// shim's `start` command itself when the container joins a shim that already runs, and its `delete`
// command when there is nothing left to clean up.
//
// containerd runs `<shim> -namespace N -address A -publish-binary B -id ID start` in the task's bundle
// for every task it creates. The runc v2 shim groups a pod's containers: it reads the group from the
// bundle's config.json annotations ("io.containerd.runc.v2.group", else "io.kubernetes.cri.sandbox-id",
// else the task id), names its socket /run/containerd/s/<hex SHA-256 of "A/N/group">, and when a shim
// already listens there it only writes that address into the bundle's `address` file and prints it.
// That answer costs a Go program's start-up (30+ ms on an idle machine, far more under load); here it
// costs a file read, a hash and a connect. Every other case — another command, a flag this file does
// not know, a spec it cannot read exactly as the shim would, a group with no shim listening — is
// handed to the real shim (CRISP_SHIM_BINARY, set by crispd in containerd's environment) by exec,
// with the same arguments and an untouched stdin (a new shim reads its runtime options from it).
//
// When no shim serves the group yet, it starts one as the shim's `start` would, without the Go
// start-up of that command: the socket (bound, listening, mode 0600), the bundle's `address` file, the
// shim daemon `<shim> -namespace N -id ID -address A [-debug]` in its own process group with the socket
// as fd 3, /dev/null as stdio, GOMAXPROCS=4 added to the environment, and an OOM score one above its
// parent's (containerd's). Runtime options on stdin that ask for a shim cgroup (or that it cannot read)
// hand the start to the real shim, with the bytes read so far fed to it again.
//
// Exit status and stdout are the shim's: 0 and the address, no newline (containerd reads its combined
// output as the address, so nothing goes to stderr on success).
//
// `delete` (`-id ID -bundle B delete`, run in the bundle) is what containerd 1.x runs whenever its
// connection to a task's shim closes — after every normal task delete too. The shim then force-deletes
// the container with runc (root from the bundle's options.json, "/run/containerd/runc" without one, plus
// the namespace), unmounts the bundle's rootfs, and prints a DeleteResponse (the pid of the bundle's
// init.pid when it reads one, exit status 137, exited now). After a normal delete both are done already; when the runc state directory is gone and rootfs
// is no mount, this program prints the same answer without the shim's start-up. Otherwise the shim runs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SHIM_ENV "CRISP_SHIM_BINARY"
#define SOCKET_DIR "/run/containerd/s/"
#define MAX_SPEC (16u << 20)
#define MAX_NAME 1024
#define DEFAULT_RUNC_ROOT "/run/containerd/runc"
#define MAX_OPTIONS (64u << 10)
#define MAX_STDIN (1u << 20)

// ---- SHA-256 (FIPS 180-4) ----------------------------------------------------------------------

struct sha256 {
  uint32_t h[8];
  uint8_t block[64];
  size_t used;
  uint64_t bytes;
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(struct sha256 *s, const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(struct sha256 *s) {
  static const uint32_t init[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, init, sizeof init);
  s->used = 0;
  s->bytes = 0;
}

static void sha256_update(struct sha256 *s, const void *data, size_t n) {
  const uint8_t *p = data;
  s->bytes += n;
  while (n > 0) {
    size_t take = 64 - s->used < n ? 64 - s->used : n;
    memcpy(s->block + s->used, p, take);
    s->used += take, p += take, n -= take;
    if (s->used == 64) {
      sha256_block(s, s->block);
      s->used = 0;
    }
  }
}

static void sha256_hex(struct sha256 *s, char out[65]) {
  uint64_t bits = s->bytes * 8;
  uint8_t pad = 0x80, zero = 0, len[8];
  sha256_update(s, &pad, 1);
  while (s->used != 56) sha256_update(s, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
  sha256_update(s, len, 8);
  for (int i = 0; i < 8; i++) sprintf(out + 8 * i, "%08x", s->h[i]);
}

// ---- the spec's group annotation, read as the shim's JSON decoder would --------------------------

// A cursor over config.json. Any input this reader is not sure the shim would read the same way makes
// it give up (`fail`), and the real shim decides.
struct json {
  const char *p, *end;
  int fail;
};

static void skip_ws(struct json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int expect(struct json *j, char c) {
  skip_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  j->fail = 1;
  return 0;
}

// A string's raw bytes (between the quotes). `plain` is cleared when it has escapes or bytes that are
// not printable ASCII: such a key or value is not compared here.
static int read_string(struct json *j, const char **start, size_t *len, int *plain) {
  if (!expect(j, '"')) return 0;
  *start = j->p;
  *plain = 1;
  while (j->p < j->end && *j->p != '"') {
    unsigned char c = (unsigned char)*j->p;
    if (c < 0x20) return j->fail = 1, 0;
    if (c == '\\') {
      *plain = 0;
      if (++j->p >= j->end) break;
    } else if (c >= 0x7f) {
      *plain = 0;
    }
    j->p++;
  }
  if (j->p >= j->end) return j->fail = 1, 0;
  *len = (size_t)(j->p - *start);
  j->p++;
  return 1;
}

static void skip_value(struct json *j, int depth);

// One member of an object: reads (or skips) its value, or sets j->fail.
typedef void member_fn(struct json *j, const char *key, size_t klen, int plain, void *ctx);

// An object, `{` included: `member` for each of its members, in order.
static void read_object(struct json *j, member_fn *member, void *ctx) {
  if (!expect(j, '{')) return;
  skip_ws(j);
  if (j->p < j->end && *j->p == '}') {
    j->p++;
    return;
  }
  for (;;) {
    const char *key;
    size_t klen;
    int plain;
    if (!read_string(j, &key, &klen, &plain) || !expect(j, ':')) return;
    member(j, key, klen, plain, ctx);
    if (j->fail) return;
    skip_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    expect(j, '}');
    return;
  }
}

// A whole document that is one object: 1 when it read to the end.
static int read_document(const char *buf, size_t n, member_fn *member, void *ctx) {
  struct json j = {buf, buf + n, 0};
  read_object(&j, member, ctx);
  skip_ws(&j);
  return !j.fail && j.p == j.end;
}

static void skip_member(struct json *j, const char *key, size_t klen, int plain, void *depth) {
  (void)key, (void)klen, (void)plain;
  skip_value(j, *(int *)depth + 1);
}

static void skip_array(struct json *j, int depth) {
  skip_ws(j);
  if (j->p < j->end && *j->p == ']') {
    j->p++;
    return;
  }
  for (;;) {
    skip_value(j, depth + 1);
    if (j->fail) return;
    skip_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    expect(j, ']');
    return;
  }
}

static void skip_literal(struct json *j, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) {
    j->fail = 1;
    return;
  }
  j->p += n;
}

static void skip_value(struct json *j, int depth) {
  skip_ws(j);
  if (depth > 64 || j->p >= j->end) {
    j->fail = 1;
    return;
  }
  const char *s;
  size_t n;
  int plain;
  switch (*j->p) {
  case '{': read_object(j, skip_member, &depth); return;
  case '[': j->p++, skip_array(j, depth); return;
  case '"': read_string(j, &s, &n, &plain); return;
  case 't': skip_literal(j, "true"); return;
  case 'f': skip_literal(j, "false"); return;
  case 'n': skip_literal(j, "null"); return;
  default:
    if (*j->p != '-' && (*j->p < '0' || *j->p > '9')) {
      j->fail = 1;
      return;
    }
    while (j->p < j->end && *j->p != '\0' && strchr("+-.0123456789eE", *j->p) != NULL) j->p++;
  }
}

static int equals(const char *s, size_t n, const char *word) { return n == strlen(word) && memcmp(s, word, n) == 0; }

static int equals_folded(const char *s, size_t n, const char *word) { return n == strlen(word) && strncasecmp(s, word, n) == 0; }

// The annotations the shim groups by, in the order it looks for them.
static const char *const GROUP_LABELS[] = {"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"};
#define NLABELS (sizeof GROUP_LABELS / sizeof GROUP_LABELS[0])

struct found {
  const char *value[NLABELS];
  size_t len[NLABELS];
};

// One annotation: the last value of each group label wins, as in the decoder's map.
static void annotation_member(struct json *j, const char *key, size_t klen, int kplain, void *ctx) {
  struct found *f = ctx;
  const char *val;
  size_t vlen;
  int vplain;
  skip_ws(j);
  // A non-string value makes the shim's decoder fail: let the shim say so.
  if (j->p >= j->end || *j->p != '"') return (void)(j->fail = 1);
  if (!read_string(j, &val, &vlen, &vplain)) return;
  for (size_t i = 0; i < NLABELS; i++) {
    if (kplain && equals(key, klen, GROUP_LABELS[i])) {
      if (!vplain) return (void)(j->fail = 1);
      f->value[i] = val;
      f->len[i] = vlen;
    }
  }
  // A key with escapes could decode to a group label.
  if (!kplain && memchr(key, '\\', klen) != NULL) j->fail = 1;
}

// A top-level field of an object read for one field `want` (exact case, at most once); the others are
// skipped. The decoder matches field names without regard to case, and folds some non-ASCII letters
// too: a field it could take for `want` makes the reader unsure.
struct one_field {
  const char *want;
  void (*read)(struct json *j, void *ctx);
  void *ctx;
  int seen;
};

static void one_field_member(struct json *j, const char *key, size_t klen, int plain, void *ctx) {
  struct one_field *o = ctx;
  if (!plain) return (void)(j->fail = 1);
  if (!equals_folded(key, klen, o->want)) return skip_value(j, 1);
  if (o->seen++ || !equals(key, klen, o->want)) return (void)(j->fail = 1);
  o->read(j, o->ctx);
}

// The annotations field: null, or an object of string values.
static void read_annotations(struct json *j, void *found) {
  skip_ws(j);
  if (j->p < j->end && *j->p == 'n') return skip_literal(j, "null");
  read_object(j, annotation_member, found);
}

// The group of the spec in `buf`: 1 with *group set (NULL = no label: the task id), 0 when unsure.
static int spec_group(const char *buf, size_t n, const char **group, size_t *glen) {
  struct found f = {{0}, {0}};
  struct one_field annotations = {"annotations", read_annotations, &f, 0};
  if (!read_document(buf, n, one_field_member, &annotations)) return 0;
  *group = NULL;
  for (size_t i = 0; i < NLABELS; i++) {
    if (f.value[i] != NULL) {
      *group = f.value[i];
      *glen = f.len[i];
      break;
    }
  }
  return 1;
}

// A regular file of the bundle (the working directory), whole: 1, or 0 when it cannot be read.
static int read_file(const char *name, uint64_t max, char **out, size_t *n) {
  int fd = open(name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > max) {
    close(fd);
    return 0;
  }
  char *buf = malloc((size_t)st.st_size);
  size_t got = 0;
  while (buf != NULL && got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (buf == NULL || got != (size_t)st.st_size) {
    free(buf);
    return 0;
  }
  *out = buf;
  *n = got;
  return 1;
}

// ---- the command line -----------------------------------------------------------------------------

struct args {
  const char *namespace, *address, *id, *bundle, *action;
  int debug;
};

static int flag_name(const char *arg, const char **name, size_t *len, const char **inline_value) {
  if (arg[0] != '-' || arg[1] == '\0') return 0;
  const char *n = arg + 1 + (arg[1] == '-');
  const char *eq = strchr(n, '=');
  *name = n;
  *len = eq ? (size_t)(eq - n) : strlen(n);
  *inline_value = eq ? eq + 1 : NULL;
  return *len > 0;
}

// The shim's flags, as containerd passes them: 1 when every argument is understood.
static int parse_args(int argc, char **argv, struct args *a) {
  static const char *const valued[] = {"namespace", "address", "id", "publish-binary", "socket", "bundle"};
  for (int i = 1; i < argc; i++) {
    const char *name, *value;
    size_t len;
    if (!flag_name(argv[i], &name, &len, &value)) {
      a->action = argv[i];
      return 1;
    }
    if (equals(name, len, "debug") || equals(name, len, "v")) {
      if (value != NULL) return 0;
      if (equals(name, len, "debug")) a->debug = 1;
      continue;
    }
    int known = 0;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= equals(name, len, valued[k]);
    if (!known) return 0;
    if (value == NULL) {
      if (++i >= argc) return 0;
      value = argv[i];
    }
    if (equals(name, len, "namespace")) a->namespace = value;
    if (equals(name, len, "address")) a->address = value;
    if (equals(name, len, "id")) a->id = value;
    if (equals(name, len, "bundle")) a->bundle = value;
  }
  return 1;
}

// A path element the shim's path join keeps as it is.
static int clean_element(const char *s, size_t n) {
  if (n == 0 || n > MAX_NAME || equals(s, n, ".") || equals(s, n, "..")) return 0;
  return memchr(s, '/', n) == NULL && memchr(s, '\0', n) == NULL;
}

// An absolute path the shim's path join keeps as it is: no empty, "." or ".." element, no trailing slash.
static int clean_path(const char *s) {
  size_t n = strlen(s);
  if (n < 2 || n > MAX_NAME || s[0] != '/' || s[n - 1] == '/') return 0;
  for (const char *p = s + 1; p < s + n;) {
    const char *slash = memchr(p, '/', (size_t)(s + n - p));
    size_t len = slash ? (size_t)(slash - p) : (size_t)(s + n - p);
    if (!clean_element(p, len)) return 0;
    p += len + 1;
  }
  return 1;
}

// ---- the answer ---------------------------------------------------------------------------------

static int can_connect(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) return 0;
  strcpy(sa.sun_path, path);
  // Non-blocking: a listener whose backlog is full is not waited for; the real shim handles that case.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return 0;
  int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  return ok;
}

// The bundle's `address` file, replaced whole (a temporary file renamed over it), as the shim writes it.
static int write_address(const char *address) {
  int fd = open(".address", O_RDWR | O_CREAT | O_EXCL | O_SYNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) return 0;
  size_t n = strlen(address);
  int ok = write(fd, address, n) == (ssize_t)n;
  ok = close(fd) == 0 && ok;
  if (ok && rename(".address", "address") == 0) return 1;
  unlink(".address");
  return 0;
}

// containerd writes the runtime options to stdin and closes it; a joining start has no use for them.
static void drain_stdin(void) {
  char buf[4096];
  for (;;) {
    ssize_t r = read(0, buf, sizeof buf);
    if (r > 0 || (r < 0 && errno == EINTR)) continue;
    return;
  }
}

// The group's socket path and address: 1, or 0 when the spec or the arguments are not read exactly.
static int group_socket(const struct args *a, char socket_path[sizeof SOCKET_DIR + 64], char address[sizeof "unix://" + sizeof SOCKET_DIR + 64]) {
  if (a->namespace == NULL || a->address == NULL || a->id == NULL) return 0;
  if (!clean_path(a->address) || !clean_element(a->namespace, strlen(a->namespace)) || !clean_element(a->id, strlen(a->id))) return 0;
  char *spec;
  size_t n;
  if (!read_file("config.json", MAX_SPEC, &spec, &n)) return 0;
  const char *group;
  size_t glen = 0;
  int known = spec_group(spec, n, &group, &glen);
  if (known && group == NULL) group = a->id, glen = strlen(a->id);
  if (!known || !clean_element(group, glen)) {
    free(spec);
    return 0;
  }
  struct sha256 s;
  char hex[65];
  sha256_init(&s);
  sha256_update(&s, a->address, strlen(a->address));
  sha256_update(&s, "/", 1);
  sha256_update(&s, a->namespace, strlen(a->namespace));
  sha256_update(&s, "/", 1);
  sha256_update(&s, group, glen);
  sha256_hex(&s, hex);
  free(spec);
  snprintf(socket_path, sizeof SOCKET_DIR + 64, "%s%s", SOCKET_DIR, hex);
  snprintf(address, sizeof "unix://" + sizeof SOCKET_DIR + 64, "unix://%s", socket_path);
  return 1;
}

static int answer(const char *address) {
  size_t len = strlen(address);
  return write(1, address, len) == (ssize_t)len;
}

// stdin as read so far, for the real shim when this program hands a start over after reading it.
struct input {
  char *data;
  size_t len;
  int eof;
};

// Reads stdin (containerd's runtime options) to EOF, at most MAX_STDIN bytes: 1 when all of it is in.
static int read_stdin(struct input *in) {
  size_t cap = 0;
  for (;;) {
    if (in->len == cap) {
      if (cap >= MAX_STDIN) return 0;
      char *grown = realloc(in->data, cap = cap ? cap * 2 : 4096);
      if (grown == NULL) return 0;
      in->data = grown;
    }
    ssize_t r = read(0, in->data + in->len, cap - in->len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return 0;
    if (r == 0) return in->eof = 1;
    in->len += (size_t)r;
  }
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (b < 0x80) return 1;
  }
  return 0;
}

// The value of length-delimited field `field` in a protobuf message (the last one wins), or NULL. 0 when
// the message does not parse.
static int find_bytes(const uint8_t *p, const uint8_t *end, uint64_t field, const uint8_t **out, size_t *out_len) {
  *out = NULL, *out_len = 0;
  while (p < end) {
    uint64_t key, v;
    if (!read_varint(&p, end, &key)) return 0;
    switch (key & 7) {
    case 0: if (!read_varint(&p, end, &v)) return 0; break;
    case 1: if (end - p < 8) return 0; p += 8; break;
    case 5: if (end - p < 4) return 0; p += 4; break;
    case 2:
      if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
      if (key >> 3 == field) *out = p, *out_len = (size_t)v;
      p += v;
      break;
    default: return 0;
    }
  }
  return 1;
}

#define RUNC_OPTIONS_TYPE "containerd.runc.v1.Options"

// Whether the runtime options (a google.protobuf.Any) leave the shim where containerd starts it: no
// options, or runc options without shim_cgroup (field 3). 0 for anything else.
static int options_without_shim_cgroup(const struct input *in) {
  if (in->len == 0) return 1;
  const uint8_t *p = (const uint8_t *)in->data, *end = p + in->len, *type, *value, *cgroup;
  size_t type_len, value_len, cgroup_len;
  if (!find_bytes(p, end, 1, &type, &type_len) || !find_bytes(p, end, 2, &value, &value_len)) return 0;
  size_t suffix = strlen(RUNC_OPTIONS_TYPE);
  if (type == NULL || type_len < suffix || memcmp(type + type_len - suffix, RUNC_OPTIONS_TYPE, suffix) != 0) return 0;
  if (value == NULL) return 1;
  if (!find_bytes(value, value + value_len, 3, &cgroup, &cgroup_len)) return 0;
  return cgroup == NULL || cgroup_len == 0;
}

// A listening socket at `path`, mode 0600: the fd, or -1. *joined when a shim took the path meanwhile.
static int listen_socket(const char *path, int *joined) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) return -1;
  strcpy(sa.sun_path, path);
  if (mkdir("/run/containerd", 0600) != 0 && errno != EEXIST) return -1;
  if (mkdir("/run/containerd/s", 0600) != 0 && errno != EEXIST) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  for (int attempt = 0; bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0; attempt++) {
    // In use: a shim that serves it now is joined; a socket nobody serves is stale and goes. A start
    // that has bound it but does not listen yet refuses connections for a moment: asked a few times
    // over ~10 ms before the socket counts as stale (taking it over would strand that shim).
    if (errno != EADDRINUSE || attempt > 0) return close(fd), -1;
    for (int ask = 0; ask < 5; ask++) {
      if (can_connect(path)) return close(fd), *joined = 1, -1;
      struct timespec pause = {0, 2 * 1000 * 1000};
      nanosleep(&pause, NULL);
    }
    if (unlink(path) != 0) return close(fd), -1;
  }
  if (listen(fd, SOMAXCONN) != 0 || chmod(path, 0600) != 0) {
    unlink(path);
    return close(fd), -1;
  }
  return fd;
}

// The shim daemon's environment: ours with GOMAXPROCS=4 (replacing one already there).
static char **daemon_env(void) {
  size_t n = 0;
  while (environ[n] != NULL) n++;
  char **env = calloc(n + 2, sizeof *env);
  if (env == NULL) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "GOMAXPROCS=", 11) != 0) env[k++] = environ[i];
  env[k++] = "GOMAXPROCS=4";
  env[k] = NULL;
  return env;
}

// Starts the shim daemon on socket fd `sock`: its pid, or -1.
static pid_t spawn_daemon(const char *shim, const struct args *a, int sock) {
  const char *argv[] = {shim, "-namespace", a->namespace, "-id", a->id, "-address", a->address, a->debug ? "-debug" : NULL, NULL};
  char **env = daemon_env();
  int report[2];
  if (env == NULL || pipe2(report, O_CLOEXEC) != 0) return free(env), -1;
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    // fd 3 is the listener; dup2 onto itself would keep its close-on-exec flag, so it is cleared here.
    int err = null < 0 || setpgid(0, 0) != 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
              (sock == 3 ? fcntl(3, F_SETFD, 0) : dup2(sock, 3)) < 0;
    if (!err) {
      if (null > 3) close(null);
      execve(shim, (char *const *)argv, env);
    }
    int e = errno;
    ssize_t ignored = write(report[1], &e, sizeof e);
    (void)ignored;
    _exit(127);
  }
  free(env);
  close(report[1]);
  int e = 0;
  ssize_t r;
  while ((r = read(report[0], &e, sizeof e)) < 0 && errno == EINTR) {
  }
  close(report[0]);
  if (pid < 0) return -1;
  if (r > 0) {
    waitpid(pid, NULL, 0);
    errno = e;
    return -1;
  }
  return pid;
}

// The daemon's OOM score: its parent's (containerd's, ours) plus one, at most 1000.
static int adjust_oom_score(pid_t pid) {
  char path[64], buf[32];
  snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int)getppid());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char *endp;
  long score = strtol(buf, &endp, 10) + 1;
  if (endp == buf) return 0;
  if (score > 1000) score = 1000;
  snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int)pid);
  fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int len = snprintf(buf, sizeof buf, "%ld", score);
  int ok = write(fd, buf, (size_t)len) == len;
  return close(fd) == 0 && ok;
}

// `start`: join the group's shim or start it. 1 when answered; 0 to hand over to the real shim (with
// what stdin had, in *in).
static int try_start(const struct args *a, const char *shim, struct input *in) {
  char socket_path[sizeof SOCKET_DIR + 64], address[sizeof "unix://" + sizeof SOCKET_DIR + 64];
  if (!group_socket(a, socket_path, address)) return 0;
  if (can_connect(socket_path)) {
    if (!write_address(address)) return 0;
    drain_stdin();
    return answer(address);
  }
  if (shim == NULL || !read_stdin(in) || !options_without_shim_cgroup(in)) return 0;
  int joined = 0;
  int sock = listen_socket(socket_path, &joined);
  if (sock < 0) return joined && write_address(address) && answer(address);
  pid_t pid = -1;
  if (write_address(address) && (pid = spawn_daemon(shim, a, sock)) > 0 && adjust_oom_score(pid)) {
    close(sock);
    return answer(address);
  }
  // Undone as the shim's start undoes a failed start; then the shim itself tries.
  if (pid > 0) kill(pid, SIGKILL), waitpid(pid, NULL, 0);
  close(sock);
  unlink(socket_path);
  unlink("address");
  return 0;
}

// Exec the real shim with our arguments; stdin already read is fed to it again through a pipe.
static void exec_shim(const char *shim, char **argv, const struct input *in) {
  if (in->len > 0 || in->eof) {
    int p[2];
    if (pipe(p) != 0) return;
    pid_t writer = fork();
    if (writer == 0) {
      close(p[0]);
      size_t off = 0;
      while (off < in->len) {
        ssize_t w = write(p[1], in->data + off, in->len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(1);
        off += (size_t)w;
      }
      // The rest of our stdin, if it was not all read, follows.
      char buf[4096];
      ssize_t r;
      while (!in->eof && (r = read(0, buf, sizeof buf)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || write(p[1], buf, (size_t)r) != r) _exit(1);
      }
      _exit(0);
    }
    if (writer < 0 || dup2(p[0], 0) < 0) return;
    close(p[0]);
    close(p[1]);
  }
  argv[0] = (char *)shim;
  execv(shim, argv);
}

// ---- delete --------------------------------------------------------------------------------------

struct plain_string {
  const char *value;
  size_t len;
};

// A string value without escapes or bytes outside printable ASCII; anything else makes the reader unsure.
static void read_plain_string(struct json *j, void *ctx) {
  struct plain_string *out = ctx;
  int plain;
  if (read_string(j, &out->value, &out->len, &plain) && !plain) j->fail = 1;
}

// The runc root of the bundle's options.json ("root"), into `out`: 1, or 0 when unsure. No file: the
// default root.
static int runc_root(char *out, size_t cap) {
  char *buf;
  size_t n;
  if (access("options.json", F_OK) != 0) {
    if (errno != ENOENT) return 0;
    snprintf(out, cap, "%s", DEFAULT_RUNC_ROOT);
    return 1;
  }
  if (!read_file("options.json", MAX_OPTIONS, &buf, &n)) return 0;
  struct plain_string root = {NULL, 0};
  struct one_field field = {"root", read_plain_string, &root, 0};
  int ok = read_document(buf, n, one_field_member, &field);
  if (ok) {
    if (root.value == NULL || root.len == 0) snprintf(out, cap, "%s", DEFAULT_RUNC_ROOT);
    else if (root.len < cap) memcpy(out, root.value, root.len), out[root.len] = '\0';
    else ok = 0;
  }
  free(buf);
  return ok && clean_path(out);
}

// Whether `path` is gone, or is there and no mount point: 1; 0 when it is a mount or unsure.
static int not_mounted(const char *path) {
  struct statx sx;
  if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &sx) != 0) return errno == ENOENT;
  if (!(sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) return 0;
  return !(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  do {
    p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return n;
}

// The pid field the shim reports from the bundle's init.pid: the number runc wrote; 2^32-1 (its -1)
// when there is no such file; 0 for an empty one. -1 when unsure (anything else): the shim answers.
static int64_t init_pid(void) {
  struct stat st;
  if (lstat("init.pid", &st) != 0) return errno == ENOENT ? (int64_t)UINT32_MAX : -1;
  if (S_ISREG(st.st_mode) && st.st_size == 0) return 0;
  char *buf;
  size_t n;
  if (!read_file("init.pid", 16, &buf, &n)) return -1;
  int64_t pid = 0;
  for (size_t i = 0; i < n && pid >= 0; i++) {
    if (buf[i] < '0' || buf[i] > '9' || pid > INT32_MAX / 10) pid = -1;
    else pid = pid * 10 + (buf[i] - '0');
  }
  free(buf);
  return pid <= INT32_MAX ? pid : -1;
}

// Nothing left for the shim's cleanup: answer as it would. 1 when answered.
static int try_delete(const struct args *a) {
  if (a->namespace == NULL || a->id == NULL || !clean_element(a->namespace, strlen(a->namespace)) || !clean_element(a->id, strlen(a->id))) return 0;
  // The shim cleans <parent of its working directory>/<id>: only when that is where it runs.
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd) == NULL || !clean_path(cwd)) return 0;
  const char *base = strrchr(cwd, '/') + 1;
  if (strcmp(base, a->id) != 0 || (a->bundle != NULL && strcmp(a->bundle, cwd) != 0)) return 0;
  if (access("runtime", F_OK) != 0) return 0;

  char root[MAX_NAME + 1], state[3 * MAX_NAME + 8];
  if (!runc_root(root, sizeof root)) return 0;
  snprintf(state, sizeof state, "%s/%s/%s", root, a->namespace, a->id);
  struct stat st;
  if (lstat(state, &st) == 0 || errno != ENOENT) return 0;
  if (!not_mounted("rootfs")) return 0;

  // DeleteResponse{pid (field 1, when init.pid reads as one), exit_status = 137 (field 2), exited_at =
  // now (field 3: Timestamp{seconds, nanos})}.
  int64_t pid = init_pid();
  if (pid < 0) return 0;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint8_t ts[24], out[48];
  size_t tn = 0, n = 0;
  ts[tn++] = 0x08, tn += put_varint(ts + tn, (uint64_t)now.tv_sec);
  if (now.tv_nsec != 0) ts[tn++] = 0x10, tn += put_varint(ts + tn, (uint64_t)now.tv_nsec);
  if (pid != 0) out[n++] = 0x08, n += put_varint(out + n, (uint64_t)pid);
  out[n++] = 0x10, n += put_varint(out + n, 128 + 9);
  out[n++] = 0x1a, out[n++] = (uint8_t)tn;
  memcpy(out + n, ts, tn), n += tn;
  drain_stdin();
  return write(1, out, n) == (ssize_t)n;
}

int main(int argc, char **argv) {
  const char *shim = getenv(SHIM_ENV);
  if (shim != NULL && shim[0] != '/') shim = NULL;
  struct args a = {0};
  struct input in = {NULL, 0, 0};
  if (parse_args(argc, argv, &a) && a.action != NULL) {
    if (strcmp(a.action, "start") == 0 && try_start(&a, shim, &in)) return 0;
    if (strcmp(a.action, "delete") == 0 && try_delete(&a)) return 0;
  }
  if (shim == NULL) {
    fprintf(stderr, "crisp-shim-start: %s names no absolute shim binary\n", SHIM_ENV);
    return 1;
  }
  exec_shim(shim, argv, &in);
  fprintf(stderr, "crisp-shim-start: exec %s: %s\n", shim, strerror(errno));
  return 1;
}
