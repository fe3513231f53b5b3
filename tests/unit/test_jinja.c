/* tests/unit/test_jinja.c: the Jinja subset, construct by construct, and every error path. */
#include "testutil.h"

#include "chat/chat.h"

#include <stdio.h>

static int64_t fixed_now(void *user) {
    (void)user;
    return 1721995200; /* 2024-07-26 12:00:00 UTC */
}

/* Renders src with vars (JSON text or NULL) under opts (NULL: transformers' settings). */
static lm_status render_opts(const char *src, const char *vars, const jinja_opts *o, lm_buf *out, lm_error *err) {
    jinja_template *t = NULL;
    lm_status st = jinja_parse(src, strlen(src), &t, err);
    if (st) return st;
    cJSON *v = NULL;
    if (vars) assert_int_equal(lm_json_parse(vars, strlen(vars), "vars", &v, err), LM_OK);
    jinja_opts d = jinja_default_opts();
    d.now = fixed_now;
    st = jinja_render(t, v, o ? o : &d, out, err);
    cJSON_Delete(v);
    jinja_free(t);
    return st;
}

#define R(src, vars, want) check(__LINE__, src, vars, want)
static void check(int line, const char *src, const char *vars, const char *want) {
    lm_buf out = {0};
    lm_error err = {0};
    lm_status st = render_opts(src, vars, NULL, &out, &err);
    if (st) fail_msg("line %d: %s: %s", line, src, err.msg);
    if (strcmp(out.data ? out.data : "", want) != 0)
        fail_msg("line %d: %s\n got  [%s]\n want [%s]", line, src, out.data ? out.data : "", want);
    lm_buf_free(&out);
}

#define E(src, vars, code, piece) check_err(__LINE__, src, vars, code, piece)
static void check_err(int line, const char *src, const char *vars, lm_status code, const char *piece) {
    lm_buf out = {0};
    lm_error err = {0};
    lm_status st = render_opts(src, vars, NULL, &out, &err);
    if (st != code) fail_msg("line %d: %s: status %d, want %d (%s)", line, src, st, code, err.msg);
    if (!strstr(err.msg, piece)) fail_msg("line %d: %s: message '%s' lacks '%s'", line, src, err.msg, piece);
    lm_buf_free(&out);
}

static void test_text_and_output(void **state) {
    (void)state;
    R("", NULL, "");
    R("hello", NULL, "hello");
    R("a\n", NULL, "a"); /* one trailing newline dropped, like Jinja */
    R("{{ 'x' }}{# comment #}y", NULL, "xy");
    R("{{ name }}!", "{\"name\":\"Ann\"}", "Ann!");
    R("[{{ missing }}]", NULL, "[]");
    R("{{ missing.attr.deeper }}|{{ missing['k'] }}", NULL, "|");
    R("{{ 1 }} {{ 1.5 }} {{ 2.0 }} {{ true }} {{ none }} {{ 1e20 }} {{ 0.0001 }} {{ 1e-05 }}", NULL,
      "1 1.5 2.0 True None 1e+20 0.0001 1e-05");
    R("{{ [1, 'a', none, true, [2.5]] }}", NULL, "[1, 'a', None, True, [2.5]]");
    R("{{ {'k': \"it's\", 'n': {}} }}", NULL, "{'k': \"it's\", 'n': {}}");
    R("{{ 'a\\tb\\n' }}", NULL, "a\tb\n");
    R("{{ 'ab' 'cd' }}", NULL, "abcd");
}

static void test_whitespace(void **state) {
    (void)state;
    R("a  {{- 'b' -}}  c", NULL, "abc");
    R("a\n{%- if true %}\nb{% endif -%}\n\nc", NULL, "abc");
    /* trim_blocks drops one newline after a block tag; lstrip_blocks the indentation before it */
    R("x\n  {% if true %}\n  y\n  {% endif %}\nz", NULL, "x\n  y\nz");
    R("{# c #}\nq", NULL, "q");
    R("  {%+ if true %}k{% endif %}", NULL, "  k");
    jinja_opts raw = {0};
    lm_buf out = {0};
    lm_error err = {0};
    assert_int_equal(render_opts("x\n  {% if true %}\n  y\n  {% endif %}\nz", NULL, &raw, &out, &err), LM_OK);
    assert_string_equal(out.data, "x\n  \n  y\n  \nz");
    lm_buf_free(&out);
    jinja_opts d = jinja_default_opts();
    assert_true(d.trim_blocks && d.lstrip_blocks);
}

