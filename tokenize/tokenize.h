/* tokenize.h — the glm-tokenize stage: OpenAI request -> prompt ids.
 *
 * tok_model holds what a model directory says about its text side
 * (tokenizer, chat template, special tokens, eos ids, sampling defaults,
 * context length). tok_request_* turns one OpenAI /v1/chat/completions or
 * /v1/completions body into `generate` messages (docs/protocol.md). */
#ifndef TOK_TOKENIZE_H
#define TOK_TOKENIZE_H

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include <msgpack.h>
#include "pl.h"

typedef struct tok_model tok_model;

/* How message content reaches the template (vLLM's
 * --chat-template-content-format): auto = as the template reads it. */
enum tok_content_format { TOK_CONTENT_AUTO, TOK_CONTENT_STRING, TOK_CONTENT_OPENAI };

typedef struct tok_model_opts {
    const char *chat_template_path;      /* --chat-template: overrides the model's */
    enum tok_content_format content_format; /* --chat-template-content-format */
    int64_t     max_model_len;           /* --max-model-len; 0 = from config.json */
    const char *default_kwargs_json;     /* --default-chat-template-kwargs */
    const char *served_model_name;       /* reported as `model`; default: the dir */
    const char *generation_config;       /* --generation-config: "auto" (NULL), "vllm" or a folder */
    bool        enable_auto_tools;       /* --enable-auto-tool-choice: tool calls are parsed downstream */
} tok_model_opts;

int  tok_model_load(tok_model **out, const char *dir, const tok_model_opts *opts, char *err, size_t errlen);
void tok_model_free(tok_model *m);

int64_t tok_model_max_len(const tok_model *m);
bool    tok_model_has_template(const tok_model *m);

/* What vLLM reads off the template text: the content format it resolved
 * (openai: parts lists), whether the text names the "developer" role, and
 * whether it mentions "content" at all (continue_final_message needs it). */
bool    tok_model_openai_content(const tok_model *m);
bool    tok_model_names_developer(const tok_model *m);
/* The template has GLM's tool-call markup and an always-on "Reasoning
 * Effort:" header but no enable_thinking switch (GLM-5.3): vLLM's glm45
 * parser then ignores a request that turns thinking off. */
bool    tok_model_always_thinks(const tok_model *m);
bool    tok_model_mentions_content(const tok_model *m);

/* Render the chat template with a context object (messages, tools,
 * add_generation_prompt, special tokens and kwargs already merged in). */
int tok_model_render(const tok_model *m, const cJSON *ctx, pl_buf *out, char *err, size_t errlen);

/* Encode text (no special tokens added: GLM has no bos, chat prompts carry
 * their own markers) / decode ids. *ids is malloc'ed. */
int tok_model_encode(const tok_model *m, const char *text, size_t len, int32_t **ids, size_t *n,
                     char *err, size_t errlen);
int tok_model_decode(const tok_model *m, const int32_t *ids, size_t n, bool skip_special, pl_buf *out,
                     char *err, size_t errlen);

/* The template variables transformers passes besides messages: bos_token,
 * eos_token, pad_token, unk_token (those the tokenizer_config defines). */
void tok_model_add_special_vars(const tok_model *m, cJSON *ctx);

/* Internal pieces shared by model.c and request.c. */
const int32_t *tok_model_eos_ids(const tok_model *m, size_t *n);
const cJSON   *tok_model_default_kwargs(const tok_model *m);   /* object, may be empty */
const cJSON   *tok_model_gen_defaults(const tok_model *m);     /* generation_config.json or NULL */
const char    *tok_model_name(const tok_model *m);
int32_t        tok_model_vocab_size(const tok_model *m);
int64_t        tok_model_max_chars_per_token(const tok_model *m);   /* longest vocabulary entry, characters */
bool           tok_model_auto_tools(const tok_model *m);
/* The model's tokenizer (owned by m), for callers that count tokens like it. */
const struct pl_tokenizer *tok_model_tokenizer(const tok_model *m);

/* ---------------------------------------------------------------- requests */

enum tok_endpoint { TOK_ENDPOINT_CHAT, TOK_ENDPOINT_COMPLETIONS };

/* A request error: HTTP status, OpenAI type, the `param` vLLM names (may be
 * NULL) and the message. */
typedef struct tok_error {
    int         code;
    const char *type;
    const char *param;
    char        message[1024];
} tok_error;

int tok_fail(tok_error *e, int code, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The prompt text of a chat body after every check a request gets (the
 * same validation as tok_request_process: --render and the pipe agree). */
int tok_request_render(const tok_model *m, const cJSON *body, pl_buf *prompt, tok_error *e);

/* The server-side tool_choice rule (vLLM's chat renderer): without
 * --enable-auto-tool-choice no tool parser runs, so a tool_choice other than
 * "none" (tools given and tool_choice absent means "auto") is a 400 with
 * vLLM's message. Call after the request's own tool_choice validation. */
int tok_tool_choice_check(const tok_model *m, const cJSON *body, tok_error *e);

/* Process one request body and pack its `generate` message(s) with pk (one
 * per prompt; a /v1/completions list of k prompts gives k messages with ids
 * "<id>#<j>"). Fields of the incoming message `orig` that this stage does not
 * consume are copied into each generate message. emit() is called after each
 * message is packed. Returns 0, or a negative pl_err with *e filled (nothing
 * emitted then). */
typedef int (*tok_emit_fn)(void *ud);
int tok_request_process(const tok_model *m, enum tok_endpoint ep, const cJSON *body,
                        const msgpack_object *orig, const char *id, size_t idlen,
                        msgpack_packer *pk, tok_emit_fn emit, void *ud, tok_error *e);

/* ---------------------------------------------------------------- chat messages and tools (chat.c) */

typedef struct tok_chat_opts {
    bool        openai_format;          /* content as lists of parts, else joined strings */
    bool        template_has_developer; /* else developer turns become one merged system turn */
    const char *model_name;             /* named when media parts are refused */
} tok_chat_opts;

/* ChatCompletionRequest's validation of `messages` (pydantic's union of
 * message types). */
int tok_messages_check(const cJSON *messages, tok_error *e);

/* The conversation vLLM hands the template (*out: a new array). */
int tok_messages_convert(const cJSON *messages, const tok_chat_opts *o, cJSON **out, tok_error *e);

/* `tools` validated and dumped as vLLM passes them to the template; *out is
 * NULL for absent/null tools, else a new array. */
int tok_tools_convert(const cJSON *tools, cJSON **out, tok_error *e);

#endif
