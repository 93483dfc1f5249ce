#!/usr/bin/env python3
"""Write the tokenizer goldens in tests/data/tokenizer/ with Hugging Face
`tokenizers` (the reference; PyPI package, test tooling only):

    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers==0.23.3
    /tmp/tokvenv/bin/python tests/tokenizer/gen_goldens.py

Files written:
  texts.json         the test texts (shared by every tokenizer)
  <name>.json        per tokenizer: how to build it from ../shared (base file +
                     edits), encode ids for every text, decode results
                     ([skip=False, skip=True]; null = the text, 1 = " " + the
                     text, 2 = same as skip=False), random
                     decode cases, per-token checksums, added/special ids,
                     token_to_id samples, vocab size.

Tokenizers: the three real files in ../shared/data/tokenizers/ and variants
built at test time from them (never committed): "glm" (llama3 + GLM's 36
added tokens, doc glm-tokenizer-template.md §2.1) and feature variants that
exercise pre-tokenizers/normalizers/added-token flags the real files lack.
The C test (tests/unit/test_tokenizer.c) applies the same edits.
"""
import json
import os
import random
import sys
import unicodedata

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("GLM_SHARED", os.path.join(ROOT, "..", "shared"))
# Overrides for bigger throw-away differential runs (not committed):
#   TOKGOLD_OUT=/tmp/g TOKGOLD_SEED=7 TOKGOLD_NRANDOM=5000 gen_goldens.py
#   GLM_TOKENIZER_GOLDENS=/tmp/g build/tests/test_tokenizer
OUT = os.environ.get("TOKGOLD_OUT", os.path.join(ROOT, "tests", "data", "tokenizer"))
SEED = int(os.environ.get("TOKGOLD_SEED", "20261126"))
NRANDOM = int(os.environ.get("TOKGOLD_NRANDOM", "250"))


def added(tid, content, special, lstrip=False, rstrip=False, normalized=False):
    return {"id": tid, "content": content, "single_word": False, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


# GLM-4.5/5 added tokens in order; offsets 0-17 special, 18-35 not (§2.1).
GLM_ADDED = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
             "<|user|>", "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
             "<|begin_of_video|>", "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>",
             "<|begin_of_transcription|>", "<|end_of_transcription|>", "<|code_prefix|>",
             "<|code_middle|>", "<|code_suffix|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
             "<tool_response>", "</tool_response>", "<arg_key>", "</arg_key>", "<arg_value>",
             "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>", "<|image|>", "<|video|>"]

LLAMA_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
               "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

VARIANTS = [
    {"name": "llama3", "base": "llama3", "edits": []},
    {"name": "qwen3", "base": "qwen3", "edits": []},
    {"name": "deepseek_v3", "base": "deepseek_v3", "edits": []},
    {"name": "glm", "base": "llama3", "edits": [
        {"op": "append", "path": ["added_tokens"],
         "values": [added(128256 + i, c, i < 18) for i, c in enumerate(GLM_ADDED)]}]},
    # GPT-2 style: one ByteLevel doing prefix space + its own regex
    {"name": "gpt2_bytelevel", "base": "llama3", "edits": [
        {"op": "set", "path": ["pre_tokenizer"],
         "value": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}]},
    # NFKC, Digits runs, a String split, \w \d \S in a regex, normalized and
    # lstrip/rstrip added tokens
    {"name": "qwen3_features", "base": "qwen3", "edits": [
        {"op": "set", "path": ["normalizer"], "value": {"type": "Sequence", "normalizers": [{"type": "NFKC"}]}},
        {"op": "set", "path": ["pre_tokenizer"], "value": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": False},
            {"type": "Split", "pattern": {"String": "::"}, "behavior": "Isolated", "invert": True},
            {"type": "Split", "pattern": {"Regex": "\\w+|\\d|[^\\w\\s]+|\\s+(?!\\S)|\\s"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}},
        {"op": "append", "path": ["added_tokens"], "values": [
            added(151669, "<LS>", False, lstrip=True),
            added(151670, "<RS>", True, rstrip=True),
            added(151671, "<BOTH>", False, lstrip=True, rstrip=True),
            added(151672, "\ufb01nal", False, normalized=True),
            added(151673, "\u2460\u2461", True, normalized=True),
            added(151674, "<|im_start|>user", True)]}]},
    # NFKD then NFC, individual digits, then the Llama regex, ByteLevel with
    # prefix space and no regex
    {"name": "llama3_features", "base": "llama3", "edits": [
        {"op": "set", "path": ["normalizer"],
         "value": {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "NFC"}]}},
        {"op": "set", "path": ["pre_tokenizer"], "value": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "Split", "pattern": {"Regex": LLAMA_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]}},
        {"op": "set", "path": ["model", "ignore_merges"], "value": False}]},
]


