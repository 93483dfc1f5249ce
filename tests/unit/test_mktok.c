/* test_mktok.c — glm-mkmodel's tokenizer files (tools/mkmodel/tokenizer_train).
 *
 * Structure of the trained tokenizer.json for the tiny (960) and small
 * (32704) base vocabularies, tokenizer_config.json, the chat template,
 * determinism (two runs byte-identical, and the same bytes as when the goldens
 * were made: FNV-1a of tokenizer.json), bad input, and our tokenizer
 * library's encodes against the ids Hugging Face `tokenizers`
 * gave for the same files (tests/data/mktok, tests/mktok/gen_goldens.py).
 *
 *   test_mktok                    run the tests (from the repo root)
 *   test_mktok --write DIR BASE   write the text files for BASE into DIR
 *                                 (used by gen_goldens.py) */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strmap.h"
#include "pl.h"
#include "test.h"
#include "../../tools/mkmodel/tokenizer_train.h"

#include "tokenizer/tokenizer.h"

#define TINY  960
#define SMALL 32704

static const char GLM_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ===== helpers ===== */

static char g_tmp[2][256];             /* tiny written twice, small once */
static char g_small[256];

static int read_file(const char *dir, const char *name, pl_buf *b)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = pl_file_read(path, b, (size_t)64 << 20, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    return rc;
}

static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)p[i]; h *= 0x100000001b3ull; }
    return h;
}

static cJSON *load_json(const char *dir, const char *name)
{
    pl_buf b;
    pl_buf_init(&b);
    cJSON *j = read_file(dir, name, &b) ? NULL : cJSON_ParseWithLength(b.data, b.len);
    pl_buf_free(&b);
    return j;
}

static cJSON *goldens(void)
{
    return load_json("tests/data/mktok", "goldens.json");
}

