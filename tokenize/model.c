/* model.c — what a Hugging Face model directory says about the text side.
 *
 * Files read (all untrusted, all size-capped):
 *   tokenizer.json          the tokenizer (lib/tokenizer/tokenizer.h)
 *   tokenizer_config.json   chat_template (string or named list), special tokens
 *   chat_template.jinja     the template, preferred over tokenizer_config's (transformers >= 4.43)
 *   config.json             max_position_embeddings, eos_token_id
 *   generation_config.json  eos_token_id (preferred), sampling defaults; from the
 *                           folder --generation-config names, if it names one */
#include "tokenize.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "jinja/jinja.h"
#include "json.h"
#include "pystr.h"
#include "tokenizer/tokenizer.h"

#define CONFIG_MAX_BYTES   (16u << 20)
#define TEMPLATE_MAX_BYTES (4u << 20)

struct tok_model {
    pl_tokenizer      *tk;
    pl_jinja_template *tpl;             /* NULL: no chat template */
    cJSON             *special_vars;    /* {bos_token: "...", ...} as transformers passes them */
    cJSON             *default_kwargs;  /* --default-chat-template-kwargs, an object */
    cJSON             *gen_defaults;    /* generation_config sampling keys vLLM honours, or NULL */
    int32_t           *eos;             /* [n_eos] */
    size_t             n_eos;
    int64_t            max_len;
    char              *name;
    int64_t            max_chars_per_token; /* longest token text, as vLLM measures it */
    bool               openai_content;    /* content handed over as part lists */
    bool               names_developer;   /* template text has "developer" quoted */
    bool               always_thinks;     /* GLM-5.3-style template: no thinking switch (see tokenize.h) */
    bool               mentions_content;  /* template text has "content" */
    bool               auto_tools;      /* --enable-auto-tool-choice */
};

/* ================================================================ small helpers */

/* A render is bounded in time (jinja's 10 s default) and cut at once when
 * the stage is told to stop now (a second SIGTERM): the request then gets a
 * 400 naming the limit, and the stage stays responsive to signals. */
static int stop_now(void) { return pl_io_stopping() >= 2; }

static void set_render_limits(pl_jinja_template *t)
{
    pl_jinja_limits lim;
    pl_jinja_limits_default(&lim);
    lim.interrupt = stop_now;
    pl_jinja_template_set_limits(t, &lim);
}

static int read_json(const char *dir, const char *file, bool required, cJSON **out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    pl_buf b;
    pl_buf_init(&b);
    *out = NULL;
    int rc = pl_file_read(path, &b, CONFIG_MAX_BYTES, err, errlen);
    if (rc == PL_ERR_NOTFOUND && !required) { pl_buf_free(&b); return 0; }
    if (!rc) {
        char perr[128];
        rc = pl_json_parse(out, b.data, b.len, perr, sizeof perr);
        if (rc) pl_seterr(err, errlen, rc, "%s: %s", path, perr);
        else if (!cJSON_IsObject(*out)) {
            cJSON_Delete(*out);
            *out = NULL;
            rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: top level must be a JSON object", path);
        }
    }
    pl_buf_free(&b);
    return rc;
}

