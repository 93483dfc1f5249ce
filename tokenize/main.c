/* glm-tokenize — chat template + BPE: `request` messages in, `generate` out.
 *
 * Debug modes read stdin once and write stdout:
 *   --encode  text -> JSON array of ids
 *   --decode  JSON array of ids -> text
 *   --render  OpenAI chat request JSON -> the exact prompt text (no newline added) */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "stage.h"
#include "tokenize.h"
#include "tokenize_ep.h"

#define STDIN_MAX (256u << 20)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: glm-tokenize --model DIR [options]\n"
            "  --model DIR                         Hugging Face model directory (tokenizer.json, tokenizer_config.json,\n"
            "                                      chat_template.jinja, config.json, generation_config.json)\n"
            "  --chat-template PATH                use this Jinja template instead of the model's\n"
            "  --chat-template-content-format F    auto|string|openai: message content as a string or as a list of\n"
            "                                      parts (vLLM's option; auto: as the template reads it)\n"
            "  --max-model-len N                   context length (default: max_position_embeddings)\n"
            "  --default-chat-template-kwargs JSON defaults for chat_template_kwargs (request values win)\n"
            "  --served-model-name NAME            model name reported in responses\n"
            "  --enable-auto-tool-choice           tool calls are parsed downstream (glm-parse-tools): allow\n"
            "                                      tool_choice auto/required/named; without it they get vLLM's 400\n"
            "  --generation-config auto|vllm|DIR   sampling defaults from the model's generation_config.json (auto),\n"
            "                                      none (vllm: eos ids still read), or DIR/generation_config.json\n"
            "  --encode | --decode | --render      debug modes on stdin/stdout (see README)\n"
            PL_STAGE_IO_HELP);
}

/* ================================================================ debug modes */

static int run_debug(tok_model *m, const char *mode)
{
    pl_buf in, out;
    pl_buf_init(&in);
    pl_buf_init(&out);
    char err[1024] = "";
    int rc = pl_stream_read(stdin, "stdin", &in, STDIN_MAX, err, sizeof err);
    if (!rc && !strcmp(mode, "encode")) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = tok_model_encode(m, in.data ? in.data : "", in.len, &ids, &n, err, sizeof err);
        for (size_t i = 0; !rc && i < n; i++) pl_buf_printf(&out, "%s%d", i ? ", " : "[", ids[i]);
        if (!rc) pl_buf_puts(&out, n ? "]\n" : "[]\n");
        free(ids);
    } else if (!rc && !strcmp(mode, "decode")) {
        cJSON *arr = NULL;
        rc = pl_json_parse(&arr, in.data ? in.data : "", in.len, err, sizeof err);
        if (!rc && !cJSON_IsArray(arr)) rc = pl_seterr(err, sizeof err, PL_ERR_INVALID, "expected a JSON array of token ids");
        size_t n = rc ? 0 : (size_t)cJSON_GetArraySize(arr), k = 0;
        int32_t *ids = malloc(sizeof *ids * (n + 1));
        for (const cJSON *c = rc ? NULL : arr->child; c && !rc; c = c->next) {
            if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > 2147483647.0)
                rc = pl_seterr(err, sizeof err, PL_ERR_INVALID, "expected a JSON array of token ids");
            else ids[k++] = (int32_t)c->valuedouble;
        }
        if (!rc) rc = tok_model_decode(m, ids, k, false, &out, err, sizeof err);
        free(ids);
        cJSON_Delete(arr);
    } else if (!rc) {   /* render: every check a request gets, then the prompt */
        cJSON *body = NULL;
        rc = pl_json_parse(&body, in.data ? in.data : "", in.len, err, sizeof err);
        tok_error e = {0};
        if (!rc && tok_request_render(m, body, &out, &e)) {
            rc = PL_ERR_INVALID;
            snprintf(err, sizeof err, "error %d: %.1000s", e.code, e.message);
        }
        cJSON_Delete(body);
    }
    if (!rc) fwrite(out.data ? out.data : "", 1, out.len, stdout);
    else fprintf(stderr, "glm-tokenize: %s\n", err);
    pl_buf_free(&in);
    pl_buf_free(&out);
    return rc ? 1 : 0;
}

/* ================================================================ stage */

typedef struct {
    tok_model *model;
    pl_stage  *st;
} app;

static int emit_one(void *ud) { return pl_stage_end(((app *)ud)->st); }

static void send_request_error(pl_stage *st, const char *id, size_t idlen, const tok_error *e)
{
    pl_log(e->code >= 500 ? PL_LOG_ERROR : PL_LOG_WARN, id, idlen, "error %d: %s", e->code, e->message);
    msgpack_packer *pk = pl_stage_begin(st);
    msgpack_pack_map(pk, 6);
    pl_msg_pack_kv_cstr(pk, "type", "error");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "code", e->code);
    pl_msg_pack_kv_cstr(pk, "err_type", e->type);
    pl_msg_pack_kv_cstr(pk, "message", e->message);
    if (e->param) pl_msg_pack_kv_cstr(pk, "param", e->param);
    else pl_msg_pack_kv_nil(pk, "param");
    pl_stage_end(st);
}

/* /tokenize, /detokenize: answered here (an answer already carrying a
 * `result` is someone else's and passes on). */