def apply_edits(d, edits):
    for e in edits:
        node = d
        for k in e["path"][:-1]:
            node = node[k]
        last = e["path"][-1]
        if e["op"] == "set":
            node[last] = e["value"]
        elif e["op"] == "append":
            node[last].extend(e["values"])
        else:
            raise ValueError(e["op"])
    return d


def hard_texts():
    t = []
    t += ["", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", " \n", "\n ", "a", "A", "Hello world",
          "Hello  world", "Hello\tworld", "hello world ", "hello world  ", " leading", "  leading two",
          "trailing\n", "trailing\n\n\n", "a\r\nb\r\n\r\nc", "tabs\t\t\tand\t spaces",
          "mixed \t\n \r\n  \n\t end", "line1\nline2\n\nline4\n", "  \n  \n", "x \n\n y", "end   "]
    for w in ["s", "t", "re", "ve", "m", "ll", "d"]:
        for v in [w, w.upper(), w.capitalize()]:
            t.append("it'" + v + " ok")
    t += ["it's", "IT'S", "we'll", "WE'LL", "We'Ll", "they're", "THEY'RE", "I've", "I'M", "HE'D",
          "don't DON'T", "'s", "'S", "''s", "x's's", "'ll've'd", "' s", "rock 'n' roll", "O'Neil's",
          "\u02bcs curly", "\u2019s right quote", "'\u017f long s", "'\u212a kelvin", "'\uff33 fullwidth",
          "'\u0130 dotted", "Straße STRASSE", "'\u00df"]
    for n in range(1, 22):
        t.append("".join(str((i * 7 + 3) % 10) for i in range(n)))
        t.append("x" + "9" * n + "y")
    t += ["3.14159", "1,000,000", "-42", "1e10", "0x1F", "\u0661\u0662\u0663\u0664\u0665",
          "\u0967\u0968\u0969\u096a", "\u00bd \u00b2 \u00b3 \u216b \u2460 \u32bf", "12ab34", "ab12cd",
          "v1.2.3-rc4", "2026-11-26T12:00:00Z", "$1,234.56", "50%", "\uff11\uff12\uff13 fullwidth digits"]
    t += ["中文文本测试", "日本語のテキスト、カタカナとひらがな", "한국어 텍스트입니다", "ภาษาไทยเป็นภาษาที่สวยงาม",
          "مرحبا بالعالم", "नमस्ते दुनिया", "שלום עולם", "Привет мир", "Γειά σου Κόσμε", "English中文English",
          "数字123和文字", "Ελληνικά και English", "ქართული ენა", "Tiếng Việt có dấu", "हिन्दी में 42 अंक",
          "العربية ١٢٣ و 456", "漢字かなカナ123abc", "ｈａｌｆ／ｆｕｌｌ　ｗｉｄｔｈ"]
    t += ["👍", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "🇺🇸🇬🇧", "❤\ufe0f", "1\ufe0f\u20e3",
          "emoji👍in text", "🙂🙃🙂", "👩🏿\u200d💻 coding", "a 🤖 b", "🫠🪿"]
    t += ["e\u0301", "\u00e9 vs e\u0301", "a\u0300\u0301\u0302", "Z\u0324\u0354\u0367\u0311\u0313a\u0308",
          "\u0301 leading combining", "\ufb01 ligature", "\u00c5 \u2126 \ufb00 \u210c \u2460 \u338f",
          "\u1e9b\u0323", "\u1100\u1161\u11a8", "\uac00\u11a8", "\u0958 \u095c", "\u2000\u2001 spaces",
          "\u212b\u2126", "\ufe64\ufe65", "\u3300 \u33ff"]
    t += ["def f(x):\n    return x ** 2  # square\n\n\nprint(f(3))\n",
          "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
          '{"key": "value", "list": [1, 2.5, -3e4, true, null], "nested": {"a": "\\u00e9"}}',
          "for i in $(seq 1 10); do echo \"$i\" | tr -d '\\n'; done 2>&1 >/dev/null",
          "<div class=\"x\">&amp; &lt;tag&gt;</div>", "SELECT * FROM t WHERE a='b' AND c<>d;",
          "    indented four\n        eight\n\ttab", "x=1;y=2;;z===3!==4", "a->b => c <=> d", "/* */ // #!"]
    t += ["https://example.com/path/to?q=1&r=two#frag", "mailto:someone@example.org",
          "file:///tmp/some dir/x.txt", "http://[::1]:8080/", "www.ex-ample.co.uk/a_b"]
    # added tokens of every family, adjacent to text and to each other, partial
    t += ["<|begin_of_text|>", "<|begin_of_text|>Hello", "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi",
          "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<think>\nreason\n</think>\n\nanswer",
          "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "[gMASK]<sop><|user|>hi<|assistant|>",
          "[gMASK]this is a test where da goose is cooked<|system|>no<|user|>yes<|assistant|>maybe",
          "<|user|><|assistant|>", "<|user|", "<|use", "<think", "</think", "<|im_start", "<<|user|>>",
          "<|<|user|>|>", "[gMASK", "[MASK]]", "[[sMASK]", "a<|endoftext|>b", " <|endoftext|> ",
          "<|endoftext|><|endoftext|>", "x<think>y</think>z", "/nothink", "hi /nothink", "//nothink",
          "<arg_key>k</arg_key><arg_value>v</arg_value>", "<|begin_of_image|><|image|><|end_of_image|>",
          "<｜begin▁of▁sentence｜>hi", "<｜tool▁sep｜>", "<｜User｜>q<｜Assistant｜>", "<|reserved_special_token_5|>",
          "<LS>", " <LS> ", "a  <LS>", "x  <RS>  y", "<RS>\n\nz", "<BOTH>", "\t<BOTH>\t", " \u3000<BOTH>\u3000 x",
          "final \ufb01nal FINAL fi", "\u2460\u2461 \u2460 12", "<|im_start|>user <|im_start|>users",
          "::a::b:::c", "a<LS><RS>b", "<LS><LS>  <RS><RS>", "<|im_end|>"]
    t += ["\u00a0", "a\u00a0b", "\u3000全角", "\u2028line sep", "\u2029para", "\u0085nel", "a\u0085\u0085b",
          "\u180emongolian", "a \u180e b", "\u200bzwsp", "\ufeffbom", "\u2003em space", "a \u00a0 b",
          "\u000b\u000c vt ff", "\u001c\u001d\u001e\u001f seps", "x\u2028\ny", " \u00a0\n", "\u205f\u202f",
          "\u1680ogham", "a\u000b\nb"]
    t += ["\ufffd", "\ufffe", "\uffff", "\U0010ffff", "\U000e0001 tag", "\ue000 pua", "\ufdd0", "\u0000",
          "a\u0000b", "\u0000\u0000 nul", "\x7f del", "\x01\x02\x03", "\u00ad soft hyphen", "\U0001fffe",
          "\u0378 unassigned", "\U0001f9cc troll", "\U0001fae8 shaking face (Unicode 15 emoji)"]
    rng = random.Random(SEED)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    t += ["a" * 10000, "".join(rng.choice(letters) for _ in range(5000)), "7" * 1200, " " * 10000,
          "\n" * 1000, "中" * 1000, "👍" * 300, "ab " * 1000, " \t" * 1000 + "x", "é" * 1500]
    return t


