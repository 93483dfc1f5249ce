/* tokenize_ep.h — glm-tokenize's answers to the gateway's /tokenize and
 * /detokenize (docs/protocol.md §3 `tokenize`, `detokenize`). */
#ifndef TOK_TOKENIZE_EP_H
#define TOK_TOKENIZE_EP_H

#include <msgpack.h>
#include "json.h"
#include "tokenize.h"

/* msg: {type:"tokenize"|"detokenize", id, body}. Packs the answer
 * {type, id, result:{...}} (vLLM's response body) with pk and returns 0, or
 * returns a negative pl_err with *e filled (nothing packed). */
int tok_endpoint_answer(const tok_model *m, const msgpack_object *msg, const char *id, size_t idlen,
                        msgpack_packer *pk, tok_error *e);

#endif
