/* tokenizer.h — byte-level BPE tokenizer, exact against Hugging Face
 * `tokenizers` (the Rust library behind transformers' fast tokenizers).
 *
 * Loads a tokenizer.json of the byte-level BPE family (GLM-4.5/4.6/4.7/5.x,
 * Llama 3, Qwen2/3, DeepSeek-V3, GPT-2 style) and reproduces
 *
 *     Tokenizer.from_file(path).encode(text, add_special_tokens=False).ids
 *     Tokenizer.decode(ids, skip_special_tokens=...)
 *
 * token for token. What is supported (anything else makes load fail with an
 * error naming the feature, never a silent difference):
 *
 *   normalizer     null, NFC, NFD, NFKC, NFKD, Sequence of those (empty too)
 *   pre_tokenizer  Split (Regex or String pattern, behavior Isolated; invert
 *                  is irrelevant for Isolated), Digits(individual_digits),
 *                  ByteLevel(add_prefix_space, use_regex), Sequence of those;
 *                  exactly one ByteLevel, and it must come last
 *   model          BPE: vocab, merges ("a b" strings or ["a","b"] pairs),
 *                  ignore_merges; dropout null/0, unk_token null,
 *                  byte_fallback false, no continuing-subword/end-of-word affix
 *   added_tokens   special and non-special, matched leftmost-longest in the
 *                  raw text before normalization (normalized:false) or in the
 *                  normalized pieces (normalized:true), lstrip / rstrip
 *                  honoured; single_word:true is rejected. Ids must be the ones
 *                  HF itself assigns (it ignores the "id" field and numbers
 *                  tokens itself; a file where the two disagree is rejected).
 *   decoder        ByteLevel
 *   post_processor not applied: encode has add_special_tokens=False semantics
 *                  (no BOS/EOS or template tokens are ever added); only the
 *                  number it would add is kept (pl_tokenizer_num_special_to_add).
 *                  Known types only (ByteLevel, TemplateProcessing,
 *                  RobertaProcessing, BertProcessing, Sequence, null).
 *   truncation, padding  must be null.
 *
 * Regexes run on PCRE2 (UTF + UCP, JIT). HF uses Oniguruma (Ruby syntax);
 * patterns are translated so that the two agree: \s and \S become
 * Oniguruma's whitespace set (U+0009-000D, U+0085, \p{Z}), \w/\W/\d/\D become
 * Oniguruma's Unicode definitions, \uHHHH becomes \x{HHHH}; constructs whose
 * meaning differs between the engines (^ $ \A \z \Z \b \B \h \G \K \R \X,
 * nested classes, && in classes, backreferences, inline flags other than i)
 * are rejected at load.
 *
 * Known difference (documented, not tested as equal): Unicode versions.
 * HF's Oniguruma 6.9.10 knows Unicode 16; Debian 12's PCRE2 10.42 knows
 * Unicode 14 (utf8proc 2.8, used for NFC/NFKC and Digits, knows 15.0).
 * Characters ASSIGNED in Unicode 15.0-16.0 (e.g. CJK Ext. H/I ideographs,
 * Kawi, Nag Mundari, Garay) are letters/digits to HF but unassigned to
 * PCRE2, so \p{L}/\p{N} pieces around them can split differently. Emoji
 * are not affected by the GLM/Llama/Qwen patterns (symbols either way).
 * Likewise HF's normalizers (unicode-normalization-alignments) predate
 * Unicode 12.1 while utf8proc 2.8 is Unicode 15: the ~75 characters whose
 * decompositions were added since (U+32FF, U+A7F2-A7F4, U+AB69,
 * U+10780-107BA, U+1FBF0-1FBF9; canonically U+11938) are left alone by HF's
 * NFKC/NFKD (and NFD/NFC for U+11938) but mapped by ours. GLM has no
 * normalizer; Qwen's NFC is affected only by the U+11935 U+11930 sequence.
 * And HF's Digits uses Rust's char::is_numeric (Unicode 16+), ours utf8proc
 * (Unicode 15): digits of scripts added since (e.g. U+11DE0..) differ.
 * Everything else, all unassigned code points included, matches HF (tested
 * on random code points from the whole range).
 *
 * Threading: every function taking a const pl_tokenizer * may be called
 * from many threads at once. A loaded tokenizer is immutable except for an
 * internal BPE result cache (8192 entries, lock-free seqlocked slots shared
 * by all threads; it changes speed, never results). Each encode call uses
 * its own scratch memory.
 *
 * Ids are int32_t; the id space is [0, pl_tokenizer_vocab_size()). An id in
 * that range with no token (a gap in the vocab) is treated like one out of
 * range ("unknown"): token_bytes returns NULL, pl_tokenizer_decode fails
 * with PL_ERR_RANGE. (HF's decode drops such ids; a model's embedding is
 * usually padded past its tokenizer — GLM-5 has 154,880 rows for 154,856
 * ids — and can sample the padding, so glm-detok treats them as tokens
 * without bytes.) */
#ifndef PL_TOKENIZER_H
#define PL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "pl.h"

typedef struct pl_tokenizer pl_tokenizer;

/* ================================================================ load */

/* Load a tokenizer.json file. On failure *out is NULL and err holds a
 * human-readable reason (file name, JSON offset or feature name). Returns
 * PL_ERR_NOTFOUND / PL_ERR_IO (file), PL_ERR_PARSE (JSON syntax),
 * PL_ERR_INVALID (bad values), PL_ERR_UNSUPPORTED (a feature we do not
 * implement), PL_ERR_NOMEM. */
