/* reasoning.h — the glm45 reasoning parser (vLLM 0.33 semantics).
 *
 * Splits one choice's streamed model text into reasoning and content:
 *
 *   thinking on:  text starts as reasoning (GLM-4.7/5 prompts end with an
 *                 open <think>, so the output often has only </think>);
 *                 <think> is swallowed, </think> switches to content,
 *                 <tool_call> also ends reasoning and is passed on, with
 *                 the whole call, as content for the tool parser; a later
 *                 <think> in content opens reasoning again; a stray
 *                 </think> in content is dropped. Inside a tool call
 *                 (<tool_call> ... </tool_call>) nothing is a reasoning tag.
 *                 Trailing whitespace of reasoning is held back and dropped
 *                 when reasoning ends.
 *   thinking off: everything is content, tags included.
 *
 * Partial tags at the end of a piece are held back until decided; rsn_parser_
 * finish releases them. Work per feed is proportional to the fed text. The
 * result does not depend on how the text is cut into pieces. */
#ifndef RSN_REASONING_H
#define RSN_REASONING_H

#include <stdbool.h>
#include <stddef.h>
#include <msgpack.h>
#include "pl.h"

typedef struct rsn_opts {
    bool thinking;            /* thinking mode on */
    bool include_reasoning;   /* false: reasoning is parsed but discarded */
} rsn_opts;

/* Options from a request's `context` (docs/protocol.md): an `endpoint`
 * other than "chat" means no parsing (thinking off); `thinking` (bool,
 * resolved by tokenize), else the raw `chat_template_kwargs` (`thinking` /
 * `enable_thinking`, Python truthiness; both absent = on);
 * `prompt_ends_in_think: true` forces thinking on; `include_reasoning`
 * (default true). context may be NULL (all defaults). A field of the wrong
 * type is PL_ERR_INVALID with a message in err. */
int rsn_opts_from_context(rsn_opts *o, const msgpack_object *context, char *err, size_t errlen);

typedef struct rsn_parser rsn_parser;

int  rsn_parser_new(rsn_parser **out, const rsn_opts *o);
void rsn_parser_free(rsn_parser *p);

/* Feed the next piece of model text; new content and reasoning text are
 * appended to content and reasoning. PL_ERR_NOMEM when an allocation failed
 * (in the outputs or the parser): text was lost, the parser is not usable. */
int rsn_parser_feed(rsn_parser *p, const char *text, size_t len, pl_buf *content, pl_buf *reasoning);
/* End of this choice's text: release what was held back. Returns as feed. */
int rsn_parser_finish(rsn_parser *p, pl_buf *content, pl_buf *reasoning);

#endif
