/* libFuzzer target: the JSON -> msgpack -> JSON path a request body takes
 * (common/json.h), and with GLM_FUZZ_MODEL set (a model directory, e.g. the
 * one `make fuzz` creates in build/fuzz/tiny) glm-tokenize's whole request
 * processing: context, template render, encode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tokenize/tokenize.h"
#include "wire.h"

static tok_model *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    const char *dir = getenv("GLM_FUZZ_MODEL");
    char err[512];
    tok_model_opts o = {0};
    if (dir && tok_model_load(&g_model, dir, &o, err, sizeof err)) g_model = NULL;
    return 0;
}

static int emit_none(void *ud) { (void)ud; return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *v;
    char err[256];
    if (pl_json_parse(&v, (const char *)data, size, err, sizeof err)) return 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pl_json_pack(&pk, v);
    static pl_wire_decoder *dec;
    if (!dec && pl_wire_decoder_new(&dec)) abort();
    msgpack_object o;
    cJSON *back = NULL;
    if (sb.size && pl_wire_decode(dec, sb.data, sb.size, &o) == PL_OK &&
        pl_json_from_msgpack(&back, &o, err, sizeof err) == PL_OK && g_model && cJSON_IsObject(back)) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        msgpack_packer opk;
        msgpack_packer_init(&opk, &out, msgpack_sbuffer_write);
        tok_error e = {0};
        tok_request_process(g_model, size % 2 ? TOK_ENDPOINT_CHAT : TOK_ENDPOINT_COMPLETIONS, back, NULL, "fz", 2,
                            &opk, emit_none, NULL, &e);
        msgpack_sbuffer_destroy(&out);
    }
    cJSON_Delete(back);
    cJSON_Delete(v);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