static void on_tokenize(app *a, pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen)
{
    if (pl_msg_get(msg, "result")) { pl_stage_forward(st, msg); return; }
    tok_error e = {0};
    if (tok_endpoint_answer(a->model, msg, id, idlen, pl_stage_begin(st), &e)) {
        pl_stage_begin(st);   /* drop any half-packed message */
        send_request_error(st, id, idlen, &e);
        return;
    }
    pl_stage_end(st);
}

static void on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    app *a = ud;
    if (pl_msg_type_is(msg, "tokenize") || pl_msg_type_is(msg, "detokenize")) {
        on_tokenize(a, st, msg, id, idlen);
        return;
    }
    if (!pl_msg_type_is(msg, "request")) {   /* abort, ping, anything else: not ours */
        pl_stage_forward(st, msg);
        return;
    }
    const char *ep;
    size_t eplen;
    enum tok_endpoint endpoint = TOK_ENDPOINT_CHAT;
    int rc = pl_msg_get_str(msg, "endpoint", &ep, &eplen);
    if (rc == PL_ERR_INVALID || (rc == 0 && !(eplen == 4 && !memcmp(ep, "chat", 4)) &&
                                  !(eplen == 11 && !memcmp(ep, "completions", 11)))) {
        pl_stage_bad_request(st, id, idlen, "'endpoint' must be \"chat\" or \"completions\"");
        return;
    }
    if (rc == 0 && eplen == 11) endpoint = TOK_ENDPOINT_COMPLETIONS;
    const msgpack_object *bodyo;
    if (pl_msg_get_map(msg, "body", &bodyo)) {
        pl_stage_bad_request(st, id, idlen, "'body' must be a map holding the OpenAI request");
        return;
    }
    cJSON *body;
    char err[256];
    if (pl_json_from_msgpack(&body, bodyo, err, sizeof err)) {
        pl_stage_bad_request(st, id, idlen, "bad request body: %s", err);
        return;
    }
    tok_error e = {0};
    msgpack_packer *pk = pl_stage_begin(st);
    rc = tok_request_process(a->model, endpoint, body, msg, id, idlen, pk, emit_one, a, &e);
    cJSON_Delete(body);
    if (rc && e.type) {
        pl_stage_begin(st);   /* drop any half-packed message */
        send_request_error(st, id, idlen, &e);
    }
}

int main(int argc, char **argv)
{
    pl_log_init("glm-tokenize");
    pl_stage_opts so;
    pl_stage_opts_default(&so);
    if (pl_stage_opts_take(&so, "glm-tokenize", &argc, argv)) return 2;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"chat-template", required_argument, 0, 't'},
        {"chat-template-content-format", required_argument, 0, 'F'},
        {"max-model-len", required_argument, 0, 'L'},
        {"default-chat-template-kwargs", required_argument, 0, 'k'},
        {"served-model-name", required_argument, 0, 'n'},
        {"enable-auto-tool-choice", no_argument, 0, 'A'},
        {"generation-config", required_argument, 0, 'g'},
        {"encode", no_argument, 0, 'E'},
        {"decode", no_argument, 0, 'D'},
        {"render", no_argument, 0, 'R'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *dir = NULL, *mode = NULL;
    tok_model_opts o = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 't': o.chat_template_path = optarg; break;
        case 'F':
            if (!strcmp(optarg, "auto")) o.content_format = TOK_CONTENT_AUTO;
            else if (!strcmp(optarg, "string")) o.content_format = TOK_CONTENT_STRING;
            else if (!strcmp(optarg, "openai")) o.content_format = TOK_CONTENT_OPENAI;
            else {
                fprintf(stderr, "glm-tokenize: --chat-template-content-format must be auto, string or openai\n");
                return 2;
            }
            break;
        case 'L':
            if (pl_parse_i64(optarg, 1, INT64_MAX, &o.max_model_len)) {
                fprintf(stderr, "glm-tokenize: --max-model-len must be a positive integer\n");
                return 2;
            }
            break;
        case 'k': o.default_kwargs_json = optarg; break;
        case 'n': o.served_model_name = optarg; break;
        case 'A': o.enable_auto_tools = true; break;
        case 'g': o.generation_config = optarg; break;
        case 'E': mode = "encode"; break;
        case 'D': mode = "decode"; break;
        case 'R': mode = "render"; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!dir || optind != argc) { usage(stderr); return 2; }
    char err[1024];
    tok_model *m;
    if (tok_model_load(&m, dir, &o, err, sizeof err)) {
        fprintf(stderr, "glm-tokenize: %s\n", err);
        return 1;
    }
    if (mode) {
        int rc = run_debug(m, mode);
        tok_model_free(m);
        return rc;
    }
    app a = {m, NULL};
    if (pl_stage_open_opts(&a.st, &so, err, sizeof err)) {
        fprintf(stderr, "glm-tokenize: %s\n", err);
        tok_model_free(m);
        return 1;
    }
    pl_log(PL_LOG_INFO, NULL, 0, "ready: model %s, max_model_len %lld", dir, (long long)tok_model_max_len(m));
    static const pl_stage_ops ops = {.on_msg = on_msg, .intake = "request"};
    int rc = pl_stage_serve(a.st, &ops, &a);
    pl_stage_close(a.st);
    tok_model_free(m);
    return rc ? 1 : 0;
}
