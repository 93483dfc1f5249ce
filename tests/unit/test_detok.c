/* glm-detok's decoder: incremental text equals a full decode for every
 * chunking, UTF-8 is never split, special tokens are skipped as HF does, and
 * stop strings cut exactly where vLLM cuts (first stop string in list order,
 * excluded unless include_stop). Uses the real llama3 tokenizer.json from
 * ../shared, extended with GLM's added tokens (skipped visibly when absent). */
#include "test.h"
#include "detok/detok.h"
#include "json.h"
#include "tools/mkmodel/tokenizer_train.h"

#include <stdint.h>

static pl_tokenizer *tk;

static int load_glm_shaped(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/tokenizers/llama3/tokenizer.json", test_shared_dir());
    pl_buf b;
    pl_buf_init(&b);
    if (pl_file_read(path, &b, 64u << 20, NULL, 0)) { pl_buf_free(&b); return -1; }
    cJSON *j;
    if (pl_json_parse(&j, b.data, b.len, NULL, 0)) { pl_buf_free(&b); return -1; }
    cJSON *added = cJSON_GetObjectItem(j, "added_tokens");
    int next = 0;   /* first free id: past the vocab and the existing added tokens */
    for (const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "vocab")->child; v; v = v->next)
        if (v->valueint >= next) next = v->valueint + 1;
    for (const cJSON *t = added->child; t; t = t->next)
        if (cJSON_GetObjectItem(t, "id")->valueint >= next) next = cJSON_GetObjectItem(t, "id")->valueint + 1;
    for (int i = 0; i < ENG_MK_N_ADDED; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", next + i);
        cJSON_AddStringToObject(t, "content", eng_mk_added_tokens[i]);
        cJSON_AddBoolToObject(t, "single_word", 0);
        cJSON_AddBoolToObject(t, "lstrip", 0);
        cJSON_AddBoolToObject(t, "rstrip", 0);
        cJSON_AddBoolToObject(t, "normalized", 0);
        cJSON_AddBoolToObject(t, "special", i < 18);
        cJSON_AddItemToArray(added, t);
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    pl_buf_free(&b);
    char err[256];
    int rc = pl_tokenizer_load_mem(&tk, text, strlen(text), err, sizeof err);
    if (rc) fprintf(stderr, "  load: %s\n", err);
    free(text);
    return rc;
}

static pl_tokids encode(const char *s)
{
    pl_tokids v = {0};
    pl_tokenizer_encode_ex(tk, s, strlen(s), &v, NULL, 0);
    return v;
}

/* Feed ids in chunks of the given sizes (cycled); return the whole text. */
static void stream(const int32_t *ids, size_t n, const size_t *sizes, size_t nsizes, const dtk_stops *stops,
                   bool skip, bool incl, pl_buf *out, int *hit_out, int *valid_utf8)
{
    dtk_choice c;
    dtk_choice_init(&c, stops, skip, incl);
    pl_buf d;
    pl_buf_init(&d);
    *hit_out = -1;
    *valid_utf8 = 1;
    size_t k = 0;
    for (size_t off = 0; off < n && !c.done;) {
        size_t len = sizes[k++ % nsizes];
        if (len > n - off) len = n - off;
        pl_buf_reset(&d);
        int hit;
        dtk_choice_feed(&c, tk, ids + off, len, &d, &hit);
        /* every delta on its own must be valid UTF-8 (re-encoding lossy is identity) */
        pl_buf chk;
        pl_buf_init(&chk);
        pl_tokenizer_utf8_lossy((const uint8_t *)d.data, d.len, &chk);
        if (chk.len != d.len || (d.len && memcmp(chk.data, d.data, d.len))) *valid_utf8 = 0;
        pl_buf_free(&chk);
        pl_buf_append(out, d.data, d.len);
        if (hit >= 0) *hit_out = hit;
        off += len;
    }
    dtk_choice_flush(&c, out);
    dtk_choice_free(&c);
    pl_buf_free(&d);
}

static const char *texts[] = {
    "Hello, world! How's it going? I'M FINE, you'LL see.",
    "混合文字: 日本語のテキスト, 中文, 한국어, العربية, हिन्दी, ไทย",
    "emoji 👩🏽‍💻 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and e\xcc\x81 combining",
    "<think>reasoning here</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Zürich</arg_value></tool_call>",
    "[gMASK]<sop><|user|>hi<|assistant|><think>ok</think>done<|endoftext|>",
    "    def f(x):\n\treturn x**2  # 🚀\n\n\n1234567890 https://example.com/a?b=c&d=é",
};

