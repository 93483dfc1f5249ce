"""A scripted OpenAI-compatible streaming server, for testing load generators.

Test tooling only (aiohttp). It answers POST /v1/completions and
/v1/chat/completions with the SSE stream vLLM sends — for chat a role chunk,
then one message per `chunk` tokens, a finish chunk, the usage chunk when
stream_options.include_usage is set, then `data: [DONE]` — with scripted
delays, so a client's TTFT / ITL can be checked against the script:

    first token at ttft_ms after the request arrived, then one message every
    itl_ms; max_tokens (max_completion_tokens) tokens in all.

Triggers in the prompt text make failures: FAIL400 / FAIL500 (an OpenAI
error JSON with that status), DISCONNECT (the connection drops after the
first token), BADJSON (a message that is not JSON), PING (SSE comments
between messages). GET /v1/models lists the model; GET /stats reports what
the server saw (requests, the largest number of streams open at once, the
arrival times); /tokenize and /metrics exist only when enabled.

Run by hand:  python tests/py/sse_server.py --port 8000 --ttft-ms 50 --itl-ms 10
(prints "listening on PORT" once ready).
"""
import argparse
import asyncio
import json
import time

from aiohttp import web


class Script:
    def __init__(self, ttft_ms=20.0, itl_ms=10.0, chunk=1, model="sse-test", prompt_tokens=None,
                 tokenize=False, spec_metrics=False, role_first=True, text="tok"):
        self.ttft = ttft_ms / 1000.0
        self.itl = itl_ms / 1000.0
        self.chunk = chunk
        self.model = model
        self.prompt_tokens = prompt_tokens      # None: count whitespace-separated words
        self.tokenize = tokenize
        self.spec_metrics = spec_metrics
        self.role_first = role_first
        self.text = text
        self.requests = 0
        self.open = 0
        self.max_open = 0
        self.arrivals = []
        self.bodies = []
        self.headers = []
        self.drafts = 0


def sse(obj):
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


async def stream(request, chat):
    s: Script = request.app["script"]
    arrived = time.monotonic()
    s.requests += 1
    s.arrivals.append(arrived)
    body = await request.json()
    s.bodies.append(body)
    s.headers.append(dict(request.headers))
    if chat:
        prompt = "".join(p.get("text", "") for m in body["messages"] for p in
                         (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
        n = body.get("max_completion_tokens") or body.get("max_tokens") or 16
    else:
        prompt = body["prompt"]
        n = body.get("max_tokens") or 16
    for code in (400, 500):
        if f"FAIL{code}" in prompt:
            return web.json_response({"error": {"message": f"scripted failure {code}", "type": "BadRequestError",
                                                "param": None, "code": code}}, status=code)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    s.open += 1
    s.max_open = max(s.max_open, s.open)
    try:
        rid = f"cmpl-{s.requests}"
        base = {"id": rid, "created": int(time.time()), "model": body.get("model", s.model)}
        if chat and s.role_first:
            await resp.write(sse({**base, "object": "chat.completion.chunk",
                                  "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "logprobs": None, "finish_reason": None}]}))
        sent = 0
        msg_i = 0
        while sent < n:
            k = min(s.chunk, n - sent)
            due = arrived + s.ttft + msg_i * s.itl
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent += k
            last = sent >= n
            piece = (" " + s.text) * k
            if "BADJSON" in prompt and msg_i == 1:
                await resp.write(b"data: {not json\n\n")
                break
            if chat:
                chunk = {**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                      "finish_reason": "length" if last else None}]}
            else:
                chunk = {**base, "object": "text_completion",
                         "choices": [{"index": 0, "text": piece, "logprobs": None,
                                      "finish_reason": "length" if last else None}]}
            await resp.write(sse(chunk))
            if "PING" in prompt:
                await resp.write(b": ping\n\n")
            if "DISCONNECT" in prompt and msg_i == 0:
                request.transport.close()
                return resp
            msg_i += 1
        if (body.get("stream_options") or {}).get("include_usage"):
            pt = s.prompt_tokens if s.prompt_tokens is not None else len(prompt.split())
            await resp.write(sse({**base, "object": "chat.completion.chunk" if chat else "text_completion",
                                  "choices": [], "usage": {"prompt_tokens": pt, "completion_tokens": sent,
                                                           "total_tokens": pt + sent}}))
        await resp.write(b"data: [DONE]\n\n")
        s.drafts += sent
        await resp.write_eof()
    finally:
        s.open -= 1
    return resp


async def completions(request):
    return await stream(request, chat=False)


async def chat(request):
    return await stream(request, chat=True)


async def models(request):
    s = request.app["script"]
    return web.json_response({"object": "list", "data": [{"id": s.model, "object": "model", "root": "/models/" + s.model,
                                                          "owned_by": "test"}]})


async def stats(request):
    s = request.app["script"]
    return web.json_response({"requests": s.requests, "max_open": s.max_open, "arrivals": s.arrivals,
                              "bodies": s.bodies, "headers": s.headers})


async def tokenize(request):
    s = request.app["script"]
    if not s.tokenize:
        raise web.HTTPNotFound()
    body = await request.json()
    # one token per character: deliberately unlike the client's tokenizer
    return web.json_response({"tokens": [ord(c) for c in body["prompt"]], "count": len(body["prompt"])})


async def detokenize(request):
    s = request.app["script"]
    if not s.tokenize:
        raise web.HTTPNotFound()
    body = await request.json()
    return web.json_response({"prompt": "".join(chr(t) for t in body["tokens"])})


async def metrics(request):
    s = request.app["script"]
    if not s.spec_metrics:
        raise web.HTTPNotFound()
    # a fixed acceptance pattern: per 4 tokens served, 1 draft of 3 tokens, 2 accepted
    d = s.drafts // 4
    text = (
        "# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.\n"
        f'vllm:spec_decode_num_drafts_total{{engine="0",model_name="{s.model}"}} {d}.0\n'
        f'vllm:spec_decode_num_draft_tokens_total{{engine="0",model_name="{s.model}"}} {3 * d}.0\n'
        f'vllm:spec_decode_num_accepted_tokens_total{{engine="0",model_name="{s.model}"}} {2 * d}.0\n'
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{engine="0",model_name="{s.model}",position="0"}} {d}.0\n'
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{engine="0",model_name="{s.model}",position="1"}} {d}.0\n'
        f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{engine="0",model_name="{s.model}",position="2"}} 0.0\n'
    )
    return web.Response(text=text)


def make_app(script):
    app = web.Application(client_max_size=1 << 30)
    app["script"] = script
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", stats)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(script, port):
    runner = web.AppRunner(make_app(script), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # thousands of streams
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=20.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--chunk", type=int, default=1)
    ap.add_argument("--model", default="sse-test")
    ap.add_argument("--prompt-tokens", type=int, default=None)
    ap.add_argument("--tokenize", action="store_true")
    ap.add_argument("--spec-metrics", action="store_true")
    args = ap.parse_args()
    script = Script(args.ttft_ms, args.itl_ms, args.chunk, args.model, args.prompt_tokens, args.tokenize,
                    args.spec_metrics)

    async def run():
        runner, port = await serve(script, args.port)
        print(f"listening on {port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