int pl_tokenizer_load(pl_tokenizer **out, const char *tokenizer_json_path,
                      char *err, size_t errlen);

/* The same from JSON text in memory (need not be NUL-terminated; not kept
 * after the call). */
int pl_tokenizer_load_mem(pl_tokenizer **out, const char *json, size_t len,
                          char *err, size_t errlen);

void pl_tokenizer_free(pl_tokenizer *tok);

/* ================================================================ encode */

/* A growable id vector, owned by the caller: init with {0}, reuse across
 * calls to avoid allocation, release with pl_tokids_free. */
typedef struct pl_tokids {
    int32_t *ids;
    size_t   len;
    size_t   cap;
} pl_tokids;

void pl_tokids_free(pl_tokids *v);

/* Encode text[0..len) (UTF-8; NUL bytes allowed) and APPEND the ids to out.
 * add_special_tokens=False semantics. Invalid UTF-8 is refused with
 * PL_ERR_INVALID (err says at which byte); HF cannot receive it at all.
 * On error out->len is restored to its value at entry. */
int pl_tokenizer_encode_ex(const pl_tokenizer *tok, const char *text, size_t len,
                           pl_tokids *out, char *err, size_t errlen);

/* Convenience form: *ids is malloc'd (free() it; may be NULL when *n_ids is
 * 0). Same semantics and errors as pl_tokenizer_encode_ex. */
int pl_tokenizer_encode(const pl_tokenizer *tok, const char *text, size_t len,
                        int32_t **ids, size_t *n_ids);

/* ================================================================ decode */

/* HF decode(ids, skip_special_tokens): the tokens' bytes (see
 * pl_tokenizer_token_bytes) are concatenated, special tokens dropped first
 * when skip_special is non-zero, and the result is turned into UTF-8 the way
 * Rust's String::from_utf8_lossy does (each maximal invalid subpart becomes
 * one U+FFFD). The text is APPENDED to out. Any unknown id fails the whole
 * call with PL_ERR_RANGE before anything is appended. transformers'
 * clean_up_tokenization_spaces is not applied (GLM's config sets it false). */
int pl_tokenizer_decode(const pl_tokenizer *tok, const int32_t *ids, size_t n,
                        int skip_special, pl_buf *out);

/* Append bytes[0..len) to out as Rust's String::from_utf8_lossy would (the
 * last step of decode), for callers that assemble token bytes themselves. */
void pl_tokenizer_utf8_lossy(const uint8_t *bytes, size_t len, pl_buf *out);

/* ================================================================ per token */

/* The raw bytes one token contributes to decode: for byte-level tokens the
 * bytes behind the ByteLevel alphabet ("Ġ" -> 0x20); for added tokens their
 * content (exactly: what HF's ByteLevel decoder makes of the token string;
 * for a normalized:true added token HF uses its normalized content).
 * May be any bytes, not valid UTF-8 by itself (a token can hold part of a
 * character). Points into the tokenizer (valid until pl_tokenizer_free), not
 * NUL-terminated. NULL (and *len 0) for an unknown id. */
const uint8_t *pl_tokenizer_token_bytes(const pl_tokenizer *tok, int32_t id, size_t *len);

/* 1 when the id's token is one decode(skip_special_tokens=True) drops: an
 * added token with "special": true. (Exactly HF's rule: the token's string
 * is the content of a special token. The one case where that differs from
 * the flag: a normalized:true special token whose content the normalizer
 * changes, e.g. "\u2460" under NFKC, is neither skipped nor special.)
 * 0 otherwise, also for unknown ids. */
int pl_tokenizer_is_special(const pl_tokenizer *tok, int32_t id);

/* 1 when the id belongs to an added token (special or not), else 0. */
int pl_tokenizer_is_added(const pl_tokenizer *tok, int32_t id);

/* An added token's content exactly as written in tokenizer.json (HF's
 * get_added_tokens_decoder()[id].content; the first such token when several
 * share the id). Not NUL-terminated; NULL (*len 0) when id is not added. */
const char *pl_tokenizer_added_content(const pl_tokenizer *tok, int32_t id, size_t *len);

/* Size of the id space: 1 + the largest id of the vocab and added tokens
 * (HF's get_vocab_size(with_added_tokens=True) for files without gaps). */
int32_t pl_tokenizer_vocab_size(const pl_tokenizer *tok);

/* Number of entries of the model's vocab, without added tokens (HF
 * get_vocab_size(with_added_tokens=False), transformers' tokenizer.vocab_size). */
int32_t pl_tokenizer_model_vocab_size(const pl_tokenizer *tok);

/* Ids the post_processor would add to one sequence: transformers'
 * num_special_tokens_to_add(); what len(tokenizer(text).input_ids) counts
 * on top of an add_special_tokens=False encode. */
int pl_tokenizer_num_special_to_add(const pl_tokenizer *tok);

/* HF token_to_id: the id of the token whose STRING is str[0..len) — added
 * token content first, then the vocab in its stored (ByteLevel-alphabet)
 * spelling, e.g. "<think>" or "Ġthe". PL_ERR_NOTFOUND (negative) if none. */
int32_t pl_tokenizer_token_to_id(const pl_tokenizer *tok, const char *str, size_t len);

#endif
