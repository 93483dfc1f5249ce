/* tokenizer_train.h — the text side of glm-mkmodel's model directories:
 * a GLM-shaped byte-level BPE tokenizer trained here, on text the project
 * ships (corpus.c), plus tokenizer_config.json and the project's own chat
 * template producing GLM-5.2's prompt format (GLM-4.7's for GLM-4.7-Flash).
 *
 * GLM's layout (docs: ../shared/docs/glm-tokenizer-template.md §2): the BPE
 * model holds exactly `base_vocab` entries (256 byte symbols in the ByteLevel
 * alphabet, then one entry per merge) and GLM's 36 added tokens follow at ids
 * base_vocab .. base_vocab+35 (offset 0 <|endoftext|> = eos/pad, 7 <|user|>,
 * 9 <|observation|> are the other eos ids). Hugging Face numbers added tokens
 * itself right after the model vocabulary, so the vocabulary size must be
 * exact for the ids to land where config.json says.
 *
 * Everything is deterministic: the same base_vocab gives byte-identical
 * files on every machine (no clocks, no hash-order dependence, fixed seed). */
#ifndef ENG_MK_TOKENIZER_TRAIN_H
#define ENG_MK_TOKENIZER_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "pl.h"
#include "../../engine/loader.h"   /* enum eng_arch: which chat template */

/* GLM's added tokens, in id order; the first ENG_MK_N_SPECIAL are special. */
#define ENG_MK_N_ADDED   36
#define ENG_MK_N_SPECIAL 18
extern const char *const eng_mk_added_tokens[ENG_MK_N_ADDED];

/* Smallest and largest base vocabularies the trainer accepts. */
#define ENG_MK_MIN_VOCAB 256
#define ENG_MK_MAX_VOCAB (1 << 20)

/* Write tokenizer.json, tokenizer_config.json and chat_template.jinja into
 * the existing directory dir (config.json and generation_config.json are
 * the weights side's). Each file is written to a temporary name and renamed,
 * so a failure never leaves a half-written file under the real name. */
int eng_mk_text_files_write(const char *dir, int base_vocab, enum eng_arch arch, char *err, size_t errlen);

/* ===== lower level (tests, tools) ===== */

typedef struct eng_mk_bpe eng_mk_bpe;

typedef struct eng_mk_bpe_stats {
    int    n_merges;         /* == base_vocab - 256 */
    size_t corpus_bytes;     /* shipped text trained on */
    size_t synthetic_bytes;  /* Markov-chain text added when the corpus ran out of pairs */
    size_t n_words;          /* distinct pre-tokens seen */
} eng_mk_bpe_stats;

/* Train a byte-level BPE with exactly base_vocab entries on text[0..len)
 * (UTF-8), continuing on synthetic text generated from it when its pairs
 * run out. */
int eng_mk_bpe_train(eng_mk_bpe **out, int base_vocab, const char *text, size_t len,
                     char *err, size_t errlen);
void eng_mk_bpe_free(eng_mk_bpe *bpe);
void eng_mk_bpe_get_stats(const eng_mk_bpe *bpe, eng_mk_bpe_stats *st);

/* Append the Hugging Face tokenizer.json for the trained model. */
int eng_mk_tokenizer_json(const eng_mk_bpe *bpe, pl_buf *out);

/* Append tokenizer_config.json (GLM-4.7-Flash / GLM-5 form, see the .c). */
int eng_mk_tokenizer_config_json(int base_vocab, pl_buf *out);

/* The training text the project ships (corpus.c). */
const char *eng_mk_corpus(size_t *len);

/* The project's chat templates (chat_template.c / chat_template_glm47.c;
 * identical to tools/mkmodel/chat_template.jinja / chat_template_glm47.jinja,
 * which tests check): GLM-5.2's prompt format, and GLM-4.7's for
 * GLM-4.7-Flash. */
const char *eng_mk_chat_template(size_t *len);
const char *eng_mk_chat_template_glm47(size_t *len);

#endif
