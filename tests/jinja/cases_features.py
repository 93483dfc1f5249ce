"""Small templates, one construct each, with their edge cases. Each entry:
(name, template source, context). Python jinja2 decides the expected output
(or the error type) in gen_goldens.py."""

NEST = {"a": {"b": [1, {"c": "deep"}]}, "s": "héllo wörld", "n": None, "t": True, "f": False,
        "i": 42, "x": 2.5, "neg": -7, "lst": [3, 1, 2], "empty": [], "ed": {}, "es": "",
        "words": ["b", "A", "c", "a"],
        "users": [{"name": "bob", "age": 30, "admin": True}, {"name": "Alice", "age": 25, "admin": False},
                  {"name": "carl", "age": 35}],
        "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                 {"role": "user", "content": "bye"}]}


def cases():
    out = []

    def T(name, src, ctx=None):
        out.append((name, src, NEST if ctx is None else ctx))

    # ---------------------------------------------------------------- whitespace
    T("ws_plain", "a\n{% if true %}\nb\n{% endif %}\nc")
    T("ws_lstrip_indent", "x\n    {% if true %}\n    y\n    {% endif %}\nz")
    T("ws_lstrip_tabs", "x\n\t \t{% if true %}y{% endif %}\n")
    T("ws_minus_left", "a   \n  {%- if true %}b{% endif %}")
    T("ws_minus_right", "{% if true -%}   \n\n  b{% endif %}")
    T("ws_minus_both", "a \n {%- if true -%} \n b \n {%- endif -%} \n c")
    T("ws_var_minus", "a  {{- 'x' -}}  b")
    T("ws_var_no_lstrip", "a\n    {{ 'x' }}\n")
    T("ws_plus_block", "x\n    {%+ if true %}y{% endif %}")
    T("ws_plus_end", "{% if true +%}\nkeep{% endif %}")
    T("ws_trim_only_one_newline", "{% if true %}\n\nb{% endif %}")
    T("ws_comment_lstrip", "a\n   {# comment #}\nb")
    T("ws_comment_minus", "a  {#- c -#}  b")
    T("ws_comment_multiline", "a{# line1\nline2 #}b")
    T("ws_trailing_newline_dropped", "abc\n")
    T("ws_two_trailing_newlines", "abc\n\n")
    T("ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n")
    T("ws_cr_only", "a\r{{ 1 }}\rb")
    T("ws_start_of_template", "   {% if true %}x{% endif %}")
    T("ws_after_var_line_start", "{{ 'a' }}\n   {% if true %}b{% endif %}")
    T("ws_text_before_tag_same_line", "a  {% if true %}b{% endif %}")
    T("ws_for_body", "{% for i in range(3) %}\n  - {{ i }}\n{% endfor %}\n")
    T("ws_nested_blocks", "{% for i in [1,2] %}\n  {% if i > 1 %}\n    big {{ i }}\n  {% else %}\n    small\n  {% endif %}\n{% endfor %}")
    T("ws_raw", "{% raw %}\n{{ x }} {% if %}\n{% endraw %}\nafter")
    T("ws_raw_minus", "a  {%- raw -%}  {{ y }}  {%- endraw -%}  b")
    T("ws_raw_lstrip", "x\n   {% raw %}r{% endraw %}\n")
    T("ws_minus_unicode_space", "a\u00a0\u3000 {%- if true %}b{% endif %}")
    T("ws_set_block_lines", "{% set x %}\n  line1\n  line2\n{% endset %}[{{ x }}]")
    T("ws_macro_def", "{% macro m() %}\n  body\n{% endmacro %}\n[{{ m() }}]")
    T("ws_lstrip_var_after_block", "{% if true %}\n    {{ 'v' }}\n{% endif %}")
    T("ws_minus_var_start", "{{- 'a' }}")
    T("ws_newline_in_tag", "{%\nif\ntrue\n%}yes{%\nendif\n%}")
    T("ws_only_whitespace", "   \n  ")
    T("ws_empty", "")
    T("ws_braces_in_text", "a { b } {x} }} %} #}")
    T("ws_var_end_in_dict", "{{ {'a': {'b': 1}} }}")
    # ---------------------------------------------------------------- printing
    T("print_none_bool", "{{ none }} {{ None }} {{ true }} {{ False }} {{ n }} {{ t }}")
    T("print_ints", "{{ 0 }} {{ -5 }} {{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ i }}")
    T("print_floats", "{{ 1.0 }} {{ 2.5 }} {{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 0.1 + 0.2 }} {{ 1.5e-7 }} {{ 0.0001 }} {{ x }} {{ -0.0 }} {{ 1E3 }}")
    T("print_float_div", "{{ 10 / 3 }} {{ 1 / 7 }} {{ 2 / 2 }} {{ 2 ** -1 }} {{ 123456789.0 * 1000 }}")
    T("print_list", "{{ [1, 'a', none, true, 1.5, [2, []], {}] }}")
    T("print_dict", "{{ {'k': 'v', 'n': none, 'l': [1, 2.0], 1: 'int key'} }}")
    T("print_tuple", "{{ (1,) }} {{ (1, 2) }} {{ () }} {{ ((1, 2), 'x') }}")
    T("print_context_dict", "{{ a }} | {{ users[0] }} | {{ msgs }}")
    T("print_str_repr_quotes", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'plain'] }}")
    T("print_str_repr_escapes", "{{ ['tab\\there', 'nl\\n', 'cr\\r', 'bs\\\\', 'bell\\x07', 'del\\x7f', 'nbsp\\xa0', 'zw\\u200b', 'é', '日本', '🙂', 'ls\\u2028'] }}")
    T("print_unicode_context", "{{ s }} {{ [s] }}", {"s": "naïve 日本 🙂 \u2028 \u00ad"})
    T("print_namespace", "{% set ns = namespace(a=1, b='x') %}{{ ns }}")
    T("print_macro", "{% macro mm() %}{% endmacro %}{{ mm }}")
    T("print_undefined", "[{{ nothing }}] [{{ a.missing }}] [{{ lst[10] }}] [{{ [nothing] }}]")
    T("print_nested_undef_in_list", "{{ [a.zzz] }}")
    T("print_tuple_expr", "{{ 1, 2 }}")
    T("print_statement", "{% print 'a', 1 %}")
    T("print_big_int", "{{ 9223372036854775807 }} {{ -9223372036854775807 - 1 }}")
    T("print_inf_nan", "{{ 1e308 * 10 }} {{ [1e308 * 10] }} {{ (1e308 * 10) | tojson }}")
    # ---------------------------------------------------------------- literals and strings
    T("lit_strings", "{{ 'a' 'b' \"c\" }} {{ 'it\\'s' }} {{ \"q\\\"q\" }} {{ 'x\\ny' }} {{ 'u\\u00e9' }} {{ 'U\\U0001F600' }} {{ 'oct\\101' }} {{ 'hex\\x41' }} {{ 'unk\\q' }}")
    T("lit_multiline_string", "{{ 'line1\nline2' }}")
    T("lit_list_dict", "{{ [1, 2, 3,] }} {{ {'a': 1,} }} {{ [] }} {{ {} }}")
    T("lit_dict_dup_keys", "{{ {'a': 1, 'b': 2, 'a': 3} }}")
    T("lit_dict_num_keys", "{{ {1: 'a', 1.0: 'b', true: 'c'} }}")
    T("lit_true_variants", "{{ True }} {{ true }} {{ none is none }} {{ None is none }}")
    T("lit_nested_tuple_dict", "{{ {'t': (1, 2), 'l': [(3,)]} }}")
    # ---------------------------------------------------------------- arithmetic
    T("math_basic", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 - 10 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}")
    T("math_div", "{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 // -2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7 % -3 }}")
    T("math_float_floordiv", "{{ 7.5 // 2 }} {{ -7.5 // 2 }} {{ 7.5 % 2 }} {{ -7.5 % 2 }} {{ 7 % 2.5 }} {{ -0.5 // 1 }} {{ 5 % -2.0 }}")
    T("math_mixed", "{{ 1 + 1.0 }} {{ 3 * 0.5 }} {{ true + 1 }} {{ false * 3 }} {{ true + true }} {{ 2 ** 0.5 }} {{ 4 ** 0.5 }}")
    T("math_unary", "{{ -i }} {{ +i }} {{ -x }} {{ - -3 }} {{ -true }} {{ not 0 }} {{ not 'x' }}")
    T("math_str_concat", "{{ 'a' + 'b' }} {{ 'ab' * 3 }} {{ 3 * 'x' }} {{ 'x' * 0 }} {{ 'x' * -1 }} {{ [1] * 3 }} {{ [1, 2] + [3] }} {{ (1,) + (2,) }}")
    T("math_tilde", "{{ 1 ~ 2 ~ 'a' ~ none ~ true ~ 1.5 ~ [1] ~ nothing }}")
    T("math_tilde_precedence", "{{ 1 + 2 ~ 3 * 2 }}")
    T("math_pow_neg", "{{ 2 ** -2 }} {{ (-8) ** 2 }} {{ 0 ** 0 }}")
    T("math_int_overflow_python_ok", "{{ 2 ** 62 }}")
    T("math_percent_format", "{{ '%s and %d' % ('a', 3) }} {{ '%05.2f' % 3.14159 }} {{ '%s' % 'one' }} {{ '100%%' % () }} {{ '%r' % 'q' }} {{ '%x|%o|%X' % (255, 8, 255) }}")
    T("math_compare_chain", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ [1, 2] < [1, 3] }} {{ (1, 2) == (1, 2) }} {{ [1] == (1,) }} {{ none == none }} {{ 1 != 2 }}")
    T("math_compare_unicode", "{{ 'é' > 'z' }} {{ '日' > 'é' }} {{ 'a' <= 'a' }} {{ 'abc' >= 'ab' }}")
    T("math_eq_cross", "{{ 1 == true }} {{ 0 == false }} {{ 1.0 == true }} {{ '1' == 1 }} {{ [] == [] }} {{ {'a': 1} == {'a': 1.0} }} {{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }}")
    T("math_in", "{{ 'a' in 'cat' }} {{ '' in 'x' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 1.0 in [1] }} {{ 'x' in nothing }} {{ 'role' in msgs[0] }}")
    T("math_and_or_values", "{{ 0 or 'x' }} {{ 'a' or 'b' }} {{ [] and 1 }} {{ 1 and 2 }} {{ none or none }} {{ '' or [] }} {{ nothing or 'dflt' }}")
    T("math_short_circuit", "{{ false and nothing.attr }} {{ true or nothing.attr }} {{ 'ok' if true else nothing.x }}")
    T("math_condexpr", "{{ 'y' if 1 else 'n' }} {{ 'y' if 0 else 'n' }} [{{ 'y' if 0 }}] {{ 'a' if false else 'b' if true else 'c' }}")
    T("math_not_precedence", "{{ not 1 == 2 }} {{ not 'a' in 'abc' }} {{ (not 1) == 2 }} {{ not not 3 }}")
    T("math_neg_filter_precedence", "{{ -3 | abs }} {{ (-3) | abs }} {{ -x | abs }}")
    T("math_big_float_print", "{{ 1e22 }} {{ 1.7976931348623157e308 }} {{ 5e-324 }} {{ 123456789012345678 * 1.0 }}")
    # ---------------------------------------------------------------- attribute / item access
    T("access_attr_item", "{{ a.a.b[1].c }} {{ a['a']['b'][0] }} {{ a.a.b.1.c }} {{ msgs.0.role }} {{ msgs[-1].content }} {{ msgs[-1]['role'] }}")
    T("access_dict_method_vs_key", "{{ d.items is defined }} {{ d['items'] }} {{ d.values is defined }} {{ d.get('items') }} {{ d.keys() | list }}", {"d": {"items": "KEY", "values": 1, "x": 2}})
    T("access_missing", "[{{ a.nope }}] [{{ a['nope'] }}] [{{ lst[5] }}] [{{ lst[-9] }}] [{{ s[100] }}] [{{ n.x }}] [{{ i.x }}]")
    T("access_string_index", "{{ s[0] }} {{ s[1] }} {{ s[-1] }} {{ s.0 }} {{ 'abc'[1] }} {{ s[true] }}")
    T("access_negative_index", "{{ lst[-1] }} {{ lst[-3] }} {{ msgs[-2].role }}")
    T("access_int_key_dict", "[{{ d[1] }}] [{{ d['1'] }}] [{{ d.1 }}]", {"d": {"1": "string one"}})
    T("access_list_method_item", "{{ lst['count'](3) }} {{ lst.index(2) }} {{ lst.count(9) }}")
    T("access_float_index", "[{{ lst[1.0] }}]")
    T("access_tuple_key", "{{ d[(1, 2)] if d is mapping }}|{{ {(1, 2): 'tup'}[(1, 2)] }}", {"d": {}})
    T("access_unsafe_attr_print", "[{{ lst.append }}] [{{ a.pop }}] [{{ a.update is defined }}]")
    T("access_dunder", "[{{ a.__class__ }}] [{{ ''.__class__ }}]")
    T("access_namespace_item", "{% set ns = namespace(k=1) %}{{ ns.k }} {{ ns['k'] }} [{{ ns.missing }}]")
    # ---------------------------------------------------------------- slicing
    T("slice_list", "{{ lst[1:] }} {{ lst[:2] }} {{ lst[::-1] }} {{ lst[::2] }} {{ lst[-2:] }} {{ lst[5:] }} {{ lst[1:1] }} {{ lst[:] }}")
    T("slice_str", "{{ s[1:4] }} {{ s[::-1] }} {{ s[-5:] }} {{ s[::3] }} {{ s[2::-1] }} {{ s[:-6] }} {{ 'abc'[::-2] }}")
    T("slice_neg_step_bounds", "{{ lst[10:0:-1] }} {{ lst[-10:10] }} {{ lst[0:10:-1] }} {{ 'hello'[4:1:-2] }}")
    T("slice_emoji", "{{ e[1:3] }} {{ e[::-1] }} {{ e|length }} {{ e[-1] }}", {"e": "a🙂b日c"})
    T("slice_tuple", "{{ (1, 2, 3)[1:] }} {{ (1, 2, 3)[::-1] }}")
    T("slice_messages_reverse", "{% for m in msgs[::-1] %}{{ loop.index0 }}={{ m.role }} {% endfor %}")
    T("slice_with_vars", "{% set k = 2 %}{{ lst[k - 1:k + 1] }} {{ s[:k] }}")
    T("slice_none_bounds", "{{ lst[none:none] }} {{ lst[none:2] }}")
    # ---------------------------------------------------------------- tests
    T("test_types", "{% for v in [none, true, 1, 1.5, 'x', [1], {'a': 1}, nothing] %}{{ v is none }}{{ v is boolean }}{{ v is integer }}{{ v is float }}{{ v is number }}{{ v is string }}{{ v is mapping }}{{ v is iterable }}{{ v is sequence }}{{ v is defined }}{{ v is callable }}|{% endfor %}")
    T("test_defined_undefined", "{{ a is defined }} {{ zz is defined }} {{ zz is undefined }} {{ a.b is defined }} {{ a.a is defined }} {{ none is defined }}")
    T("test_true_false", "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ true is false }}")
    T("test_odd_even_div", "{{ 3 is odd }} {{ 4 is even }} {{ -3 is odd }} {{ 9 is divisibleby 3 }} {{ 10 is divisibleby(4) }} {{ 2.0 is even }} {{ 0 is even }}")
    T("test_compare_tests", "{{ 3 is eq 3 }} {{ 3 is ne 3 }} {{ 3 is gt 2 }} {{ 3 is ge 3 }} {{ 3 is lt 2 }} {{ 3 is le 3 }} {{ 3 is == 3 }} {{ 'a' is in 'abc' }} {{ 2 is in [1, 2] }} {{ 3 is equalto 3 }} {{ 3 is greaterthan 1 }} {{ 3 is lessthan 1 }}")
    T("test_lower_upper", "{{ 'abc' is lower }} {{ 'aBc' is lower }} {{ 'ABC' is upper }} {{ '123' is upper }} {{ 'É' is upper }}")
    T("test_sameas", "{{ none is sameas none }} {{ true is sameas true }} {{ 1 is sameas true }} {{ a is sameas a }}")
    T("test_is_not", "{{ 1 is not none }} {{ none is not none }} {{ 'x' is not string }} {{ x is not number }}")
    T("test_filter_test_names", "{{ 'upper' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }} {{ 'tojson' is filter }}")
    T("test_escaped", "{{ 'x' is escaped }}")
    T("test_in_precedence", "{{ 'a' ~ 'b' is string }} {{ 1 + 1 is number }} {{ not 1 is none }}")
    T("test_namespace_types", "{% set ns = namespace() %}{{ ns is mapping }} {{ ns is iterable }} {{ ns is defined }}")
    T("test_loop_callable", "{% for i in [1] %}{{ loop is callable }} {{ loop is iterable }}{% endfor %}")
    # ---------------------------------------------------------------- if / for / loop
    T("if_elif_else", "{% for v in [0, 1, 2, 3] %}{% if v == 0 %}zero{% elif v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %} {% endfor %}")
    T("if_truthiness", "{% for v in [0, 1, '', 'a', [], [0], {}, {'a': 0}, none, 0.0, 0.1, nothing] %}{{ 'T' if v else 'F' }}{% endfor %}")
    T("for_loop_vars", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.depth }}{{ loop.depth0 }}|{% endfor %}")
    T("for_prev_next", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}]{% endfor %}")
    T("for_prev_next_defined", "{% for x in [1, 2] %}{{ loop.previtem is defined }}{{ loop.nextitem is defined }} {% endfor %}")
    T("for_cycle", "{% for x in range(5) %}{{ loop.cycle('odd', 'even', 'third') }} {% endfor %}")
    T("for_changed", "{% for x in [1, 1, 2, 2, 1] %}{{ loop.changed(x) }} {% endfor %}")
    T("for_else", "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in [1] %}x{% else %}empty{% endfor %} {% for x in nothing %}x{% else %}undef{% endfor %}")
    T("for_filter", "{% for x in range(10) if x is odd %}{{ x }}{{ '' if loop.last else ',' }}{% endfor %} {% for x in range(10) if x > 6 %}{{ loop.index }}/{{ loop.length }} {% endfor %}")
    T("for_filter_else", "{% for x in [1, 2] if x > 5 %}{{ x }}{% else %}none matched{% endfor %}")
    T("for_dict", "{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %} {% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}")
    T("for_dict_items_filter", "{% for k, v in a | items %}{{ k }}:{{ v }}{% endfor %}")
    T("for_string", "{% for ch in 'héy🙂' %}[{{ ch }}]{% endfor %}")
    T("for_unpack_lists", "{% for a, b in [[1, 2], (3, 4), 'xy'] %}{{ a }}-{{ b }} {% endfor %}")
    T("for_unpack_nested", "{% for (a, b), c in [((1, 2), 3)] %}{{ a }}{{ b }}{{ c }}{% endfor %}")
    T("for_nested_loop_outer", "{% for i in [1, 2] %}{% set outer = loop %}{% for j in [1, 2] %}{{ outer.index }}.{{ loop.index }} {% endfor %}{% endfor %}")
    T("for_break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}")
    T("for_break_nested", "{% for i in range(3) %}{% for j in range(3) %}{% if j == 1 %}{% break %}{% endif %}{{ i }}{{ j }} {% endfor %}{% endfor %}")
    T("for_break_in_else_if", "{% for i in range(5) %}{% if i > 1 %}{% break %}{% else %}{{ i }}{% endif %}{% endfor %}")
    T("for_loop_after_loop", "{% for i in [1] %}{% endfor %}[{{ i }}][{{ loop }}]")
    T("for_recursive", "{% for item in tree recursive %}<{{ item.name }}{% if item.children %}:{{ loop(item.children) }}{% endif %}>{% endfor %}",
      {"tree": [{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}, {"name": "d"}]}, {"name": "e"}]})
    T("for_recursive_depth", "{% for item in tree recursive %}{{ loop.depth }}{{ item.name }}{% if item.children %}({{ loop(item.children) }}){% endif %}{% endfor %}",
      {"tree": [{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}]})
    T("for_over_range_args", "{{ range(3) | list }} {{ range(2, 5) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }} {{ range(5, 1) | list }}")
    T("for_loop_length_in_filtered_nested", "{% for m in msgs if m.role == 'user' %}{{ loop.index }}/{{ loop.length }}:{{ m.content }} {% endfor %}")
    T("for_over_none_content_guard", "{% for m in msgs %}{{ m.content if m.content is string else '' }}{% endfor %}")
    T("for_index_messages_prev", "{% for m in msgs %}{% if not loop.first %}{{ msgs[loop.index0 - 1].role }}>{% endif %}{{ m.role }} {% endfor %}")
    # ---------------------------------------------------------------- scoping
    T("scope_set_in_for_no_leak", "{% set x = 0 %}{% for i in [1, 2] %}[{{ x }}]{% set x = i %}[{{ x }}]{% endfor %}[{{ x }}]")
    T("scope_set_in_for_first_iter_undefined", "{% for i in [1, 2] %}{% if i == 2 %}[{{ y }}]{% endif %}{% set y = i %}{% endfor %}[{{ y }}]")
    T("scope_set_in_if_leaks", "{% if true %}{% set x = 3 %}{% endif %}{{ x }}")
    T("scope_if_inside_for", "{% set x = 0 %}{% for i in [1, 2] %}{% if i == 2 %}{% set x = 5 %}{% endif %}[{{ x }}]{% endfor %}[{{ x }}]")
    T("scope_namespace_persists", "{% set ns = namespace(total=0, items=[]) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.total }} {{ ns.items }}")
    T("scope_namespace_new_attr", "{% set ns = namespace() %}{% set ns.x = 'new' %}{{ ns.x }}")
    T("scope_namespace_from_dict", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}")
    T("scope_namespace_in_macro", "{% set ns = namespace(c=0) %}{% macro inc() %}{% set ns.c = ns.c + 1 %}{% endmacro %}{{ inc() }}{{ inc() }}{{ ns.c }}")
    T("scope_macro_sees_globals_late", "{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}")
    T("scope_macro_not_caller_locals", "{% macro m() %}[{{ i }}]{% endmacro %}{% for i in [1, 2] %}{{ m() }}{% endfor %}")
    T("scope_macro_in_loop_closure", "{% for i in [1, 2] %}{% macro m() %}{{ i }}{{ y }}{% endmacro %}{% set y = 7 %}{{ m() }}{% endfor %}")
    T("scope_macro_from_loop_no_leak", "{% for i in [1, 2] %}{% macro m() %}{{ i }}{% endmacro %}{% set f = m %}{% endfor %}[{{ f() if f is defined }}]")
    T("scope_macro_param_shadows", "{% set content = 'outer' %}{% macro m(content) %}{{ content }}{% endmacro %}{{ m('inner') }} {{ content }}")
    T("scope_macro_set_no_leak", "{% macro m() %}{% set z = 1 %}{{ z }}{% endmacro %}{{ m() }}[{{ z }}]")
    T("scope_loop_var_rebind", "{% for tc in [{'function': {'name': 'f'}}, {'name': 'g'}] %}{% if tc.function %}{% set tc = tc.function %}{% endif %}{{ tc.name }}{% endfor %}")
    T("scope_set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set c, d = [3, 4] %}{{ c }}{{ d }}")
    T("scope_with", "{% set x = 1 %}{% with x = 2, y = x + 10 %}{{ x }} {{ y }}{% set x = 3 %}{{ x }}{% endwith %} {{ x }}")
    T("scope_set_block", "{% set x %}a{{ 1 + 1 }}b{% endset %}{{ x }} {{ x | length }}")
    T("scope_set_block_filter", "{% set x | upper | replace('A', '4') %}abc{% endset %}{{ x }}")
    T("scope_set_block_in_loop", "{% for i in [1, 2] %}{% set blk %}<{{ i }}>{% endset %}{{ blk }}{% endfor %}[{{ blk }}]")
    T("scope_context_shadow", "{{ lst }}{% set lst = 'local' %}{{ lst }}")
    T("scope_set_in_loop_shadow_ctx", "{% for i in [1] %}{% set i = 'x' %}{{ i }}{% endfor %}")
    T("scope_range_shadowed", "{{ range }}", {"range": "ctx wins"})
    T("scope_loop_var_named_loop", "{% for loop in [1, 2] %}{{ loop }}{% endfor %}")
    # ---------------------------------------------------------------- macros
    T("macro_defaults", "{% macro m(a, b=2, c='x') %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 3) }} {{ m(1, c='z') }} {{ m(a=5, b=6) }}")
    T("macro_default_refs_param", "{% macro m(a, b=a * 2) %}{{ a }}/{{ b }}{% endmacro %}{{ m(3) }}")
    T("macro_missing_arg", "{% macro m(a, b) %}[{{ a }}][{{ b }}]{% endmacro %}{{ m(1) }}")
    T("macro_varargs_kwargs", "{% macro m(a) %}{{ a }} {{ varargs }} {{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }} {{ m(0) }}")
    T("macro_returns_string_methods", "{% macro m(x) %}  {{ x }}  {% endmacro %}[{{ m('v').strip() }}] {{ m('ab').endswith('  ') }} {{ m('q') | length }}")
    T("macro_recursion", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}{{ fact(10) }}")
    T("macro_recursive_schema", "{% macro render(s, ind) %}{% for k, v in s.items() %}{{ ind }}{{ k }}{% if v is mapping %}:\n{{ render(v, ind ~ '  ') }}{% else %}={{ v }}\n{% endif %}{% endfor %}{% endmacro %}{{ render(schema, '') }}",
      {"schema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"items": {"type": "int"}}}}})
    T("macro_call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ 1 + 1 }}{% endcall %}")
    T("macro_call_block_args", "{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}[{{ x }}]{% endcall %}")
    T("macro_as_value", "{% macro m() %}M{% endmacro %}{% set f = m %}{{ f() }} {{ m is callable }}")
    T("macro_kwargs_only_call", "{% macro m(a='A', b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m(b='x') }}")
    T("macro_defined_in_if", "{% if true %}{% macro m() %}in-if{% endmacro %}{% endif %}{{ m() }}")
    T("macro_undefined_when_if_false", "{% if false %}{% macro m() %}x{% endmacro %}{% endif %}[{{ m is defined }}]")
    T("macro_caller_name", "{% macro m() %}{{ caller is defined }}{% endmacro %}{{ m() }}")
    # ---------------------------------------------------------------- filters
    T("filter_tojson_basic", "{{ a | tojson }} {{ users | tojson }} {{ 'x' | tojson }} {{ none | tojson }} {{ 1.0 | tojson }} {{ true | tojson }}")
    T("filter_tojson_unicode", "{{ s | tojson }} {{ s | tojson(ensure_ascii=True) }} {{ e | tojson(ensure_ascii=true) }}", {"s": "héllo 日本 🙂 \"q\" \\ \n\t\u0001\u007f\u2028", "e": "🙂"})
    T("filter_tojson_indent", "{{ a | tojson(indent=2) }}\n{{ users[0] | tojson(indent=0) }}\n{{ [] | tojson(indent=4) }}{{ {} | tojson(indent=1) }}\n{{ [1, [2]] | tojson(indent='\\t') }}")
    T("filter_tojson_separators", "{{ a | tojson(separators=(',', ':')) }} {{ users[0] | tojson(separators=(', ', ' = ')) }}")
    T("filter_tojson_sort_keys", "{{ {'b': 1, 'a': {'d': 1, 'c': 2}} | tojson(sort_keys=true) }}")
    T("filter_tojson_floats", "{{ [1.0, 0.1, 1e-7, 1e16, 1e300, 2.5, -0.0, 100.0, 123456.789] | tojson }}")
    T("filter_tojson_int_keys", "{{ {1: 'a', 2.5: 'b', true: 'c', none: 'd'} | tojson }}")
    T("filter_tojson_tuple", "{{ (1, 'a', (2,)) | tojson }}")
    T("filter_tojson_positional", "{{ {'a': 'é'} | tojson(true) }} {{ [1] | tojson(false, 2) }}")
    T("filter_trim", "[{{ '  a b  ' | trim }}] [{{ 'xxaxx' | trim('x') }}] [{{ '\\n\\t a \\u3000' | trim }}] [{{ n | trim }}] [{{ 12 | trim }}] [{{ 'abcba' | trim('ab') }}]")
    T("filter_length_count", "{{ s | length }} {{ lst | length }} {{ a | count }} {{ '' | length }} {{ nothing | length }} {{ 'é🙂' | length }}")
    T("filter_first_last", "{{ lst | first }} {{ lst | last }} {{ s | first }} {{ s | last }} [{{ [] | first }}] {{ {'k': 1, 'z': 2} | first }} {{ {'k': 1, 'z': 2} | last }}")
    T("filter_join", "{{ lst | join }} {{ lst | join(', ') }} {{ users | join('|', attribute='name') }} {{ 'abc' | join('-') }} {{ [1, none, 'x'] | join(' ') }} {{ [] | join(',') }}")
    T("filter_default", "{{ nothing | default('d') }} {{ nothing | d('d2') }} [{{ nothing | default }}] {{ '' | default('e') }} {{ '' | default('e', true) }} {{ none | default('n') }} {{ 0 | d('z', boolean=true) }} {{ a.zz | default('attr') }}")
    T("filter_case", "{{ 'hELLo wOrld' | upper }} {{ 'HeLLo' | lower }} {{ 'hELLO world' | capitalize }} {{ \"hello-world o'neil (x) [y] {z} <w>\" | title }} {{ 'éCOLE ÿ' | upper }} {{ 'ÉCOLE' | lower }}")
    T("filter_replace", "{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'abc' | replace('', '-') }} {{ 'x_url' | replace('_url', '') | replace('input_', '') }} {{ 123 | replace('2', 'two') }}")
    T("filter_list", "{{ 'abc' | list }} {{ {'a': 1, 'b': 2} | list }} {{ (1, 2) | list }} {{ lst | list }} {{ nothing | list }}")
    T("filter_string", "{{ 1 | string }} {{ none | string }} {{ [1, 'a'] | string }} {{ (1 | string) ~ 'x' }}")
    T("filter_int_float", "{{ '42' | int }} {{ ' 42 ' | int }} {{ '3.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ -3.9 | int }} {{ true | int }} {{ none | int }} {{ '0x1A' | int(base=16) }} {{ '1_000' | int }} {{ '1e3' | int }}")
    T("filter_float", "{{ '1.5' | float }} {{ 'x' | float }} {{ 3 | float }} {{ ' 2e3 ' | float }} {{ 'inf' | float }} {{ 'x' | float(1.5) }} {{ none | float }}")
    T("filter_abs_round", "{{ -3 | abs }} {{ -2.5 | abs }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 1.23456 | round(3) }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ 5 | round }} {{ -2.5 | round }} {{ 1234.5 | round(-2) }}")
    T("filter_items", "{{ {'a': 1, 'b': [2]} | items | list }} {{ nothing | items | list }}")
    T("filter_dictsort", "{{ {'b': 1, 'A': 3, 'a': 2} | dictsort }} {{ {'b': 1, 'a': 2} | dictsort(by='value') }} {{ {'b': 1, 'A': 3, 'a': 2} | dictsort(true) }} {{ {'b': 1, 'a': 2} | dictsort(reverse=true) }}")
    T("filter_sort", "{{ lst | sort }} {{ lst | sort(reverse=true) }} {{ words | sort }} {{ words | sort(case_sensitive=true) }} {{ users | sort(attribute='age') | map(attribute='name') | list }} {{ users | sort(attribute='name') | map(attribute='name') | join(',') }}")
    T("filter_sort_stable", "{{ [{'k': 1, 'v': 'a'}, {'k': 0, 'v': 'b'}, {'k': 1, 'v': 'c'}, {'k': 0, 'v': 'd'}] | sort(attribute='k') | map(attribute='v') | join }} {{ [{'k': 1, 'v': 'a'}, {'k': 0, 'v': 'b'}, {'k': 1, 'v': 'c'}] | sort(attribute='k', reverse=true) | map(attribute='v') | join }}")
    T("filter_sort_multi_attr", "{{ users | sort(attribute='admin,age') | map(attribute='name') | join(' ') }}", {"users": [{"name": "a", "admin": 1, "age": 3}, {"name": "b", "admin": 0, "age": 9}, {"name": "c", "admin": 1, "age": 1}]})
    T("filter_unique", "{{ ['a', 'A', 'b', 'a'] | unique | list }} {{ ['a', 'A', 'b'] | unique(case_sensitive=true) | list }} {{ [1, 1.0, 2, true] | unique | list }} {{ users | unique(attribute='admin') | map(attribute='name') | list }}")
    T("filter_reverse", "{{ 'abc' | reverse }} {{ lst | reverse | list }} {{ 'é🙂x' | reverse }}")
    T("filter_min_max_sum", "{{ lst | min }} {{ lst | max }} {{ words | min }} {{ words | max }} {{ words | max(case_sensitive=true) }} {{ users | max(attribute='age') }} {{ lst | sum }} {{ users | sum(attribute='age') }} {{ [1.5, 2] | sum }} {{ [[1], [2]] | sum(start=[]) }} [{{ [] | max }}]")
    T("filter_map", "{{ users | map(attribute='name') | list }} {{ ['a', 'b'] | map('upper') | list }} {{ users | map(attribute='missing', default='-') | list }} {{ ['  x '] | map('trim') | list }} {{ [1.5, 2.5] | map('round') | list }} {{ ['a,b'] | map('replace', ',', ';') | list }}")
    T("filter_select_reject", "{{ range(10) | select('odd') | list }} {{ range(10) | reject('odd') | list }} {{ [0, 1, '', 'a', none] | select | list }} {{ range(10) | select('divisibleby', 3) | list }} {{ [1, 5, 9] | select('gt', 4) | list }} {{ ['a', 1, none] | reject('string') | list }}")
    T("filter_selectattr", "{{ users | selectattr('admin') | map(attribute='name') | list }} {{ users | rejectattr('admin') | map(attribute='name') | list }} {{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ users | selectattr('admin', 'defined') | list | length }} {{ msgs | selectattr('role', '==', 'assistant') | list | length }}")
    T("filter_attr", "{{ ns | attr('x') }} [{{ a | attr('a') }}] {{ (a | attr('items'))() | length }}")
    T("filter_batch", "{{ range(7) | batch(3) | list }} {{ range(5) | batch(2, 'x') | list }}")
    T("filter_center_indent", "[{{ 'ab' | center(6) }}] [{{ 'abc' | center(6) }}]\n{{ 'a\\nb\\n\\nc' | indent }}\n{{ 'a\\nb' | indent(2, true) }}\n{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}\n{{ 'x\\r\\ny' | indent(1) }}")
    T("filter_escape_safe", "{{ '<a href=\"x\">&\\'</a>' | e }} {{ '<b>' | escape }} {{ '<i>' | safe }} {{ 5 | safe }}")
    T("filter_format", "{{ '%s-%s' | format('a', 1) }} {{ '%.2f' | format(3.14159) }} {{ '%d%%' | format(50) }}")
    T("filter_truncate", "{{ 'hello world foo bar' | truncate(9) }}|{{ 'hello world' | truncate(9, true) }}|{{ 'hello' | truncate(9) }}|{{ 'hello world foo' | truncate(10, end='…') }}|{{ 'abcdefghij klm' | truncate(8, leeway=0) }}")
    T("filter_wordcount", "{{ 'hello world, foo_bar 42 é日本' | wordcount }} {{ '' | wordcount }}")
    T("filter_chained", "{{ '  A,b ,C ' | trim | lower | replace(' ', '') | truncate(20) }} {{ msgs | map(attribute='role') | unique | list | join('+') | upper }}")
    T("filter_on_macro_output", "{% macro m() %} Abc {% endmacro %}{{ m() | trim | lower }}")
    T("filter_capitalize_unicode", "{{ 'élan VITAL' | capitalize }} {{ 'ǆemal' | capitalize }} {{ 'max' | capitalize }}")
    T("filter_in_unknown_branch", "{% if false %}{{ x | nosuchfilter }}{% endif %}ok {{ 'y' if true else (x | nosuch2) }}")
    # ---------------------------------------------------------------- string methods
    T("str_strip", "[{{ '  a  '.strip() }}] [{{ 'xxaxx'.strip('x') }}] [{{ '\\n\\na\\n'.rstrip('\\n') }}] [{{ '\\n\\na\\n'.lstrip('\\n') }}] [{{ ' a '.lstrip() }}] [{{ ' a '.rstrip() }}] [{{ '\\u00a0\\u2003a\\u200b'.strip() }}] [{{ 'abcab'.strip('ba') }}] [{{ 'x'.strip(none) }}]")
    T("str_split", "{{ 'a,b,,c'.split(',') }} {{ '  a  b \\t c\\n'.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split(',') }} {{ ''.split() }} {{ 'abc'.split('x') }} {{ 'a<sep>b<sep>'.split('<sep>') }} {{ '  a b  c '.rsplit(none, 1) }} {{ ' a b c '.split(none, 1) }}")
    T("str_split_think", "{% set c = 'pre<think>R</think>post' %}{{ c.split('</think>')[0].split('<think>')[-1] }}|{{ c.split('</think>')[-1] }}")
    T("str_splitlines", "{{ 'a\\nb\\r\\nc\\rd'.splitlines() }} {{ 'a\\n\\nb\\n'.splitlines() }} {{ 'x\\ny'.splitlines(true) }} {{ 'a\\u2028b\\x0cc'.splitlines() }}")
    T("str_starts_ends", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith(('x', 'y')) }} {{ 'héllo'.startswith('hé') }} {{ ''.startswith('') }} {{ 'hello'.startswith('l', 2) }} {{ 'hello'.endswith('ell', 0, 4) }}")
    T("str_case_methods", "{{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'hELLO'.capitalize() }} {{ 'AbC'.swapcase() }} {{ 'ÀÉ'.lower() }} {{ 'àé'.upper() }} {{ 'x1y'.title() }}")
    T("str_replace_find", "{{ 'aaa'.replace('a', 'bb') }} {{ 'aaa'.replace('a', 'b', 1) }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'héllo'.find('l') }} {{ 'hello'.count('l') }} {{ 'hello'.index('e') }} {{ 'abc'.find('') }} {{ 'abc'.rfind('') }} {{ 'aaaa'.count('aa') }} {{ 'abc'.count('') }}")
    T("str_join_method", "{{ ', '.join(['a', 'b']) }} {{ ''.join('abc') }} {{ '-'.join(words) }}")
    T("str_preds", "{{ '123'.isdigit() }} {{ '12a'.isdigit() }} {{ 'abc'.isalpha() }} {{ 'ab1'.isalnum() }} {{ '  '.isspace() }} {{ ''.isspace() }} {{ 'abc'.islower() }} {{ 'ABC'.isupper() }} {{ 'Hello World'.istitle() }} {{ 'é'.isalpha() }}")
    T("str_pad", "[{{ 'ab'.center(7, '*') }}] [{{ 'ab'.ljust(5) }}] [{{ 'ab'.rjust(5, '0') }}] [{{ '42'.zfill(5) }}] [{{ '-42'.zfill(6) }}] [{{ 'é'.center(4, '·') }}]")
    T("str_partition", "{{ 'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }} {{ 'abc'.partition('x') }} {{ 'abc'.rpartition('x') }}")
    T("str_remove_affix", "{{ 'prefix-body'.removeprefix('prefix-') }} {{ 'body.txt'.removesuffix('.txt') }} {{ 'abc'.removeprefix('x') }}")
    T("str_format_method", "{{ '{} and {}'.format('a', 'b') }} {{ '{1}{0}'.format('x', 'y') }} {{ '{name}!'.format(name='hi') }} {{ '{{literal}} {}'.format(1) }}")
    T("str_methods_on_context", "{{ m.content.upper() }} {{ msgs[0].content.startswith('h') }} {{ (msgs | last).content.split('y') }}", {"m": {"content": "yes"}, "msgs": [{"content": "hi"}, {"content": "bye"}]})
    T("str_method_chain", "{{ '  <think>x</think>answer '.strip().split('</think>')[-1].upper() }}")
    # ---------------------------------------------------------------- dict / list methods
    T("dict_methods", "{{ a.get('i') }} {{ a.get('zz') }} {{ a.get('zz', 'dflt') }} {{ a.keys() | list }} {{ d.values() | list }} {{ d.items() | list }} {{ d.items() }}", {"a": {"i": 1}, "d": {"x": 1, "y": [2]}})
    T("dict_get_none_value", "{{ d.get('k') }} {{ d.get('k', 'x') }}", {"d": {"k": None}})
    T("dict_iteration_order", "{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}", {"d": {"z": 1, "a": 2, "m": 3, "b": 4, "y": 5, "c": 6, "x": 7, "d": 8, "w": 9, "e": 10}})
    T("dict_literal_methods", "{{ {'a': 1}.items() | list }} {{ dict(a=1, b=2) }} {{ dict({'x': 1}, y=2) }} {{ dict([('p', 1)]) }}")
    T("list_methods", "{{ [1, 2, 2].count(2) }} {{ ['a', 'b'].index('b') }} {{ lst.copy() }}")
    T("dict_big", "{% set ns = namespace(d={}) %}{% for i in range(40) %}{% set ns.d = dict(ns.d, **{'k' ~ i: i}) %}{% endfor %}{{ ns.d | length }} {{ ns.d.k17 }} {{ ns.d['k39'] }} {{ 'k5' in ns.d }} {{ 'k99' in ns.d }}")
    # ---------------------------------------------------------------- globals
    T("global_range", "{{ range(4) | list }} {% for i in range(1, 10, 4) %}{{ i }}{% endfor %} {{ range(3) | length }} {{ range(5)[1] }} {{ range(5)[-1] }}")
    T("global_raise_not_taken", "{% if false %}{{ raise_exception('never') }}{% endif %}fine")
    T("global_strftime", "{{ strftime_now('%Y-%m-%d') }} {{ strftime_now('%d %b %Y') }} {{ strftime_now('%H:%M') }}")
    T("global_namespace_dict_arg", "{% set ns = namespace(dict(a=1)) %}{{ ns.a }}")
    T("global_undefined_call_guard", "{{ foo() if foo is defined else 'no foo' }}")
    # ---------------------------------------------------------------- generation tag (transformers)
    # (transformers' AssistantTracker extension; not enabled in the doc's env, so an error in Python)
    # ---------------------------------------------------------------- errors (Python raises)
    T("err_raise_exception", "{{ raise_exception('Bad role: ' ~ 'x') }}")
    T("err_raise_in_loop", "{% for m in msgs %}{% if m.role == 'assistant' %}{{ raise_exception('assistant not allowed at ' ~ loop.index0) }}{% endif %}{{ m.role }}{% endfor %}")
    T("err_raise_unicode", "{{ raise_exception('Unsupported: é 日本 🙂') }}")
    T("err_undefined_attr_of_undefined", "{{ nothing.attr }}")
    T("err_undefined_call_method", "{{ nothing.items() }}")
    T("err_undefined_add", "{{ nothing + 1 }}")
    T("err_undefined_compare", "{{ nothing < 1 }}")
    T("err_undefined_iter_items", "{% for k, v in a.missing.items() %}{% endfor %}")
    T("err_undefined_index", "{{ nothing[0] }}")
    T("err_undefined_neg", "{{ -nothing }}")
    T("err_undefined_tojson", "{{ nothing | tojson }}")
    T("err_undefined_call", "{{ nothing() }}")
    T("err_string_items", "{% for k, v in args.items() %}{% endfor %}", {"args": "{\"a\": 1}"})
    T("err_type_add", "{{ 'a' + 1 }}")
    T("err_type_add_int_str", "{{ 1 + 'a' }}")
    T("err_type_compare", "{{ 'a' < 1 }}")
    T("err_type_in_str", "{{ 1 in 'abc' }}")
    T("err_type_in_none", "{{ 1 in none }}")
    T("err_type_iterate_int", "{% for x in 5 %}{% endfor %}")
    T("err_type_iterate_none", "{% for x in none %}{% endfor %}")
    T("err_type_call_str", "{{ 'abc'() }}")
    T("err_type_neg_str", "{{ -'a' }}")
    T("err_type_length_int", "{{ 5 | length }}")
    T("err_type_tojson_namespace", "{% set ns = namespace() %}{{ ns | tojson }}")
    T("err_type_join_method_ints", "{{ ','.join([1, 2]) }}")
    T("err_zero_div", "{{ 1 / 0 }}")
    T("err_zero_floordiv", "{{ 1 // 0 }}")
    T("err_zero_mod", "{{ 5 % 0 }}")
    T("err_unpack_count", "{% for a, b in [[1, 2, 3]] %}{% endfor %}")
    T("err_unpack_set", "{% set a, b = [1] %}")
    T("err_security_append", "{{ lst.append(4) }}")
    T("err_security_dict_update", "{{ a.update({'x': 1}) }}")
    T("err_security_pop", "{% set x = lst.pop() %}")
    T("err_ns_assign_non_namespace", "{% set d = {} %}{% set d.x = 1 %}")
    T("err_macro_too_many_args", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}")
    T("err_macro_unknown_kwarg", "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}")
    T("err_range_too_big", "{{ range(1000000) | length }}")
    T("err_range_step_zero", "{{ range(1, 5, 0) | list }}")
    T("err_slice_step_zero", "{{ [1, 2][::0] }}")
    T("err_split_empty_sep", "{{ 'abc'.split('') }}")
    T("err_str_index_not_found", "{{ 'abc'.index('z') }}")
    T("err_loop_not_recursive", "{% for x in [1] %}{{ loop([1]) }}{% endfor %}")
    T("err_cycle_no_args", "{% for x in [1] %}{{ loop.cycle() }}{% endfor %}")
    T("err_unhashable_dict_key", "{{ {[1]: 2} }}")
    T("err_dict_get_unhashable", "{{ a.get([1]) }}")
    T("err_int_filter_inf", "{{ 'inf' | int }}")
    T("err_sum_strings", "{{ ['a', 'b'] | sum(start='') }}")
    T("err_items_not_mapping", "{% for k, v in [1, 2] | items %}{% endfor %}")
    # syntax errors (compile time)
    T("syn_unclosed_if", "{% if true %}open")
    T("syn_unclosed_for", "line1\n{% for x in y %}\nbody")
    T("syn_unknown_tag", "a\n\n  {% frobnicate %}")
    T("syn_bad_expression", "{{ 1 + }}")
    T("syn_unclosed_var", "{{ x ")
    T("syn_unbalanced_paren", "{{ (1 + 2 }}")
    T("syn_unexpected_close", "{{ 1 ) }}")
    T("syn_unclosed_string", "{{ 'abc }}")
    T("syn_unclosed_comment", "a {# never closed")
    T("syn_bad_char", "{{ 1 $ 2 }}")
    T("syn_endif_without_if", "{% endif %}")
    T("syn_else_twice", "{% if a %}{% else %}{% else %}{% endif %}")
    T("syn_assign_to_const", "{% set 1 = 2 %}")
    T("syn_macro_default_order", "{% macro m(a=1, b) %}{% endmacro %}")
    T("syn_unknown_filter", "{{ x | nosuchfilter }}")
    T("syn_unknown_test", "{{ x is nosuchtest }}")
    T("syn_unknown_filter_in_for", "{% if true %}{% for i in [1] %}{{ i | nosuch }}{% endfor %}{% endif %}")
    T("syn_break_outside_loop", "{% break %}")
    T("syn_chained_is", "{{ x is defined is defined }}")
    T("syn_raw_unclosed", "{% raw %} abc")
    T("syn_call_not_call", "{% call foo %}{% endcall %}")
    T("syn_empty_var", "{{ }}")
    T("syn_multiline_position", "ok\n{{ 'fine' }}\n{% if x %}\n  {{ 1 +* 2 }}\n{% endif %}")
    T("syn_do_tag_disabled", "{% do lst.append(1) %}")
    T("syn_extends", "{% extends 'base.html' %}")
    T("err_include_no_loader", "a{% include 'x.j2' ignore missing with context %}b")
    T("block_in_place", "a{% block body %}[{{ 1 + 1 }}]{% endblock body %}b{% block two scoped %}{% set q = 1 %}{% endblock %}[{{ q }}]")

    # ---------------------------------------------------------------- mixed probes (differential testing)
    ctx1 = {"d": {"a": 1, "b": [1, 2]}, "s": "héllo", "n": None, "l": [3, 1, 2], "e": [], "i": 5, "f": 1.5}
    probes = [
        "{{ nothing in 'abc' }}",
        '{{ nothing in [1] }}',
        '{{ nothing == nothing }}{{ nothing == none }}{{ nothing != 1 }}',
        '{{ true // 1 }} {{ true / 2 }} {{ true ** 2 }} {{ 5 // true }}',
        '{% set ns.x = 1 %}',
        "{{ 'abc' * 2.0 }}",
        '{{ [1, 2] * 0 }}{{ [] * 5 }}',
        '{{ (1, 2) + [3] }}',
        "{{ d.items() | length }} {{ 'a' in d.keys() }} {{ d.keys() | list }} {{ d.values() | first }}",
        '{{ d.keys()[0] }}',
        '{{ d.items() | tojson }}',
        '{{ l | sort | first }} {{ l | sort(reverse=true) | last }}',
        '{{ s.upper() }}{{ s | length }}{{ s[1] }}{{ s[-4:] }}',
        "{{ '%s' % d }} {{ '%s|%s' % (l, n) }}",
        "{{ '%(a)s' % d }}",
        "{{ 'x' ~ d }}",
        '{{ 1 if n is none }} {{ n | string | length }}',
        "{{ loop.index if loop is defined else 'noloop' }}",
        "{{ {'a': 1} | list }} {{ {'a': 1} | first }}",
        "{{ 'a b c'.split(' ', -1) }} {{ 'a  b'.split(' ') }}",
        "{{ '  x  '.strip(' x') }}| {{ 'aXbXc'.rsplit('X') }}",
        '{% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %}',
        '{{ d | dictsort | first }}',
        "{{ l | map('string') | join('-') }} {{ l | map('int') | sum }}",
        "{{ l | select('>', 1) | list }} {{ l | reject('==', 3) | list }}",
        "{{ [none, 1, '', 0] | select('none') | list }}",
        '{{ (l | max) + (l | min) }}',
        "{{ 'abc' | batch(2) | list }}",
        "{{ 'ab' | center(5) }}|{{ 'ab' | center }}|",
        '{{ f | round(1) }} {{ 2.675 | round(2) }} {{ -0.5 | round }} {{ 0.5 | round }} {{ 1.5 | round }}',
        "{{ 1e16 | int }} {{ '12abc' | int }} {{ '  -7 ' | int }} {{ '+3' | int }} {{ '0b11' | int(base=0) }} {{ '1__0' | int }}",
        "{{ 'nan' | float }} {{ '-inf' | float }} {{ '1_0.5' | float }} {{ '.5' | float }} {{ '5.' | float }}",
        "{{ s.title() }} {{ 'ß'.upper() }} {{ 'ǅ'.lower() }} {{ 'Straße'.capitalize() }}",
        "{{ s.center(11, '*') }} {{ s.ljust(7, '-') }} {{ s.zfill(8) }}",
        "{{ 'a,b'.split(',', maxsplit=0) }} {{ 'a,b'.split(sep=',') }}",
        "{{ 'Hello'.startswith(('a',)) }} {{ 'hello'.startswith(tuple(['h'])) }}",
        "{{ 'x' is lower }} {{ 'X1' is upper }} {{ '' is lower }}",
        '{{ 5 is divisibleby 0 }}',
        '{{ 3.0 is integer }} {{ 3 is float }} {{ true is number }} {{ true is integer }}',
        '{{ d is sequence }} {{ s is sequence }} {{ 5 is sequence }} {{ n is iterable }}',
        '{{ [1,2,3][1:2][0] }} {{ s[1:][1:][1] }}',
        '{{ s | reverse | reverse }}',
        "{{ d | tojson(indent=None) }} {{ d | tojson(sort_keys=True, indent=1, separators=(',', ': ')) }}",
        '{{ 1 < 2 == 2 > 1 }} {{ 1 == 1 in [True] }}',
        '{{ not true and false }} {{ not (true and false) }} {{ false or not false }}',
        "{{ 'a' 'b' ~ 'c' }}",
        '{{ 1.5 // 0.5 }} {{ 1.0 % 0.3 }} {{ -1 % 0.3 }}',
        '{{ -(2 ** 62) * 2 }}',
        '{{ 7 % 0.0 }}',
        "{{ d['a'] + d.a }} {{ d.get('b')[1] }}",
        '{% set x = [1, 2] %}{% set y = x %}{{ y is sameas x }}',
        '{% macro m() %}{{ varargs | length }}{% endmacro %}{{ m(1, 2, 3) }}',
        '{% macro m(x) %}{{ x }}{% endmacro %}{{ m(x=1) }}{{ m(1, x=2) }}',
        '{% macro m() %}{{ kwargs }}{% endmacro %}{{ m(a=1) }}',
        "{% macro m(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ m(*[1, 2]) }} {{ m(**{'a': 3, 'b': 4}) }}",
        '{% for a in [[1, [2, 3]]] %}{% for b, (c, e) in [a] %}{{ b }}{{ c }}{{ e }}{% endfor %}{% endfor %}',
        '{% set a, (b, c) = 1, (2, 3) %}{{ a }}{{ b }}{{ c }}',
        '{% for x in range(3) %}{% set y = x * 2 %}{% endfor %}[{{ y }}]',
        '{% for x in [1] %}{{ loop.changed() }}{{ loop.changed() }}{% endfor %}',
        "{% for x in 'ab' %}{{ loop.cycle(*['p','q']) }}{% endfor %}",
        '{{ caller }}',
        '{% macro m() %}{{ caller() }}{% endmacro %}{{ m() }}',
        "{% filter upper %}abc {{ 'def' }}{% endfilter %}",
        "{% filter replace('a', 'b') | upper %}aaa{% endfilter %}",
        '{% with %}{% set q = 1 %}{{ q }}{% endwith %}[{{ q }}]',
        "{{ 'a' if 'b' }} {{ 'a' if '' else 'c' if 0 else 'd' }}",
        "{{ none | default('x', true) }} {{ false | default('y') }} {{ [] | d('z', true) }}",
        "{{ d | attr('get') is callable }}",
        "{{ {'a': {'b': 1}} | tojson }}{{ {} | tojson(indent=2) }}{{ [[]] | tojson(indent=2) }}",
        "{{ 'é' | tojson(ensure_ascii=true) }} {{ '\\u007f\\u0080' | tojson(ensure_ascii=true) }}",
        '{{ 0x }}',
        '{{ 1_ }}',
        '{{ 1.e5 }}',
        '{{ .5 }}',
        '{{ 1e }}',
        "{{ 'a' '' }}{{ '\\x41\\101\\u0041' }}",
        "{{ '\\N{DASH}' }}",
        '{% raw %}{{ not parsed }}{% endraw %}{% raw -%}   x   {%- endraw %}',
        '{# a {{ b }} #}c{#- d -#}  e',
        "{%- if true -%}   {{- ' t ' -}}   {%- endif -%}",
        '  {% for i in [1,2] -%}',
        '  {{ i }}',
        '  {%- endfor %}',
        "{{ 'İstanbul'.lower() }} {{ 'aİ'.title() }} {{ 'straße'.upper() }} {{ 'ﬁx' | upper }} {{ 'ß' | capitalize }} {{ 'ßa'.title() }} {{ 'İ' | lower }} {{ 'ÄÖÜ' | lower }}",
        "{{ 'x' ~ 1.0 ~ none }}",
    ]
    for k, src in enumerate(probes):
        T(f"probe_{k:03d}", src, ctx1)
    return out