static int jbool(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsTrue(v) ? 1 : cJSON_IsFalse(v) ? 0 : -1;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The added tokens are printable ASCII, which ByteLevel spells as itself. */
static int is_added(const char *s)
{
    for (int i = 0; i < ENG_MK_N_ADDED; i++)
        if (!strcmp(s, eng_mk_added_tokens[i])) return 1;
    return 0;
}

/* Every structural promise of tokenizer.json for one base vocabulary. */
static void check_tokenizer_json(const char *dir, int base)
{
    cJSON *j = load_json(dir, "tokenizer.json");
    CHECK(j != NULL);
    if (!j) return;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    CHECK_EQ_STR(jstr(model, "type"), "BPE");
    CHECK_EQ_INT(jbool(model, "ignore_merges"), 1);
    CHECK_EQ_INT(jbool(model, "byte_fallback"), 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(model, "unk_token")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "normalizer")));
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
    const cJSON *pres = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
    CHECK_EQ_INT(cJSON_GetArraySize(pres), 2);
    const cJSON *split = cJSON_GetArrayItem(pres, 0), *bl = cJSON_GetArrayItem(pres, 1);
    CHECK_EQ_STR(jstr(split, "type"), "Split");
    CHECK_EQ_STR(jstr(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex"), GLM_REGEX);
    CHECK_EQ_STR(jstr(split, "behavior"), "Isolated");
    CHECK_EQ_INT(jbool(split, "invert"), 0);
    CHECK_EQ_STR(jstr(bl, "type"), "ByteLevel");
    CHECK_EQ_INT(jbool(bl, "add_prefix_space"), 0);
    CHECK_EQ_INT(jbool(bl, "trim_offsets"), 1);
    CHECK_EQ_INT(jbool(bl, "use_regex"), 0);
    CHECK_EQ_STR(jstr(cJSON_GetObjectItemCaseSensitive(j, "decoder"), "type"), "ByteLevel");
    CHECK_EQ_STR(jstr(cJSON_GetObjectItemCaseSensitive(j, "post_processor"), "type"), "ByteLevel");

    /* vocab: exactly base entries, ids 0..base-1 each once, no added token */
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    CHECK_EQ_INT(cJSON_GetArraySize(vocab), base);
    pl_strmap *ids;
    CHECK(pl_strmap_new(&ids) == 0);
    char *seen = calloc((size_t)base, 1);
    int bad_id = 0, dup = 0, added_in_vocab = 0;
    for (const cJSON *e = vocab ? vocab->child : NULL; e; e = e->next) {
        int id = e->valueint;
        if (!cJSON_IsNumber(e) || id < 0 || id >= base) { bad_id++; continue; }
        dup += seen[id]++;
        added_in_vocab += is_added(e->string);
        pl_strmap_put(ids, e->string, strlen(e->string), (void *)(uintptr_t)(id + 1), NULL);
    }
    CHECK_EQ_INT(bad_id, 0);
    CHECK_EQ_INT(dup, 0);
    CHECK_EQ_INT(added_in_vocab, 0);
    free(seen);

    /* merges: base - 256 pairs; merge r makes token 256 + r from two known tokens */
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    CHECK_EQ_INT(cJSON_GetArraySize(merges), base - 256);
    int r = 0, bad_merge = 0;
    char cat[4096];
    for (const cJSON *m = merges ? merges->child : NULL; m; m = m->next, r++) {
        const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
        if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 || !cJSON_IsString(a) || !cJSON_IsString(b)
            || !pl_strmap_get(ids, a->valuestring, strlen(a->valuestring))
            || !pl_strmap_get(ids, b->valuestring, strlen(b->valuestring))) { bad_merge++; continue; }
        int n = snprintf(cat, sizeof cat, "%s%s", a->valuestring, b->valuestring);
        uintptr_t v = (uintptr_t)pl_strmap_get(ids, cat, (size_t)n);
        if (v != (uintptr_t)(256 + r + 1)) bad_merge++;
    }
    CHECK_EQ_INT(bad_merge, 0);
    pl_strmap_free(ids, NULL);

    /* GLM's 36 added tokens right after the vocabulary, GLM's flags */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    CHECK_EQ_INT(cJSON_GetArraySize(added), ENG_MK_N_ADDED);
    int i = 0, bad_added = 0;
    for (const cJSON *t = added ? added->child : NULL; t; t = t->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (!cJSON_IsNumber(id) || id->valueint != base + i || !jstr(t, "content")
            || strcmp(jstr(t, "content"), eng_mk_added_tokens[i]) || jbool(t, "special") != (i < 18)
            || jbool(t, "lstrip") || jbool(t, "rstrip") || jbool(t, "single_word") || jbool(t, "normalized"))
            bad_added++;
    }
    CHECK_EQ_INT(bad_added, 0);
    cJSON_Delete(j);
}

static int cmp_files(const char *d1, const char *d2, const char *name)
{
    pl_buf a, b;
    pl_buf_init(&a);
    pl_buf_init(&b);
    int same = !read_file(d1, name, &a) && !read_file(d2, name, &b) && a.len == b.len
               && !memcmp(a.data, b.data, a.len);
    pl_buf_free(&a);
    pl_buf_free(&b);
    return same;
}

