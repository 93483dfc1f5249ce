#!/usr/bin/env python3
"""Golden logits for the engine's CPU forward pass, from transformers.

Test tooling only (never needed to build or run glmpipe). Needs PyPI torch and
transformers >= 5.2 (GlmMoeDsaForCausalLM, Glm4MoeLiteForCausalLM); see
tests/reference/README.md.

    python tests/reference/glm5_reference.py --mkmodel build/bin/glm-mkmodel \
        --out tests/reference/goldens/glm5_tiny.json
    python tests/reference/glm5_reference.py --arch glm4-moe-lite --mkmodel build/bin/glm-mkmodel \
        --out tests/reference/goldens/glm47flash_tiny.json

With --arch glm4-moe-lite (GLM-4.7-Flash) the model has no indexer: every
prompt length runs dense causal attention, and the MTP block is a plain
Glm4MoeLiteDecoderLayer. With --arch glm4-moe (GLM-4.5 family, GQA) and
--preset tiny (q/k norms, 4 query heads per KV head) or tiny-air (no norms,
groups of 2) the reference is Glm4MoeForCausalLM, the MTP block a
Glm4MoeDecoderLayer:

    python tests/reference/glm5_reference.py --arch glm4-moe --preset tiny \
        --mkmodel build/bin/glm-mkmodel --out tests/reference/goldens/glm45_tiny.json
    python tests/reference/glm5_reference.py --arch glm4-moe --preset tiny-air \
        --mkmodel build/bin/glm-mkmodel --out tests/reference/goldens/glm45air_tiny.json

What it does:
  1. glm-mkmodel --preset tiny --seed 1 writes the checkpoint (bf16, and fp8).
  2. transformers' GlmMoeDsaForCausalLM loads it (fp32, eager attention) and
     gives logits for fixed prompts: one shorter than index_topk (dense), two
     longer (the DSA indexer picks keys; IndexShare layers reuse them).
  3. Greedy decoding, 32 steps, each step a full recompute (argmax of the last
     row), to check the engine's cached decode path.
  4. FP8: the same model with every FP8 weight dequantized (fp8 * block scale)
     into an f32 checkpoint, loaded by transformers — the "dequantized
     reference" the engine's on-the-fly FP8 path must match.
  5. MTP: transformers has no MTP. We implement doc §4.2 directly in torch
     around transformers' own decoder layer (the MTP block is a standard
     decoder layer): e = embed(token_{p+1}); u = [enorm(e) | hnorm(g_p)];
     a = eh_proj(u); b = layer(a); hn = shared_head.norm(b); logits = lm_head(hn);
     step 2 recycles hn. This part is our implementation, not transformers'.
"""
import argparse
import copy
import inspect
import json
import os
import random
import subprocess
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import Glm4MoeForCausalLM, Glm4MoeLiteForCausalLM, GlmMoeDsaForCausalLM
from transformers.models.glm4_moe import modeling_glm4_moe as mod_gqa
from transformers.models.glm4_moe_lite import modeling_glm4_moe_lite as mod_lite
from transformers.models.glm_moe_dsa import modeling_glm_moe_dsa as mod_dsa

# --arch: glm-mkmodel's spelling -> transformers' class, module, decoder layer.
# glm4-moe-lite (GLM-4.7-Flash) is GLM-5's network without the DSA indexer.
ARCHS = {
    "glm-moe-dsa": (GlmMoeDsaForCausalLM, mod_dsa, "GlmMoeDsaDecoderLayer"),
    "glm4-moe-lite": (Glm4MoeLiteForCausalLM, mod_lite, "Glm4MoeLiteDecoderLayer"),
    # GLM-4.5 family: grouped-query attention (biased q/k/v, optional q/k
    # norms, partial NeoX RoPE) around the same MoE.
    "glm4-moe": (Glm4MoeForCausalLM, mod_gqa, "Glm4MoeDecoderLayer"),
}
CLS, mod, LAYER = ARCHS["glm-moe-dsa"]

SEED = 1
LOGIT_ROWS_PER_PROMPT = 6
GREEDY_STEPS = 32


