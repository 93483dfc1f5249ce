/* Tokenizer conformance against HF tokenizers goldens
 * (tests/data/tokenizer, written by tests/tokenizer/gen_goldens.py) plus unit
 * tests for loading errors, bad ids, bad text and concurrent use.
 *
 * The real tokenizer.json files come from ../shared (skipped visibly when
 * absent); variants (GLM-shaped, feature variants) are built here from them
 * with the edits recorded in each golden file, never stored in the repo. */
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_int.h"   /* the encode budget, lowered for a test */
#include <time.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <unistd.h>
#include <stdint.h>

/* GLM_TOKENIZER_GOLDENS points elsewhere for big throw-away runs (see
 * gen_goldens.py) */
static const char *golden_dir(void)
{
    const char *e = getenv("GLM_TOKENIZER_GOLDENS");
    return e ? e : "tests/data/tokenizer";
}

static const char *const GOLDENS[] = {"llama3", "qwen3", "deepseek_v3", "glm",
                                      "gpt2_bytelevel", "qwen3_features", "llama3_features"};

/* ===== helpers ===== */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    pl_buf b;
    pl_buf_init(&b);
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) pl_buf_append(&b, chunk, n);
    fclose(f);
    if (len) *len = b.len;
    return b.data ? b.data : strdup("");
}

static cJSON *read_json(const char *path)
{
    size_t len;
    char *s = read_file(path, &len);
    if (!s) return NULL;
    cJSON *j = cJSON_ParseWithLength(s, len);
    free(s);
    return j;
}

/* printable excerpt of a text for failure messages */
static const char *show(const char *s, size_t n)
{
    static char out[400];
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof out - 16; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') o += (size_t)snprintf(out + o, sizeof out - o, "\\n");
        else if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
        else out[o++] = (char)c;
    }
    if (n > 0 && o >= sizeof out - 16) o += (size_t)snprintf(out + o, sizeof out - o, "...");
    out[o] = 0;
    return out;
}

/* A golden string: a JSON string, or {"hex": "..."} for texts holding NUL
 * (cJSON strings stop at NUL). Returns a malloc'd copy. */
static char *gstr(const cJSON *v, size_t *len)
{
    if (cJSON_IsString(v)) {
        *len = strlen(v->valuestring);
        return strdup(v->valuestring);
    }
    const char *hex = cJSON_GetStringValue(cJSON_GetObjectItem(v, "hex"));
    if (!hex) { *len = 0; return strdup(""); }
    size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        sscanf(hex + 2 * i, "%2x", &x);
        out[i] = (char)x;
    }
    out[n] = 0;
    *len = n;
    return out;
}

static int ids_equal(const int32_t *a, size_t na, const cJSON *arr)
{
    if ((size_t)cJSON_GetArraySize(arr) != na) return 0;
    size_t i = 0;
    for (const cJSON *x = arr->child; x; x = x->next, i++)
        if (a[i] != (int32_t)x->valuedouble) return 0;
    return 1;
}

static int32_t *json_ids(const cJSON *arr, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    size_t i = 0;
    for (const cJSON *x = arr->child; x; x = x->next) ids[i++] = (int32_t)x->valuedouble;
    return ids;
}

/* Apply the golden's edits (same ops as gen_goldens.py) to the base JSON. */
static int apply_edits(cJSON *root, const cJSON *edits)
{
    for (const cJSON *e = edits ? edits->child : NULL; e; e = e->next) {
        const cJSON *path = cJSON_GetObjectItem(e, "path");
        const char *op = cJSON_GetStringValue(cJSON_GetObjectItem(e, "op"));
        cJSON *node = root;
        int n = cJSON_GetArraySize(path);
        for (int i = 0; i < n - 1; i++) node = cJSON_GetObjectItem(node, cJSON_GetArrayItem(path, i)->valuestring);
        const char *last = cJSON_GetArrayItem(path, n - 1)->valuestring;
        if (!node || !op) return -1;
        if (!strcmp(op, "set")) {
            cJSON *v = cJSON_Duplicate(cJSON_GetObjectItem(e, "value"), 1);
            if (cJSON_GetObjectItem(node, last)) cJSON_ReplaceItemInObject(node, last, v);
            else cJSON_AddItemToObject(node, last, v);
        } else if (!strcmp(op, "append")) {
            cJSON *arr = cJSON_GetObjectItem(node, last);
            for (const cJSON *x = cJSON_GetObjectItem(e, "values")->child; x; x = x->next)
                cJSON_AddItemToArray(arr, cJSON_Duplicate(x, 1));
        } else {
            return -1;
        }
    }
    return 0;
}

/* Load the golden's tokenizer from ../shared: the file itself when there are
 * no edits (exercises pl_tokenizer_load), else base + edits from memory. */
