/* dataset.c — the workloads of vllm bench serve: random, ShareGPT, custom.
 *
 * Same seed, same tokenizer -> the same prompts, lengths and order as
 * vLLM 0.33.0 (vllm/benchmarks/datasets/datasets.py): the random numbers come
 * from the numpy / Python generators of rng.c, token counting follows
 * transformers (tokenizer(text) adds the post-processor's special tokens,
 * tokenizer.encode(.., add_special_tokens=False) does not), and the
 * "special" ids excluded from random prompts are transformers'
 * all_special_ids (the named special tokens and extra/additional special
 * tokens of tokenizer_config.json). Everything read from files is bounded
 * and checked; a bad file is an error naming the place, never a crash. */
#include "bench.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "pystr.h"
#include "tokenizer/tokenizer.h"
#include "tokenize/tokenize.h"

/* ================================================================ tokenizer */

static int read_json_file(const char *path, cJSON **out, size_t max, char *err, size_t errlen)
{
    pl_buf b;
    pl_buf_init(&b);
    int rc = pl_file_read(path, &b, max, err, errlen);
    if (!rc) {
        char perr[256];
        rc = pl_json_parse(out, b.data, b.len, perr, sizeof perr);
        if (rc) pl_seterr(err, errlen, rc, "%s: %s", path, perr);
    }
    pl_buf_free(&b);
    return rc;
}

/* The bytes of a JSON string value (NUL-terminated, may hold NUL) into b. */
static void str_bytes(pl_buf *b, const cJSON *v)
{
    pl_buf_reset(b);
    pl_json_str_bytes(b, v->valuestring);
    pl_buf_putc(b, 0);
    b->len--;
}

/* A special token in tokenizer_config: "text" or {"content": "text", ...}. */
static const char *token_content(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int add_special(bn_tok *t, const char *s)
{
    if (!s) return 0;
    int32_t id = pl_tokenizer_token_to_id(t->tk, s, strlen(s));
    if (id < 0) return 0;   /* transformers maps an unknown token to unk / None */
    for (size_t i = 0; i < t->n_special; i++)
        if (t->special[i] == id) return 0;
    int32_t *p = realloc(t->special, (t->n_special + 1) * sizeof *p);
    if (!p) return PL_ERR_NOMEM;
    t->special = p;
    t->special[t->n_special++] = id;
    return 0;
}

static int read_special_ids(bn_tok *t, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    struct stat st;
    if (stat(path, &st)) return 0;
    cJSON *cfg = NULL;
    int rc = read_json_file(path, &cfg, 64u << 20, err, errlen);
    if (rc) return rc;
    static const char *const named[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                        "pad_token", "cls_token", "mask_token"};
    for (size_t i = 0; !rc && i < PL_ARRAY_LEN(named); i++)
        rc = add_special(t, token_content(cJSON_GetObjectItemCaseSensitive(cfg, named[i])));
    /* transformers 5 renames additional_special_tokens to extra_special_tokens;
     * a dict form names model-specific tokens */
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(cfg, "extra_special_tokens");
    if (!extra) extra = cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens");
    for (const cJSON *e = extra && (cJSON_IsArray(extra) || cJSON_IsObject(extra)) ? extra->child : NULL; !rc && e;
         e = e->next)
        rc = add_special(t, token_content(e));
    cJSON_Delete(cfg);
    return rc;
}

int bn_tok_load(bn_tok *t, const char *dir, bool need_template, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    char path[PATH_MAX];
    int rc;
    if (need_template) {
        /* a bare tokenizer folder has no config.json: give a context length
         * so that tok_model does not ask for one (nothing is checked against it) */
        snprintf(path, sizeof path, "%s/config.json", dir);
        struct stat st;
        tok_model_opts mo = {0};
        if (stat(path, &st)) mo.max_model_len = INT64_C(1) << 40;
        rc = tok_model_load(&t->tm, dir, &mo, err, errlen);
        if (!rc && !tok_model_has_template(t->tm))
            rc = pl_seterr(err, errlen, PL_ERR_NOTFOUND, "%s has no chat template (use --skip-chat-template)", dir);
        if (!rc) t->tk = tok_model_tokenizer(t->tm);
    } else {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        rc = pl_tokenizer_load(&t->own_tk, path, err, errlen);
        t->tk = t->own_tk;
    }
    if (!rc) {
        t->vocab = pl_tokenizer_model_vocab_size(t->tk);
        t->num_special = pl_tokenizer_num_special_to_add(t->tk);
        rc = read_special_ids(t, dir, err, errlen);
    }
    if (rc) bn_tok_free(t);
    return rc;
}

void bn_tok_free(bn_tok *t)
{
    pl_tokenizer_free(t->own_tk);
    tok_model_free(t->tm);
    free(t->special);
    memset(t, 0, sizeof *t);
}

/* ================================================================ samples */

void bn_dataset_free(bn_dataset *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->s[i].prompt);
        free(d->s[i].request_id);
    }
    free(d->s);
    memset(d, 0, sizeof *d);
}