static void test_if_for(void **state) {
    (void)state;
    R("{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"a\":0,\"b\":\"x\"}", "B");
    R("{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"a\":[],\"b\":\"\"}", "C");
    R("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ x }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}",
      "{\"xs\":[\"a\",\"b\"]}", "10aTrueFalse22;21bFalseTrue21;");
    R("{% for x in xs %}{{ x }}{% else %}empty{% endfor %}", "{\"xs\":[]}", "empty");
    R("{% for x in xs if x > 1 %}{{ x }}{{ loop.last }},{% endfor %}", "{\"xs\":[1,2,3,0]}", "2False,3True,");
    R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{\"d\":{\"b\":1,\"a\":2}}", "b=1;a=2;");
    R("{% for k in d %}{{ k }}{% endfor %}", "{\"d\":{\"z\":1,\"y\":2}}", "zy");
    R("{% for c in 'héj' %}[{{ c }}]{% endfor %}", NULL, "[h][é][j]");
    R("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}", NULL, "02");
    R("{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}|{% for i in range(3, 0, -1) %}{{ i }}{% endfor %}", NULL, "135|321");
    R("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", NULL, "1");
}

static void test_set_namespace_macro(void **state) {
    (void)state;
    R("{% set a, b = [1, 2] %}{{ b }}{{ a }}", NULL, "21");
    R("{% set ns = namespace(n=0, s='') %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", NULL, "3");
    R("{% set t %}in{{ 1 + 1 }}{% endset %}[{{ t }}]", NULL, "[in2]");
    R("{% macro m(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}", NULL, "<1B><23>");
    R("{% macro w(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call w('p') %}body{% endcall %}", NULL, "<p>body</p>");
    R("{% generation %}kept{% endgeneration %}", NULL, "kept");
    R("{% set xs = [] %}{% set _ = xs.append(3) %}{{ xs }}{{ xs.pop() }}{{ xs|length }}", NULL, "[3]30");
}

static void test_expressions(void **state) {
    (void)state;
    R("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }}", NULL,
      "3 -4 1 2 3.5 1024 7 9");
    R("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 1 + 0.5 }}", NULL, "a1None abab [1, 2] 1.5");
    R("{{ 1 < 2 }} {{ 'b' > 'a' }} {{ 1 == 1.0 }} {{ 1 != 2 }} {{ 2 >= 3 }} {{ true == 1 }}", NULL, "True True True True False True");
    R("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }}", "{\"d\":{\"k\":1}}", "True True True True");
    R("{{ a and b }}|{{ a or b }}|{{ not a }}|{{ 0 or 'x' }}", "{\"a\":1,\"b\":\"\"}", "|1|False|x");
    R("{{ 'y' if c else 'n' }}{{ 'y' if not c else 'n' }}[{{ 'y' if c }}]", "{\"c\":false}", "ny[]");
    R("{{ xs[0] }}{{ xs[-1] }}{{ xs[1:] }}{{ xs[::-1] }}{{ xs[:-1] }}{{ xs[::2] }}{{ xs[5] }}", "{\"xs\":[1,2,3]}",
      "13[2, 3][3, 2, 1][1, 2][1, 3]");
    R("{{ s[1:] }}|{{ s[::-1] }}|{{ s[:-1] }}|{{ s[0] }}", "{\"s\":\"abc\"}", "bc|cba|ab|a");
    R("{{ m.role }}{{ m['content'] }}{{ m.nope is defined }}", "{\"m\":{\"role\":\"u\",\"content\":\"c\"}}", "ucFalse");
    R("{{ -x }} {{ +x }} {{ -(1.5) }}", "{\"x\":3}", "-3 3 -1.5");
    R("{{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ (1, 2) }}", NULL, "True True (1, 2)");
    R("{{ (1,) }}{{ () }}{{ (1, 2) == [1, 2] }}", NULL, "(1,)()False");
}