def check_sources():
    """The doc's §9 warning: RoPE and indexer changed across 5.x. Refuse a
    transformers whose GLM-5 code is not the interleaved / ReLU / IndexShare one.
    GLM-4.7-Flash: interleaved RoPE, no indexer, layer kinds from mlp_layer_types."""
    if mod is mod_gqa:
        rope = inspect.getsource(mod.apply_rotary_pos_emb)
        att = inspect.getsource(mod.Glm4MoeAttention)
        if not ("rotate_half" in rope and "rotary_dim" in rope and "use_qk_norm" in att and
                "num_key_value_groups" in att and "first_k_dense_replace" in inspect.getsource(mod.Glm4MoeDecoderLayer)):
            sys.exit("installed transformers GLM-4.5 code is not the partial-NeoX-RoPE GQA version")
        return
    rope = inspect.getsource(mod.apply_rotary_pos_emb_interleave)
    if mod is mod_lite:
        att = inspect.getsource(mod.Glm4MoeLiteAttention)
        if not (("0::2" in rope or "view" in rope) and "indexer" not in att and
                "mlp_layer_types" in inspect.getsource(mod.Glm4MoeLiteDecoderLayer)):
            sys.exit("installed transformers GLM-4.7-Flash code is not the interleaved-RoPE, no-indexer version")
        return
    idx = inspect.getsource(mod.GlmMoeDsaIndexer.forward)
    att = inspect.getsource(mod.GlmMoeDsaAttention)
    ok = ("0::2" in rope or "view" in rope) and "relu" in idx and "apply_rotary_pos_emb_interleave" in idx \
        and "indexer_types" in att
    if not ok:
        sys.exit("installed transformers GLM-5 code is not the interleaved-RoPE/ReLU/IndexShare version")


def load_hf(path):
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    try:
        m = CLS.from_pretrained(path, experts_implementation="eager", **kw)
    except TypeError:
        m = CLS.from_pretrained(path, **kw)
    return m.eval()


def dequantize_fp8(src, dst):
    """An f32 copy of an FP8 checkpoint: W = fp8(W) * weight_scale_inv per 128x128 block."""
    os.makedirs(dst, exist_ok=True)
    sd = load_file(os.path.join(src, "model.safetensors"))
    out = {}
    for name, t in sd.items():
        if name.endswith("_scale_inv"):
            continue
        if t.dtype == torch.float8_e4m3fn:
            s = sd[name + "_scale_inv"]
            r, c = t.shape
            full = s.repeat_interleave(128, 0)[:r].repeat_interleave(128, 1)[:, :c]
            out[name] = t.to(torch.float32) * full
        else:
            out[name] = t.to(torch.float32)
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg.pop("quantization_config", None)
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)


def prompts(vocab):
    rng = random.Random(7)
    lens = [6, 24, 40]
    return [[rng.randrange(0, vocab - 64) for _ in range(n)] for n in lens]


def rows_for(n):
    """A few rows spread over the prompt, always including the last."""
    if n <= LOGIT_ROWS_PER_PROMPT:
        return list(range(n))
    step = (n - 1) / (LOGIT_ROWS_PER_PROMPT - 1)
    return sorted({round(i * step) for i in range(LOGIT_ROWS_PER_PROMPT)})


def f32list(t):
    return [float(v) for v in t.tolist()]


@torch.no_grad()
def logits_case(model, name, dtype, ids):
    out = model(torch.tensor([ids]))
    lg = out.logits[0]
    rows = rows_for(len(ids))
    return {"name": name, "dtype": dtype, "prompt": ids, "rows": rows,
            "logits": [f32list(lg[r]) for r in rows],
            "top5": [lg[r].topk(5).indices.tolist() for r in rows]}


@torch.no_grad()
def greedy(model, ids, steps):
    seq = list(ids)
    out, gaps = [], []
    for _ in range(steps):
        lg = model(torch.tensor([seq])).logits[0, -1]
        top2 = lg.topk(2)
        gaps.append(float(top2.values[0] - top2.values[1]))
        tok = int(top2.indices[0])
        out.append(tok)
        seq.append(tok)
    return {"prompt": ids, "tokens": out, "min_gap": min(gaps)}


# ----------------------------------------------------------------- MTP (§4.2)

def mtp_block(model, src_dir):
    """transformers' decoder layer as the MTP block, loaded with layer L's weights."""
    cfg = model.config
    L = cfg.num_hidden_layers
    c2 = copy.deepcopy(cfg)
    c2.num_hidden_layers = L + 1
    if hasattr(cfg, "indexer_types"):
        c2.indexer_types = list(cfg.indexer_types) + ["full"]
    if hasattr(cfg, "mlp_layer_types"):           # GLM-4.5: MoE from first_k_dense_replace on
        c2.mlp_layer_types = list(cfg.mlp_layer_types) + ["sparse"]
    c2._attn_implementation = "eager"
    try:
        c2._experts_implementation = "eager"
    except Exception:
        pass
    layer = getattr(mod, LAYER)(c2, L).eval()
    sd = load_file(os.path.join(src_dir, "model.safetensors"))
    pre = f"model.layers.{L}."
    mine = {k[len(pre):]: v.to(torch.float32) for k, v in sd.items() if k.startswith(pre)}
    extras = {k: mine.pop(k) for k in ["enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight"]}
    E = cfg.n_routed_experts
    gate = [mine.pop(f"mlp.experts.{e}.gate_proj.weight") for e in range(E)]
    up = [mine.pop(f"mlp.experts.{e}.up_proj.weight") for e in range(E)]
    down = [mine.pop(f"mlp.experts.{e}.down_proj.weight") for e in range(E)]
    mine["mlp.experts.gate_up_proj"] = torch.stack([torch.cat([g, u], 0) for g, u in zip(gate, up)])
    mine["mlp.experts.down_proj"] = torch.stack(down)
    missing, unexpected = layer.load_state_dict(mine, strict=False)
    assert not unexpected, unexpected
    assert all("e_score_correction_bias" not in k for k in missing) and not [k for k in missing], missing
    return layer, extras


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


