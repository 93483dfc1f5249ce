/* pl.c — errors, byte buffer, logging. */
#include "pl.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

/* ================================================================ errors */

const char *pl_strerror(int err)
{
    switch (err) {
    case PL_OK:              return "ok";
    case PL_ERR_NOMEM:       return "out of memory";
    case PL_ERR_IO:          return "i/o error";
    case PL_ERR_EOF:         return "end of input";
    case PL_ERR_AGAIN:       return "try again";
    case PL_ERR_PARSE:       return "malformed input";
    case PL_ERR_INVALID:     return "invalid value";
    case PL_ERR_UNSUPPORTED: return "unsupported feature";
    case PL_ERR_RANGE:       return "out of range";
    case PL_ERR_NOTFOUND:    return "not found";
    case PL_ERR_TEMPLATE:    return "template error";
    case PL_ERR_TOOLONG:     return "too long";
    case PL_ERR_INTERNAL:    return "internal error";
    }
    return "unknown error";
}

int pl_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ================================================================ buffer */

void pl_buf_init(pl_buf *b) { memset(b, 0, sizeof *b); }

void pl_buf_free(pl_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void pl_buf_reset(pl_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

int pl_buf_reserve(pl_buf *b, size_t extra)
{
    if (b->oom) return PL_ERR_NOMEM;
    if (extra > SIZE_MAX / 2 - b->len) { b->oom = 1; return PL_ERR_NOMEM; }
    if (b->max && b->len + extra > b->max) { b->oom = b->over = 1; return PL_ERR_NOMEM; }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return PL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) { b->oom = 1; return PL_ERR_NOMEM; }
    b->data = p;
    b->cap = cap;
    return PL_OK;
}

void pl_buf_append(pl_buf *b, const void *p, size_t n)
{
    if (pl_buf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void pl_buf_puts(pl_buf *b, const char *s) { pl_buf_append(b, s, strlen(s)); }
void pl_buf_putc(pl_buf *b, char c) { pl_buf_append(b, &c, 1); }

void pl_buf_printf(pl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || pl_buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void pl_buf_consume(pl_buf *b, size_t n)
{
    if (n >= b->len) { pl_buf_reset(b); return; }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

/* ================================================================ files */

int pl_stream_read(FILE *f, const char *name, pl_buf *b, size_t max_bytes, char *err, size_t errlen)
{
    pl_buf_reset(b);
    char chunk[65536];
    size_t n;
    int rc = PL_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + n > max_bytes) {
            rc = pl_seterr(err, errlen, PL_ERR_RANGE, "%s: larger than %zu bytes", name, max_bytes);
            break;
        }
        pl_buf_append(b, chunk, n);
        if (!pl_buf_ok(b)) { rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "%s: out of memory", name); break; }
    }
    if (!rc && ferror(f)) rc = pl_seterr(err, errlen, PL_ERR_IO, "%s: read error", name);
    if (!rc && !b->data) pl_buf_reserve(b, 0);   /* empty input: still a valid "" */
    return rc;
}

int pl_file_read(const char *path, pl_buf *b, size_t max_bytes, char *err, size_t errlen)
{
    pl_buf_reset(b);
    FILE *f = fopen(path, "rb");
    if (!f) return pl_seterr(err, errlen, errno == ENOENT ? PL_ERR_NOTFOUND : PL_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = pl_stream_read(f, path, b, max_bytes, err, errlen);
    fclose(f);
    return rc;
}

int pl_fd_read_exact(int fd, void *buf, size_t n, double deadline)
{
    unsigned char *p = buf;
    while (n) {
        /* poll first, so a blocking descriptor never blocks past the
         * deadline; a zero wait still takes bytes that are already there */
        double left = deadline - pl_mono_s();
        int ms = left <= 0 ? 0 : left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
        struct pollfd pf = { fd, POLLIN, 0 };
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno != EINTR) return PL_ERR_IO;
        if (pr <= 0) {
            if (ms == 0) return PL_ERR_AGAIN;
            continue;
        }
        ssize_t r = read(fd, p, n);
        if (r > 0) { p += r; n -= (size_t)r; continue; }
        if (r == 0) return PL_ERR_EOF;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) return PL_ERR_IO;
    }
    return 0;
}

/* ================================================================ numbers */

int pl_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *v)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end || x < lo || x > hi) return -1;
    *v = x;
    return 0;
}

int pl_parse_human_i64(const char *s, int64_t lo, int64_t hi, int64_t *v)
{
    size_t n = s ? strlen(s) : 0;
    const char *dec = n ? strchr("kmgt", s[n - 1]) : NULL, *bin = n ? strchr("KMGT", s[n - 1]) : NULL;
    if (!n || (!dec && !bin) || !s[n - 1]) return pl_parse_i64(s, lo, hi, v);
    /* NUMBER: digits, or digits.digits (decimal suffixes only) */
    size_t i = 0, dot = 0;
    while (i < n - 1 && isdigit((unsigned char)s[i])) i++;
    if (i == 0) return -1;
    if (i < n - 1 && s[i] == '.') {
        dot = i++;
        size_t frac = i;
        while (i < n - 1 && isdigit((unsigned char)s[i])) i++;
        if (i == frac) return -1;
    }
    if (i != n - 1 || i > 40) return -1;
    char num[48];
    memcpy(num, s, i);
    num[i] = 0;
    double x;
    if (bin) {
        if (dot) return -1;   /* vLLM: no decimals with binary suffixes */
        x = strtod(num, NULL) * (double)(1ull << (10 * (bin - "KMGT" + 1)));
    } else {
        static const double mul[] = {1e3, 1e6, 1e9, 1e12};
        x = strtod(num, NULL) * mul[dec - "kmgt"];
    }
    if (!(x >= (double)lo && x <= (double)hi) || x >= 9.2e18) return -1;
    *v = (int64_t)x;   /* truncates, as Python's int() of a float */
    return 0;
}

/* ================================================================ logging */

static const char *g_prog = "glm";
static enum pl_log_level g_level = PL_LOG_INFO;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

void pl_log_init(const char *prog)
{
    g_prog = prog;
    const char *e = getenv("GLM_LOG_LEVEL");
    if (e) {
        if (!strcmp(e, "debug")) g_level = PL_LOG_DEBUG;
        else if (!strcmp(e, "warn")) g_level = PL_LOG_WARN;
        else if (!strcmp(e, "error")) g_level = PL_LOG_ERROR;
    }
}

void pl_log_set_level(enum pl_log_level lvl) { g_level = lvl; }

void pl_log(enum pl_log_level lvl, const char *id, size_t idlen, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (lvl < g_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* one line per event: fold embedded newlines */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[32];
    strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
    if (idlen > 128) idlen = 128;
    pthread_mutex_lock(&g_log_mu);
    if (id)
        fprintf(stderr, "%s.%03ldZ %s %s [%.*s] %s\n", tbuf, ts.tv_nsec / 1000000, g_prog,
                names[lvl], (int)idlen, id, msg);
    else
        fprintf(stderr, "%s.%03ldZ %s %s %s\n", tbuf, ts.tv_nsec / 1000000, g_prog, names[lvl], msg);
    pthread_mutex_unlock(&g_log_mu);
}

/* ================================================================ time */

int64_t pl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double pl_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double pl_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int pl_parse_seconds_ms(const char *s, int64_t max_ms, int64_t *ms)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || *end || !(x >= 0) || x * 1000 > (double)max_ms) return -1;   /* !(x >= 0): NaN too */
    *ms = (int64_t)(x * 1000 + 0.5);
    return 0;
}