static void test_filters(void **state) {
    (void)state;
    R("{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'héé'|length }}|{{ [1,2]|count }}|{{ {'a':1}|length }}", NULL, "x|hi|3|2|1");
    R("{{ v|tojson }}", "{\"v\":{\"a\":[1,2.5,\"é\\n\\\"\"],\"b\":null,\"c\":true,\"d\":{}}}",
      "{\"a\": [1, 2.5, \"é\\n\\\"\"], \"b\": null, \"c\": true, \"d\": {}}");
    R("{{ v|tojson(indent=2) }}", "{\"v\":{\"a\":[1],\"b\":{}}}", "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
    R("{{ 'aB'|upper }}{{ 'aB'|lower }}{{ 'hello world'|title }}{{ 'hELLO'|capitalize }}{{ 'aXa'|replace('a', 'b') }}", NULL,
      "ABabHello WorldHellobXb");
    R("{{ x|default('d') }}{{ ''|default('e', true) }}{{ 'v'|d('z') }}", NULL, "dev");
    R("{{ xs|first }}{{ xs|last }}{{ xs|join('-') }}{{ xs|reverse|list }}{{ xs|sort }}{{ [3,1,3]|unique|list }}", "{\"xs\":[2,1,3]}",
      "232-1-3[3, 1, 2][1, 2, 3][3, 1]");
    R("{{ d|items|list }}{{ 5|string ~ '!' }}{{ '42'|int + 1 }}{{ '2.5'|float }}{{ -3|abs }}{{ 'x'|int }}", "{\"d\":{\"a\":1}}",
      "[('a', 1)]5!432.530");
    const char *ms = "{\"ms\":[{\"role\":\"user\",\"n\":1},{\"role\":\"bot\",\"n\":2},{\"role\":\"user\",\"n\":3}]}";
    R("{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='n')|list }}", ms, "[1, 3]");
    R("{{ ms|rejectattr('role', 'equalto', 'user')|map(attribute='n')|join }}", ms, "2");
    R("{{ ms|selectattr('missing', 'defined')|list|length }}{{ [0, 1, '']|select|list }}", ms, "0[1]");
    R("{{ ms|sort(attribute='n', reverse=true)|map(attribute='n')|list }}{{ ['a','b']|map('upper')|join }}", ms, "[3, 2, 1]AB");
    R("[{{ 'a\\nb\\n\\nc'|indent(2) }}][{{ 'a\\nb'|indent(first=true) }}]", NULL, "[a\n  b\n\n  c][    a\n    b]");
    R("{{ '<a&b>'|e }}{{ '<x>'|safe }}", NULL, "&lt;a&amp;b&gt;<x>");
}

static void test_tests(void **state) {
    (void)state;
    R("{{ x is defined }}{{ y is undefined }}{{ n is none }}{{ s is string }}{{ i is number }}{{ i is integer }}{{ f is integer }}",
      "{\"x\":1,\"n\":null,\"s\":\"\",\"i\":3,\"f\":1.5}", "TrueTrueTrueTrueTrueTrueFalse");
    R("{{ d is mapping }}{{ l is mapping }}{{ l is iterable }}{{ s is iterable }}{{ i is iterable }}{{ l is sequence }}",
      "{\"d\":{},\"l\":[],\"s\":\"\",\"i\":1}", "TrueFalseTrueTrueFalseTrue");
    R("{{ b is boolean }}{{ b is true }}{{ b is false }}{{ 1 is true }}{{ 3 is equalto 3 }}{{ 3 is eq(4) }}{{ 2 is in [1, 2] }}{{ 3 is odd }}{{ x is not defined }}",
      "{\"b\":true}", "TrueTrueFalseFalseTrueFalseTrueTrueTrue");
}

static void test_methods_and_globals(void **state) {
    (void)state;
    R("[{{ ' a '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a\\n'.rstrip() }}]", NULL, "[a|axx|a]");
    R("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}", NULL, "TrueTrueTrue");
    R("{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}", NULL, "['a', 'b', '', 'c']['a', 'b']['a', 'b,c']");
    R("{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'aa'.replace('a', 'b') }}{{ 'x y'.title() }}{{ '-'.join(['a', 'b']) }}", NULL, "ABabbbX Ya-b");
    R("{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 5) }}{{ d.keys()|list }}{{ d.values()|list }}", "{\"d\":{\"a\":1}}", "1None5['a'][1]");
    R("{{ strftime_now('%Y-%m-%d') }}", NULL, "2024-07-26");
    /* d.items is the method (Jinja's getattr), d['items'] the key */
    R("{{ d.items()|length }}{{ d['items'] }}{{ d.x }}", "{\"d\":{\"items\":\"I\",\"x\":1}}", "2I1");
    R("{{ strftime_now is defined }}{{ raise_exception is defined }}", NULL, "TrueTrue");
}

static void test_syntax_errors(void **state) {
    (void)state;
    E("{% if x %}", NULL, LM_ERR_FORMAT, "line 1 column 11: expected '{% endif %}', found end of template");
    E("ab\n{{ x + }}", NULL, LM_ERR_FORMAT, "line 2 column 8: expected an expression, found '}}'");
    E("{{ 'abc }}", NULL, LM_ERR_FORMAT, "expected the end of a string literal");
    E("{% for x in %}{% endfor %}", NULL, LM_ERR_FORMAT, "expected an expression");
    E("{% for x xs %}", NULL, LM_ERR_FORMAT, "expected 'in'");
    E("{% endif %}", NULL, LM_ERR_FORMAT, "expected a statement");
    E("{% frobnicate %}", NULL, LM_ERR_FORMAT, "expected a statement (if");
    E("{{ x ", NULL, LM_ERR_FORMAT, "expected '}}', found end of template");
    E("{# open", NULL, LM_ERR_FORMAT, "'#}'");
    E("{{ f(a=1, 2) }}", NULL, LM_ERR_FORMAT, "keyword argument");
    E("{{ [1, 2 }}", NULL, LM_ERR_FORMAT, "expected ',' or ']'");
    E("{{ x ? }}", NULL, LM_ERR_FORMAT, "line 1 column 6");
    E("{{ 99999999999999999999 }}", NULL, LM_ERR_FORMAT, "64 bits");
    char deep[4000];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 600; i++) deep[k++] = '(';
    snprintf(deep + k, sizeof deep - k, "1 }}");
    E(deep, NULL, LM_ERR_FORMAT, "nesting");
    k = (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 600; i++) deep[k++] = '-';
    snprintf(deep + k, sizeof deep - k, "1 }}");
    E(deep, NULL, LM_ERR_FORMAT, "nesting");
    k = (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 300; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "not ");
    snprintf(deep + k, sizeof deep - k, "1 }}");
    E(deep, NULL, LM_ERR_FORMAT, "nesting");
    k = 0;
    for (int i = 0; i < 300; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "{%% if 1 %%}");
    E(deep, NULL, LM_ERR_FORMAT, "nesting");
}