static int push_sample(bn_dataset *d, size_t *cap, const char *prompt, size_t bytes, int64_t plen, int64_t olen,
                       const char *id_prefix, size_t idx)
{
    if (d->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        bn_sample *p = realloc(d->s, nc * sizeof *p);
        if (!p) return PL_ERR_NOMEM;
        d->s = p;
        *cap = nc;
    }
    bn_sample *s = &d->s[d->n];
    memset(s, 0, sizeof *s);
    s->prompt = malloc(bytes + 1);
    size_t idl = strlen(id_prefix) + 24;
    s->request_id = malloc(idl);
    if (!s->prompt || !s->request_id) {
        free(s->prompt);
        free(s->request_id);
        return PL_ERR_NOMEM;
    }
    memcpy(s->prompt, prompt, bytes);
    s->prompt[bytes] = 0;
    s->prompt_bytes = bytes;
    s->prompt_len = plen;
    s->output_len = olen;
    snprintf(s->request_id, idl, "%s%zu", id_prefix, idx);
    d->n++;
    return 0;
}

/* vLLM's maybe_oversample_requests: top up to num_prompts with random
 * choices (random.seed(seed) again), ids continuing the numbering. */
static int oversample(bn_dataset *d, size_t *cap, int64_t want, int64_t seed, bool no_oversample,
                      const char *id_prefix, char *err, size_t errlen)
{
    if (no_oversample || (int64_t)d->n >= want) return 0;
    if (!d->n) return pl_seterr(err, errlen, PL_ERR_INVALID, "the dataset has no usable samples");
    bn_mt m;
    bn_mt_seed_python(&m, seed);
    size_t base = d->n;
    for (size_t i = 0; (int64_t)(base + i) < want; i++) {
        size_t j = (size_t)bn_mt_randbelow(&m, base);
        /* copy first: push_sample may move d->s */
        char *p = malloc(d->s[j].prompt_bytes + 1);   /* the text may hold NUL: copy its bytes */
        if (!p) return PL_ERR_NOMEM;
        memcpy(p, d->s[j].prompt, d->s[j].prompt_bytes + 1);
        bn_sample src = d->s[j];
        int rc = push_sample(d, cap, p, src.prompt_bytes, src.prompt_len, src.output_len, id_prefix, base + i);
        free(p);
        if (rc) return rc;
    }
    return 0;
}

/* ================================================================ random */

/* gen_prompt_decode_to_target_len: decode, re-encode; pad with random ids
 * or cut until the count is right, at most 10 retries. seq is replaced by
 * the final encoding; text receives the prompt. */