POOL = ["the", " the", "The", "tokenizer", " ", "  ", "\t", "\n", "\r\n", "\n\n", "'s", "'S", "'ll", "'LL",
        "'re", "'Re", "0", "42", "12345", "3.14", "中文", "日本", "한국어", "ไทย", "عربي", "हिंदी", "😀",
        "👍🏽", "👨\u200d👩\u200d👧", "e\u0301", "\u00e9", "!", "?!", "...", "()", "{}", "[]", "<", ">", "|",
        "<|user|>", "<|assistant|>", "<think>", "</think>", "<|im_start|>", "<|im_end|>",
        "<|begin_of_text|>", "<｜end▁of▁sentence｜>", "[gMASK]", "<sop>", "<|endoftext|>", "<LS>", "<RS>",
        "<BOTH>", "\ufb01", "\u2460", "::", "\u00a0", "\u3000", "\u2028", "\u0085", "\u180e", "\u200b", "\u0000",
        "\ufffd", "http://x.y/z", "a_b", "x=1", "#", "$", "—", "“quoted”", "\u017f"]
RANGES = [(0x20, 0x7e), (0xa0, 0x2ff), (0x300, 0x36f), (0x370, 0x52f), (0x590, 0x6ff), (0x900, 0x97f),
          (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f), (0x3000, 0x30ff), (0x4e00, 0x9fff),
          (0xac00, 0xd7a3), (0xff00, 0xffef), (0x1f300, 0x1faff)]