TEST(incremental_equals_full_decode)
{
    if (!tk) { test_skip("../shared tokenizers absent"); return; }
    static const size_t chunkings[][3] = {{1, 1, 1}, {2, 2, 2}, {3, 1, 2}, {6, 6, 6}, {5, 1, 4}, {1, 6, 2}};
    dtk_stops none;
    dtk_stops_init(&none);
    for (size_t t = 0; t < PL_ARRAY_LEN(texts); t++) {
        pl_tokids v = encode(texts[t]);
        for (int skip = 0; skip < 2; skip++) {
            pl_buf full;
            pl_buf_init(&full);
            pl_tokenizer_decode(tk, v.ids, v.len, skip, &full);
            for (size_t ch = 0; ch < PL_ARRAY_LEN(chunkings); ch++) {
                pl_buf got;
                pl_buf_init(&got);
                int hit, valid;
                stream(v.ids, v.len, chunkings[ch], 3, &none, skip, false, &got, &hit, &valid);
                CHECK(valid);
                CHECK(got.len == full.len && !memcmp(got.data, full.data, full.len));
                pl_buf_free(&got);
            }
            pl_buf_free(&full);
        }
        pl_tokids_free(&v);
    }
}

TEST(skip_special_keeps_think_and_tool_tags)
{
    if (!tk) { test_skip("../shared tokenizers absent"); return; }
    pl_tokids v = encode("[gMASK]<sop><|assistant|><think>a</think><tool_call>f</tool_call><|user|>");
    dtk_stops none;
    dtk_stops_init(&none);
    pl_buf got;
    pl_buf_init(&got);
    int hit, valid;
    static const size_t one[] = {1};
    stream(v.ids, v.len, one, 1, &none, true, false, &got, &hit, &valid);
    CHECK_EQ_STR(got.data, "<think>a</think><tool_call>f</tool_call>");
    pl_buf_free(&got);
    pl_tokids_free(&v);
}

TEST(utf8_split_across_tokens_is_held)
{
    if (!tk) { test_skip("../shared tokenizers absent"); return; }
    /* single byte tokens of a 4-byte emoji: nothing until the last byte */
    int32_t ids[4];
    const uint8_t emoji[4] = {0xF0, 0x9F, 0x9A, 0x80};
    int found = 0;
    for (int32_t id = 0; id < pl_tokenizer_vocab_size(tk) && found < 4; id++) {
        size_t len;
        const uint8_t *b = pl_tokenizer_token_bytes(tk, id, &len);
        for (int k = 0; k < 4; k++)
            if (b && len == 1 && b[0] == emoji[k]) { ids[k] = id; found++; }
    }
    CHECK_EQ_INT(found, 4);
    dtk_stops none;
    dtk_stops_init(&none);
    dtk_choice c;
    dtk_choice_init(&c, &none, true, false);
    pl_buf d;
    pl_buf_init(&d);
    int hit;
    for (int k = 0; k < 3; k++) {
        dtk_choice_feed(&c, tk, &ids[k], 1, &d, &hit);
        CHECK_EQ_INT(d.len, 0);
    }
    dtk_choice_feed(&c, tk, &ids[3], 1, &d, &hit);
    CHECK_EQ_STR(d.data, "🚀");
    /* a stream that ends mid-character flushes U+FFFD, as HF decode does */
    pl_buf_reset(&d);
    dtk_choice_feed(&c, tk, ids, 2, &d, &hit);
    CHECK_EQ_INT(d.len, 0);
    dtk_choice_flush(&c, &d);
    CHECK_EQ_STR(d.data, "\xEF\xBF\xBD");
    dtk_choice_free(&c);
    pl_buf_free(&d);
}

/* Reference: vLLM's rule, step by step. After each engine step (chunk) the
 * text so far is searched for the stop strings in list order; the first one
 * found cuts there. So the step in which a stop string completes decides,
 * and list order only breaks ties inside one step. */
static void reference_cut(const int32_t *ids, size_t n, const size_t *sizes, size_t nsizes,
                          const char *const *stops, size_t nstops, bool incl, pl_buf *out, int *hit)
{
    *hit = -1;
    pl_buf t;
    pl_buf_init(&t);
    size_t k = 0;
    for (size_t off = 0; off < n;) {
        size_t len = sizes[k++ % nsizes];
        if (len > n - off) len = n - off;
        off += len;
        pl_buf_reset(&t);
        pl_tokenizer_decode(tk, ids, off, 1, &t);
        for (size_t s = 0; s < nstops; s++) {
            const char *p = t.data ? strstr(t.data, stops[s]) : NULL;
            if (p) {
                *hit = (int)s;
                pl_buf_append(out, t.data, (size_t)(p - t.data) + (incl ? strlen(stops[s]) : 0));
                pl_buf_free(&t);
                return;
            }
        }
    }
    pl_buf_append(out, t.data, t.len);
    pl_buf_free(&t);
}

