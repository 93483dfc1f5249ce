#!/usr/bin/env python3
"""Differential fuzzing of the C Jinja interpreter against Python jinja2
(set up as in gen_goldens.py). Not part of `make test`: a development tool
for finding divergences; what it finds goes into cases_features.py.

    python3 tests/jinja/fuzz_diff.py [ws|expr|stmt|all] [seed] [count]

Builds build/jinja_batch_render from tests/jinja/batch_render.c against
build/lib/libglmjinja.a and libglmcommon.a (run `make` first). Errors compare by exception
type; known, documented divergences are skipped (64-bit ints, complex
numbers, range() and generator reprs, Jinja's constant folding of
literal-only subscripts)."""
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from gen_goldens import make_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = os.path.join(ROOT, "build", "jinja_batch_render")


def build_batch():
    src = os.path.join(ROOT, "tests", "jinja", "batch_render.c")
    libs = [os.path.join(ROOT, "build", "lib", n) for n in ("libglmjinja.a", "libglmcommon.a")]
    if os.path.exists(BATCH) and os.path.getmtime(BATCH) > max(os.path.getmtime(p) for p in [src, *libs]):
        return
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libcjson", "libutf8proc"],
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-I", os.path.join(ROOT, "common"), "-I", os.path.join(ROOT, "lib"), src, *libs,
                    *flags, "-lm", "-o", BATCH], check=True)


# ---------------------------------------------------------------- generators

TEXTS = ['', ' ', '  ', '\n', ' \n', '\n  ', '\t', 'a', 'a ', ' b\n', '\n\n', 'x\n  ', '  \n  ', '\u00a0',
         'y\r\n', '{', '}', '%', '#', ' { } ']


def gen_ws(rnd):
    """Whitespace control: tags with -/+ markers between odd text."""
    def tag():
        k = rnd.random()
        sign = lambda: rnd.choice(['', '-', '+'])  # noqa: E731
        if k < 0.3:
            return rnd.choice([f'{{%{sign()} if true {sign()}%}}X{{%{rnd.choice(["", "-"])} endif {sign()}%}}',
                               f'{{%{sign()} set v = 1 {sign()}%}}',
                               f'{{%{sign()} for i in [1,2] {sign()}%}}<{{{{ i }}}}>{{%- endfor {sign()}%}}'])
        if k < 0.55:
            return f'{{{{{rnd.choice(["", "-"])} "v" {rnd.choice(["", "-"])}}}}}'
        if k < 0.75:
            return f'{{#{sign()} c {sign()}#}}'
        if k < 0.85:
            return (f'{{%{sign()} raw {rnd.choice(["", "-"])}%}}{rnd.choice(TEXTS)}{{{{ r }}}}{rnd.choice(TEXTS)}'
                    f'{{%{sign()} endraw {sign()}%}}')
        return rnd.choice(TEXTS)
    src = ''.join(rnd.choice(TEXTS) + tag() for _ in range(rnd.randint(1, 6))) + rnd.choice(TEXTS)
    return src, {}


EXPR_CTX = {"d": {"a": 1, "b": [1, 2], "c": "x"}, "s": "héllo Wörld", "l": [3, 1, 2], "e": [], "n": None, "i": 5,
            "f": 1.5, "w": ["b", "A", "c"], "u": [{"k": 2, "v": "x"}, {"k": 1, "v": "y"}], "t": True, "z": 0}
VARS = ['d', 's', 'l', 'e', 'n', 'i', 'f', 'w', 'u', 't', 'z', 'nothing', 'd.a', 'd.b', "d['c']", 'u[0]', 'l[1]']
ATOMS = VARS + ['0', '1', '2', '-3', '7', '300', '0.5', '1.0', '-2.25', '1e20', '2.5', "'a'", "'héllo'", "''",
                "' x '", "'Ab,c'", 'none', 'true', 'false', '[1, 2]', '[]', "['x', 'y']", "{'k': 1}", '{}',
                '(1, 2)', '(3,)']
BINOPS = ['+', '-', '*', '/', '//', '%', '**', '~', '==', '!=', '<', '<=', '>', '>=', 'in', 'not in', 'and', 'or']
FILTERS = ['length', 'upper', 'lower', 'first', 'last', 'string', 'int', 'float', 'abs', 'round', "join(',')",
           'join', 'list', 'sort', 'trim', 'tojson', "default('dv')", 'count', 'sum', 'min', 'max', 'capitalize',
           'title', 'e', "replace('a', 'b')", 'center(9)', 'wordcount', 'indent(2)', 'truncate(5)', 'dictsort',
           "map('string') | list", "select('odd') | list", "reject('none') | list", 'unique | list',
           'reverse | list', 'sort(reverse=true)', 'tojson(indent=1)', 'batch(2) | list', 'int(base=16)',
           "round(1, 'floor')"]
TESTS = ['string', 'number', 'none', 'defined', 'undefined', 'iterable', 'mapping', 'sequence', 'odd', 'even',
         'integer', 'float', 'boolean', 'true', 'false', 'lower', 'upper', 'callable', 'divisibleby(2)',
         "in([1, 'a'])", 'eq(1)']
METHODS = ['.upper()', '.strip()', '.split()', ".startswith('h')", ".replace('l', 'L')", ".find('l')", '.title()',
           ".split(',')", '.lower()', ".endswith('d')", ".count('l')", '.items() | list', '.keys() | list',
           ".get('a')", '.values() | list', ".rstrip('d')", ".lstrip('h')", ".rsplit(' ', 1)", '.zfill(4)',
           '.isdigit()']


