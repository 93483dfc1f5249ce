/* pl.h — project-wide basics: the one error enum, a growable byte buffer,
 * logging. Every glmpipe component includes this. */
#ifndef PL_H
#define PL_H

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */

/* Functions return int: 0 ok, one of these (negative) on failure. Human
 * detail travels separately through `char *err, size_t errlen`. */
enum pl_err {
    PL_OK              = 0,
    PL_ERR_NOMEM       = -1,  /* allocation failed */
    PL_ERR_IO          = -2,  /* read/write/socket failure */
    PL_ERR_EOF         = -3,  /* input stream ended */
    PL_ERR_AGAIN       = -4,  /* nothing available yet (non-blocking) */
    PL_ERR_PARSE       = -5,  /* malformed input (msgpack, JSON, template...) */
    PL_ERR_INVALID     = -6,  /* well-formed input with a bad value or type */
    PL_ERR_UNSUPPORTED = -7,  /* a feature we deliberately do not implement */
    PL_ERR_RANGE       = -8,  /* out of bounds / too large */
    PL_ERR_NOTFOUND    = -9,  /* missing file, key or id */
    PL_ERR_TEMPLATE    = -10, /* chat template raised or failed at render */
    PL_ERR_TOOLONG     = -11, /* prompt or request exceeds a limit */
    PL_ERR_INTERNAL    = -12, /* a bug: should never be seen */
};

const char *pl_strerror(int err);

/* snprintf into err (may be NULL) and return code: `return pl_seterr(err, errlen, PL_ERR_PARSE, "...", ...)`. */
int pl_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---------------------------------------------------------------- buffer */

/* A growable byte buffer. data is always NUL-terminated (not counted in len)
 * so text can be handed to C string APIs. Allocation failure is sticky:
 * once oom is set, appends are ignored and pl_buf_ok() returns false.
 * max (0: none) bounds len the same way, with over set too: a writer whose
 * output size is unknown in advance (a JSON dump of a value) stops growing
 * the buffer at the limit instead of building all of it first. */
typedef struct pl_buf {
    char  *data;
    size_t len;
    size_t cap;
    int    oom;
    size_t max;
    int    over;
} pl_buf;

void pl_buf_init(pl_buf *b);
void pl_buf_free(pl_buf *b);
void pl_buf_reset(pl_buf *b);                       /* len = 0, keep memory */
int  pl_buf_reserve(pl_buf *b, size_t extra);       /* ensure cap >= len+extra+1 */
void pl_buf_append(pl_buf *b, const void *p, size_t n);
void pl_buf_puts(pl_buf *b, const char *s);
void pl_buf_putc(pl_buf *b, char c);
void pl_buf_printf(pl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pl_buf_consume(pl_buf *b, size_t n);           /* drop the first n bytes */
static inline int pl_buf_ok(const pl_buf *b) { return !b->oom; }

/* ---------------------------------------------------------------- files */

/* Read a whole file into b (replacing its contents). Files larger than
 * max_bytes are refused with PL_ERR_RANGE. Errors name the path. */
int pl_file_read(const char *path, pl_buf *b, size_t max_bytes, char *err, size_t errlen);

/* The same for an open stream (stdin, say) until EOF; name is for messages. */
int pl_stream_read(FILE *f, const char *name, pl_buf *b, size_t max_bytes, char *err, size_t errlen);

/* Read exactly n bytes from a descriptor (pipe or socket, blocking or not)
 * by deadline (pl_mono_s() seconds): 0, PL_ERR_EOF (closed early),
 * PL_ERR_AGAIN (deadline passed) or PL_ERR_IO (errno says why). */
int pl_fd_read_exact(int fd, void *buf, size_t n, double deadline);

/* ---------------------------------------------------------------- numbers */

/* A whole decimal string (no trailing characters) in [lo, hi]: 0, or -1 for
 * anything else (empty, junk, overflow, out of range). For command lines. */
int pl_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *v);

/* The same, also with vLLM's human-readable suffixes (human_readable_int):
 * k m g t are powers of 1000 and allow a decimal part (25.6k = 25600), K M G T
 * powers of 1024 on a whole number (1K = 1024). */
int pl_parse_human_i64(const char *s, int64_t lo, int64_t hi, int64_t *v);

/* ---------------------------------------------------------------- logging */

/* One event per line on stderr: "<iso time> <prog> <level> [id] message".
 * id may be NULL (len ignored then). */
enum pl_log_level { PL_LOG_DEBUG, PL_LOG_INFO, PL_LOG_WARN, PL_LOG_ERROR };

void pl_log_init(const char *prog);                 /* name shown on each line */
void pl_log_set_level(enum pl_log_level lvl);
void pl_log(enum pl_log_level lvl, const char *id, size_t idlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---------------------------------------------------------------- time */

int64_t pl_now_ms(void);   /* monotonic clock, milliseconds */
double  pl_mono_s(void);   /* monotonic clock, seconds: timers and durations */
double  pl_wall_s(void);   /* Unix time, seconds: timestamps other processes on the host compare */

/* A duration in seconds on a command line ("30", "0.5") as milliseconds,
 * within [0, max_ms]: 0, or -1 for anything else. */
int pl_parse_seconds_ms(const char *s, int64_t max_ms, int64_t *ms);

#define PL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