TEST(stop_strings_every_chunking)
{
    if (!tk) { test_skip("../shared tokenizers absent"); return; }
    static const struct { const char *text; const char *stops[3]; size_t n; } cases[] = {
        {"The answer is 42. END of story. END", {"END"}, 1},
        {"abcabcabd and more", {"abcabd"}, 1},                     /* KMP fallback */
        {"Hello world\n\nObservation: x", {"\n\nObservation:", "world"}, 2}, /* earlier step wins */
        {"Hello world", {"world", "Hello"}, 2},                    /* same step: list order wins */
        {"no stop here at all", {"zzz", "stop here!"}, 2},
        {"日本語のテキストです。終わり", {"終わり"}, 1},
        {"<tool_call>f</tool_call> tail", {"</tool_call>"}, 1},
        {"aaaaab", {"aab", "ab"}, 2},
        {"x🚀y", {"🚀"}, 1},
    };
    static const size_t chunkings[][3] = {{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {1, 2, 3}, {6, 6, 6}, {4, 1, 5}};
    for (size_t t = 0; t < PL_ARRAY_LEN(cases); t++) {
        pl_tokids v = encode(cases[t].text);
        for (int incl = 0; incl < 2; incl++) {
            dtk_stops stops;
            dtk_stops_init(&stops);
            for (size_t k = 0; k < cases[t].n; k++) dtk_stops_add(&stops, cases[t].stops[k], strlen(cases[t].stops[k]));
            for (size_t ch = 0; ch < PL_ARRAY_LEN(chunkings); ch++) {
                pl_buf want;
                pl_buf_init(&want);
                int want_hit;
                reference_cut(v.ids, v.len, chunkings[ch], 3, cases[t].stops, cases[t].n, incl, &want, &want_hit);
                pl_buf got;
                pl_buf_init(&got);
                int hit, valid;
                stream(v.ids, v.len, chunkings[ch], 3, &stops, true, incl, &got, &hit, &valid);
                if (got.len != want.len || memcmp(got.data, want.data, want.len) || hit != want_hit) {
                    fprintf(stderr, "  case %zu incl %d chunking %zu: got \"%s\" (hit %d), want \"%s\" (hit %d)\n", t, incl,
                            ch, got.data ? got.data : "", hit, want.data ? want.data : "", want_hit);
                    t_cur_failed = 1;
                }
                pl_buf_free(&got);
                pl_buf_free(&want);
            }
            dtk_stops_free(&stops);
        }
        pl_tokids_free(&v);
    }
}

TEST(stop_prefix_is_held_then_released)
{
    if (!tk) { test_skip("../shared tokenizers absent"); return; }
    dtk_stops stops;
    dtk_stops_init(&stops);
    dtk_stops_add(&stops, "STOP!", 5);
    dtk_choice c;
    dtk_choice_init(&c, &stops, true, false);
    pl_buf d;
    pl_buf_init(&d);
    int hit;
    pl_tokids a = encode("go ST");
    dtk_choice_feed(&c, tk, a.ids, a.len, &d, &hit);
    CHECK_EQ_STR(d.data, "go ");               /* "ST" might start "STOP!" */
    pl_buf_reset(&d);
    pl_tokids b = encode("OP?");
    dtk_choice_feed(&c, tk, b.ids, b.len, &d, &hit);
    CHECK_EQ_STR(d.data, "STOP?");             /* decided: not a stop */
    CHECK_EQ_INT(hit, -1);
    pl_buf_reset(&d);
    pl_tokids e = encode(" STO");
    dtk_choice_feed(&c, tk, e.ids, e.len, &d, &hit);
    dtk_choice_flush(&c, &d);                  /* finish releases what was held */
    CHECK_EQ_STR(d.data, " STO");
    pl_tokids_free(&a);
    pl_tokids_free(&b);
    pl_tokids_free(&e);
    dtk_choice_free(&c);
    dtk_stops_free(&stops);
    pl_buf_free(&d);
}

TEST(bad_ids_and_limits)
{
    if (!tk) { test_skip("../shared tokenizers absent"); return; }
    dtk_stops stops;
    dtk_stops_init(&stops);
    dtk_choice c;
    dtk_choice_init(&c, &stops, true, false);
    pl_buf d;
    pl_buf_init(&d);
    int hit;
    int32_t bad[2] = {1, 999999999};
    CHECK(dtk_choice_feed(&c, tk, bad, 2, &d, &hit) == PL_ERR_RANGE);
    CHECK_EQ_INT(d.len, 0);
    for (int i = 0; i < DTK_MAX_STOPS; i++) CHECK(dtk_stops_add(&stops, "x", 1) == 0);
    CHECK(dtk_stops_add(&stops, "y", 1) == PL_ERR_RANGE);
    CHECK(dtk_stops_add(&stops, "", 0) == 0);    /* empty: ignored */
    dtk_choice_free(&c);
    dtk_stops_free(&stops);
    pl_buf_free(&d);
}

int main(void)
{
    if (load_glm_shaped()) fprintf(stderr, "SKIP: no tokenizer under %s/data/tokenizers\n", test_shared_dir());
    RUN(incremental_equals_full_decode);
    RUN(skip_special_keeps_think_and_tool_tags);
    RUN(utf8_split_across_tokens_is_held);
    RUN(stop_strings_every_chunking);
    RUN(stop_prefix_is_held_then_released);
    RUN(bad_ids_and_limits);
    pl_tokenizer_free(tk);
    return test_report();
}