static void test_runtime_errors(void **state) {
    (void)state;
    E("{{ raise_exception('Roles must alternate') }}", NULL, LM_ERR_TEMPLATE, "Roles must alternate");
    E("{{ 1 // 0 }}", NULL, LM_ERR_TEMPLATE, "division or modulo by zero");
    E("{{ 'a' + 1 }}", NULL, LM_ERR_TEMPLATE, "unsupported operand types");
    E("{{ nope(1) }}", NULL, LM_ERR_TEMPLATE, "'nope' is undefined");
    E("{{ x|nofilter }}", NULL, LM_ERR_TEMPLATE, "unknown filter 'nofilter'");
    E("{{ x is notatest }}", NULL, LM_ERR_TEMPLATE, "unknown test 'notatest'");
    E("{% set x = 1 %}{% set x.a = 2 %}", NULL, LM_ERR_TEMPLATE, "not a namespace");
    E("{% for a, b in [[1, 2, 3]] %}{% endfor %}", NULL, LM_ERR_TEMPLATE, "cannot unpack 3 values into 2 names");
    E("{% for x in 5 %}{% endfor %}", NULL, LM_ERR_TEMPLATE, "'int' object is not iterable");
    E("{{ 1 < 'a' }}", NULL, LM_ERR_TEMPLATE, "cannot compare");
    E("{{ 9223372036854775807 + 1 }}", NULL, LM_ERR_TEMPLATE, "integer overflow");
    E("{{ [1][::0] }}", NULL, LM_ERR_TEMPLATE, "slice step cannot be zero");
    E("line\n{{ {}|tojson }}{{ x.y.z() }}", NULL, LM_ERR_TEMPLATE, "line 2");
}

