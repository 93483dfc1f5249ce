/* glm-detok's decoder against vLLM 0.33.0's output-processor rules (the full
 * differential suite is tests/py/test_detok_goldens.py; these pin each rule
 * on its own):
 *   - incremental text equals a full decode for every chunking, deltas are
 *     whole UTF-8, special tokens skipped as HF does;
 *   - the decode stream holds text while it ends in U+FFFD and drops what it
 *     holds at a finish; unknown (padding) ids decode to nothing;
 *   - stop strings: earliest end wins, ties by list order; min_tokens gates
 *     them; tokens after the completing one are trimmed; fixed hold-back of
 *     (longest stop - 1) characters; results independent of chunking;
 *   - a finishing eos/stop_token_ids token's text is not output;
 *   - logprob token strings for pieces of a character (vLLM's look-back).
 * Most tests use the default model's tokenizer (glm-mkmodel's tiny BPE,
 * trained here in memory: every byte is a token); the real llama3
 * tokenizer.json from ../shared with GLM's added tokens is used where
 * present (skipped visibly when absent). */
#include "test.h"
#include "detok/detok.h"
#include "json.h"
#include "tools/mkmodel/tokenizer_train.h"

#include <stdint.h>

static pl_tokenizer *tk;     /* llama3 + GLM added tokens (../shared) */
static pl_tokenizer *tiny;   /* the default model's tokenizer */

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
        cJSON_AddBoolToObject(t, "special", i < ENG_MK_N_SPECIAL);
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

static int load_tiny(void)
{
    char err[256];
    size_t clen;
    const char *corpus = eng_mk_corpus(&clen);
    eng_mk_bpe *bpe = NULL;
    pl_buf j;
    pl_buf_init(&j);
    int rc = eng_mk_bpe_train(&bpe, 960, corpus, clen, err, sizeof err);
    if (!rc) rc = eng_mk_tokenizer_json(bpe, &j);
    if (!rc) rc = pl_tokenizer_load_mem(&tiny, j.data, j.len, err, sizeof err);
    if (rc) fprintf(stderr, "  tiny tokenizer: %s\n", err);
    eng_mk_bpe_free(bpe);
    pl_buf_free(&j);
    return rc;
}

static pl_tokids encode(pl_tokenizer *t, const char *s)
{
    pl_tokids v = {0};
    pl_tokenizer_encode_ex(t, s, strlen(s), &v, NULL, 0);
    return v;
}

/* The single-byte token of b. */
static int32_t byte_id(pl_tokenizer *t, uint8_t b)
{
    for (int32_t id = 0; id < pl_tokenizer_vocab_size(t); id++) {
        size_t len;
        const uint8_t *p = pl_tokenizer_token_bytes(t, id, &len);
        if (p && len == 1 && p[0] == b && !pl_tokenizer_is_added(t, id)) return id;
    }
    return -1;
}

static int32_t added_id(pl_tokenizer *t, const char *content)
{
    return pl_tokenizer_token_to_id(t, content, strlen(content));
}

static dtk_params params(bool skip, bool incl, int64_t min_tokens)
{
    dtk_params p;
    dtk_params_init(&p);
    p.skip_special = skip;
    p.include_stop = incl;
    p.min_tokens = min_tokens;
    return p;
}

static void stops_of(dtk_stops *s, const char *const *strs, size_t n)
{
    dtk_stops_init(s);
    for (size_t i = 0; i < n; i++) dtk_stops_add(s, strs[i], strlen(strs[i]));
}

/* One step; returns its text (static buffer, NUL-terminated). */
static const char *step(dtk_choice *c, pl_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, size_t *kept,
                        int *hit)
{
    static pl_buf d;
    size_t k;
    int h;
    pl_buf_reset(&d);
    CHECK_EQ_INT(dtk_choice_feed(c, t, ids, n, flags, &d, kept ? kept : &k, hit ? hit : &h), 0);
    pl_buf_putc(&d, 0);
    d.len--;
    return d.data;
}

/* Feed ids in chunks of the given sizes (cycled), the last chunk with
 * flags; the whole text, the stop hit and the kept token count. */