static void rm_dir(const char *dir)
{
    static const char *names[] = { "tokenizer.json", "tokenizer_config.json", "chat_template.jinja" };
    char path[512];
    for (size_t i = 0; i < PL_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int make_dir(char *out, const char *tag, int base)
{
    snprintf(out, 256, "/tmp/test_mktok_%s_%ld_XXXXXX", tag, (long)getpid());
    if (!mkdtemp(out)) return -1;
    char err[256];
    int rc = eng_mk_text_files_write(out, base, ENG_ARCH_GLM_MOE_DSA, err, sizeof err);
    if (rc) fprintf(stderr, "  eng_mk_text_files_write(%d): %s\n", base, err);
    return rc;
}

/* ===== tests ===== */

TEST(tiny_files_structure)
{
    CHECK_EQ_INT(make_dir(g_tmp[0], "tiny_a", TINY), 0);
    check_tokenizer_json(g_tmp[0], TINY);
}

TEST(small_files_structure)
{
    CHECK_EQ_INT(make_dir(g_small, "small", SMALL), 0);
    check_tokenizer_json(g_small, SMALL);
}

TEST(deterministic_and_pinned)
{
    CHECK_EQ_INT(make_dir(g_tmp[1], "tiny_b", TINY), 0);
    CHECK(cmp_files(g_tmp[0], g_tmp[1], "tokenizer.json"));
    CHECK(cmp_files(g_tmp[0], g_tmp[1], "tokenizer_config.json"));
    CHECK(cmp_files(g_tmp[0], g_tmp[1], "chat_template.jinja"));
    /* the bytes the goldens were made from (any change to corpus or trainer
     * must come with regenerated goldens) */
    cJSON *g = goldens();
    CHECK(g != NULL);
    const char *dirs[2] = { g_tmp[0], g_small };
    const char *keys[2] = { "tiny", "small" };
    for (int k = 0; g && k < 2; k++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(g, keys[k]);
        pl_buf b;
        pl_buf_init(&b);
        char hex[32];
        if (!read_file(dirs[k], "tokenizer.json", &b)) {
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a64(b.data, b.len));
            CHECK_EQ_STR(hex, jstr(e, "tokenizer_json_fnv1a64"));
        } else {
            CHECK(0);
        }
        pl_buf_free(&b);
    }
    cJSON_Delete(g);
}

TEST(tokenizer_config)
{
    cJSON *j = load_json(g_tmp[0], "tokenizer_config.json");
    CHECK(j != NULL);
    if (!j) return;
    CHECK_EQ_STR(jstr(j, "eos_token"), "<|endoftext|>");
    CHECK_EQ_STR(jstr(j, "pad_token"), "<|endoftext|>");
    CHECK_EQ_STR(jstr(j, "padding_side"), "left");
    CHECK_EQ_STR(jstr(j, "tokenizer_class"), "PreTrainedTokenizer");
    CHECK_EQ_INT(jbool(j, "clean_up_tokenization_spaces"), 0);
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(j, "model_max_length")->valueint, 128000);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(j, "added_tokens_decoder");
    CHECK_EQ_INT(cJSON_GetArraySize(dec), ENG_MK_N_ADDED);
    for (int i = 0; i < ENG_MK_N_ADDED; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", TINY + i);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(dec, key);
        CHECK_EQ_STR(jstr(t, "content"), eng_mk_added_tokens[i]);
        CHECK_EQ_INT(jbool(t, "special"), i < ENG_MK_N_SPECIAL);
    }
    const cJSON *ast = cJSON_GetObjectItemCaseSensitive(j, "additional_special_tokens");
    CHECK_EQ_INT(cJSON_GetArraySize(ast), ENG_MK_N_SPECIAL);
    CHECK_EQ_STR(cJSON_GetArrayItem(ast, 17)->valuestring, "<|end_of_transcription|>");
    cJSON_Delete(j);
}

TEST(chat_template_matches_source)
{
    /* the embedded copy (chat_template.c) is the .jinja the Python tests render */
    CHECK(cmp_files(g_tmp[0], "tools/mkmodel", "chat_template.jinja"));
    /* GLM-4.7-Flash's (chat_template_glm47.c), written for --arch glm4-moe-lite */
    size_t len;
    const char *t47 = eng_mk_chat_template_glm47(&len);
    pl_buf src;
    pl_buf_init(&src);
    CHECK(read_file("tools/mkmodel", "chat_template_glm47.jinja", &src) == 0);
    CHECK(src.len == len && !memcmp(src.data, t47, len));
    pl_buf_reset(&src);
    char dir[300], err[256];
    snprintf(dir, sizeof dir, "%s.lite", g_tmp[0]);
    CHECK(mkdir(dir, 0755) == 0);
    CHECK(eng_mk_text_files_write(dir, TINY, ENG_ARCH_GLM4_MOE_LITE, err, sizeof err) == 0);
    CHECK(read_file(dir, "chat_template.jinja", &src) == 0);
    CHECK(src.len == len && !memcmp(src.data, t47, len));
    CHECK(cmp_files(g_tmp[0], dir, "tokenizer.json"));      /* same tokenizer for both archs */
    pl_buf_free(&src);
    rm_dir(dir);
}

