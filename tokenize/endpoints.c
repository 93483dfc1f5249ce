/* endpoints.c — /tokenize and /detokenize, answered by glm-tokenize.
 *
 * Only this stage holds the tokenizer and the chat template, so the gateway
 * sends {type:"tokenize"|"detokenize", id, body} and this stage answers with
 * the same type and a `result` map that is vLLM's response body; every
 * later stage forwards it unchanged (docs/protocol.md §3). Errors are
 * ordinary `error` messages. */
#include "tokenize_ep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

static int bad(tok_error *e, const char *param, const char *msg)
{
    e->code = 400;
    e->type = "BadRequestError";
    e->param = param;
    snprintf(e->message, sizeof e->message, "%s", msg);
    return PL_ERR_INVALID;
}

static int tokenize_body(const tok_model *m, const cJSON *body, int32_t **ids, size_t *n, tok_error *e)
{
    const cJSON *rts = cJSON_GetObjectItemCaseSensitive(body, "return_token_strs");
    if (cJSON_IsTrue(rts))
        return bad(e, "return_token_strs", "return_token_strs is not supported by this server yet");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    char err[256];
    if (msgs && !cJSON_IsNull(msgs)) {
        /* the chat form: the prompt the model would see for these messages */
        pl_buf text;
        pl_buf_init(&text);
        int rc = tok_request_render(m, body, &text, e);
        if (!rc && tok_model_encode(m, text.data ? text.data : "", text.len, ids, n, err, sizeof err))
            rc = bad(e, "messages", err);
        pl_buf_free(&text);
        return rc;
    }
    if (!cJSON_IsString(prompt)) return bad(e, "prompt", "'prompt' (a string) or 'messages' is required");
    /* add_special_tokens: GLM's tokenizer adds none (no BOS), so both
     * values give the same ids; the flag is accepted and has no effect. */
    if (tok_model_encode(m, prompt->valuestring, strlen(prompt->valuestring), ids, n, err, sizeof err))
        return bad(e, "prompt", err);
    return 0;
}

static int detokenize_body(const tok_model *m, const cJSON *body, pl_buf *text, tok_error *e)
{
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(body, "tokens");
    if (!cJSON_IsArray(toks)) return bad(e, "tokens", "'tokens' must be a list of token ids");
    size_t n = (size_t)cJSON_GetArraySize(toks), k = 0;
    int32_t *ids = malloc(sizeof *ids * (n ? n : 1));
    if (!ids) return bad(e, NULL, "out of memory");
    int32_t vocab = tok_model_vocab_size(m);
    for (const cJSON *c = toks->child; c; c = c->next) {
        double d = c->valuedouble;
        if (!cJSON_IsNumber(c) || d != floor(d) || d < 0 || d >= vocab) {
            free(ids);
            return bad(e, "tokens", "'tokens' must be token ids inside the vocabulary");
        }
        ids[k++] = (int32_t)d;
    }
    char err[256];
    int rc = tok_model_decode(m, ids, k, false, text, err, sizeof err);
    free(ids);
    return rc ? bad(e, "tokens", err) : 0;
}

int tok_endpoint_answer(const tok_model *m, const msgpack_object *msg, const char *id, size_t idlen,
                        msgpack_packer *pk, tok_error *e)
{
    bool detok = pl_msg_type_is(msg, "detokenize");
    const msgpack_object *bo;
    if (pl_msg_get_map(msg, "body", &bo)) return bad(e, NULL, "'body' must be a map holding the request");
    cJSON *body;
    char err[256];
    if (pl_json_from_msgpack(&body, bo, err, sizeof err)) return bad(e, NULL, err);
    int rc;
    int32_t *ids = NULL;
    size_t n = 0;
    pl_buf text;
    pl_buf_init(&text);
    rc = detok ? detokenize_body(m, body, &text, e) : tokenize_body(m, body, &ids, &n, e);
    cJSON_Delete(body);
    if (!rc) {
        msgpack_pack_map(pk, 3);
        pl_msg_pack_kv_cstr(pk, "type", detok ? "detokenize" : "tokenize");
        pl_msg_pack_kv_str(pk, "id", id, idlen);
        pl_msg_pack_cstr(pk, "result");
        if (detok) {
            msgpack_pack_map(pk, 1);
            pl_msg_pack_kv_str(pk, "prompt", text.data ? text.data : "", text.len);
        } else {
            msgpack_pack_map(pk, 4);
            pl_msg_pack_kv_int(pk, "count", (int64_t)n);
            pl_msg_pack_kv_int(pk, "max_model_len", tok_model_max_len(m));
            pl_msg_pack_cstr(pk, "tokens");
            msgpack_pack_array(pk, n);
            for (size_t i = 0; i < n; i++) msgpack_pack_int32(pk, ids[i]);
            pl_msg_pack_kv_nil(pk, "token_strs");
        }
    }
    free(ids);
    pl_buf_free(&text);
    return rc;
}