/* A special token in tokenizer_config: "text" or an AddedToken object {"content": "text", ...}. */
static const char *token_text(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* eos_token_id: an int or a list of ints. */
static int read_eos(const cJSON *cfg, const char *file, int32_t vocab, tok_model *m, char *err, size_t errlen)
{
    const cJSON *v = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id") : NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 1;
    int32_t *ids = malloc(sizeof *ids * (n ? n : 1));
    if (!ids) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (const cJSON *c = cJSON_IsArray(v) ? v->child : v; c && k < n; c = cJSON_IsArray(v) ? c->next : NULL) {
        if (!cJSON_IsNumber(c) || c->valuedouble != floor(c->valuedouble) || c->valuedouble < 0 || c->valuedouble >= vocab) {
            free(ids);
            return pl_seterr(err, errlen, PL_ERR_INVALID, "%s: eos_token_id must be token ids inside the vocabulary (size %d)", file, vocab);
        }
        ids[k++] = (int32_t)c->valuedouble;
    }
    free(m->eos);
    m->eos = ids;
    m->n_eos = k;
    return 0;
}

/* ================================================================ chat template */

static int load_template_text(const char *dir, const cJSON *tcfg, const char *override, pl_buf *src,
                              char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (override) return pl_file_read(override, src, TEMPLATE_MAX_BYTES, err, errlen);
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    int rc = pl_file_read(path, src, TEMPLATE_MAX_BYTES, err, errlen);
    if (rc != PL_ERR_NOTFOUND) return rc;
    const cJSON *t = tcfg ? cJSON_GetObjectItemCaseSensitive(tcfg, "chat_template") : NULL;
    if (cJSON_IsString(t)) {
        pl_buf_puts(src, t->valuestring);
        return pl_buf_ok(src) ? 0 : PL_ERR_NOMEM;
    }
    if (cJSON_IsArray(t)) {   /* named templates: [{name, template}], transformers uses "default" */
        for (const cJSON *c = t->child; c; c = c->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(c, "name");
            const cJSON *tt = cJSON_GetObjectItemCaseSensitive(c, "template");
            if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default") && cJSON_IsString(tt)) {
                pl_buf_puts(src, tt->valuestring);
                return pl_buf_ok(src) ? 0 : PL_ERR_NOMEM;
            }
        }
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "tokenizer_config.json: chat_template list has no \"default\" entry");
    }
    return PL_ERR_NOTFOUND;   /* no template: completions only */
}

/* ================================================================ load */