static int decode_to_target(const bn_tok *t, bn_pcg64 *rng, pl_tokids *seq, size_t target, pl_buf *text,
                            pl_tokids *scratch, int64_t *mismatch)
{
    *mismatch = 0;
    for (int remain = 10;; remain--) {
        pl_buf_reset(text);
        int rc = pl_tokenizer_decode(t->tk, seq->ids, seq->len, 0, text);
        if (rc) return rc;
        scratch->len = 0;
        rc = pl_tokenizer_encode_ex(t->tk, text->data ? text->data : "", text->len, scratch, NULL, 0);
        if (rc) return rc;
        pl_tokids tmp = *seq;
        *seq = *scratch;
        *scratch = tmp;
        if (remain <= 0) {
            *mismatch = (int64_t)seq->len - (int64_t)target;
            return 0;
        }
        if (seq->len == target) return 0;
        if (seq->len < target) {
            size_t add = target - seq->len;
            if (seq->cap < target) {
                int32_t *p = realloc(seq->ids, target * sizeof *p);
                if (!p) return PL_ERR_NOMEM;
                seq->ids = p;
                seq->cap = target;
            }
            for (size_t i = 0; i < add; i++) seq->ids[seq->len++] = (int32_t)bn_pcg64_integers(rng, 0, t->vocab);
        } else {
            seq->len = target;
        }
    }
}

static int ids_reserve(pl_tokids *v, size_t n)
{
    if (v->cap >= n) return 0;
    int32_t *p = realloc(v->ids, n * sizeof *p);
    if (!p) return PL_ERR_NOMEM;
    v->ids = p;
    v->cap = n;
    return 0;
}