static void test_limits(void **state) {
    (void)state;
    jinja_opts o = jinja_default_opts();
    lm_buf out = {0};
    lm_error err = {0};
    o.max_steps = 1000;
    assert_int_equal(render_opts("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", NULL, &o, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_steps"));
    o = jinja_default_opts();
    o.max_output = 100;
    assert_int_equal(render_opts("{% for i in range(1000) %}xx{% endfor %}", NULL, &o, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_output"));
    assert_int_equal(out.len, 0);
    assert_int_equal(render_opts("{{ 'x' * 1000 }}", NULL, &o, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_output"));
    o = jinja_default_opts();
    o.max_depth = 20;
    assert_int_equal(render_opts("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, &o, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_depth"));
    /* the default depth also stops unbounded recursion */
    assert_int_equal(render_opts("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, NULL, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_depth"));
    /* output keeps what was there before a failed render */
    lm_buf_puts(&out, "keep");
    assert_int_equal(render_opts("ab{{ raise_exception('x') }}", NULL, NULL, &out, &err), LM_ERR_TEMPLATE);
    assert_string_equal(out.data, "keep");
    lm_buf_free(&out);
}

/* Memory is bounded per render (max_memory), loops over range() build no list, and what a loop
 * iteration allocates for itself (its frame, loop.*) is reused, so a template shipped in a model
 * repository cannot exhaust memory before max_steps stops it. */
static void test_memory_bound(void **state) {
    (void)state;
    jinja_opts o = jinja_default_opts();
    lm_buf out = {0};
    lm_error err = {0};
    /* 2 million iterations in 1 MiB: only max_steps stops them (a list per range, or a frame
     * and a loop object per iteration, would need far more) */
    o.max_memory = 1 << 20;
    o.max_steps = 2000000;
    assert_int_equal(render_opts("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                                 NULL, &o, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_steps (2000000 loop iterations and calls) exceeded"));
    /* a list that doubles: stopped at the default budget, the message names it and the line */
    assert_int_equal(render_opts("{% set ns = namespace(l=[1]) %}\n{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
                                 NULL, NULL, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_memory (134217728 bytes) exceeded"));
    assert_non_null(strstr(err.msg, "line 2"));
    assert_int_equal(out.len, 0);
    /* range() as a value is refused before anything is allocated */
    assert_int_equal(render_opts("{{ range(1000000000)|length }}", NULL, NULL, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_memory"));
    /* shared sublists print exponentially: str(), tojson, join and captured text are counted */
    o = jinja_default_opts();
    o.max_memory = 4 << 20;
    const char *grow = "{% set ns = namespace(a=['abcdefgh']) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}";
    const char *uses[] = {"{{ ns.a }}", "{{ ns.a|tojson }}", "{{ ns.a|tojson(indent=2) }}", "{{ ns.a|join(',') }}",
                          "{{ ns.a ~ 'x' }}", "{% set t %}{{ ns.a[0] }}{% endset %}", "{{ ns.a|string|length }}",
                          "{% macro m() %}{{ ns.a[0] }}{% endmacro %}{{ m() }}"};
    for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, "%s%s", grow, uses[i]);
        assert_int_equal(render_opts(src, NULL, &o, &out, &err), LM_ERR_TEMPLATE);
        if (!strstr(err.msg, "max_memory (4194304 bytes) exceeded")) fail_msg("%s: %s", uses[i], err.msg);
    }
    /* macro output held while a deep recursion captures it */
    assert_int_equal(render_opts("{% macro m(n) %}{{ 'x' * 100000 }}{% if n %}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(150) }}",
                                 NULL, &o, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "max_memory"));
    /* x.extend(x) doubles once, as in Python, instead of growing without end */
    R("{% set x = [1, 2] %}{% set _ = x.extend(x) %}{{ x }}", NULL, "[1, 2, 1, 2]");
    /* integer powers by squaring: no loop of 2**63 steps, overflow still found */
    R("{{ 1 ** 9223372036854775807 }} {{ 0 ** 9223372036854775807 }} {{ (-1) ** 9223372036854775807 }}", NULL, "1 0 -1");
    R("{{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 3 ** 0 }} {{ 7 ** 3 }}", NULL, "4611686018427387904 -9223372036854775808 1 343");
    E("{{ 2 ** 63 }}", NULL, LM_ERR_TEMPLATE, "integer overflow");
    E("{{ 3 ** 9223372036854775807 }}", NULL, LM_ERR_TEMPLATE, "integer overflow");
    /* lazy ranges behave as lists did: loop variables, negative steps, filters, extremes */
    R("{% for i in range(3) %}{{ loop.index }}{{ i }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.revindex }}{{ loop.last }},{% endfor %}",
      NULL, "1013False,21022False,3211True,");
    R("{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}|{% for i in range(3) if i != 1 %}{{ i }}{{ loop.length }}{% endfor %}|"
      "{% for i in range(0) %}x{% else %}empty{% endfor %}", NULL, "531|0222|empty");
    R("{% for i in range(9223372036854775805, 9223372036854775807) %}{{ i }} {% endfor %}", NULL,
      "9223372036854775805 9223372036854775806 ");
    R("{% for i in range(-9223372036854775807 - 1, 9223372036854775807, 9223372036854775807) %}{{ i }} {% endfor %}", NULL,
      "-9223372036854775808 -1 9223372036854775806 ");
    R("{{ range(2, 11, 3)|list }} {{ range(3)|length }}", NULL, "[2, 5, 8] 3");
    R("{% set range = [7] %}{% for i in range %}{{ i }}{% endfor %}", NULL, "7");
    /* sort is a stable merge sort */
    R("{{ [{'a': 2, 'b': 1}, {'a': 1, 'b': 2}, {'a': 2, 'b': 3}, {'a': 0, 'b': 4}]|sort(attribute='a')|map(attribute='b')|list }}",
      NULL, "[4, 2, 1, 3]");
    R("{{ [{'a': 2, 'b': 1}, {'a': 1, 'b': 2}, {'a': 2, 'b': 3}, {'a': 0, 'b': 4}]|sort(attribute='a', reverse=true)|map(attribute='b')|list }}",
      NULL, "[1, 3, 2, 4]");
    R("{{ [5, 3, 9, 1, 7, 3, 2, 8, 6, 4, 0]|sort }}", NULL, "[0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]");
    E("{{ [1, 'a']|sort }}", NULL, LM_ERR_TEMPLATE, "sort: cannot compare");
    lm_buf_free(&out);
}

/* One parse and render of src with vars: the text must be want. */
typedef struct {
    const char *src;
    const cJSON *vars;
    const char *want;
} render_case;

static lm_status render_attempt(const void *arg, lm_error *err) {
    const render_case *c = arg;
    jinja_template *t = NULL;
    lm_buf out = {0};
    lm_status st = jinja_parse(c->src, strlen(c->src), &t, err);
    if (!st) st = jinja_render(t, c->vars, NULL, &out, err);
    /* a render that went on without an optional allocation must still be right */
    if (!st) assert_string_equal(out.data, c->want);
    lm_buf_free(&out);
    jinja_free(t);
    return st;
}

/* Every allocation of a parse and a render failing in turn gives LM_ERR_NOMEM and leaks nothing. */
static void test_alloc_failures(void **state) {
    (void)state;
    cJSON *v = NULL;
    lm_error err = {0};
    const char *vars = "{\"ms\":[{\"r\":1},{\"r\":0},{\"r\":\"x\"}]}";
    assert_int_equal(lm_json_parse(vars, strlen(vars), "vars", &v, &err), LM_OK);
    const render_case c = {
        "{% set ns = namespace(a=[]) %}{% for m in ms if m.r %}{{ m|tojson }}{{ loop.index }}{% set ns.a = ns.a + [m] %}{% endfor %}{{ ns.a|length }}",
        v, "{\"r\": 1}1{\"r\": \"x\"}22"};
    tu_alloc_sweep("parse and render", render_attempt, &c, true, 9999);
    cJSON_Delete(v);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_output),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_if_for),
        cmocka_unit_test(test_set_namespace_macro),
        cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_tests),
        cmocka_unit_test(test_methods_and_globals),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