static void stream(pl_tokenizer *t, const int32_t *ids, size_t n, const size_t *sizes, size_t nsizes,
                   const dtk_stops *stops, const dtk_params *p, unsigned last_flags, pl_buf *out, int *hit_out,
                   int64_t *kept_out, int *valid_utf8)
{
    dtk_choice c;
    dtk_choice_init(&c, stops, p);
    pl_buf d;
    pl_buf_init(&d);
    *hit_out = -1;
    *valid_utf8 = 1;
    *kept_out = 0;
    size_t k = 0;
    for (size_t off = 0; off < n && !c.done;) {
        size_t len = sizes[k++ % nsizes];
        if (len > n - off) len = n - off;
        pl_buf_reset(&d);
        int hit;
        size_t kept;
        dtk_choice_feed(&c, t, ids + off, len, off + len == n ? last_flags : 0, &d, &kept, &hit);
        /* every delta on its own must be valid UTF-8 (re-encoding lossy is identity) */
        pl_buf chk;
        pl_buf_init(&chk);
        pl_tokenizer_utf8_lossy((const uint8_t *)d.data, d.len, &chk);
        if (chk.len != d.len || (d.len && memcmp(chk.data, d.data, d.len))) *valid_utf8 = 0;
        pl_buf_free(&chk);
        pl_buf_append(out, d.data, d.len);
        if (hit >= 0) *hit_out = hit;
        *kept_out += (int64_t)kept;
        off += len;
    }
    dtk_choice_flush(&c, out);
    dtk_choice_free(&c);
    pl_buf_free(&d);
}