int bn_dataset_random(bn_dataset *d, const bn_tok *t, const bn_random_opts *o, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (!(o->range_in >= 0 && o->range_in < 1) || !(o->range_out >= 0 && o->range_out < 1))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "--random-range-ratio must be in [0, 1)");
    if (o->input_len < 0 || o->output_len < 0 || o->prefix_len < 0)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "random lengths must not be negative");
    int64_t real_in = o->input_len - t->num_special;
    if (real_in < 0) real_in = 0;
    int64_t in_lo = (int64_t)floor((double)real_in * (1 - o->range_in));
    int64_t in_hi = (int64_t)ceil((double)real_in * (1 + o->range_in));
    if (o->prefix_len + in_lo < 1)
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "--random-input-len is too small: with %d tokenizer special tokens and input range ratio %g "
                         "the minimum possible total input tokens (prefix + sampled) is %lld",
                         t->num_special, o->range_in, (long long)(o->prefix_len + in_lo));
    int64_t out_lo = (int64_t)floor((double)o->output_len * (1 - o->range_out));
    int64_t out_hi = (int64_t)ceil((double)o->output_len * (1 + o->range_out));
    if (out_lo < 1) out_lo = 1;
    if (out_hi < 1) out_hi = 1;
    if (t->vocab < 1) return pl_seterr(err, errlen, PL_ERR_INVALID, "the tokenizer has an empty vocabulary");
    if (in_hi > (INT64_C(1) << 30) || o->prefix_len > (INT64_C(1) << 30))
        return pl_seterr(err, errlen, PL_ERR_RANGE, "random input length too large");
    size_t n = (size_t)(o->num_prompts > 0 ? o->num_prompts : 0);
    bn_pcg64 rng;
    bn_pcg64_seed(&rng, o->seed);
    int64_t *in_lens = malloc((n ? n : 1) * sizeof *in_lens), *out_lens = malloc((n ? n : 1) * sizeof *out_lens);
    int64_t *offs = malloc((n ? n : 1) * sizeof *offs);
    /* the allowed tokens: ids of the model vocab that are not special, ascending
     * (the order Python's set difference iterates small ints in) */
    int32_t *allowed = malloc((size_t)t->vocab * sizeof *allowed);
    pl_tokids seq = {0}, scratch = {0}, prefix = {0};
    pl_buf text;
    pl_buf_init(&text);
    size_t cap = 0, n_allowed = 0;
    int rc = in_lens && out_lens && offs && allowed ? 0 : PL_ERR_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) in_lens[i] = bn_pcg64_integers(&rng, in_lo, in_hi + 1);
    for (size_t i = 0; !rc && i < n; i++) out_lens[i] = bn_pcg64_integers(&rng, out_lo, out_hi + 1);
    for (size_t i = 0; !rc && i < n; i++) offs[i] = bn_pcg64_integers(&rng, 0, t->vocab);
    for (int32_t id = 0; !rc && id < t->vocab; id++) {
        bool sp = false;
        for (size_t k = 0; k < t->n_special; k++) sp |= t->special[k] == id;
        if (!sp) allowed[n_allowed++] = id;
    }
    if (!rc && !n_allowed) rc = pl_seterr(err, errlen, PL_ERR_INVALID, "no non-special tokens in the vocabulary");
    int64_t mm;
    if (!rc && o->prefix_len > 0) {
        rc = ids_reserve(&prefix, (size_t)o->prefix_len);
        for (int64_t k = 0; !rc && k < o->prefix_len; k++)
            prefix.ids[prefix.len++] = allowed[bn_pcg64_integers(&rng, 0, (int64_t)n_allowed)];
        if (!rc) rc = decode_to_target(t, &rng, &prefix, (size_t)o->prefix_len, &text, &scratch, &mm);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        size_t len = (size_t)in_lens[i], target = (size_t)o->prefix_len + len;
        seq.len = 0;
        rc = ids_reserve(&seq, prefix.len + len);
        if (rc) break;
        if (prefix.len) memcpy(seq.ids, prefix.ids, prefix.len * sizeof *seq.ids);
        seq.len = prefix.len;
        for (size_t k = 0; k < len; k++)
            seq.ids[seq.len++] = allowed[(size_t)((uint64_t)(offs[i] + (int64_t)i) % n_allowed + k) % n_allowed];
        rc = decode_to_target(t, &rng, &seq, target, &text, &scratch, &mm);
        if (!rc) {
            d->token_mismatch += mm;
            rc = push_sample(d, &cap, text.data ? text.data : "", text.len, (int64_t)seq.len, out_lens[i],
                             o->id_prefix, i);
        }
    }
    if (rc && !(err && *err)) pl_seterr(err, errlen, rc, "building the random dataset: %s", pl_strerror(rc));
    free(in_lens);
    free(out_lens);
    free(offs);
    free(allowed);
    pl_tokids_free(&seq);
    pl_tokids_free(&scratch);
    pl_tokids_free(&prefix);
    pl_buf_free(&text);
    if (rc) bn_dataset_free(d);
    return rc;
}

/* ================================================================ files */

/* transformers' len(tokenizer(text).input_ids): specials included. */
static int count_tokens(const bn_tok *t, const char *s, size_t n, pl_tokids *scratch, int64_t *out,
                        char *err, size_t errlen)
{
    scratch->len = 0;
    int rc = pl_tokenizer_encode_ex(t->tk, s, n, scratch, err, errlen);
    if (!rc) *out = (int64_t)scratch->len + t->num_special;
    return rc;
}

/* vLLM's is_valid_sequence with its defaults (ShareGPT filter). */
static bool valid_sequence(int64_t plen, int64_t olen, bool skip_min_output)
{
    return !(plen < 4 || (!skip_min_output && olen < 4) || plen > 1024 || plen + olen > 2048);
}