static int load_parts(tok_model *m, const char *dir, const tok_model_opts *o, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int rc = pl_tokenizer_load(&m->tk, path, err, errlen);
    if (rc) return rc;
    int32_t vocab = tok_model_vocab_size(m);
    /* vLLM: max(len(tok) for tok in vocab) over the tokenizer's strings: a
     * byte-level entry is one character per byte, an added token its text */
    for (int32_t id = 0; id < vocab; id++) {
        size_t n;
        const uint8_t *b = pl_tokenizer_token_bytes(m->tk, id, &n);
        if (!b) continue;
        int64_t chars = pl_tokenizer_is_added(m->tk, id) ? (int64_t)pl_utf8_count((const char *)b, n) : (int64_t)n;
        if (chars > m->max_chars_per_token) m->max_chars_per_token = chars;
    }

    cJSON *tcfg = NULL, *cfg = NULL, *gen = NULL;
    rc = read_json(dir, "tokenizer_config.json", false, &tcfg, err, errlen);
    if (!rc) rc = read_json(dir, "config.json", false, &cfg, err, errlen);
    /* --generation-config (vLLM): auto and vllm read the model's file (vllm
     * still takes its eos ids, only not its sampling defaults); a folder
     * replaces the model's and must hold the file. */
    const char *gc = o->generation_config;
    bool gen_auto = !gc || !strcmp(gc, "auto"), gen_vllm = gc && !strcmp(gc, "vllm");
    if (!rc) rc = read_json(gen_auto || gen_vllm ? dir : gc, "generation_config.json", !gen_auto && !gen_vllm, &gen, err, errlen);

    /* special tokens transformers hands to the template */
    if (!rc) {
        static const char *const keys[] = {"bos_token", "eos_token", "pad_token", "unk_token"};
        m->special_vars = cJSON_CreateObject();
        for (size_t i = 0; tcfg && i < PL_ARRAY_LEN(keys); i++) {
            const char *t = token_text(cJSON_GetObjectItemCaseSensitive(tcfg, keys[i]));
            if (t) cJSON_AddStringToObject(m->special_vars, keys[i], t);
        }
    }
    /* eos: generation_config wins over config.json */
    if (!rc) rc = read_eos(cfg, "config.json", vocab, m, err, errlen);
    if (!rc) rc = read_eos(gen, "generation_config.json", vocab, m, err, errlen);

    /* context length: --max-model-len, else config.json (text_config for multimodal configs) */
    if (!rc) {
        const cJSON *mpe = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "max_position_embeddings") : NULL;
        const cJSON *tc = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "text_config") : NULL;
        if (!mpe && cJSON_IsObject(tc)) mpe = cJSON_GetObjectItemCaseSensitive(tc, "max_position_embeddings");
        int64_t cfg_len = cJSON_IsNumber(mpe) && mpe->valuedouble >= 1 && mpe->valuedouble < 1e12 ? (int64_t)mpe->valuedouble : 0;
        if (o->max_model_len > 0) {
            if (cfg_len && o->max_model_len > cfg_len)
                pl_log(PL_LOG_WARN, NULL, 0, "--max-model-len %lld exceeds max_position_embeddings %lld of config.json",
                       (long long)o->max_model_len, (long long)cfg_len);
            m->max_len = o->max_model_len;
        } else if (cfg_len) {
            m->max_len = cfg_len;
        } else {
            rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s/config.json has no max_position_embeddings: pass --max-model-len", dir);
        }
    }
    /* sampling defaults: the keys vLLM's --generation-config auto takes */
    if (!rc && gen && !gen_vllm) {
        static const char *const keys[] = {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens"};
        m->gen_defaults = cJSON_CreateObject();
        for (size_t i = 0; i < PL_ARRAY_LEN(keys); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(gen, keys[i]);
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble))
                cJSON_AddItemToObject(m->gen_defaults, keys[i], cJSON_Duplicate(v, 0));
        }
    }
    /* chat template */
    if (!rc) {
        pl_buf src;
        pl_buf_init(&src);
        rc = load_template_text(dir, tcfg, o->chat_template_path, &src, err, errlen);
        if (rc == PL_ERR_NOTFOUND && !o->chat_template_path) {
            pl_log(PL_LOG_WARN, NULL, 0, "%s has no chat template: only /v1/completions will work", dir);
            rc = 0;
        } else if (!rc) {
            char jerr[512];
            rc = pl_jinja_compile(&m->tpl, src.data, src.len, jerr, sizeof jerr);
            if (rc) pl_seterr(err, errlen, rc, "chat template: %s", jerr);
            /* what vLLM reads off the template (renderers/hf.py) */
            if (!rc) {
                m->openai_content = o->content_format == TOK_CONTENT_OPENAI ||
                                    (o->content_format == TOK_CONTENT_AUTO && pl_jinja_template_iterates_content(m->tpl));
                m->names_developer = memmem(src.data, src.len, "\"developer\"", 11) || memmem(src.data, src.len, "'developer'", 11);
                static const char *const marks[] = {"[gMASK]<sop>", "Reasoning Effort:", "<tool_call>", "<arg_key>", "<arg_value>"};
                bool all = !memmem(src.data, src.len, "enable_thinking", 15);
                for (size_t k = 0; all && k < PL_ARRAY_LEN(marks); k++) all = memmem(src.data, src.len, marks[k], strlen(marks[k])) != NULL;
                m->always_thinks = all;
                m->mentions_content = memmem(src.data, src.len, "content", 7) != NULL;
            }
            if (!rc) set_render_limits(m->tpl);
        }
        pl_buf_free(&src);
    }
    /* --default-chat-template-kwargs */
    if (!rc) {
        if (o->default_kwargs_json) {
            char perr[128];
            rc = pl_json_parse(&m->default_kwargs, o->default_kwargs_json, strlen(o->default_kwargs_json), perr, sizeof perr);
            if (rc) pl_seterr(err, errlen, rc, "--default-chat-template-kwargs: %s", perr);
            else if (!cJSON_IsObject(m->default_kwargs))
                rc = pl_seterr(err, errlen, PL_ERR_INVALID, "--default-chat-template-kwargs must be a JSON object");
        } else {
            m->default_kwargs = cJSON_CreateObject();
        }
    }
    if (!rc) m->name = strdup(o->served_model_name ? o->served_model_name : dir);
    m->auto_tools = o->enable_auto_tools;
    cJSON_Delete(tcfg);
    cJSON_Delete(cfg);
    cJSON_Delete(gen);
    return rc;
}

