/* glm-msg — JSON Lines <-> msgpack stream, so people can write and read any
 * stage's traffic by hand.
 *
 *   glm-msg pack   < msgs.jsonl > msgs.mp     one JSON value per line
 *   glm-msg unpack < msgs.mp    > msgs.jsonl  one message per line
 *
 * pack keeps 1 and 1.0 apart (int vs float) and every integer exact (json.h);
 * unpack writes floats as Python would (1.0) so a round trip is exact. Both
 * flush after every message, so `... | glm-engine | glm-msg unpack` in a
 * terminal shows each message as it comes. A bad line is reported with its
 * line number and skipped; the exit status is then 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "json.h"
#include "pyjson.h"

static int do_pack(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int bad = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && strchr(" \t\r\n", line[len - 1])) len--;
        if (!len) continue;
        cJSON *v;
        char err[256];
        if (pl_json_parse(&v, line, len, err, sizeof err)) {
            fprintf(stderr, "glm-msg: line %zu: %s\n", lineno, err);
            bad = 1;
            continue;
        }
        msgpack_sbuffer_clear(&sb);
        pl_json_pack(&pk, v);
        cJSON_Delete(v);
        if (fwrite(sb.data, 1, sb.size, stdout) != sb.size || fflush(stdout)) { bad = 1; break; }
    }
    free(line);
    msgpack_sbuffer_destroy(&sb);
    if (fflush(stdout)) bad = 1;
    return bad;
}

static int do_unpack(void)
{
    pl_io *io;
    char err[256];
    pl_io_opts o;
    pl_io_opts_default(&o);
    o.raw = true;   /* any msgpack object, not only protocol messages */
    if (pl_io_open_opts(&io, NULL, NULL, &o, err, sizeof err)) {
        fprintf(stderr, "glm-msg: %s\n", err);
        return 1;
    }
    pl_buf out;
    pl_buf_init(&out);
    pl_pyjson_opts jo = {0, -1, 0, ",", ":"};
    int bad = 0;
    for (;;) {
        msgpack_object msg;
        int rc = pl_io_recv(io, &msg, -1);
        if (rc == PL_ERR_PARSE || rc == PL_ERR_RANGE) { bad = 1; continue; }
        if (rc) break;
        cJSON *v;
        if (pl_json_from_msgpack(&v, &msg, err, sizeof err)) {
            fprintf(stderr, "glm-msg: %s\n", err);
            bad = 1;
            continue;
        }
        pl_buf_reset(&out);
        pl_pyjson_dump(&out, v, &jo);
        cJSON_Delete(v);
        pl_buf_putc(&out, '\n');
        if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout)) { bad = 1; break; }
    }
    if (pl_io_skipped(io)) bad = 1;   /* logged as they were skipped */
    pl_buf_free(&out);
    pl_io_close(io);
    if (fflush(stdout)) bad = 1;
    return bad;
}

int main(int argc, char **argv)
{
    pl_log_init("glm-msg");
    if (argc == 2 && !strcmp(argv[1], "pack")) return do_pack();
    if (argc == 2 && !strcmp(argv[1], "unpack")) return do_unpack();
    fprintf(stderr,
            "usage: glm-msg pack   < messages.jsonl > messages.msgpack\n"
            "       glm-msg unpack < messages.msgpack > messages.jsonl\n");
    return argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? 0 : 2;
}