/* ================================================================ llama3 + GLM tokens (../shared) */

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
        pl_tokids v = encode(tk, texts[t]);
        for (int skip = 0; skip < 2; skip++) {
            dtk_params p = params(skip, false, 0);
            pl_buf full;
            pl_buf_init(&full);
            pl_tokenizer_decode(tk, v.ids, v.len, skip, &full);
            for (size_t ch = 0; ch < PL_ARRAY_LEN(chunkings); ch++) {
                pl_buf got;
                pl_buf_init(&got);
                int hit, valid;
                int64_t kept;
                stream(tk, v.ids, v.len, chunkings[ch], 3, &none, &p, DTK_FEED_FINAL, &got, &hit, &kept, &valid);
                CHECK(valid);
                CHECK(got.len == full.len && !memcmp(got.data, full.data, full.len));
                CHECK_EQ_INT(kept, v.len);
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
    pl_tokids v = encode(tk, "[gMASK]<sop><|assistant|><think>a</think><tool_call>f</tool_call><|user|>");
    dtk_stops none;
    dtk_stops_init(&none);
    dtk_params p = params(true, false, 0);
    pl_buf got;
    pl_buf_init(&got);
    int hit, valid;
    int64_t kept;
    static const size_t one[] = {1};
    stream(tk, v.ids, v.len, one, 1, &none, &p, DTK_FEED_FINAL, &got, &hit, &kept, &valid);
    CHECK_EQ_STR(got.data, "<think>a</think><tool_call>f</tool_call>");
    pl_buf_free(&got);
    pl_tokids_free(&v);
}

/* vLLM's check, step by step, on full re-decodes: the output text after a
 * step is the decode of the ids so far, held at the last text that did not
 * end in U+FFFD; the stop strings are searched in the text that is new in
 * the step (a match may begin earlier): the match that ends first wins,
 * ties by list order. */
static void reference_cut(const int32_t *ids, size_t n, const size_t *sizes, size_t nsizes,
                          const char *const *stops, size_t nstops, bool incl, pl_buf *out, int *hit)
{
    *hit = -1;
    pl_buf t, prev;
    pl_buf_init(&t);
    pl_buf_init(&prev);
    size_t k = 0;
    for (size_t off = 0; off < n;) {
        size_t len = sizes[k++ % nsizes];
        if (len > n - off) len = n - off;
        off += len;
        pl_buf_reset(&t);
        pl_tokenizer_decode(tk, ids, off, 1, &t);
        if (t.len >= 3 && !memcmp(t.data + t.len - 3, "\xEF\xBF\xBD", 3)) continue;   /* held */
        size_t best = SIZE_MAX, best_start = 0;
        for (size_t s = 0; s < nstops; s++) {
            size_t sl = strlen(stops[s]);
            size_t from = prev.len + 1 > sl ? prev.len + 1 - sl : 0;
            const char *p = t.data ? memmem(t.data + from, t.len - from, stops[s], sl) : NULL;
            if (p && (size_t)(p - t.data) + sl < best) {
                best = (size_t)(p - t.data) + sl;
                best_start = (size_t)(p - t.data);
                *hit = (int)s;
            }
        }
        if (*hit >= 0) {
            pl_buf_append(out, t.data, incl ? best : best_start);
            goto done;
        }
        pl_buf_reset(&prev);
        pl_buf_append(&prev, t.data, t.len);
    }
    pl_buf_append(out, prev.data, prev.len);
done:
    pl_buf_free(&t);
    pl_buf_free(&prev);
}

TEST(stop_strings_every_chunking)
{
    if (!tk) { test_skip("../shared tokenizers absent"); return; }
    static const struct { const char *text; const char *stops[3]; size_t n; } cases[] = {
        {"The answer is 42. END of story. END", {"END"}, 1},
        {"abcabcabd and more", {"abcabd"}, 1},                     /* KMP fallback */
        {"Hello world\n\nObservation: x", {"\n\nObservation:", "world"}, 2}, /* the earlier end wins */
        {"Hello world", {"world", "Hello"}, 2},                    /* "Hello" ends first */
        {"no stop here at all", {"zzz", "stop here!"}, 2},
        {"日本語のテキストです。終わり", {"終わり"}, 1},
        {"<tool_call>f</tool_call> tail", {"</tool_call>"}, 1},
        {"aaaaab", {"aab", "ab"}, 2},                              /* same end: list order */
        {"x🚀y", {"🚀"}, 1},
        {"say cat and category", {"category", "cat", "at"}, 3},
    };
    static const size_t chunkings[][3] = {{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {1, 2, 3}, {6, 6, 6}, {4, 1, 5}};
    for (size_t t = 0; t < PL_ARRAY_LEN(cases); t++) {
        pl_tokids v = encode(tk, cases[t].text);
        for (int incl = 0; incl < 2; incl++) {
            dtk_stops stops;
            stops_of(&stops, cases[t].stops, cases[t].n);
            dtk_params p = params(true, incl, 0);
            for (size_t ch = 0; ch < PL_ARRAY_LEN(chunkings); ch++) {
                pl_buf want;
                pl_buf_init(&want);
                int want_hit;
                reference_cut(v.ids, v.len, chunkings[ch], 3, cases[t].stops, cases[t].n, incl, &want, &want_hit);
                pl_buf got;
                pl_buf_init(&got);
                int hit, valid;
                int64_t kept;
                stream(tk, v.ids, v.len, chunkings[ch], 3, &stops, &p, DTK_FEED_FINAL, &got, &hit, &kept, &valid);
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

/* ================================================================ the tiny tokenizer: one rule each */

TEST(unknown_ids_decode_to_nothing)
{
    /* the default model has 1024 embedding rows and 996 token ids */
    CHECK_EQ_INT(pl_tokenizer_vocab_size(tiny), 996);
    dtk_stops none;
    dtk_stops_init(&none);
    dtk_params p = params(true, false, 0);
    dtk_choice c;
    dtk_choice_init(&c, &none, &p);
    pl_tokids v = encode(tiny, "hi");
    int32_t ids[] = {1000, v.ids[0], 1023, 996, INT32_MAX};
    size_t kept;
    CHECK_EQ_STR(step(&c, tiny, ids, 5, 0, &kept, NULL), v.len == 1 ? "hi" : "h");
    CHECK_EQ_INT(kept, 5);
    CHECK_EQ_STR(step(&c, tiny, v.ids + 1, v.len - 1, DTK_FEED_FINAL, NULL, NULL), v.len == 1 ? "" : "i");
    CHECK_EQ_INT(c.n_tokens, 5 + v.len - 1);
    /* alone, as logprob entries: "" */
    dtk_lpctx ctx;
    dtk_lpctx_init(&ctx);
    pl_buf s;
    pl_buf_init(&s);
    CHECK_EQ_INT(dtk_token_text(tiny, &ctx, 1000, &s), 0);
    CHECK_EQ_INT(s.len, 0);
    pl_buf_free(&s);
    dtk_lpctx_free(&ctx);
    pl_tokids_free(&v);
    dtk_choice_free(&c);
}

TEST(stream_holds_while_text_ends_in_replacement_char)
{
    dtk_stops none;
    dtk_stops_init(&none);
    dtk_params p = params(true, false, 0);
    dtk_choice c;
    dtk_choice_init(&c, &none, &p);
    int32_t a = byte_id(tiny, 'a'), b = byte_id(tiny, 'b'), e4 = byte_id(tiny, 0xE4), bd = byte_id(tiny, 0xBD),
            a0 = byte_id(tiny, 0xA0), x80 = byte_id(tiny, 0x80), ef = byte_id(tiny, 0xEF), bf = byte_id(tiny, 0xBF);
    CHECK_EQ_STR(step(&c, tiny, &a, 1, 0, NULL, NULL), "a");
    CHECK_EQ_STR(step(&c, tiny, &e4, 1, 0, NULL, NULL), "");
    CHECK_EQ_STR(step(&c, tiny, &bd, 1, 0, NULL, NULL), "");
    CHECK_EQ_STR(step(&c, tiny, &a0, 1, 0, NULL, NULL), "你");
    /* a lone continuation byte is U+FFFD for good, but the stream still
     * waits for text after it; so does a real U+FFFD (EF BF BD) */
    CHECK_EQ_STR(step(&c, tiny, &x80, 1, 0, NULL, NULL), "");
    CHECK_EQ_STR(step(&c, tiny, &b, 1, 0, NULL, NULL), "\xEF\xBF\xBD" "b");
    int32_t repl[] = {ef, bf, 0};
    repl[2] = byte_id(tiny, 0xBD);
    CHECK_EQ_STR(step(&c, tiny, repl, 3, 0, NULL, NULL), "");
    CHECK_EQ_STR(step(&c, tiny, &a, 1, 0, NULL, NULL), "\xEF\xBF\xBD" "a");
    /* several tokens in one step go through the stream one by one */
    int32_t broken[] = {e4, a, e4, bd};
    CHECK_EQ_STR(step(&c, tiny, broken, 4, 0, NULL, NULL), "\xEF\xBF\xBD" "a");
    CHECK_EQ_STR(step(&c, tiny, &a0, 1, 0, NULL, NULL), "你");
    dtk_choice_free(&c);
}

TEST(finish_drops_a_cut_character)
{
    /* max_tokens ends inside a character: vLLM drops the partial bytes (and
     * whatever the stream held with them), no trailing U+FFFD */
    dtk_stops none;
    dtk_stops_init(&none);
    dtk_params p = params(true, false, 0);
    int32_t x = byte_id(tiny, 'x'), f0 = byte_id(tiny, 0xF0), x9f = byte_id(tiny, 0x9F);
    dtk_choice c;
    dtk_choice_init(&c, &none, &p);
    CHECK_EQ_STR(step(&c, tiny, &x, 1, 0, NULL, NULL), "x");
    int32_t cut[] = {f0, x9f};
    size_t kept;
    CHECK_EQ_STR(step(&c, tiny, cut, 2, DTK_FEED_FINAL, &kept, NULL), "");
    CHECK_EQ_INT(kept, 2);
    CHECK(c.done);
    dtk_choice_free(&c);
    /* the same when the end comes without a finish (dtk_choice_flush) */
    dtk_choice_init(&c, &none, &p);
    int32_t all[] = {x, f0, x9f};
    CHECK_EQ_STR(step(&c, tiny, all, 3, 0, NULL, NULL), "x");
    pl_buf d;
    pl_buf_init(&d);
    dtk_choice_flush(&c, &d);
    CHECK_EQ_INT(d.len, 0);
    pl_buf_free(&d);
    dtk_choice_free(&c);
}

TEST(stop_earliest_end_wins_then_list_order)
{
    dtk_params p = params(true, false, 0);
    pl_tokids v = encode(tiny, "abcd efg");
    static const struct { const char *stops[2]; const char *text; int hit; } cases[] = {
        {{"bcd", "c"}, "ab", 1},     /* "c" ends first although listed second */
        {{"cd", "bcd"}, "ab", 0},    /* same end: the first listed */
        {{"bcd", "cd"}, "a", 0},
        {{" efg", "d e"}, "abc", 1},
    };
    for (size_t t = 0; t < PL_ARRAY_LEN(cases); t++) {
        dtk_stops s;
        stops_of(&s, cases[t].stops, 2);
        dtk_choice c;
        dtk_choice_init(&c, &s, &p);
        int hit;
        CHECK_EQ_STR(step(&c, tiny, v.ids, v.len, 0, NULL, &hit), cases[t].text);   /* one step: MTP */
        CHECK_EQ_INT(hit, cases[t].hit);
        dtk_choice_free(&c);
        dtk_stops_free(&s);
    }
    pl_tokids_free(&v);
}

TEST(step_trimmed_after_the_completing_token)
{
    /* six tokens in one step; the stop string completes in the third: the
     * last three are gone from the text and the count */
    int32_t ids[6];
    const char *chars = "xyzuvw";
    for (int i = 0; i < 6; i++) ids[i] = byte_id(tiny, (uint8_t)chars[i]);
    static const char *const stop[] = {"yz"};
    dtk_stops s;
    stops_of(&s, stop, 1);
    for (int incl = 0; incl < 2; incl++) {
        dtk_params p = params(true, incl, 0);
        dtk_choice c;
        dtk_choice_init(&c, &s, &p);
        size_t kept;
        int hit;
        CHECK_EQ_STR(step(&c, tiny, ids, 6, DTK_FEED_FINAL, &kept, &hit), incl ? "xyz" : "x");
        CHECK_EQ_INT(kept, 3);
        CHECK_EQ_INT(hit, 0);
        CHECK_EQ_INT(c.n_tokens, 3);
        /* the engine's next step (before the abort reaches it) is ignored */
        CHECK_EQ_STR(step(&c, tiny, ids, 2, 0, &kept, &hit), "");
        CHECK_EQ_INT(kept, 0);
        dtk_choice_free(&c);
    }
    /* tokens with no text after the completing one go too */
    int32_t eot[] = {ids[0], ids[1], ids[2], 1000, 1001};
    dtk_params p = params(true, false, 0);
    dtk_choice c;
    dtk_choice_init(&c, &s, &p);
    size_t kept;
    step(&c, tiny, eot, 5, 0, &kept, NULL);
    CHECK_EQ_INT(kept, 3);
    dtk_choice_free(&c);
    dtk_stops_free(&s);
}

TEST(min_tokens_gates_stop_strings)
{
    int32_t a = byte_id(tiny, 'a'), b = byte_id(tiny, 'b');
    static const char *const sa[] = {"a"}, *const sab[] = {"ab"}, *const saa[] = {"aa"};
    static const struct { const char *const *stop; int32_t ids[4]; size_t n; int64_t min; const char *text; size_t kept; } cases[] = {
        {sa, {0, 0, 1, 0}, 4, 2, "aab", 4},   /* the first two tokens' "a" do not count */
        {sa, {0, 0, 1, 0}, 4, 1, "a", 2},
        {sab, {0, 0, 1, 1}, 4, 2, "a", 3},    /* a match may begin before min_tokens, must end after */
        {saa, {0, 0, 0, 1}, 4, 2, "a", 3},    /* overlapping: "aa" at 0 ends too early, "aa" at 1 counts */
        {sab, {0, 1, 1, 1}, 4, 2, "abbb", 4}, /* "ab" ended in token 2: never found */
    };
    for (size_t t = 0; t < PL_ARRAY_LEN(cases); t++) {
        int32_t ids[4];
        for (size_t i = 0; i < cases[t].n; i++) ids[i] = cases[t].ids[i] ? b : a;
        dtk_stops s;
        stops_of(&s, cases[t].stop, 1);
        dtk_params p = params(true, false, cases[t].min);
        /* one token per step, and all in one step: the same */
        for (size_t chunk = 1; chunk <= 4; chunk += 3) {
            pl_buf got;
            pl_buf_init(&got);
            int hit, valid;
            int64_t kept;
            stream(tiny, ids, cases[t].n, &chunk, 1, &s, &p, DTK_FEED_FINAL, &got, &hit, &kept, &valid);
            CHECK_EQ_STR(got.data ? got.data : "", cases[t].text);
            CHECK_EQ_INT(kept, cases[t].kept);
            pl_buf_free(&got);
        }
        dtk_stops_free(&s);
    }
}

TEST(finishing_stop_token_text_is_not_output)
{
    pl_tokids v = encode(tiny, "hi");
    int32_t eos = added_id(tiny, "<|endoftext|>"), bang = byte_id(tiny, '!'), think = added_id(tiny, "<think>");
    CHECK(eos >= 0 && think >= 0);
    dtk_stops none;
    dtk_stops_init(&none);
    static const struct { int32_t last; bool skip, incl; const char *text; } cases[] = {
        {0, false, false, "hi"},            /* eos, special tokens shown: still not output */
        {0, false, true, "hi<|endoftext|>"},
        {1, true, false, "hi"},             /* an ordinary stop_token_ids token */
        {1, true, true, "hi!"},
        {2, true, false, "hi"},             /* a non-special added token */
    };
    for (size_t t = 0; t < PL_ARRAY_LEN(cases); t++) {
        int32_t ids[8];
        memcpy(ids, v.ids, v.len * sizeof *ids);
        ids[v.len] = cases[t].last == 0 ? eos : cases[t].last == 1 ? bang : think;
        dtk_params p = params(cases[t].skip, cases[t].incl, 0);
        dtk_choice c;
        dtk_choice_init(&c, &none, &p);
        size_t kept;
        CHECK_EQ_STR(step(&c, tiny, ids, v.len + 1, DTK_FEED_FINAL | DTK_FEED_STOP_TOKEN, &kept, NULL), cases[t].text);
        CHECK_EQ_INT(kept, v.len + 1);   /* counted all the same */
        dtk_choice_free(&c);
    }
    pl_tokids_free(&v);
}

TEST(hold_back_is_longest_stop_minus_one_chars)
{
    static const char *const stop[] = {"never", "日本語です!"};   /* 6 characters: hold 5 */
    dtk_stops s;
    stops_of(&s, stop, 2);
    CHECK_EQ_INT(s.max_chars, 6);
    const char *text = "hello wörld";
    for (int incl = 0; incl < 2; incl++) {
        dtk_params p = params(true, incl, 0);
        dtk_choice c;
        dtk_choice_init(&c, &s, &p);
        pl_buf all;
        pl_buf_init(&all);
        for (const char *q = text; *q; q++) {
            int32_t id = byte_id(tiny, (uint8_t)*q);
            pl_buf_puts(&all, step(&c, tiny, &id, 1, 0, NULL, NULL));
        }
        /* include_stop_str_in_output: vLLM holds nothing back */
        CHECK_EQ_STR(all.data, incl ? "hello wörld" : "hello ");
        CHECK_EQ_STR(step(&c, tiny, NULL, 0, DTK_FEED_FINAL, NULL, NULL), incl ? "" : "wörld");
        pl_buf_free(&all);
        dtk_choice_free(&c);
    }
    dtk_stops_free(&s);
}

static uint32_t lcg(uint64_t *st)
{
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*st >> 33);
}

TEST(text_and_stop_do_not_depend_on_chunking)
{
    /* random ids (byte pieces, special tokens, unknown ids) and stop strings
     * cut from the one-token-per-step text: every grouping gives the same */
    uint64_t st = 20261204;
    int32_t pool[64];
    size_t np = 0;
    const char *bytes = "ab c\xE4\xBD\xA0\xF0\x9F\x9A\x80\x80";
    for (const char *q = bytes; *q; q++) pool[np++] = byte_id(tiny, (uint8_t)*q);
    pool[np++] = added_id(tiny, "<think>");
    pool[np++] = added_id(tiny, "<|user|>");
    pool[np++] = 1010;
    int differ = 0;
    for (int run = 0; run < 300; run++) {
        int32_t ids[40];
        size_t n = 1 + lcg(&st) % 40;
        for (size_t i = 0; i < n; i++) ids[i] = pool[lcg(&st) % np];
        dtk_params p = params(lcg(&st) % 2, lcg(&st) % 3 == 0, lcg(&st) % 3 == 0 ? lcg(&st) % n : 0);
        dtk_stops none;
        dtk_stops_init(&none);
        pl_buf base;
        pl_buf_init(&base);
        int hit, valid;
        int64_t kept;
        static const size_t one = 1;
        stream(tiny, ids, n, &one, 1, &none, &p, DTK_FEED_FINAL, &base, &hit, &kept, &valid);
        char stops_buf[3][8];
        const char *sp[3];
        size_t ns = lcg(&st) % 4;
        for (size_t k = 0; k < ns; k++) {
            /* 1..7 bytes of whole characters (stop strings are text) */
            size_t a = base.len ? lcg(&st) % base.len : 0, e = a + 1 + lcg(&st) % 4;
            while (a > 0 && ((uint8_t)base.data[a] & 0xC0) == 0x80) a--;
            if (e > base.len) e = base.len;
            while (e < base.len && ((uint8_t)base.data[e] & 0xC0) == 0x80) e++;
            size_t l = e - a;
            memcpy(stops_buf[k], base.len ? base.data + a : "", l);
            stops_buf[k][l] = 0;
            sp[k] = stops_buf[k];
        }
        dtk_stops s;
        stops_of(&s, sp, ns);
        pl_buf want;
        pl_buf_init(&want);
        int want_hit;
        int64_t want_kept;
        stream(tiny, ids, n, &one, 1, &s, &p, DTK_FEED_FINAL, &want, &want_hit, &want_kept, &valid);
        static const size_t groupings[][4] = {{3, 3, 3, 3}, {6, 6, 6, 6}, {2, 5, 1, 4}, {40, 40, 40, 40}};
        for (size_t g = 0; g < PL_ARRAY_LEN(groupings); g++) {
            pl_buf got;
            pl_buf_init(&got);
            int64_t k2;
            stream(tiny, ids, n, groupings[g], 4, &s, &p, DTK_FEED_FINAL, &got, &hit, &k2, &valid);
            if (got.len != want.len || memcmp(got.data, want.data, got.len) || hit != want_hit || k2 != want_kept ||
                !valid) {
                if (!differ++)
                    fprintf(stderr, "  run %d grouping %zu: \"%s\" hit %d kept %lld, one by one \"%s\" hit %d kept %lld\n",
                            run, g, got.data ? got.data : "", hit, (long long)k2, want.data ? want.data : "", want_hit,
                            (long long)want_kept);
            }
            pl_buf_free(&got);
        }
        pl_buf_free(&want);
        pl_buf_free(&base);
        dtk_stops_free(&s);
    }
    CHECK_EQ_INT(differ, 0);
}

TEST(logprob_token_strings_of_character_pieces)
{
    int32_t f0 = byte_id(tiny, 0xF0), x9f = byte_id(tiny, 0x9F), x9a = byte_id(tiny, 0x9A), x80 = byte_id(tiny, 0x80),
            x81 = byte_id(tiny, 0x81), e4 = byte_id(tiny, 0xE4), x = byte_id(tiny, 'x'), eos = added_id(tiny, "<|endoftext|>");
    dtk_lpctx ctx;
    dtk_lpctx_init(&ctx);
    pl_buf s;
    pl_buf_init(&s);
#define TOKSTR(id, want) do { pl_buf_reset(&s); CHECK_EQ_INT(dtk_token_text(tiny, &ctx, (id), &s), 0); \
        pl_buf_putc(&s, 0); CHECK_EQ_STR(s.data, want); } while (0)
    TOKSTR(x, "x");
    dtk_lpctx_push(&ctx, x);
    TOKSTR(f0, "");              /* a piece: "" (vLLM), not U+FFFD */
    dtk_lpctx_push(&ctx, f0);
    TOKSTR(x9f, "");
    dtk_lpctx_push(&ctx, x9f);
    TOKSTR(x9a, "");
    TOKSTR(x, "x");              /* an alternative that is whole */
    TOKSTR(eos, "<|endoftext|>"); /* special tokens are named, whatever skip_special_tokens */
    dtk_lpctx_push(&ctx, x9a);
    TOKSTR(x80, "🚀");            /* the completing piece carries the whole character */
    TOKSTR(x81, "🚁");            /* an alternative completes it its own way */
    TOKSTR(e4, "");              /* and one that completes nothing */
    dtk_lpctx_push(&ctx, x80);
    TOKSTR(x80, "");             /* after the character: a lone continuation byte, never completed */
    /* only 4 ids of context: a 4-byte character whose pieces came 5 tokens
     * apart cannot be named */
    dtk_lpctx far;
    dtk_lpctx_init(&far);
    int32_t seq[] = {f0, 1000, x9f, x9a};
    for (int i = 0; i < 4; i++) dtk_lpctx_push(&far, seq[i]);
    pl_buf_reset(&s);
    dtk_token_text(tiny, &far, x80, &s);
    pl_buf_putc(&s, 0);
    CHECK_EQ_STR(s.data, "🚀");   /* the unknown id in between is no text: still within 4 */
    dtk_lpctx_push(&far, 1001);
    pl_buf_reset(&s);
    dtk_token_text(tiny, &far, x80, &s);
    CHECK_EQ_INT(s.len, 0);
#undef TOKSTR
    pl_buf_free(&s);
    dtk_lpctx_free(&ctx);
    dtk_lpctx_free(&far);
}

TEST(limits)
{
    dtk_stops stops;
    dtk_stops_init(&stops);
    for (int i = 0; i < DTK_MAX_STOPS; i++) CHECK(dtk_stops_add(&stops, "x", 1) == 0);
    CHECK(dtk_stops_add(&stops, "y", 1) == PL_ERR_RANGE);
    CHECK(dtk_stops_add(&stops, "", 0) == 0);    /* empty: ignored */
    dtk_stops_free(&stops);
    static char big[DTK_MAX_STOP_BYTES + 1];
    memset(big, 'a', sizeof big);
    dtk_stops_init(&stops);
    CHECK(dtk_stops_add(&stops, big, DTK_MAX_STOP_BYTES) == 0);
    CHECK(dtk_stops_add(&stops, big, DTK_MAX_STOP_BYTES + 1) == PL_ERR_RANGE);
    dtk_stops_free(&stops);
}

int main(void)
{
    if (load_glm_shaped()) fprintf(stderr, "SKIP: no tokenizer under %s/data/tokenizers\n", test_shared_dir());
    if (load_tiny()) return 1;
    RUN(incremental_equals_full_decode);
    RUN(skip_special_keeps_think_and_tool_tags);
    RUN(stop_strings_every_chunking);
    RUN(unknown_ids_decode_to_nothing);
    RUN(stream_holds_while_text_ends_in_replacement_char);
    RUN(finish_drops_a_cut_character);
    RUN(stop_earliest_end_wins_then_list_order);
    RUN(step_trimmed_after_the_completing_token);
    RUN(min_tokens_gates_stop_strings);
    RUN(finishing_stop_token_text_is_not_output);
    RUN(hold_back_is_longest_stop_minus_one_chars);
    RUN(text_and_stop_do_not_depend_on_chunking);
    RUN(logprob_token_strings_of_character_pieces);
    RUN(limits);
    pl_tokenizer_free(tk);
    pl_tokenizer_free(tiny);
    return test_report();
}