@torch.no_grad()
def mtp_run(model, layer, ex, ids, hidden):
    """One MTP pass over a whole sequence (causal; equivalent to cached steps)."""
    cfg = model.config
    eps = cfg.rms_norm_eps
    S = len(ids)
    e = model.model.embed_tokens(torch.tensor([ids]))
    u = torch.cat([rmsnorm(e, ex["enorm.weight"], eps), rmsnorm(hidden, ex["hnorm.weight"], eps)], -1)
    a = u @ ex["eh_proj.weight"].T
    pos = torch.arange(S).unsqueeze(0)
    pe = model.model.rotary_emb(a, position_ids=pos)
    mask = torch.full((S, S), torch.finfo(torch.float32).min).triu(1)[None, None]
    b = layer(a, attention_mask=mask, position_ids=pos, position_embeddings=pe)
    if isinstance(b, tuple):                      # GLM-5's layer returns (hidden, selection)
        b = b[0]
    hn = rmsnorm(b, ex["shared_head.norm.weight"], eps)
    return model.lm_head(hn)[0], hn


@torch.no_grad()
def mtp_case(model, src_dir, ids):
    layer, ex = mtp_block(model, src_dir)
    out = model.model(torch.tensor([ids]))
    g = out.last_hidden_state                     # post-final-norm hidden (lm_head input)
    nxt = int(model.lm_head(g)[0, -1].argmax())
    ids1 = ids[1:] + [nxt]                        # vLLM first pass: shifted ids, sampled token last
    lg1, hn1 = mtp_run(model, layer, ex, ids1, g)
    d1 = int(lg1[-1].argmax())
    # Step 2: draft token at position S, hidden = the MTP's own post-norm hidden.
    hid2 = torch.cat([g, hn1[:, -1:]], 1)
    lg2, _ = mtp_run(model, layer, ex, ids1 + [d1], hid2)
    rows = rows_for(len(ids1))
    return {"prompt": ids, "next": nxt, "ids1": ids1, "rows": rows,
            "logits1": [f32list(lg1[r]) for r in rows], "draft1": d1,
            "logits2": f32list(lg2[-1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="glm-moe-dsa")
    ap.add_argument("--preset", default="tiny", help="glm-mkmodel preset (glm4-moe: tiny, tiny-air)")
    a = ap.parse_args()
    global CLS, mod, LAYER
    CLS, mod, LAYER = ARCHS[a.arch]
    check_sources()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        d_bf16, d_fp8, d_deq = (os.path.join(tmp, n) for n in ("bf16", "fp8", "fp8-deq"))
        for d, dt in ((d_bf16, "bf16"), (d_fp8, "fp8")):
            subprocess.run([a.mkmodel, "--arch", a.arch, "--preset", a.preset, "--seed", str(SEED), "--dtype", dt,
                            "--out", d],
                           check=True, stderr=subprocess.DEVNULL)
        dequantize_fp8(d_fp8, d_deq)
        m = load_hf(d_bf16)
        ps = prompts(m.config.vocab_size)
        cases = [logits_case(m, f"bf16_len{len(p)}", "bf16", p) for p in ps]
        g = greedy(m, ps[1], GREEDY_STEPS)
        mtp = mtp_case(m, d_bf16, ps[2])
        mq = load_hf(d_deq)
        cases += [logits_case(mq, f"fp8_len{len(p)}", "fp8", p) for p in ps[1:]]
    res = {"generator": "tests/reference/glm5_reference.py",
           "transformers": transformers.__version__, "torch": torch.__version__,
           "arch": a.arch, "class": CLS.__name__, "preset": a.preset, "seed": SEED,
           "cases": cases, "greedy": g, "mtp": mtp}
    if hasattr(m.config, "indexer_types"):
        res["index_topk"] = m.config.index_topk
        res["indexer_types"] = list(m.config.indexer_types)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, separators=(",", ":"))
    print(f"wrote {a.out}: {len(cases)} logits cases, greedy min gap {g['min_gap']:.4f}, "
          f"mtp draft {mtp['draft1']}")


if __name__ == "__main__":
    main()