int bn_dataset_sharegpt(bn_dataset *d, const bn_tok *t, const bn_file_opts *o, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    cJSON *root = NULL;
    int rc = read_json_file(o->path, &root, o->max_bytes, err, errlen);
    if (rc) return rc;
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return pl_seterr(err, errlen, PL_ERR_INVALID, "%s: a ShareGPT file is a JSON list of conversations", o->path);
    }
    /* entries with at least two turns, then random.shuffle with random.seed(seed) */
    size_t n_all = (size_t)cJSON_GetArraySize(root), n = 0;
    const cJSON **e = malloc((n_all ? n_all : 1) * sizeof *e);
    if (!e) { cJSON_Delete(root); return PL_ERR_NOMEM; }
    for (const cJSON *c = root->child; c; c = c->next) {
        const cJSON *conv = cJSON_IsObject(c) ? cJSON_GetObjectItemCaseSensitive(c, "conversations") : NULL;
        if ((cJSON_IsArray(conv) || cJSON_IsObject(conv)) && cJSON_GetArraySize(conv) >= 2) e[n++] = c;
    }
    if (!o->no_shuffle) {
        bn_mt m;
        bn_mt_seed_python(&m, o->seed);
        bn_mt_shuffle(&m, e, n, sizeof *e);
    }
    pl_tokids scratch = {0};
    pl_buf pb, qb;
    pl_buf_init(&pb);
    pl_buf_init(&qb);
    size_t cap = 0, ind = 0;
    for (size_t i = 0; !rc && i < n && (int64_t)d->n < o->num_prompts; i++) {
        const cJSON *conv = cJSON_GetObjectItemCaseSensitive(e[i], "conversations");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(conv, 0), "value");
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(conv, 1), "value");
        if (!cJSON_IsString(p) || !cJSON_IsString(q)) {
            rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: a conversation's first two turns need a string \"value\"",
                           o->path);
            break;
        }
        int64_t plen, clen;
        char terr[256];
        str_bytes(&pb, p);   /* the texts' real bytes: a NUL is C0 80 inside cJSON */
        str_bytes(&qb, q);
        if (!pl_buf_ok(&pb) || !pl_buf_ok(&qb)) { rc = PL_ERR_NOMEM; break; }
        rc = count_tokens(t, pb.data, pb.len, &scratch, &plen, terr, sizeof terr);
        if (!rc) rc = count_tokens(t, qb.data, qb.len, &scratch, &clen, terr, sizeof terr);
        if (rc) { pl_seterr(err, errlen, rc, "%s: %s", o->path, terr); break; }
        int64_t olen = o->has_output_len ? o->output_len : clen;
        if (!valid_sequence(plen, olen, o->has_output_len)) continue;
        rc = push_sample(d, &cap, pb.data, pb.len, plen, olen, o->id_prefix, ind++);
    }
    if (!rc) rc = oversample(d, &cap, o->num_prompts, o->seed, o->no_oversample, o->id_prefix, err, errlen);
    pl_tokids_free(&scratch);
    pl_buf_free(&pb);
    pl_buf_free(&qb);
    free(e);
    cJSON_Delete(root);
    if (rc) bn_dataset_free(d);
    return rc;
}