SUBSCRIPTS = ["[0]", "[-1]", "[1:]", "[::-1]", "[:2]", "[1]", "[-2:]", "[::2]"]


def gen_expr(rnd):
    def expr(depth=0):
        if depth > 2:
            return rnd.choice(ATOMS)
        sub = lambda: expr(depth + 1)  # noqa: E731
        forms = [  # (weight, builder)
            (25, lambda: rnd.choice(ATOMS)),
            (20, lambda: f'({sub()} {rnd.choice(BINOPS)} {sub()})'),
            (15, lambda: f'({sub()} | {rnd.choice(FILTERS)})'),
            (10, lambda: f'({sub()} is {rnd.choice(["", "not "])}{rnd.choice(TESTS)})'),
            (10, lambda: rnd.choice(ATOMS) + rnd.choice(METHODS)),
            (7, lambda: rnd.choice(VARS) + rnd.choice(SUBSCRIPTS)),
            (7, lambda: f'({sub()} if {sub()} else {sub()})'),
            (6, lambda: f'({rnd.choice(["not ", "-"])}{sub()})'),
        ]
        return rnd.choices([f for _, f in forms], weights=[w for w, _ in forms])[0]()
    return '{{ ' + expr() + ' }}', EXPR_CTX


def gen_stmt(rnd):
    """Scoping: sets, ifs, loops, macros, with blocks, namespaces."""
    names = ['x', 'y', 'v', 'w']

    def val():
        return rnd.choice(['1', "'s'", 'x', 'y', 'v', 'w', 'ns.c', 'loop.index', 'loop.index0', 'x ~ v', '[x, y]',
                           'v is defined', 'ns.c + 1', 'm(v)', 'm(x) ~ 1', 'loop.length', 'loop.previtem', 'k'])

    def body(d):
        out = []
        for _ in range(rnd.randint(1, 3)):
            r = rnd.random()
            if r < 0.25:
                out.append(f'{{% set {rnd.choice(names)} = {val()} %}}')
            elif r < 0.35:
                out.append(f'{{% set ns.c = {val()} %}}')
            elif r < 0.55:
                out.append(f'[{{{{ {val()} }}}}]')
            elif r < 0.7 and d < 3:
                out.append(f'{{% if {val()} %}}{body(d + 1)}{{% else %}}{body(d + 1)}{{% endif %}}')
            elif r < 0.85 and d < 3:
                target = rnd.choice(['k', 'v', 'k, w'])
                seq = rnd.choice(['[1, 2, 3]', '[[1, 2], [3, 4]]', 'range(2)', 'l'])
                flt = rnd.choice(['', ' if k != 2'])
                out.append(f'{{% for {target} in {seq}{flt} %}}{body(d + 1)}{{% else %}}E{{% endfor %}}')
            elif r < 0.92 and d < 2:
                out.append(f'{{% macro m(a, b=x) %}}<{{{{ a }}}}{{{{ b }}}}{body(d + 1)}>{{% endmacro %}}')
            elif d < 3:
                out.append(f'{{% with {rnd.choice(names)} = {val()} %}}{body(d + 1)}{{% endwith %}}')
        return ''.join(out)
    src = ('{% set ns = namespace(c=0) %}{% macro m(a) %}(m{{ a }}{{ x }}){% endmacro %}' + body(0) +
           '|{{ x }}{{ y }}{{ v }}{{ ns.c }}')
    return src, {"l": [5, 6], "x": "X0"}


GENERATORS = {"ws": gen_ws, "expr": gen_expr, "stmt": gen_stmt}
SKIP_PY = (' at 0x', 'j)', 'range(')
SAME_ERRORS = {("RecursionError", "LimitError"), ("TemplateSyntaxError", "TemplateAssertionError")}


def run(kind, seed, count):
    rnd = random.Random(seed)
    cases = [GENERATORS[kind](rnd) for _ in range(count)]
    batch_in = os.path.join(ROOT, "build", "jinja_fuzz_cases.json")
    with open(batch_in, "w", encoding="utf-8") as f:
        json.dump([[src, json.dumps(ctx)] for src, ctx in cases], f)
    results = json.loads(subprocess.run([BATCH, batch_in], capture_output=True, check=True).stdout)
    env = make_env()
    bad = skipped = 0
    for (src, ctx), c in zip(cases, results):
        try:
            p = env.from_string(src).render(**json.loads(json.dumps(ctx)))
        except Exception as e:  # noqa: BLE001
            p = f"ERR {type(e).__name__}: {e}"
        if p == c:
            continue
        if any(k in p for k in SKIP_PY) or (c.startswith('ERR') and 'OverflowError' in c):
            skipped += 1
            continue
        if p.startswith('ERR') and c.startswith('ERR'):
            pt, ct = p[4:].split(':')[0], c[4:].split(':')[0]
            if pt == ct or (pt, ct) in SAME_ERRORS or pt in ('SyntaxError', 'TemplateSyntaxError'):
                continue
            if pt == 'OverflowError':
                continue
        bad += 1
        if bad <= 10:
            print(src)
            print('  python:', repr(p)[:300])
            print('  C:     ', repr(c)[:300])
    print(f"{kind} seed {seed}: {count} cases, {bad} differ, {skipped} skipped (known divergences)")
    return bad


def main():
    import warnings
    warnings.simplefilter("ignore")
    kind = sys.argv[1] if len(sys.argv) > 1 else "all"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    build_batch()
    kinds = list(GENERATORS) if kind == "all" else [kind]
    bad = sum(run(k, seed, count) for k in kinds)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