# Unicode-version differences, documented in lib/tokenizer/tokenizer.h and kept out
# of the random texts:
# - HF's regexes run on Oniguruma 6.9.10 (Unicode 16), ours on PCRE2 10.42
#   (Unicode 14): characters assigned in Unicode 15.0-16.0 get their real
#   category in HF but "unassigned" in PCRE2. Python 3.11's unicodedata is
#   Unicode 14, so "Cn for Python but not for Oniguruma" finds exactly them.
# - HF's normalizers (unicode-normalization-alignments) predate Unicode 12.1;
#   ours (utf8proc 2.8) are Unicode 15: characters whose decomposition HF
#   does not know yet (U+32FF, U+1FBF0.., U+10780.., U+11938) normalize
#   differently. Python's unicodedata (14) agrees with utf8proc on them.
# - HF's Digits uses Rust's char::is_numeric (Unicode 16-17 in the Rust that
#   built it); ours utf8proc (15): digits of newer scripts differ.
_ONIG_CN = pre_tokenizers.Split(Regex(r"\p{Cn}"), "removed")
_RUST_DIGITS = pre_tokenizers.Digits(individual_digits=True)
_HF_NORM = {k: getattr(normalizers, k)() for k in ("NFC", "NFD", "NFKC", "NFKD")}
_VERSION_DIFF = {}


def version_sensitive(c):
    if c not in _VERSION_DIFF:
        after14 = unicodedata.category(c) == "Cn" and _ONIG_CN.pre_tokenize_str(c) != []
        norm = any(n.normalize_str(c) != unicodedata.normalize(k, c) for k, n in _HF_NORM.items())
        numeric = len(_RUST_DIGITS.pre_tokenize_str("a" + c + "a")) == 3
        newdigit = numeric != (unicodedata.category(c) in ("Nd", "Nl", "No"))
        _VERSION_DIFF[c] = after14 or norm or newdigit
    return _VERSION_DIFF[c]