TEST(bad_input)
{
    char err[256] = "";
    eng_mk_bpe *bpe = (eng_mk_bpe *)1;
    CHECK_EQ_INT(eng_mk_bpe_train(&bpe, 255, "abc", 3, err, sizeof err), PL_ERR_RANGE);
    CHECK(bpe == NULL);
    CHECK_EQ_INT(eng_mk_bpe_train(&bpe, ENG_MK_MAX_VOCAB + 1, "abc", 3, err, sizeof err), PL_ERR_RANGE);
    /* nothing to learn from: a clear error, not a hang */
    CHECK_EQ_INT(eng_mk_bpe_train(&bpe, 300, "ab", 2, err, sizeof err), PL_ERR_INVALID);
    CHECK_EQ_INT(eng_mk_bpe_train(&bpe, 300, "abababababababab", 16, err, sizeof err), PL_ERR_INVALID);
    CHECK(strstr(err, "too poor") != NULL);
    CHECK_EQ_INT(eng_mk_text_files_write("/nonexistent/dir", TINY, ENG_ARCH_GLM_MOE_DSA, err, sizeof err), PL_ERR_IO);
    CHECK(strstr(err, "/nonexistent/dir") != NULL);
    /* the smallest vocabulary: bytes only */
    CHECK_EQ_INT(eng_mk_bpe_train(&bpe, 256, "hello", 5, err, sizeof err), 0);
    eng_mk_bpe_stats st;
    eng_mk_bpe_get_stats(bpe, &st);
    CHECK_EQ_INT(st.n_merges, 0);
    eng_mk_bpe_free(bpe);
}

TEST(corpus_fills_tiny_without_synthetic_text)
{
    size_t len;
    const char *c = eng_mk_corpus(&len);
    char err[256];
    eng_mk_bpe *bpe;
    CHECK(len > 20000);
    CHECK_EQ_INT(eng_mk_bpe_train(&bpe, TINY, c, len, err, sizeof err), 0);
    eng_mk_bpe_stats st;
    eng_mk_bpe_get_stats(bpe, &st);
    CHECK_EQ_INT(st.n_merges, TINY - 256);
    CHECK_EQ_INT(st.synthetic_bytes, 0);
    eng_mk_bpe_free(bpe);
}

/* Our tokenizer library on the written files against HF's ids. */
static void check_encodes(const char *dir, const cJSON *cases)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    pl_tokenizer *tok;
    CHECK_EQ_INT(pl_tokenizer_load(&tok, path, err, sizeof err), 0);
    if (!tok) { fprintf(stderr, "  %s\n", err); return; }
    int n = 0, bad = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, n++) {
        const char *text = jstr(c, "text");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "ids");
        int32_t *ids = NULL;
        size_t nids = 0;
        int rc = pl_tokenizer_encode(tok, text, strlen(text), &ids, &nids);
        int ok = !rc && (int)nids == cJSON_GetArraySize(want);
        for (size_t i = 0; ok && i < nids; i++) ok = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        if (!ok && bad++ < 5) fprintf(stderr, "  encode mismatch for case %d\n", n);
        free(ids);
    }
    CHECK(n >= 100);
    CHECK_EQ_INT(bad, 0);
    pl_tokenizer_free(tok);
}

TEST(encodes_match_hf)
{
    cJSON *g = goldens();
    CHECK(g != NULL);
    if (!g) return;
    check_encodes(g_tmp[0], cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g, "tiny"), "encodes"));
    check_encodes(g_small, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g, "small"), "encodes"));
    cJSON_Delete(g);
}

static int write_mode(const char *dir, const char *base)
{
    char err[256];
    int rc = eng_mk_text_files_write(dir, atoi(base), ENG_ARCH_GLM_MOE_DSA, err, sizeof err);
    if (rc) fprintf(stderr, "test_mktok: %s\n", err);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--write")) return write_mode(argv[2], argv[3]);
    RUN(tiny_files_structure);
    RUN(small_files_structure);
    RUN(deterministic_and_pinned);
    RUN(tokenizer_config);
    RUN(chat_template_matches_source);
    RUN(bad_input);
    RUN(corpus_fills_tiny_without_synthetic_text);
    RUN(encodes_match_hf);
    rm_dir(g_tmp[0]);
    rm_dir(g_tmp[1]);
    rm_dir(g_small);
    return test_report();
}