static pl_tokenizer *load_golden_tokenizer(const cJSON *g)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/data/tokenizers/%s/tokenizer.json", test_shared_dir(),
             cJSON_GetStringValue(cJSON_GetObjectItem(g, "base")));
    FILE *f = fopen(path, "rb");
    if (!f) {
        char why[1100];
        snprintf(why, sizeof why, "%s not found (shared data absent)", path);
        test_skip(why);
        return NULL;
    }
    fclose(f);
    const cJSON *edits = cJSON_GetObjectItem(g, "edits");
    pl_tokenizer *tok = NULL;
    int rc;
    if (cJSON_GetArraySize(edits) == 0) {
        rc = pl_tokenizer_load(&tok, path, err, sizeof err);
    } else {
        cJSON *root = read_json(path);
        CHECK(root != NULL);
        if (!root) return NULL;
        CHECK(apply_edits(root, edits) == 0);
        char *text = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        rc = pl_tokenizer_load_mem(&tok, text, strlen(text), err, sizeof err);
        free(text);
    }
    if (rc) fprintf(stderr, "  load failed (%d): %s\n", rc, err);
    CHECK_EQ_INT(rc, 0);
    return tok;
}

/* FNV-1a 64, as in gen_goldens.py */
static uint64_t fnv64(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ===== the golden check ===== */

static cJSON *g_texts;

static int check_decode(pl_tokenizer *tok, const int32_t *ids, size_t n, int skip, const char *want,
                        size_t wantlen, const char *ctx)
{
    pl_buf out;
    pl_buf_init(&out);
    int rc = pl_tokenizer_decode(tok, ids, n, skip, &out);
    int ok = rc == 0 && out.len == wantlen && (wantlen == 0 || !memcmp(out.data, want, wantlen));
    if (!ok) {
        fprintf(stderr, "  decode(skip=%d) mismatch for %s: rc=%d got \"%s\"", skip, ctx, rc,
                show(out.data ? out.data : "", out.len));
        fprintf(stderr, " want \"%s\"\n", show(want, wantlen));
    }
    pl_buf_free(&out);
    return ok;
}

static void check_golden(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", golden_dir(), name);
    cJSON *g = read_json(path);
    CHECK(g != NULL);
    if (!g || !g_texts) return;
    pl_tokenizer *tok = load_golden_tokenizer(g);
    if (!tok) { cJSON_Delete(g); return; }

    CHECK_EQ_INT(pl_tokenizer_vocab_size(tok), cJSON_GetObjectItem(g, "vocab_size")->valuedouble);

    /* encode + decode of every text */
    const cJSON *texts = cJSON_GetObjectItem(g_texts, "texts");
    const cJSON *enc = cJSON_GetObjectItem(g, "encode");
    const cJSON *dec = cJSON_GetObjectItem(g, "decode");
    CHECK_EQ_INT(cJSON_GetArraySize(texts), cJSON_GetArraySize(enc));
    int bad_enc = 0, bad_dec = 0, n_texts = 0;
    const cJSON *t = texts->child, *e = enc->child, *d = dec->child;
    pl_tokids v = {0};
    char err[256];
    for (; t && e && d; t = t->next, e = e->next, d = d->next, n_texts++) {
        size_t slen;
        char *s = gstr(t, &slen);
        v.len = 0;
        int rc = pl_tokenizer_encode_ex(tok, s, slen, &v, err, sizeof err);
        if (rc || !ids_equal(v.ids, v.len, e)) {
            if (bad_enc++ < 8) {
                fprintf(stderr, "  %s: encode mismatch (rc=%d %s) for \"%s\"\n   got ", name, rc, rc ? err : "",
                        show(s, slen));
                for (size_t i = 0; i < v.len && i < 24; i++) fprintf(stderr, "%d ", v.ids[i]);
                char *want = cJSON_PrintUnformatted(e);
                fprintf(stderr, "\n   want %.200s\n", want);
                free(want);
            }
            free(s);
            continue;
        }
        char *want[2];
        size_t wl[2];
        for (int skip = 0; skip < 2; skip++) {
            /* null: the text; 1: " " + text; 2: same as skip=False */
            const cJSON *w = cJSON_GetArrayItem(d, skip);
            if (cJSON_IsNumber(w) && w->valueint == 2 && skip) {
                wl[1] = wl[0];
                want[1] = malloc(wl[0] + 1);
                memcpy(want[1], want[0], wl[0] + 1);
            } else if (cJSON_IsNull(w) || cJSON_IsNumber(w)) {
                int pre = cJSON_IsNumber(w);
                wl[skip] = slen + (size_t)pre;
                want[skip] = malloc(wl[skip] + 1);
                want[skip][0] = ' ';
                memcpy(want[skip] + pre, s, slen + 1);
            } else {
                want[skip] = gstr(w, &wl[skip]);
            }
            if (!check_decode(tok, v.ids, v.len, skip, want[skip], wl[skip], show(s, slen))) bad_dec++;
        }
        free(want[0]);
        free(want[1]);
        free(s);
    }
    CHECK_EQ_INT(bad_enc, 0);
    CHECK_EQ_INT(bad_dec, 0);

    /* decode of random id sequences (invalid UTF-8 joins, specials) */
    int bad_rdec = 0, n_rdec = 0;
    for (const cJSON *r = cJSON_GetObjectItem(g, "random_decode")->child; r; r = r->next, n_rdec++) {
        size_t n;
        int32_t *ids = json_ids(cJSON_GetObjectItem(r, "ids"), &n);
        size_t la, lb;
        char *a = gstr(cJSON_GetObjectItem(r, "noskip"), &la);
        char *b = gstr(cJSON_GetObjectItem(r, "skip"), &lb);
        if (!check_decode(tok, ids, n, 0, a, la, "random ids") || !check_decode(tok, ids, n, 1, b, lb, "random ids"))
            bad_rdec++;
        free(ids);
        free(a);
        free(b);
    }
    CHECK_EQ_INT(bad_rdec, 0);

    /* every token: lossy(token_bytes(id)) == HF decode([id]), by chunk sums */
    int bad_sums = 0, chunk = 0;
    int32_t nv = pl_tokenizer_vocab_size(tok);
    pl_buf one;
    pl_buf_init(&one);
    for (const cJSON *s = cJSON_GetObjectItem(g, "token_sums")->child; s; s = s->next, chunk++) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (int32_t id = chunk * 1024; id < nv && id < (chunk + 1) * 1024; id++) {
            size_t len;
            const uint8_t *p = pl_tokenizer_token_bytes(tok, id, &len);
            pl_buf_reset(&one);
            if (p) pl_tokenizer_utf8_lossy(p, len, &one);
            h = fnv64(one.data ? one.data : "", one.len, h);
            h = fnv64("\xff", 1, h);
        }
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        if (strcmp(hex, s->valuestring) && bad_sums++ < 4)
            fprintf(stderr, "  %s: token bytes differ in ids %d..%d\n", name, chunk * 1024, chunk * 1024 + 1023);
    }
    pl_buf_free(&one);
    CHECK_EQ_INT(bad_sums, 0);

    /* added / special flags for every id */
    const cJSON *added = cJSON_GetObjectItem(g, "added_ids"), *special = cJSON_GetObjectItem(g, "special_ids");
    int n_added = 0, n_special = 0, bad_flags = 0;
    for (const cJSON *x = added->child; x; x = x->next) bad_flags += !pl_tokenizer_is_added(tok, (int32_t)x->valuedouble);
    for (const cJSON *x = special->child; x; x = x->next) bad_flags += !pl_tokenizer_is_special(tok, (int32_t)x->valuedouble);
    for (int32_t id = 0; id < nv; id++) {
        n_added += pl_tokenizer_is_added(tok, id);
        n_special += pl_tokenizer_is_special(tok, id);
    }
    CHECK_EQ_INT(bad_flags, 0);
    CHECK_EQ_INT(n_added, cJSON_GetArraySize(added));
    CHECK_EQ_INT(n_special, cJSON_GetArraySize(special));

    /* token_to_id */
    int bad_t2i = 0;
    for (const cJSON *x = cJSON_GetObjectItem(g, "token_to_id")->child; x; x = x->next) {
        size_t sl;
        char *s = gstr(cJSON_GetArrayItem(x, 0), &sl);
        const cJSON *want = cJSON_GetArrayItem(x, 1);
        int32_t got = pl_tokenizer_token_to_id(tok, s, sl);
        int32_t w = cJSON_IsNull(want) ? PL_ERR_NOTFOUND : (int32_t)want->valuedouble;
        if (got != w && bad_t2i++ < 4) fprintf(stderr, "  %s: token_to_id(\"%s\") = %d, want %d\n", name, show(s, sl), got, w);
        free(s);
    }
    CHECK_EQ_INT(bad_t2i, 0);
    printf("     %s: %d texts, %d random decodes, %d ids checked\n", name, n_texts, n_rdec, nv);
    pl_tokids_free(&v);
    pl_tokenizer_free(tok);
    cJSON_Delete(g);
}

