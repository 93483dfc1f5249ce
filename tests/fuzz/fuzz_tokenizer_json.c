/* libFuzzer target: tokenizer.json loading (lib/tokenizer); what loads must
 * encode and decode a fixed text without failing on memory. */
#include <stdint.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pl_tokenizer *t;
    char err[512];
    if (pl_tokenizer_load_mem(&t, (const char *)data, size, err, sizeof err)) return 0;
    static const char text[] = "Hello world! 123 ünï 中文 🚀 <|endoftext|>  \n\n x";
    pl_tokids ids = {0};
    if (pl_tokenizer_encode_ex(t, text, sizeof text - 1, &ids, err, sizeof err) == PL_OK) {
        pl_buf out;
        pl_buf_init(&out);
        pl_tokenizer_decode(t, ids.ids, ids.len, 0, &out);
        pl_buf_free(&out);
    }
    pl_tokids_free(&ids);
    pl_tokenizer_free(t);
    return 0;
}