int tok_model_load(tok_model **out, const char *dir, const tok_model_opts *opts, char *err, size_t errlen)
{
    tok_model_opts none = {0};
    *out = NULL;
    tok_model *m = calloc(1, sizeof *m);
    if (!m) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    int rc = load_parts(m, dir, opts ? opts : &none, err, errlen);
    if (rc) { tok_model_free(m); return rc; }
    *out = m;
    return 0;
}

void tok_model_free(tok_model *m)
{
    if (!m) return;
    pl_tokenizer_free(m->tk);
    pl_jinja_template_free(m->tpl);
    cJSON_Delete(m->special_vars);
    cJSON_Delete(m->default_kwargs);
    cJSON_Delete(m->gen_defaults);
    free(m->eos);
    free(m->name);
    free(m);
}

/* ================================================================ accessors */

int64_t tok_model_max_len(const tok_model *m) { return m->max_len; }
bool tok_model_openai_content(const tok_model *m) { return m->openai_content; }
bool tok_model_names_developer(const tok_model *m) { return m->names_developer; }
bool tok_model_always_thinks(const tok_model *m) { return m->always_thinks; }
bool tok_model_mentions_content(const tok_model *m) { return m->mentions_content; }
bool tok_model_has_template(const tok_model *m) { return m->tpl != NULL; }
const int32_t *tok_model_eos_ids(const tok_model *m, size_t *n) { *n = m->n_eos; return m->eos; }
const cJSON *tok_model_default_kwargs(const tok_model *m) { return m->default_kwargs; }
const cJSON *tok_model_gen_defaults(const tok_model *m) { return m->gen_defaults; }
const char *tok_model_name(const tok_model *m) { return m->name; }
const pl_tokenizer *tok_model_tokenizer(const tok_model *m)
{
    return m->tk;
}

int32_t tok_model_vocab_size(const tok_model *m) { return (int32_t)pl_tokenizer_vocab_size(m->tk); }
int64_t tok_model_max_chars_per_token(const tok_model *m) { return m->max_chars_per_token; }
bool tok_model_auto_tools(const tok_model *m) { return m->auto_tools; }

void tok_model_add_special_vars(const tok_model *m, cJSON *ctx)
{
    for (const cJSON *c = m->special_vars ? m->special_vars->child : NULL; c; c = c->next)
        cJSON_AddItemToObject(ctx, c->string, cJSON_Duplicate(c, 1));
}

/* ================================================================ text */

int tok_model_render(const tok_model *m, const cJSON *ctx, pl_buf *out, char *err, size_t errlen)
{
    if (!m->tpl) return pl_seterr(err, errlen, PL_ERR_NOTFOUND, "no chat template");
    pl_jinja_value *v = pl_jinja_value_from_cjson(ctx);
    if (!v) return pl_seterr(err, errlen, PL_ERR_NOMEM, "could not convert the request for the template");
    int rc = pl_jinja_render(m->tpl, v, out, err, errlen);
    pl_jinja_value_free(v);
    return rc;
}

int tok_model_encode(const tok_model *m, const char *text, size_t len, int32_t **ids, size_t *n,
                     char *err, size_t errlen)
{
    pl_tokids v = {0};
    int rc = pl_tokenizer_encode_ex(m->tk, text, len, &v, err, errlen);
    if (rc) { pl_tokids_free(&v); return rc; }
    *ids = v.ids;
    *n = v.len;
    return 0;
}

int tok_model_decode(const tok_model *m, const int32_t *ids, size_t n, bool skip_special, pl_buf *out,
                     char *err, size_t errlen)
{
    int rc = pl_tokenizer_decode(m->tk, ids, n, skip_special, out);
    if (rc) pl_seterr(err, errlen, rc, "token ids outside the vocabulary");
    return rc;
}