TEST(golden_llama3) { check_golden(GOLDENS[0]); }
TEST(golden_qwen3) { check_golden(GOLDENS[1]); }
TEST(golden_deepseek_v3) { check_golden(GOLDENS[2]); }
TEST(golden_glm) { check_golden(GOLDENS[3]); }
TEST(golden_gpt2_bytelevel) { check_golden(GOLDENS[4]); }
TEST(golden_qwen3_features) { check_golden(GOLDENS[5]); }
TEST(golden_llama3_features) { check_golden(GOLDENS[6]); }

/* ===== a tiny tokenizer built in memory (no shared data needed) ===== */

/* ByteLevel spelling of byte b, JSON-escaped, appended to out. */
static void put_byte_token(pl_buf *out, int b)
{
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    unsigned cp = printable ? (unsigned)b : b <= 32 ? 256u + (unsigned)b : b < 173 ? 289u + (unsigned)(b - 127) : 323u;
    if (cp == '"' || cp == '\\') pl_buf_printf(out, "\\%c", (char)cp);
    else if (cp < 0x80) pl_buf_putc(out, (char)cp);
    else pl_buf_printf(out, "%c%c", (char)(0xC0 | cp >> 6), (char)(0x80 | (cp & 0x3F)));
}

typedef struct mini_opts {
    const char *added;       /* added_tokens array contents */
    const char *normalizer;
    const char *pre;
    const char *decoder;
    const char *model_extra; /* ,"key":value pairs added to the model */
    const char *merges;      /* merges array */
    const char *vocab_extra; /* ,"tok":id pairs */
    const char *top_extra;   /* ,"key":value pairs added at top level */
    const char *truncation;
    const char *post;        /* post_processor (default null) */
} mini_opts;

/* vocab: the 256 byte tokens (id = byte), he=256 ll=257 hell=258 hello=259
 * Ġw=260; merges build them. Pre-tokenizer: ByteLevel with the GPT-2 regex. */