int bn_dataset_custom(bn_dataset *d, const bn_tok *t, const bn_file_opts *o, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    pl_buf b;
    pl_buf_init(&b);
    int rc = pl_file_read(o->path, &b, o->max_bytes, err, errlen);
    if (rc) { pl_buf_free(&b); return rc; }
    /* one object per non-blank line; all of them parsed first (vLLM loads
     * the whole file, then shuffles the rows) */
    cJSON **rows = NULL;
    size_t n = 0, cap_rows = 0, lineno = 0;
    bool any_prompt = false;
    for (char *line = b.data, *next; !rc && line && *line; line = next) {
        next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) : strlen(line);
        if (next) next++;
        lineno++;
        if (pl_py_is_blank(line, len)) continue;
        cJSON *r;
        char perr[256];
        rc = pl_json_parse(&r, line, len, perr, sizeof perr);
        if (rc) { pl_seterr(err, errlen, rc, "%s:%zu: %s", o->path, lineno, perr); break; }
        if (!cJSON_IsObject(r)) {
            cJSON_Delete(r);
            rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s:%zu: each line must be a JSON object", o->path, lineno);
            break;
        }
        any_prompt |= cJSON_GetObjectItemCaseSensitive(r, "prompt") != NULL;
        if (n == cap_rows) {
            size_t nc = cap_rows ? 2 * cap_rows : 256;
            cJSON **p = realloc(rows, nc * sizeof *p);
            if (!p) { cJSON_Delete(r); rc = PL_ERR_NOMEM; break; }
            rows = p;
            cap_rows = nc;
        }
        rows[n++] = r;
    }
    pl_buf_free(&b);
    if (!rc && !any_prompt) rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: JSONL file must contain a 'prompt' column", o->path);
    if (!rc && !o->no_shuffle) {
        bn_mt m;
        bn_mt_seed_python(&m, o->seed);
        bn_mt_shuffle(&m, rows, n, sizeof *rows);
    }
    int64_t want = o->num_prompts > 0 ? o->num_prompts : (int64_t)n;
    pl_tokids scratch = {0};
    pl_buf rendered, pb;
    pl_buf_init(&rendered);
    pl_buf_init(&pb);
    size_t cap = 0;
    for (size_t i = 0; !rc && i < n && (int64_t)d->n < want; i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(rows[i], "prompt");
        if (!cJSON_IsString(p)) {
            rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: a row's \"prompt\" must be a string", o->path);
            break;
        }
        str_bytes(&pb, p);   /* the text's real bytes: a NUL is C0 80 inside cJSON */
        if (!pl_buf_ok(&pb)) { rc = PL_ERR_NOMEM; break; }
        const char *prompt = pb.data;
        size_t bytes = pb.len;
        int64_t olen = 1, plen = 1;
        if (t) {
            if (o->has_output_len) olen = o->output_len;
            else {
                const cJSON *ot = cJSON_GetObjectItemCaseSensitive(rows[i], "output_tokens");
                if (!cJSON_IsNumber(ot) || ot->valuedouble != floor(ot->valuedouble) || fabs(ot->valuedouble) > 1e15) {
                    rc = pl_seterr(err, errlen, PL_ERR_INVALID,
                                   "%s: without --custom-output-len each row needs an integer 'output_tokens'", o->path);
                    break;
                }
                olen = (int64_t)ot->valuedouble;
            }
            if (!o->skip_chat_template) {
                cJSON *body = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(body, "messages");
                cJSON *msg = cJSON_CreateObject();
                cJSON_AddStringToObject(msg, "role", "user");
                cJSON_AddItemToObject(msg, "content", pl_json_string_new(prompt, bytes));
                cJSON_AddItemToArray(msgs, msg);
                if (o->chat_template_kwargs)
                    cJSON_AddItemToObject(body, "chat_template_kwargs", cJSON_Duplicate(o->chat_template_kwargs, 1));
                tok_error te = {0};
                pl_buf_reset(&rendered);   /* tok_request_render appends */
                rc = tok_request_render(t->tm, body, &rendered, &te);
                cJSON_Delete(body);
                if (rc) { pl_seterr(err, errlen, rc, "%s: chat template: %s", o->path, te.message); break; }
                prompt = rendered.data ? rendered.data : "";
                bytes = rendered.len;
            }
            char terr[256];
            rc = count_tokens(t, prompt, bytes, &scratch, &plen, terr, sizeof terr);
            if (rc) { pl_seterr(err, errlen, rc, "%s: %s", o->path, terr); break; }
        }
        rc = push_sample(d, &cap, prompt, bytes, plen, olen, o->id_prefix, i);
    }
    if (!rc) rc = oversample(d, &cap, o->num_prompts, o->seed, o->no_oversample, o->id_prefix, err, errlen);
    pl_tokids_free(&scratch);
    pl_buf_free(&rendered);
    pl_buf_free(&pb);
    for (size_t i = 0; i < n; i++) cJSON_Delete(rows[i]);
    free(rows);
    if (rc) bn_dataset_free(d);
    return rc;
}