def random_texts():
    rng = random.Random(SEED + 1)
    out = []
    for _ in range(NRANDOM):
        parts = []
        for _ in range(rng.randint(1, 25)):
            r = rng.random()
            if r < 0.55:
                parts.append(rng.choice(POOL))
            elif r < 0.9:
                lo, hi = rng.choice(RANGES)
                cs = [chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))]
                parts.append("".join(c for c in cs if not version_sensitive(c)))
            else:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        out.append("".join(parts))
    # code points from anywhere (no surrogates): Unicode tables agreement
    for _ in range(max(1, NRANDOM // 4)):
        cps = []
        while len(cps) < 24:
            c = rng.randint(0x20, 0x10ffff) if rng.random() < 0.5 else rng.randint(0x20, 0x2ffff)
            if 0xd800 <= c <= 0xdfff or version_sensitive(chr(c)):
                continue
            cps.append(chr(c))
        out.append("".join(cps))
    return out


def jstr(s):
    """A string for the goldens; texts with NUL become {"hex": UTF-8 hex}
    because C JSON readers (cJSON) stop strings at NUL."""
    if s is None or "\0" not in s:
        return s
    return {"hex": s.encode("utf-8").hex()}


def fnv64(data, h=0xcbf29ce484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return h


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = hard_texts() + random_texts()
    with open(os.path.join(OUT, "texts.json"), "w", encoding="utf-8") as f:
        json.dump({"seed": SEED, "texts": [jstr(x) for x in texts]}, f, ensure_ascii=False, separators=(",", ":"))
    for v in VARIANTS:
        path = os.path.join(SHARED, "data", "tokenizers", v["base"], "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            d = apply_edits(json.load(f), v["edits"])
        tk = Tokenizer.from_str(json.dumps(d))
        nvocab = tk.get_vocab_size(with_added_tokens=True)
        enc = [tk.encode(s, add_special_tokens=False).ids for s in texts]
        dec = []
        for s, ids in zip(texts, enc):
            a = tk.decode(ids, skip_special_tokens=False)
            b = tk.decode(ids, skip_special_tokens=True)
            # compact: null = the text itself, 1 = " " + text (prefix space),
            # 2 (second slot) = same as the first
            def short(x):
                return None if x == s else 1 if x == " " + s else jstr(x)
            dec.append([short(a), 2 if b == a and a != s else short(b)])
        rng = random.Random(SEED + 2)
        addmap = tk.get_added_tokens_decoder()
        added_ids = sorted(addmap)
        # "special" as decode(skip_special_tokens=True) sees it: declared
        # special, unless normalization changed the token's string (HF quirk)
        special_ids = [i for i in added_ids if tk.decode([i], skip_special_tokens=True) == ""
                       and tk.decode([i], skip_special_tokens=False) != ""]
        byte_ids = [tk.token_to_id(c) for c in ["\u00c3", "\u00a9", "\u00e4", "\u00b8", "\u0143", "\u0120"]]
        rdec = []
        for k in range(120):
            n = rng.randint(1, 30)
            ids = []
            for _ in range(n):
                r = rng.random()
                if r < 0.15 and added_ids:
                    ids.append(rng.choice(added_ids))
                elif r < 0.35:
                    ids.append(rng.choice([i for i in byte_ids if i is not None]))
                else:
                    ids.append(rng.randrange(nvocab))
            rdec.append({"ids": ids, "noskip": jstr(tk.decode(ids, skip_special_tokens=False)),
                         "skip": jstr(tk.decode(ids, skip_special_tokens=True))})
        # per-token check: FNV-1a of decode([id]) + 0xff, per chunk of 1024 ids
        sums = []
        for c0 in range(0, nvocab, 1024):
            h = 0xcbf29ce484222325
            for i in range(c0, min(nvocab, c0 + 1024)):
                h = fnv64(tk.decode([i], skip_special_tokens=False).encode("utf-8") + b"\xff", h)
            sums.append("%016x" % h)
        t2i = []
        for i in added_ids:
            t2i.append([jstr(addmap[i].content), i])
        for _ in range(200):
            i = rng.randrange(nvocab)
            s = tk.id_to_token(i)
            t2i.append([jstr(s), tk.token_to_id(s)])
        for s in ["not a token at all", "Ġthe", "the", "\u0120", "<think>", "<|user|>", "zzzzzzzzzzzzzz"]:
            t2i.append([jstr(s), tk.token_to_id(s)])
        g = {"name": v["name"], "base": v["base"], "edits": v["edits"], "vocab_size": nvocab,
             "added_ids": added_ids, "special_ids": special_ids, "encode": enc, "decode": dec,
             "random_decode": rdec, "token_sums": sums, "token_to_id": t2i}
        with open(os.path.join(OUT, v["name"] + ".json"), "w", encoding="utf-8") as f:
            json.dump(g, f, ensure_ascii=False, separators=(",", ":"))
        print("%-16s %d texts, %d ids" % (v["name"], len(texts), sum(map(len, enc))), file=sys.stderr)


if __name__ == "__main__":
    main()