static char *mini_json(mini_opts o)
{
    pl_buf b;
    pl_buf_init(&b);
    pl_buf_printf(&b, "{\"version\":\"1.0\",\"truncation\":%s,\"padding\":null,\"added_tokens\":[%s],"
                      "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":%s,"
                      "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
                      "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":false,"
                      "\"byte_fallback\":false%s,\"vocab\":{",
                  o.truncation ? o.truncation : "null", o.added ? o.added : "",
                  o.normalizer ? o.normalizer : "null",
                  o.pre ? o.pre : "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}",
                  o.post ? o.post : "null", o.decoder ? o.decoder : "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}",
                  o.model_extra ? o.model_extra : "");
    for (int i = 0; i < 256; i++) {
        pl_buf_printf(&b, "%s\"", i ? "," : "");
        put_byte_token(&b, i);
        pl_buf_printf(&b, "\":%d", i);
    }
    pl_buf_printf(&b, ",\"he\":256,\"ll\":257,\"hell\":258,\"hello\":259,\"\xC4\xA0w\":260%s},\"merges\":%s}%s}",
                  o.vocab_extra ? o.vocab_extra : "",
                  o.merges ? o.merges : "[\"h e\",\"l l\",\"he ll\",\"hell o\",\"\xC4\xA0 w\"]",
                  o.top_extra ? o.top_extra : "");
    return b.data;
}

static pl_tokenizer *mini_load(mini_opts o, int *rc, char *err, size_t errlen)
{
    char *j = mini_json(o);
    pl_tokenizer *t = NULL;
    *rc = pl_tokenizer_load_mem(&t, j, strlen(j), err, errlen);
    free(j);
    return t;
}

static const char *enc_str(pl_tokenizer *t, const char *s)
{
    static char out[512];
    int32_t *ids;
    size_t n;
    if (pl_tokenizer_encode(t, s, strlen(s), &ids, &n)) return "error";
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && o < sizeof out - 16; i++) o += (size_t)snprintf(out + o, sizeof out - o, "%s%d", i ? " " : "", ids[i]);
    free(ids);
    return out;
}

TEST(mini_encode_decode)
{
    char err[256];
    int rc;
    pl_tokenizer *t = mini_load((mini_opts){
        .added = "{\"id\":261,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                 "\"normalized\":false,\"special\":true},"
                 "{\"id\":262,\"content\":\"<x>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,"
                 "\"normalized\":false,\"special\":false}"}, &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (!t) { fprintf(stderr, "  %s\n", err); return; }
    CHECK_EQ_STR(enc_str(t, "hello"), "259");
    CHECK_EQ_STR(enc_str(t, "hello world"), "259 260 111 114 108 100");
    CHECK_EQ_STR(enc_str(t, "<s>hello<s>"), "261 259 261");
    CHECK_EQ_STR(enc_str(t, "a  <x>  b"), "97 262 98");     /* lstrip/rstrip eat the spaces */
    CHECK_EQ_STR(enc_str(t, ""), "");
    CHECK_EQ_INT(pl_tokenizer_vocab_size(t), 263);
    size_t len;
    const uint8_t *p = pl_tokenizer_token_bytes(t, 260, &len);
    CHECK(p && len == 2 && !memcmp(p, " w", 2));
    p = pl_tokenizer_token_bytes(t, 0, &len);      /* byte 0 */
    CHECK(p && len == 1 && p[0] == 0);
    CHECK_EQ_INT(pl_tokenizer_token_to_id(t, "\xC4\xA0w", 3), 260);
    CHECK_EQ_INT(pl_tokenizer_token_to_id(t, "hello", 5), 259);
    CHECK_EQ_INT(pl_tokenizer_token_to_id(t, "<s>", 3), 261);
    CHECK_EQ_INT(pl_tokenizer_token_to_id(t, "nope", 4), PL_ERR_NOTFOUND);
    CHECK_EQ_INT(pl_tokenizer_is_special(t, 261), 1);
    CHECK_EQ_INT(pl_tokenizer_is_special(t, 262), 0);
    CHECK_EQ_INT(pl_tokenizer_is_added(t, 262), 1);
    CHECK_EQ_INT(pl_tokenizer_is_added(t, 259), 0);
    const char *content = pl_tokenizer_added_content(t, 262, &len);   /* as written */
    CHECK(content && len == 3 && !memcmp(content, "<x>", 3));
    content = pl_tokenizer_added_content(t, 261, &len);
    CHECK(content && len == 3 && !memcmp(content, "<s>", 3));
    CHECK(!pl_tokenizer_added_content(t, 259, &len) && len == 0);
    CHECK(!pl_tokenizer_added_content(t, 999, &len) && len == 0);
    int32_t ids[] = {261, 259, 260, 0xC3, 261};
    pl_buf out;
    pl_buf_init(&out);
    CHECK_EQ_INT(pl_tokenizer_decode(t, ids, 5, 0, &out), 0);
    CHECK(out.len == 16 && !memcmp(out.data, "<s>hello w\xEF\xBF\xBD<s>", 16));
    pl_buf_reset(&out);
    CHECK_EQ_INT(pl_tokenizer_decode(t, ids, 5, 1, &out), 0);
    CHECK(out.len == 10 && !memcmp(out.data, "hello w\xEF\xBF\xBD", 10));
    pl_buf_free(&out);
    pl_tokenizer_free(t);
}

/* ignore_merges, "#version" lines in merges, a repeated merge (last rank
 * wins, as in HF's HashMap) */
TEST(mini_model_options)
{
    char err[256];
    int rc;
    mini_opts o = {.vocab_extra = ",\"wor\":261"};
    pl_tokenizer *t = mini_load(o, &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (t) CHECK_EQ_STR(enc_str(t, "wor"), "119 111 114");     /* no merge makes "wor" */
    pl_tokenizer_free(t);
    o.model_extra = ",\"ignore_merges\":true";
    t = mini_load(o, &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (t) CHECK_EQ_STR(enc_str(t, "wor hello"), "261 32 259");  /* whole pre-token in vocab */
    pl_tokenizer_free(t);
    t = mini_load((mini_opts){.merges = "[\"#version: 0.2\",\"h e\",\"l l\",\"he ll\",\"hell o\"]"}, &rc, err,
                  sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (t) CHECK_EQ_STR(enc_str(t, "hello"), "259");
    pl_tokenizer_free(t);
    /* "e l" ranks before "l l" only if its first (lower) rank counted: HF
     * keeps the last rank of a repeated pair, so "ll" wins in "hell" */
    t = mini_load((mini_opts){.vocab_extra = ",\"el\":261",
                              .merges = "[\"e l\",\"l l\",\"h e\",\"e l\",\"he ll\"]"}, &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (t) CHECK_EQ_STR(enc_str(t, "hell"), "258");
    pl_tokenizer_free(t);
}

TEST(bad_ids)
{
    char err[256];
    int rc;
    pl_tokenizer *t = mini_load((mini_opts){0}, &rc, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (!t) return;
    pl_buf out;
    pl_buf_init(&out);
    pl_buf_puts(&out, "keep");
    int32_t bad[][2] = {{104, -1}, {104, 261}, {INT32_MAX, 104}, {INT32_MIN, 0}};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(pl_tokenizer_decode(t, bad[i], 2, 0, &out), PL_ERR_RANGE);
        CHECK_EQ_STR(out.data, "keep");                 /* nothing appended */
    }
    size_t len = 7;
    CHECK(pl_tokenizer_token_bytes(t, -5, &len) == NULL && len == 0);
    CHECK(pl_tokenizer_token_bytes(t, 261, &len) == NULL);
    CHECK_EQ_INT(pl_tokenizer_is_special(t, 99999), 0);
    CHECK_EQ_INT(pl_tokenizer_is_added(t, -1), 0);
    pl_buf_free(&out);
    pl_tokenizer_free(t);
}

TEST(bad_text)
{
    char err[256];
    int rc;
    pl_tokenizer *t = mini_load((mini_opts){0}, &rc, err, sizeof err);
    if (!t) { CHECK(0); return; }
    pl_tokids v = {0};
    CHECK_EQ_INT(pl_tokenizer_encode_ex(t, "hello", 5, &v, err, sizeof err), 0);
    CHECK_EQ_INT(v.len, 1);
    static const char *const bad[] = {"ab\xC3", "\xC0\xAF", "x\xED\xA0\x80y", "\xF4\x90\x80\x80", "\xFF", "a\x80"};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(pl_tokenizer_encode_ex(t, bad[i], strlen(bad[i]), &v, err, sizeof err), PL_ERR_INVALID);
        CHECK(strstr(err, "UTF-8") != NULL);
        CHECK_EQ_INT(v.len, 1);                          /* left as it was */
    }
    /* NUL bytes are text like any other */
    CHECK_EQ_INT(pl_tokenizer_encode_ex(t, "a\0b", 3, &v, err, sizeof err), 0);
    CHECK_EQ_INT(v.len, 4);
    pl_tokids_free(&v);
    pl_tokenizer_free(t);
}

/* Rust String::from_utf8_lossy results (maximal subparts). */
TEST(utf8_lossy)
{
    static const struct { const char *in; size_t n; const char *out; } c[] = {
        {"ok", 2, "ok"},
        {"\xF0\x9F\x98", 3, "\xEF\xBF\xBD"},
        {"\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xE2\x82" "A", 3, "\xEF\xBF\xBD" "A"},
        {"\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"a\x80" "b", 3, "a\xEF\xBF\xBD" "b"},
        {"\xE0\xA0", 2, "\xEF\xBF\xBD"},
        {"\xF0\x9F\x98\x80\xF0", 5, "\xF0\x9F\x98\x80\xEF\xBF\xBD"},
        {"\0", 1, "\0"},
    };
    pl_buf b;
    pl_buf_init(&b);
    for (size_t i = 0; i < PL_ARRAY_LEN(c); i++) {
        pl_buf_reset(&b);
        pl_tokenizer_utf8_lossy((const uint8_t *)c[i].in, c[i].n, &b);
        size_t want = c[i].n == 1 ? 1 : strlen(c[i].out);
        CHECK(b.len == want && !memcmp(b.data, c[i].out, want));
    }
    pl_buf_free(&b);
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A catastrophic pre-tokenizer pattern (operator-controlled, but the server
 * must not hang on it) fails the encode with PL_ERR_RANGE within the match
 * limit; an input that keeps every search just under it hits the encode's
 * time budget. The tokenizer keeps working for the next input. */
TEST(regex_limits_fail_the_encode_not_the_stage)
{
    char err[256];
    int rc;
    pl_tokenizer *t = mini_load((mini_opts){.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
        "\"pattern\":{\"Regex\":\"(a|a)+c\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}"},
        &rc, err, sizeof err);
    CHECK(t != NULL);
    if (!t) return;
    char bomb[64];   /* the 'c' it needs is there, after the 'b' that makes every path fail */
    memset(bomb, 'a', 60);
    strcpy(bomb + 60, "bc");
    pl_tokids ids = {0};
    double t0 = wall_s();
    CHECK_EQ_INT(pl_tokenizer_encode_ex(t, bomb, strlen(bomb), &ids, err, sizeof err), PL_ERR_RANGE);
    CHECK(strstr(err, "gave up") != NULL);
    double bomb_s = wall_s() - t0;
    CHECK(bomb_s < 5);
    /* blocks of 16 a's: each search stays far under the match limit */
    pl_buf many;
    pl_buf_init(&many);
    for (int i = 0; i < 60000; i++) pl_buf_puts(&many, "aaaaaaaaaaaaaaaab");   /* < 1 MiB: the budget is the base alone */
    pl_buf_puts(&many, "c");
    t->encode_budget_ms = 300;
    t0 = wall_s();
    CHECK_EQ_INT(pl_tokenizer_encode_ex(t, many.data, many.len, &ids, err, sizeof err), PL_ERR_RANGE);
    CHECK(strstr(err, "time budget (300 ms") != NULL);
    double budget_s = wall_s() - t0;
    CHECK(budget_s < 3);
    fprintf(stderr, "     catastrophic pattern: match limit hit in %.2f s, 300 ms budget hit in %.2f s\n", bomb_s, budget_s);
    pl_tokids_free(&ids);
    CHECK_EQ_INT(pl_tokenizer_encode_ex(t, "hello", 5, &ids, err, sizeof err), 0);
    CHECK(ids.len == 1 && ids.ids[0] == 259);
    pl_tokids_free(&ids);
    pl_buf_free(&many);
    pl_tokenizer_free(t);
}

/* Each broken file must fail with the right code and a message naming the
 * problem. */
TEST(load_errors)
{
    static const struct { mini_opts o; int rc; const char *msg; } c[] = {
        {{.pre = "{\"type\":\"Whitespace\"}"}, PL_ERR_UNSUPPORTED, "Whitespace"},
        {{.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                 "\"trim_offsets\":true,\"use_regex\":false},{\"type\":\"Digits\",\"individual_digits\":true}]}"},
         PL_ERR_UNSUPPORTED, "after ByteLevel"},
        {{.pre = "{\"type\":\"Digits\",\"individual_digits\":true}"}, PL_ERR_UNSUPPORTED, "no ByteLevel"},
        {{.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},"
                 "\"behavior\":\"Removed\",\"invert\":false},{\"type\":\"ByteLevel\"}]}"},
         PL_ERR_UNSUPPORTED, "Removed"},
        {{.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"^a\"},"
                 "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\"}]}"},
         PL_ERR_UNSUPPORTED, "'^'"},
        {{.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},"
                 "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\"}]}"},
         PL_ERR_UNSUPPORTED, "does not compile"},
        {{.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\bx\"},"
                 "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\"}]}"},
         PL_ERR_UNSUPPORTED, "\\b"},
        {{.normalizer = "{\"type\":\"Lowercase\"}"}, PL_ERR_UNSUPPORTED, "Lowercase"},
        {{.decoder = "null"}, PL_ERR_UNSUPPORTED, "decoder"},
        {{.decoder = "{\"type\":\"WordPiece\"}"}, PL_ERR_UNSUPPORTED, "WordPiece"},
        {{.model_extra = ",\"unk_token\":\"<unk>\""}, PL_ERR_UNSUPPORTED, "unk_token"},
        {{.model_extra = ",\"byte_fallback\":true"}, PL_ERR_UNSUPPORTED, "byte_fallback"},
        {{.model_extra = ",\"type\":\"Unigram\""}, PL_ERR_UNSUPPORTED, "Unigram"},
        {{.model_extra = ",\"dropout\":0.1"}, PL_ERR_UNSUPPORTED, "dropout"},
        {{.model_extra = ",\"continuing_subword_prefix\":\"##\""}, PL_ERR_UNSUPPORTED, "continuing_subword_prefix"},
        {{.model_extra = ",\"frobnicate\":1"}, PL_ERR_UNSUPPORTED, "frobnicate"},
        {{.merges = "[\"h e\",\"x zz\"]"}, PL_ERR_INVALID, "not in the vocab"},
        {{.merges = "[\"h e\",[\"l\",\"l\"]]"}, PL_ERR_INVALID, "merges[1]"},
        {{.merges = "[\"h e l\"]"}, PL_ERR_INVALID, "one space"},
        {{.merges = "{}"}, PL_ERR_INVALID, "merges must be an array"},
        {{.vocab_extra = ",\"he\":300"}, PL_ERR_INVALID, "duplicate vocab entry"},
        {{.vocab_extra = ",\"zz\":5"}, PL_ERR_INVALID, "used by two tokens"},
        {{.vocab_extra = ",\"zz\":99999999999"}, PL_ERR_RANGE, "too large"},
        {{.vocab_extra = ",\"zz\":-1"}, PL_ERR_INVALID, "non-negative integer"},
        {{.vocab_extra = ",\"zz\":1.5"}, PL_ERR_INVALID, "non-negative integer"},
        {{.added = "{\"id\":261,\"content\":\"<s>\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}"}, PL_ERR_UNSUPPORTED, "single_word"},
        {{.added = "{\"id\":300,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}"}, PL_ERR_INVALID, "would give it id 261"},
        {{.added = "{\"id\":7,\"content\":\"hello\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}"}, PL_ERR_INVALID, "would give it id 259"},
        {{.added = "{\"id\":261,\"content\":\"\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}"}, PL_ERR_INVALID, "empty content"},
        {{.added = "{\"id\":261,\"content\":\"<s>\",\"special\":true}"}, PL_ERR_INVALID, "missing \"normalized\""},
        {{.truncation = "{\"max_length\":5}"}, PL_ERR_UNSUPPORTED, "truncation"},
        {{.top_extra = ",\"extra_thing\":1"}, PL_ERR_UNSUPPORTED, "extra_thing"},
        {{.top_extra = "]"}, PL_ERR_PARSE, "JSON"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(c); i++) {
        char err[512] = "";
        int rc;
        pl_tokenizer *t = mini_load(c[i].o, &rc, err, sizeof err);
        if (rc != c[i].rc || !strstr(err, c[i].msg) || t) {
            fprintf(stderr, "  case %zu: rc=%d (want %d) err=\"%s\" (want \"%s\")\n", i, rc, c[i].rc, err, c[i].msg);
            CHECK(0);
        }
        pl_tokenizer_free(t);
    }
}

/* Every prefix of a valid file fails cleanly; random corruption never
 * crashes (the sanitizer build checks memory). */
TEST(truncated_and_corrupt)
{
    char *j = mini_json((mini_opts){0});
    size_t n = strlen(j);
    char err[256];
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        pl_tokenizer *t = NULL;
        int rc = pl_tokenizer_load_mem(&t, j, k, err, sizeof err);
        if (rc == 0 || t || !err[0]) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    pl_tokenizer *t = NULL;
    CHECK_EQ_INT(pl_tokenizer_load_mem(&t, j, n / 2, err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "truncated") != NULL);
    unsigned seed = 12345;
    int loaded = 0;
    for (int it = 0; it < 3000; it++) {
        char *c = malloc(n);
        memcpy(c, j, n);
        for (int f = 0; f < 1 + it % 4; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            c[pos] = (char)(seed >> 16);
        }
        t = NULL;
        if (pl_tokenizer_load_mem(&t, c, n, err, sizeof err) == 0) {
            loaded++;
            int32_t *ids;
            size_t nid;
            if (pl_tokenizer_encode(t, "hello world <s> 123", 19, &ids, &nid) == 0) {
                pl_buf o;
                pl_buf_init(&o);
                pl_tokenizer_decode(t, ids, nid, 1, &o);
                pl_buf_free(&o);
                free(ids);
            }
            pl_tokenizer_free(t);
        }
        free(c);
    }
    printf("     corrupt files: %d of 3000 still loaded (harmless changes)\n", loaded);
    free(j);
}

/* An empty vocab has no byte tokens: text encodes to nothing (HF drops
 * characters it has no token for), never to ids that do not exist. */
TEST(empty_vocab)
{
    static const char j[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},\"added_tokens\":[],"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
        "\"decoder\":{\"type\":\"ByteLevel\"}}";
    pl_tokenizer *t = NULL;
    char err[256];
    CHECK_EQ_INT(pl_tokenizer_load_mem(&t, j, sizeof j - 1, err, sizeof err), 0);
    if (!t) return;
    CHECK_EQ_INT(pl_tokenizer_vocab_size(t), 0);
    int32_t *ids = NULL;
    size_t n = 99;
    CHECK_EQ_INT(pl_tokenizer_encode(t, "ab c", 4, &ids, &n), 0);
    CHECK_EQ_INT((int)n, 0);
    free(ids);
    pl_tokenizer_free(t);
}

TEST(file_errors)
{
    char err[512];
    pl_tokenizer *t = (pl_tokenizer *)1;
    CHECK_EQ_INT(pl_tokenizer_load(&t, "/nonexistent/tokenizer.json", err, sizeof err), PL_ERR_NOTFOUND);
    CHECK(t == NULL);
    CHECK(strstr(err, "/nonexistent/tokenizer.json") != NULL);
    CHECK_EQ_INT(pl_tokenizer_load(&t, "/", err, sizeof err), PL_ERR_IO);
    CHECK(strstr(err, "/") != NULL);
    CHECK_EQ_INT(pl_tokenizer_load(&t, "/dev/null", err, sizeof err), PL_ERR_IO);
    char tmp[] = "/tmp/tok_empty_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd >= 0) {
        close(fd);
        CHECK_EQ_INT(pl_tokenizer_load(&t, tmp, err, sizeof err), PL_ERR_PARSE);
        CHECK(strstr(err, "empty") != NULL);
        FILE *f = fopen(tmp, "w");
        fputs("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [", f);  /* truncated */
        fclose(f);
        CHECK_EQ_INT(pl_tokenizer_load(&t, tmp, err, sizeof err), PL_ERR_PARSE);
        CHECK(strstr(err, tmp) != NULL && strstr(err, "truncated") != NULL);
        unlink(tmp);
    }
    CHECK_EQ_INT(pl_tokenizer_load_mem(&t, "[1,2]", 5, err, sizeof err), PL_ERR_PARSE);
    CHECK_EQ_INT(pl_tokenizer_load_mem(&t, "{}", 2, err, sizeof err), PL_ERR_INVALID);
    const char *novocab = "{\"model\":{\"type\":\"BPE\"}}";
    CHECK_EQ_INT(pl_tokenizer_load_mem(&t, novocab, strlen(novocab), err, sizeof err), PL_ERR_UNSUPPORTED);
    CHECK(strstr(err, "vocab") != NULL);
    /* deep nesting is refused, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 16);
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"padding\":");
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    CHECK_EQ_INT(pl_tokenizer_load_mem(&t, deep, k, err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "deep") != NULL);
    free(deep);
}

/* A real file cut in half. */
TEST(truncated_real_file)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/data/tokenizers/llama3/tokenizer.json", test_shared_dir());
    size_t n;
    char *j = read_file(path, &n);
    if (!j) { test_skip("llama3 tokenizer.json absent (shared data)"); return; }
    pl_tokenizer *t = NULL;
    CHECK_EQ_INT(pl_tokenizer_load_mem(&t, j, n / 2, err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "truncated") != NULL);
    CHECK(t == NULL);
    free(j);
}

/* Concurrent encodes on one handle give the single-thread results. */
typedef struct { pl_tokenizer *t; const cJSON *texts; uint64_t sum; } thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    uint64_t h = 0xcbf29ce484222325ull;
    pl_tokids v = {0};
    for (int rep = 0; rep < 3; rep++)
        for (const cJSON *t = a->texts->child; t; t = t->next) {
            if (!cJSON_IsString(t)) continue;
            v.len = 0;
            if (pl_tokenizer_encode_ex(a->t, t->valuestring, strlen(t->valuestring), &v, NULL, 0)) h++;
            h = fnv64(v.ids, v.len * sizeof *v.ids, h);
        }
    pl_tokids_free(&v);
    a->sum = h;
    return NULL;
}

TEST(concurrent_encode)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/data/tokenizers/qwen3/tokenizer.json", test_shared_dir());
    pl_tokenizer *t = NULL;
    if (pl_tokenizer_load(&t, path, err, sizeof err)) { test_skip("qwen3 tokenizer.json absent (shared data)"); return; }
    const cJSON *texts = cJSON_GetObjectItem(g_texts, "texts");
    thr_arg one = {t, texts, 0};
    thr_main(&one);
    thr_arg a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg){t, texts, 0};
        pthread_create(&th[i], NULL, thr_main, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(a[i].sum == one.sum);
    }
    pl_tokenizer_free(t);
}

/* transformers' tokenizer.vocab_size and num_special_tokens_to_add(): the
 * model vocab without added tokens, and what the post-processor would add. */
TEST(model_vocab_and_post_processor_count)
{
    char err[256];
    int rc;
    const char *added = "{\"id\":261,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                        "\"normalized\":false,\"special\":true}";
    static const struct { const char *post; int n; } cases[] = {
        {NULL, 0},
        {"{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true}", 0},
        {"{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
         "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\","
         "\"ids\":[261],\"tokens\":[\"<s>\"]}}}", 1},
        {"{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\"},{\"type\":\"RobertaProcessing\"}]}", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pl_tokenizer *t = mini_load((mini_opts){.added = added, .post = cases[i].post}, &rc, err, sizeof err);
        CHECK_EQ_INT(rc, 0);
        if (!t) { fprintf(stderr, "  %s\n", err); continue; }
        CHECK_EQ_INT(pl_tokenizer_model_vocab_size(t), 261);
        CHECK_EQ_INT(pl_tokenizer_vocab_size(t), 262);
        CHECK_EQ_INT(pl_tokenizer_num_special_to_add(t), cases[i].n);
        pl_tokenizer_free(t);
    }
}

int main(void)
{
    char tp[1024];
    snprintf(tp, sizeof tp, "%s/texts.json", golden_dir());
    g_texts = read_json(tp);
    if (!g_texts) fprintf(stderr, "cannot read %s (run from the repo root)\n", tp);
    RUN(golden_llama3);
    RUN(golden_qwen3);
    RUN(golden_deepseek_v3);
    RUN(golden_glm);
    RUN(golden_gpt2_bytelevel);
    RUN(golden_qwen3_features);
    RUN(golden_llama3_features);
    RUN(mini_encode_decode);
    RUN(mini_model_options);
    RUN(bad_ids);
    RUN(bad_text);
    RUN(utf8_lossy);
    RUN(load_errors);
    RUN(regex_limits_fail_the_encode_not_the_stage);
    RUN(truncated_and_corrupt);
    RUN(empty_vocab);
    RUN(file_errors);
    RUN(truncated_real_file);
    RUN(concurrent_encode);
    cJSON_Delete(g_texts);
    RUN(model_vocab_and_post_processor_count);
    return test_report();
}
