/* tests/unit/test_grammar.c: the grammar compiler (valid grammars against strings they must
 * accept, end on, or refuse; invalid ones against the message and its line/column), token
 * references, and the token mask checked by brute force over whole vocabularies (tinychat's
 * byte-level BPE, Qwen2's 151k byte-level BPE, Mistral's SentencePiece with byte fallback):
 *  - finite languages enumerated here by plain loops: for every prefix of every sentence and
 *    every token, the mask admits the token exactly when the prefix plus the token's bytes is a
 *    prefix of some sentence, and an end-of-generation token exactly at a whole sentence;
 *  - JSON mode against an independent JSON prefix checker written below, on random walks:
 *    at every step every token's bit equals the checker's verdict on prefix + token.
 * A mask that excluded a token a valid continuation needs, or admitted one that breaks the
 * output, fails these tests. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

/* ---- helpers ---- */

static smp_grammar *compile_ok(const char *src) {
    smp_grammar *g = NULL;
    lm_error err = {0};
    lm_status st = smp_grammar_compile(src, strlen(src), &g, &err);
    if (st) fail_msg("grammar should compile: %s\n%s", err.msg, src);
    return g;
}

/* A byte-level matcher of g (no tokenizer). */
static smp_matcher *bytes_matcher(const smp_grammar *g) {
    smp_matcher *m = NULL;
    lm_error err = {0};
    if (smp_matcher_new(g, NULL, NULL, 0, 1, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

enum { REJECT = 0, PREFIX = 1, WHOLE = 2 };

/* How the grammar takes s: refused, a proper prefix of a match, or a whole match. */
static int take(const smp_grammar *g, const char *s, size_t n) {
    smp_matcher *m = bytes_matcher(g);
    int r = REJECT;
    if (smp_matcher_accept_bytes(m, s, n) == LM_OK) r = smp_matcher_can_end(m) ? WHOLE : PREFIX;
    smp_matcher_free(m);
    return r;
}

typedef struct take_case {
    const char *text;
    int want;
} take_case;

static void check_takes(const char *src, const take_case *cases, size_t n) {
    smp_grammar *g = compile_ok(src);
    for (size_t i = 0; i < n; i++) {
        int got = take(g, cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want)
            fail_msg("grammar %s\ntext \"%s\": got %d, want %d", src, cases[i].text, got, cases[i].want);
    }
    smp_grammar_free(g);
}

/* ---- the compiler on valid grammars ---- */

static void test_literals_and_escapes(void **state) {
    (void)state;
    const take_case c[] = {{"", PREFIX}, {"a\n\t\"\\", PREFIX}, {"a\n\t\"\\A\xc3\xa9\xf0\x9f\x98\x80", WHOLE},
                           {"a\n\t\"\\A\xc3", PREFIX}, {"a\n\t\"\\A\xc3\xa8", REJECT}, {"b", REJECT}};
    check_takes("root ::= \"a\\n\\t\\\"\\\\\" \"\\x41\" \"\\u00e9\\U0001F600\"", c, LM_ARRAY_LEN(c));
    /* raw UTF-8 in a literal is the same as the escape */
    const take_case c2[] = {{"\xc3\xa9", WHOLE}, {"\xc3", PREFIX}};
    check_takes("root ::= \"\xc3\xa9\"", c2, LM_ARRAY_LEN(c2));
}

static void test_classes(void **state) {
    (void)state;
    const take_case c[] = {{"a", WHOLE}, {"z", WHOLE}, {"_", WHOLE}, {"5", WHOLE}, {"-", WHOLE},
                           {"A", REJECT}, {"ab", REJECT}, {"\xc3\xa9", REJECT}};
    check_takes("root ::= [a-z_0-9\\-]", c, LM_ARRAY_LEN(c));
    /* negation covers every other code point, in 1 to 4 bytes; never an invalid sequence */
    const take_case n[] = {{"x", WHOLE},          {"\"", REJECT},         {"\\", REJECT},
                           {"\x1f", REJECT},      {"\x7f", WHOLE},        {"\xc2\x80", WHOLE},
                           {"\xdf\xbf", WHOLE},   {"\xe0\xa0\x80", WHOLE}, {"\xe0\x80", REJECT} /* overlong */,
                           {"\xed\x9f\xbf", WHOLE}, {"\xed\xa0", REJECT} /* surrogate */,
                           {"\xef\xbf\xbf", WHOLE}, {"\xf0\x90\x80\x80", WHOLE}, {"\xf4\x8f\xbf\xbf", WHOLE},
                           {"\xf4\x90", REJECT} /* above U+10FFFF */, {"\xc0", REJECT}, {"\xc1\xbf", REJECT},
                           {"\xf5", REJECT},      {"\x80", REJECT},       {"\xe4\xb8", PREFIX}};
    check_takes("root ::= [^\"\\\\\\x00-\\x1F]", n, LM_ARRAY_LEN(n));
    /* ranges across encoding lengths */
    const take_case r[] = {{"\x7f", WHOLE}, {"\xc2\x80", WHOLE}, {"\xe0\xa0\x80", WHOLE}, {"\xe0\xa0\x81", REJECT},
                           {"~", REJECT}};
    check_takes("root ::= [\\x7F-\\u0800]", r, LM_ARRAY_LEN(r));
    /* '.' is any character */
    const take_case d[] = {{"\xf0\x9f\x98\x80!", WHOLE}, {"\n!", WHOLE}, {"!", PREFIX}, {"\xff", REJECT}};
    check_takes("root ::= . \"!\"", d, LM_ARRAY_LEN(d));
}

static void test_operators(void **state) {
    (void)state;
    const take_case star[] = {{"", WHOLE}, {"ab", WHOLE}, {"ababab", WHOLE}, {"aba", PREFIX}, {"b", REJECT}};
    check_takes("root ::= (\"a\" \"b\")*", star, LM_ARRAY_LEN(star));
    const take_case plus[] = {{"", PREFIX}, {"x", WHOLE}, {"xxx", WHOLE}, {"xy", REJECT}};
    check_takes("root ::= \"x\"+", plus, LM_ARRAY_LEN(plus));
    const take_case opt[] = {{"ac", WHOLE}, {"abc", WHOLE}, {"abbc", REJECT}};
    check_takes("root ::= \"a\" \"b\"? \"c\"", opt, LM_ARRAY_LEN(opt));
    const take_case rep[] = {{"1", PREFIX}, {"12", WHOLE}, {"1234", WHOLE}, {"12345", REJECT}};
    check_takes("root ::= [0-9]{2,4}", rep, LM_ARRAY_LEN(rep));
    const take_case exact[] = {{"aa", PREFIX}, {"aaa", WHOLE}, {"aaaa", REJECT}};
    check_takes("root ::= \"a\"{3}", exact, LM_ARRAY_LEN(exact));
    const take_case atleast[] = {{"a", PREFIX}, {"aa", WHOLE}, {"aaaaaaaa", WHOLE}};
    check_takes("root ::= \"a\"{2,}", atleast, LM_ARRAY_LEN(atleast));
    const take_case atmost[] = {{"", WHOLE}, {"ab", WHOLE}, {"abab", WHOLE}, {"ababa", REJECT}};
    check_takes("root ::= \"ab\"{,2}", atmost, LM_ARRAY_LEN(atmost));
    const take_case zero[] = {{"", WHOLE}, {"a", REJECT}};
    check_takes("root ::= \"a\"{0}", zero, LM_ARRAY_LEN(zero));
}

static void test_rules_and_layout(void **state) {
    (void)state;
    /* rules in any order, names with - and _, alternatives over several lines, comments,
     * recursion through brackets (not left recursion) */
    const char *src = "# a tiny expression language\n"
                      "root ::= expr   # the whole output\n"
                      "expr ::= term ( [+-] term )*\n"
                      "term ::=\n"
                      "    num-ber\n"
                      "  | \"(\" expr \")\"   # nested\n"
                      "num-ber ::= [0-9]+ | my_zero\n"
                      "my_zero ::= \"zero\"\n";
    const take_case c[] = {{"1+2", WHOLE}, {"(1+(2-30))", WHOLE}, {"(1+(2-30)", PREFIX}, {"zero-1", WHOLE},
                           {"1++2", REJECT}, {"()", REJECT}, {"", PREFIX}};
    check_takes(src, c, LM_ARRAY_LEN(c));
    /* an empty alternative and an empty literal */
    const take_case e[] = {{"", WHOLE}, {"a", WHOLE}};
    check_takes("root ::= \"a\" | \"\"", e, LM_ARRAY_LEN(e));
    const take_case e2[] = {{"", WHOLE}, {"q", WHOLE}};
    check_takes("root ::= | \"q\"", e2, LM_ARRAY_LEN(e2));
}

/* Right recursion keeps stacks flat: a long match runs in bounded memory and the state after
 * every "ab" is the same one (so its mask is computed once). */
static void test_flat_states(void **state) {
    (void)state;
    smp_grammar *g = compile_ok("root ::= item*\nitem ::= \"a\" [bc]\n");
    smp_matcher *m = bytes_matcher(g);
    size_t s1 = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        assert_int_equal(smp_matcher_accept_bytes(m, i & 1 ? "ab" : "ac", 2), LM_OK);
        if (i == 10) smp_matcher_stats(m, &s1, NULL);
    }
    smp_matcher_stats(m, &s2, NULL);
    assert_int_equal(s1, s2);
    assert_true(smp_matcher_can_end(m));
    assert_int_equal(smp_matcher_accept_bytes(m, "b", 1), LM_ERR_MISUSE);
    assert_true(smp_matcher_can_end(m)); /* a refused step leaves the state as it was */
    smp_matcher_free(m);
    smp_grammar_free(g);
}

/* Past its budget (262,144 states) the matcher drops its caches and starts again from the
 * current state: a grammar whose every prefix is a new state (j items of k letters) goes
 * through that and still takes exactly its language. */
static void test_cache_rebuild(void **state) {
    (void)state;
    smp_grammar *g = compile_ok("root ::= item{0,400}\nitem ::= [a-z]{0,1000} \",\"");
    smp_matcher *m = bytes_matcher(g);
    char item[1002];
    memset(item, 'q', 1000);
    item[1000] = ',';
    size_t most = 0, fewest_after = SIZE_MAX, n_states = 0;
    for (int j = 0; j < 300; j++) {
        for (int k = 0; k < 1000; k++) {
            assert_int_equal(smp_matcher_accept_bytes(m, item + k, 1), LM_OK);
            smp_matcher_stats(m, &n_states, NULL);
            if (n_states > most) most = n_states;
            else if (n_states < most && n_states < fewest_after) fewest_after = n_states;
        }
        assert_int_equal(smp_matcher_accept_bytes(m, "q", 1), LM_ERR_MISUSE); /* a 1001st letter */
        assert_int_equal(smp_matcher_accept_bytes(m, ",", 1), LM_OK);
        assert_true(smp_matcher_can_end(m));
    }
    assert_int_equal(most, 262144);   /* it grew to the budget (the step past it rebuilt) */
    assert_true(fewest_after < 1000); /* and started again small */
    smp_matcher_free(m);
    smp_grammar_free(g);
}

/* ---- the compiler on invalid grammars: the message and where ---- */

typedef struct bad_case {
    const char *src;
    const char *want; /* a piece of the message */
} bad_case;

static void test_errors(void **state) {
    (void)state;
    const bad_case c[] = {
        {"", "line 1 column 1: the grammar is empty"},
        {"  # only a comment\n", "line 2 column 1: the grammar is empty"},
        {"root ::= \"abc", "line 1 column 10: the string started here is not closed"},
        {"root ::= [a-", "line 1 column 10: the character class started here is not closed"},
        {"root ::= [z-a]", "line 1 column 11: the range runs backwards (U+007A to U+0061)"},
        {"root ::= []", "line 1 column 10: the character class matches no character"},
        {"root ::= \"a\"\nfoo ::= bar\n", "line 2 column 9: rule 'bar' is used but never defined"},
        {"foo ::= \"a\"", "line 1 column 1: no rule named 'root'"},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2 column 1: rule 'root' is defined twice (first at line 1 column 1)"},
        {"root ::= root \"a\"", "line 1 column 1: left recursion: rule 'root' can reach itself"},
        {"root ::= a\na ::= \"b\"? root", "line 1 column 1: left recursion: rule 'root' can reach itself (through 'a')"},
        {"root ::= (\"a\"?)*", "line 1 column 16: '*' repeats something that can match the empty string"},
        {"root ::= (\"x\" | \"\")+", "line 1 column 20: '+' repeats something that can match the empty string"},
        {"root ::= \"a\" )", "line 1 column 14: unexpected ')' with no group open"},
        {"root ::= ( \"a\" ", "line 1 column 10: the group opened here is not closed: expected ')', found the end"},
        {"root = \"a\"", "line 1 column 6: expected '::=' after the rule name 'root', found '='"},
        {"root ::= \"\\q\"", "line 1 column 11: unknown escape '\\' followed by 'q'"},
        {"root ::= \"\\x4\"", "line 1 column 11: escape '\\x' needs 2 hexadecimal digits"},
        {"root ::= \"\\uD800\"", "line 1 column 11: escape '\\u' names U+D800, which is not a character"},
        {"root ::= \"\\U00110000\"", "which is not a character"},
        {"root ::= \"\xc3\"", "line 1 column 11: invalid UTF-8 (byte 0xC3)"},
        {"root ::= \"a\"{3,2}", "line 1 column 13: repetition {3,2}: the maximum is below the minimum"},
        {"root ::= \"a\"{2", "line 1 column 13: the repetition opened here is not closed"},
        {"root ::= \"a\"{}", "line 1 column 13: expected a count"},
        {"root ::= \"a\"{999999}", "repetition count above 100000"},
        {"root ::= @", "line 1 column 10: expected a rule name, a \"string\", a [class], '.', '(' or a <token>; found '@'"},
        {"root ::= <abc", "line 1 column 10: the token started here is not closed with '>'"},
        {"root ::= !x", "line 1 column 10: '!' must be followed by a token"},
        {"root ::= <[99999999999]>", "token id out of range"},
        {"root ::= \"a\"\n\n  ::= \"b\"", "line 3 column 3: expected a rule name"},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(c); i++) {
        smp_grammar *g = NULL;
        lm_error err = {0};
        lm_status st = smp_grammar_compile(c[i].src, strlen(c[i].src), &g, &err);
        if (st != LM_ERR_FORMAT || !strstr(err.msg, c[i].want))
            fail_msg("grammar %zu \"%s\": status %d, message \"%s\"; want \"%s\"", i, c[i].src, st, err.msg, c[i].want);
        assert_null(g);
        assert_non_null(strstr(err.msg, "grammar line "));
    }
    /* groups nested too deep and huge expansions are refused, not a crash */
    char deep[2048];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 300; i++) deep[n++] = '(';
    deep[n] = 0;
    smp_grammar *g = NULL;
    lm_error err = {0};
    assert_int_equal(smp_grammar_compile(deep, n, &g, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "groups nested deeper than 200"));
    char big[512] = "root ::= ";
    for (int i = 0; i < 12; i++) strcat(big, "(");
    strcat(big, "\"a\"");
    for (int i = 0; i < 12; i++) strcat(big, "){0,100000}");
    assert_int_equal(smp_grammar_compile(big, strlen(big), &g, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "more than"));
}

/* ---- vocabularies ---- */

typedef struct vocab {
    const char *name;
    tok_tokenizer *tok;
    const tok_trie *trie;
    lm_token eog;
} vocab;

static void vocab_load(vocab *v, const char *name, const char *dir) {
    lm_error err = {0};
    v->name = name;
    if (tok_load_dir(dir, &v->tok, &err) != LM_OK) fail_msg("%s: %s", dir, err.msg);
    v->trie = tok_get_trie(v->tok);
    assert_non_null(v->trie);
    v->eog = tok_eos(v->tok);
    assert_true(v->eog >= 0);
}

static void vocab_free(vocab *v) { tok_free(v->tok); }

static void load_vocabs(vocab v[3]) {
    vocab_load(&v[0], "tinychat", tu_src("models/tinychat"));
    vocab_load(&v[1], "qwen2", tu_data("tokenizers/qwen2"));
    vocab_load(&v[2], "mistral", tu_data("tokenizers/mistral"));
}

static bool mask_bit(const uint64_t *mask, lm_token id) { return (mask[(size_t)id >> 6] >> (id & 63)) & 1; }

/* The trie holds what tok_token_bytes says, and the tokens the decoder treats as text. */
static void test_trie(void **state) {
    (void)state;
    vocab v[3];
    load_vocabs(v);
    for (int k = 0; k < 3; k++) {
        const tok_trie *tr = v[k].trie;
        size_t in_trie = 0;
        lm_buf b = {0};
        for (lm_token id = 0; id < tok_n_vocab(v[k].tok); id++) {
            lm_buf_reset(&b);
            assert_true(tok_token_bytes(v[k].tok, id, &b));
            if (tr->len[id]) {
                in_trie++;
                assert_int_equal(tr->len[id], b.len);
                assert_memory_equal(tr->bytes + tr->off[id], b.data, b.len);
                assert_false(tok_is_special(v[k].tok, id));
            }
        }
        lm_buf_free(&b);
        /* walking the trie from the root reaches every token exactly once */
        size_t seen = 0;
        for (uint32_t i = 0; i < tr->n_nodes; i++) {
            assert_true(tr->skip[i] > i && tr->skip[i] <= tr->n_nodes);
            for (int32_t t = tr->tok[i]; t >= 0; t = tr->next[t]) {
                assert_int_equal(tr->depth[i], tr->len[t]);
                seen++;
            }
        }
        assert_int_equal(seen, in_trie);
        /* the same pointer for every caller */
        assert_ptr_equal(tok_get_trie(v[k].tok), tr);
    }
    /* spot checks: SentencePiece's U+2581 is a space, <0x0A> a newline; Qwen's added
       <tool_call> is text, <|im_end|> is not */
    lm_token sp = tok_find(v[2].tok, "\xe2\x96\x81the");
    assert_true(sp >= 0);
    assert_int_equal(v[2].trie->len[sp], 4);
    assert_memory_equal(v[2].trie->bytes + v[2].trie->off[sp], " the", 4);
    lm_token nl = tok_find(v[2].tok, "<0x0A>");
    assert_int_equal(v[2].trie->len[nl], 1);
    assert_int_equal(v[2].trie->bytes[v[2].trie->off[nl]], '\n');
    lm_token tc = tok_find(v[1].tok, "<tool_call>");
    assert_int_equal(v[1].trie->len[tc], 11);
    assert_int_equal(v[1].trie->len[tok_find(v[1].tok, "<|im_end|>")], 0);
    for (int k = 0; k < 3; k++) vocab_free(&v[k]);
}

/* ---- brute force over finite languages ---- */

typedef struct strset {
    char **v;
    size_t n, cap;
} strset;

static void ss_add(strset *s, const char *text) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = strdup(text);
}

static void ss_free(strset *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Cuts s into tokens, each the longest one in the trie that s continues with. */
static void longest_tokens(const tok_trie *tr, const char *s, tok_vec *out) {
    size_t n = strlen(s), at = 0;
    while (at < n) {
        uint32_t node = 0;
        int32_t best = -1;
        size_t best_len = 0;
        for (size_t k = at; k < n; k++) {
            /* the child of node with byte s[k]: children follow it in preorder, skip to skip */
            uint32_t c = node + 1, found = 0;
            while (c < tr->skip[node]) {
                if (tr->byte[c] == (uint8_t)s[k]) {
                    found = c;
                    break;
                }
                c = tr->skip[c];
            }
            if (!found) break;
            node = found;
            if (tr->tok[node] >= 0) {
                best = tr->tok[node];
                best_len = k - at + 1;
            }
        }
        if (best < 0) fail_msg("no token starts \"%s\"", s + at);
        tok_vec_push(out, best);
        at += best_len;
    }
}

/* What may follow a prefix of pl bytes: the sentences [c0, c1) of the sorted language start
 * with it; whole: one of them is the prefix itself; first: the bytes that come next. */
typedef struct follow {
    const strset *lang;
    size_t pl, c0, c1;
    bool whole, first[256];
} follow;

/* Whether token t should be admitted after the prefix: the end of generation when a sentence
 * ends there, else a token whose bytes continue one of the sentences. */
static bool follow_admits(const vocab *v, const follow *f, lm_token t) {
    const tok_trie *tr = v->trie;
    if (t == v->eog) return f->whole;
    if (!tr->len[t] || !f->first[tr->bytes[tr->off[t]]]) return false;
    for (size_t i = f->c0; i < f->c1; i++)
        if (strlen(f->lang->v[i]) - f->pl >= tr->len[t] &&
            memcmp(f->lang->v[i] + f->pl, tr->bytes + tr->off[t], tr->len[t]) == 0)
            return true;
    return false;
}

/* Checks the mask at every prefix of every sentence against the sentences themselves. */
static void brute_force(const vocab *v, const char *src, strset *lang) {
    smp_grammar *g = compile_ok(src);
    qsort(lang->v, lang->n, sizeof *lang->v, cmp_str);
    /* every distinct prefix (byte-level, so also inside a UTF-8 sequence) */
    strset pre = {0};
    for (size_t i = 0; i < lang->n; i++) {
        size_t len = strlen(lang->v[i]);
        for (size_t k = 0; k <= len; k++) {
            char buf[256];
            memcpy(buf, lang->v[i], k);
            buf[k] = 0;
            ss_add(&pre, buf);
        }
    }
    qsort(pre.v, pre.n, sizeof *pre.v, cmp_str);
    int32_t nv = tok_n_vocab(v->tok);
    size_t checked = 0, admitted = 0;
    for (size_t p = 0; p < pre.n; p++) {
        if (p && strcmp(pre.v[p], pre.v[p - 1]) == 0) continue;
        const char *P = pre.v[p];
        size_t pl = strlen(P);
        /* continuations: the rest of each sentence that starts with P */
        follow f = {.lang = lang, .pl = pl, .c0 = SIZE_MAX};
        for (size_t i = 0; i < lang->n; i++)
            if (strncmp(lang->v[i], P, pl) == 0) {
                if (f.c0 == SIZE_MAX) f.c0 = i;
                f.c1 = i + 1;
                if (lang->v[i][pl] == 0) f.whole = true;
                else f.first[(unsigned char)lang->v[i][pl]] = true;
            }
        smp_matcher *m = NULL;
        lm_error err = {0};
        assert_int_equal(smp_matcher_new(g, v->tok, &v->eog, 1, (size_t)nv, &m, &err), LM_OK);
        assert_int_equal(smp_matcher_accept_bytes(m, P, pl), LM_OK);
        assert_int_equal(smp_matcher_can_end(m), f.whole);
        /* smp_matcher_allows before any mask exists: every 61st token */
        for (lm_token t = 0; t < nv; t += 61) {
            bool want = follow_admits(v, &f, t);
            if (smp_matcher_allows(m, t) != want)
                fail_msg("%s, grammar %s, after \"%s\": allows(%d) = %d", v->name, src, P, (int)t, !want);
        }
        uint32_t n_allowed = 0;
        const uint64_t *mask = smp_matcher_mask(m, &n_allowed);
        assert_non_null(mask);
        uint32_t count = 0;
        for (lm_token t = 0; t < nv; t++) {
            bool want = follow_admits(v, &f, t);
            if (mask_bit(mask, t) != want) {
                lm_buf b = {0};
                tok_token_bytes(v->tok, t, &b);
                fail_msg("%s, grammar %s, after \"%s\": token %d \"%s\" is %s but should %s", v->name, src, P, (int)t,
                         b.data ? b.data : "", want ? "masked" : "admitted", want ? "be admitted" : "not");
            }
            count += want;
            checked++;
        }
        admitted += count;
        assert_int_equal(n_allowed, count);
        smp_matcher_free(m);
    }
    /* every sentence, cut into the longest tokens the trie has, is accepted token by token and
       may end (tok_encode would add SentencePiece's leading space at the start of a text) */
    for (size_t i = 0; i < lang->n; i++) {
        tok_vec ids = {0};
        lm_error err = {0};
        longest_tokens(v->trie, lang->v[i], &ids);
        smp_matcher *m = NULL;
        assert_int_equal(smp_matcher_new(g, v->tok, &v->eog, 1, (size_t)nv, &m, &err), LM_OK);
        for (size_t k = 0; k < ids.n; k++) {
            if (smp_matcher_accept(m, ids.ids[k]) != LM_OK)
                fail_msg("%s: \"%s\" token %zu (%d) refused", v->name, lang->v[i], k, (int)ids.ids[k]);
        }
        assert_true(smp_matcher_can_end(m));
        assert_int_equal(smp_matcher_accept(m, v->eog), LM_OK);
        assert_true(smp_matcher_done(m));
        uint32_t na = 0;
        const uint64_t *mask = smp_matcher_mask(m, &na);
        assert_int_equal(na, 1); /* only the end-of-generation token after it */
        assert_true(mask_bit(mask, v->eog));
        smp_matcher_free(m);
        tok_vec_free(&ids);
    }
    print_message("%s: %zu prefixes x %d tokens checked, %zu admitted\n", v->name, checked / (size_t)nv, nv, admitted);
    ss_free(&pre);
    smp_grammar_free(g);
}

/* Alternatives with digits, accents, CJK and an optional comma: 228 sentences. */
static void lang_mixed(strset *s) {
    const char *heads[] = {"ab", "\xc3\xa9", "\xc3\xa9x", "\xe4\xb8\xad\xe6\x96\x87"};
    for (int tail = 0; tail < 2; tail++) {
        char buf[64];
        for (size_t h = 0; h < LM_ARRAY_LEN(heads); h++) {
            snprintf(buf, sizeof buf, "%s%s", heads[h], tail ? "," : "");
            ss_add(s, buf);
        }
        for (int d = 0; d < 10; d++) {
            snprintf(buf, sizeof buf, "a%d%s", d, tail ? "," : "");
            ss_add(s, buf);
            for (int e = 0; e < 10; e++) {
                snprintf(buf, sizeof buf, "a%d%d%s", d, e, tail ? "," : "");
                ss_add(s, buf);
            }
        }
    }
}
static const char G_MIXED[] = "root ::= ( \"ab\" | \"a\" [0-9]{1,2} | \"\\u00e9\" \"x\"? | \"\xe4\xb8\xad\xe6\x96\x87\" ) \",\"?";

/* A JSON-like object with optional spaces: 16 * 12 * 3 = 576 sentences. */
static void lang_object(strset *s) {
    const char *keys[] = {"a", "b", "c", "aa", "ab", "ac", "ba", "bb", "bc", "ca", "cb", "cc"};
    const char *vals[] = {"1", "22", "\"x y\""};
    for (int w = 0; w < 16; w++)
        for (size_t k = 0; k < LM_ARRAY_LEN(keys); k++)
            for (size_t v = 0; v < LM_ARRAY_LEN(vals); v++) {
                char buf[64];
                snprintf(buf, sizeof buf, "{%s\"%s\"%s:%s%s%s}", w & 1 ? " " : "", keys[k], w & 2 ? " " : "",
                         w & 4 ? " " : "", vals[v], w & 8 ? " " : "");
                ss_add(s, buf);
            }
}
static const char G_OBJECT[] = "root ::= \"{\" ws \"\\\"\" [a-c]{1,2} \"\\\"\" ws \":\" ws ( \"1\" | \"22\" | \"\\\"x y\\\"\" ) ws \"}\"\n"
                               "ws ::= \" \"?\n";

/* Code points of 2 and 4 bytes, once or twice: 6 + 36 sentences. */
static void lang_wide(strset *s) {
    const char *cps[] = {"\xc3\xa0", "\xc3\xa1", "\xc3\xa2", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x81", "\xf0\x9f\x98\x82"};
    for (size_t a = 0; a < 6; a++) {
        ss_add(s, cps[a]);
        for (size_t b = 0; b < 6; b++) {
            char buf[16];
            snprintf(buf, sizeof buf, "%s%s", cps[a], cps[b]);
            ss_add(s, buf);
        }
    }
}
static const char G_WIDE[] = "root ::= c c?\nc ::= [\\u00e0-\\u00e2] | [\\U0001F600-\\U0001F602]";

static void test_brute_force_finite(void **state) {
    (void)state;
    vocab v[3];
    load_vocabs(v);
    for (int k = 0; k < 3; k++) {
        strset s = {0};
        lang_mixed(&s);
        brute_force(&v[k], G_MIXED, &s);
        ss_free(&s);
        lang_object(&s);
        brute_force(&v[k], G_OBJECT, &s);
        ss_free(&s);
        lang_wide(&s);
        brute_force(&v[k], G_WIDE, &s);
        ss_free(&s);
    }
    for (int k = 0; k < 3; k++) vocab_free(&v[k]);
}

/* ---- an independent JSON prefix checker (the language of smp_json_object_grammar: an object,
 * white space between tokens either nothing, one space, or one newline and up to 20 spaces or
 * tabs, also before and after the object; numbers of at most 16+16+3 digits; no surrogate \u
 * escapes) ---- */

enum { J_START, J_VALUE, J_OBJ_FIRST, J_OBJ_KEY, J_COLON, J_AFTER, J_ARR_FIRST, J_STR, J_ESC, J_HEX, J_U8, J_LIT,
       J_NEG, J_ZERO, J_INT, J_DOT, J_FRAC, J_E, J_ESIGN, J_EXP, J_DONE, J_BAD };

typedef struct jchk {
    uint64_t arr[4]; /* bit d: container at depth d is an array */
    int depth;
    int mode;
    int ws;          /* white space in this gap: 0 none, 1 one space, 2 a newline then indent */
    int indent;
    int count;       /* digits, hex digits, or UTF-8 bytes still expected */
    int lo, hi;      /* range of the next UTF-8 continuation byte */
    bool key;
    const char *lit;
} jchk;

static bool ws_allowed(const jchk *j) {
    switch (j->mode) {
    case J_START: case J_VALUE: case J_OBJ_FIRST: case J_OBJ_KEY: case J_COLON: case J_ARR_FIRST: case J_DONE:
        return true;
    case J_AFTER: return j->depth > 0;
    default: return false;
    }
}

static void j_after_value(jchk *j) {
    j->mode = j->depth > 0 ? J_AFTER : J_DONE;
    j->ws = 0;
}

static void j_push(jchk *j, bool array) {
    if (j->depth >= 255) {
        j->mode = J_BAD;
        return;
    }
    if (array) j->arr[j->depth >> 6] |= 1ull << (j->depth & 63);
    else j->arr[j->depth >> 6] &= ~(1ull << (j->depth & 63));
    j->depth++;
    j->mode = array ? J_ARR_FIRST : J_OBJ_FIRST;
    j->ws = 0;
}

static bool j_top_array(const jchk *j) { return (j->arr[(j->depth - 1) >> 6] >> ((j->depth - 1) & 63)) & 1; }

/* The first digit of a counted run (J_INT, J_FRAC, J_EXP), or J_BAD when c is not one. */
static void j_first_digit(jchk *j, bool digit, int mode) {
    if (digit) {
        j->mode = mode;
        j->count = 1;
    } else j->mode = J_BAD;
}

static void j_value_start(jchk *j, int c) {
    j->ws = 0;
    if (c == '{') j_push(j, false);
    else if (c == '[') j_push(j, true);
    else if (c == '"') {
        j->mode = J_STR;
        j->key = false;
    } else if (c == '-') j->mode = J_NEG;
    else if (c == '0') j->mode = J_ZERO;
    else if (c >= '1' && c <= '9') j_first_digit(j, true, J_INT);
    else if (c == 't') {
        j->mode = J_LIT;
        j->lit = "rue";
    } else if (c == 'f') {
        j->mode = J_LIT;
        j->lit = "alse";
    } else if (c == 'n') {
        j->mode = J_LIT;
        j->lit = "ull";
    } else j->mode = J_BAD;
}

static void j_byte(jchk *j, int c);

/* A ']' or '}' that closes the innermost container, which is a value. */
static void j_close(jchk *j) {
    j->depth--;
    j_after_value(j);
}

/* c ended a number without being part of it: the value is over and c is read again. */
static void j_number_end(jchk *j, int c) {
    j_after_value(j);
    j_byte(j, c);
}

static void j_byte(jchk *j, int c) {
    if (j->mode == J_BAD) return;
    if (ws_allowed(j) && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
        if (c == ' ' && j->ws == 0) j->ws = 1;
        else if (c == '\n' && j->ws == 0) {
            j->ws = 2;
            j->indent = 0;
        } else if ((c == ' ' || c == '\t') && j->ws == 2 && j->indent < 20) j->indent++;
        else j->mode = J_BAD;
        return;
    }
    bool digit = c >= '0' && c <= '9';
    switch (j->mode) {
    case J_DONE: j->mode = J_BAD; return;
    case J_START:
        if (c == '{') j_push(j, false);
        else j->mode = J_BAD;
        return;
    case J_VALUE: j_value_start(j, c); return;
    case J_ARR_FIRST:
        if (c == ']') j_close(j);
        else j_value_start(j, c);
        return;
    case J_OBJ_FIRST:
    case J_OBJ_KEY:
        if (c == '"') {
            j->mode = J_STR;
            j->key = true;
            j->ws = 0;
        } else if (c == '}' && j->mode == J_OBJ_FIRST) j_close(j);
        else j->mode = J_BAD;
        return;
    case J_COLON:
        if (c == ':') {
            j->mode = J_VALUE;
            j->ws = 0;
        } else j->mode = J_BAD;
        return;
    case J_AFTER:
        j->ws = 0;
        if (c == ',') j->mode = j_top_array(j) ? J_VALUE : J_OBJ_KEY;
        else if ((c == ']' && j_top_array(j)) || (c == '}' && !j_top_array(j))) j_close(j);
        else j->mode = J_BAD;
        return;
    case J_STR:
        if (c == '"') {
            if (j->key) {
                j->mode = J_COLON;
                j->ws = 0;
            } else j_after_value(j);
        } else if (c == '\\') j->mode = J_ESC;
        else if (c < 0x20) j->mode = J_BAD;
        else if (c < 0x80) return;
        else {
            j->lo = 0x80;
            j->hi = 0xBF;
            if (c >= 0xC2 && c <= 0xDF) j->count = 1;
            else if (c >= 0xE0 && c <= 0xEF) {
                j->count = 2;
                if (c == 0xE0) j->lo = 0xA0;
                if (c == 0xED) j->hi = 0x9F;
            } else if (c >= 0xF0 && c <= 0xF4) {
                j->count = 3;
                if (c == 0xF0) j->lo = 0x90;
                if (c == 0xF4) j->hi = 0x8F;
            } else {
                j->mode = J_BAD;
                return;
            }
            j->mode = J_U8;
        }
        return;
    case J_U8:
        if (c < j->lo || c > j->hi) {
            j->mode = J_BAD;
            return;
        }
        j->lo = 0x80;
        j->hi = 0xBF;
        if (--j->count == 0) j->mode = J_STR;
        return;
    case J_ESC:
        if (strchr("\"\\/bfnrt", c) && c) j->mode = J_STR;
        else if (c == 'u') {
            j->mode = J_HEX;
            j->count = 0;
        } else j->mode = J_BAD;
        return;
    case J_HEX: /* never a surrogate: after a first digit d, the second is 0-7 */
        if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
            if (j->count == 1 && j->lo == 'd' && !(c >= '0' && c <= '7')) j->mode = J_BAD;
            j->lo = j->count == 0 && (c == 'd' || c == 'D') ? 'd' : 0;
            if (++j->count == 4) j->mode = J_STR;
        } else j->mode = J_BAD;
        return;
    case J_LIT:
        if (c == *j->lit) {
            if (!*++j->lit) j_after_value(j);
        } else j->mode = J_BAD;
        return;
    case J_NEG:
        if (c == '0') j->mode = J_ZERO;
        else j_first_digit(j, c >= '1' && c <= '9', J_INT);
        return;
    case J_ZERO:
    case J_INT:
        if (digit && j->mode == J_INT) {
            if (++j->count > 16) j->mode = J_BAD;
            return;
        }
        if (c == '.') j->mode = J_DOT;
        else if (c == 'e' || c == 'E') j->mode = J_E;
        else j_number_end(j, c);
        return;
    case J_DOT: j_first_digit(j, digit, J_FRAC); return;
    case J_FRAC:
        if (digit) {
            if (++j->count > 16) j->mode = J_BAD;
        } else if (c == 'e' || c == 'E') j->mode = J_E;
        else j_number_end(j, c);
        return;
    case J_E:
        if (c == '+' || c == '-') j->mode = J_ESIGN;
        else j_first_digit(j, digit, J_EXP);
        return;
    case J_ESIGN: j_first_digit(j, digit, J_EXP); return;
    case J_EXP:
        if (digit) {
            if (++j->count > 3) j->mode = J_BAD;
        } else j_number_end(j, c);
        return;
    default: j->mode = J_BAD;
    }
}

/* Sanity of the checker itself on known texts. */
static bool j_check(const char *s, bool *whole) {
    jchk j = {.mode = J_START};
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) j_byte(&j, *p);
    *whole = j.mode == J_DONE;
    return j.mode != J_BAD;
}

static void test_json_checker(void **state) {
    (void)state;
    bool whole;
    assert_true(j_check("{\"a\": [1, -0.5e+10, true, null, \"x\\u00e9\\n\", {}]}", &whole) && whole);
    assert_true(j_check("{\n  \"a\": {\n\t\"b\": []\n  }\n}", &whole) && whole);
    assert_true(j_check("{\"a\": 1", &whole) && !whole);
    assert_false(j_check("{\"a\": 01}", &whole));
    assert_false(j_check("{\"a\":  1}", &whole));  /* two spaces */
    assert_false(j_check("{\"a\": \"\x01\"}", &whole));
    assert_false(j_check("{\"a\": \"\xed\xa0\x80\"}", &whole));
    assert_true(j_check(" {} ", &whole) && whole);   /* white space around the object */
    assert_true(j_check("\n\t{}\n", &whole) && whole);
    assert_false(j_check("{}  ", &whole));
    assert_false(j_check("[1]", &whole));
    assert_false(j_check("{\"a\": \"\\uDA00\"}", &whole));
    assert_true(j_check("{\"a\": \"\\uD7FF\\ue000\"}", &whole) && whole);
}

/* Random walks through JSON mode: at each step, every token's bit against the checker. */
static void json_walks(const vocab *v, int walks, int steps, uint64_t seed) {
    lm_buf gt = {0};
    assert_true(smp_json_object_grammar(&gt));
    smp_grammar *g = compile_ok(gt.data);
    lm_buf_free(&gt);
    const tok_trie *tr = v->trie;
    int32_t nv = tok_n_vocab(v->tok);
    lm_rng rng;
    lm_rng_seed(&rng, seed);
    int32_t *allowed = malloc((size_t)nv * sizeof *allowed);
    bool *structural = calloc((size_t)nv, sizeof *structural);
    for (lm_token t = 0; t < nv; t++)
        for (uint32_t i = 0; i < tr->len[t]; i++)
            if (strchr("\"{}[],:", tr->bytes[tr->off[t] + i])) structural[t] = true;
    size_t total_checks = 0, max_depth = 0;
    for (int w = 0; w < walks; w++) {
        smp_matcher *m = NULL;
        lm_error err = {0};
        assert_int_equal(smp_matcher_new(g, v->tok, &v->eog, 1, (size_t)nv, &m, &err), LM_OK);
        jchk cur = {.mode = J_START};
        for (int step = 0; step < steps; step++) {
            uint32_t na = 0;
            const uint64_t *mask = smp_matcher_mask(m, &na);
            assert_non_null(mask);
            size_t n_ok = 0;
            for (lm_token t = 0; t < nv; t++) {
                bool want;
                if (t == v->eog) {
                    want = cur.mode == J_DONE;
                } else if (!tr->len[t]) {
                    want = false;
                } else {
                    jchk j = cur;
                    const uint8_t *b = tr->bytes + tr->off[t];
                    for (uint32_t i = 0; i < tr->len[t] && j.mode != J_BAD; i++) j_byte(&j, b[i]);
                    want = j.mode != J_BAD;
                }
                if (mask_bit(mask, t) != want) {
                    lm_buf b = {0};
                    tok_token_bytes(v->tok, t, &b);
                    fail_msg("%s walk %d step %d: token %d \"%s\" is %s but should %s", v->name, w, step, (int)t,
                             b.data ? b.data : "", want ? "masked" : "admitted", want ? "be admitted" : "not");
                }
                if (want && t != v->eog) allowed[n_ok++] = t;
            }
            total_checks += (size_t)nv;
            if (cur.mode == J_DONE) break;
            assert_true(n_ok > 0);
            /* most of the time a token with a structural character, so objects, arrays and
               strings open and close; not deeper than 12, not closing the root early */
            lm_token pick = -1;
            bool want_structure = lm_rng_uniform(&rng) < 0.7;
            for (int tries = 0; tries < 400 && pick < 0; tries++) {
                lm_token t = allowed[(size_t)(lm_rng_uniform(&rng) * (double)n_ok)];
                if (want_structure && !structural[t] && tries < 300) continue;
                jchk j = cur;
                for (uint32_t i = 0; i < tr->len[t]; i++) j_byte(&j, tr->bytes[tr->off[t] + i]);
                if (j.depth > 12 || (j.mode == J_DONE && step < steps - 3 && tries < 390)) continue;
                pick = t;
            }
            if (pick < 0) pick = allowed[0];
            for (uint32_t i = 0; i < tr->len[pick]; i++) j_byte(&cur, tr->bytes[tr->off[pick] + i]);
            if ((size_t)cur.depth > max_depth) max_depth = (size_t)cur.depth;
            assert_int_equal(smp_matcher_accept(m, pick), LM_OK);
        }
        smp_matcher_free(m);
    }
    print_message("%s: JSON walks, %zu token checks, depth up to %zu\n", v->name, total_checks, max_depth);
    free(allowed);
    free(structural);
    smp_grammar_free(g);
}

static void test_brute_force_json(void **state) {
    (void)state;
    vocab v[3];
    load_vocabs(v);
    json_walks(&v[0], 6, 150, 1);
    json_walks(&v[1], 3, 80, 2);
    json_walks(&v[2], 8, 120, 3);
    for (int k = 0; k < 3; k++) vocab_free(&v[k]);
}

/* ---- token references ---- */

static void test_token_refs(void **state) {
    (void)state;
    vocab v;
    vocab_load(&v, "tinychat", tu_src("models/tinychat"));
    int32_t nv = tok_n_vocab(v.tok);
    lm_token tc = tok_find(v.tok, "<tool_call>"), tce = tok_find(v.tok, "</tool_call>");
    lm_token im_end = tok_find(v.tok, "<|im_end|>"), im_start = tok_find(v.tok, "<|im_start|>");
    assert_true(tc >= 0 && tce >= 0 && im_end >= 0 && im_start >= 0);
    /* <tool_call> by text and </tool_call> by id: only those tokens, not their spelling */
    char src[160];
    snprintf(src, sizeof src, "root ::= <tool_call> [a-z]+ <[%d]>", (int)tce);
    smp_grammar *g = compile_ok(src);
    smp_matcher *m = NULL;
    lm_error err = {0};
    assert_int_equal(smp_matcher_new(g, v.tok, &im_end, 1, (size_t)nv, &m, &err), LM_OK);
    uint32_t na;
    const uint64_t *mask = smp_matcher_mask(m, &na);
    assert_int_equal(na, 1);
    assert_true(mask_bit(mask, tc));
    assert_int_equal(smp_matcher_accept(m, tok_find(v.tok, "<")), LM_ERR_MISUSE);
    assert_int_equal(smp_matcher_accept(m, tc), LM_OK);
    assert_int_equal(smp_matcher_accept(m, tok_find(v.tok, "a")), LM_OK);
    mask = smp_matcher_mask(m, &na);
    assert_true(mask_bit(mask, tce));
    assert_false(mask_bit(mask, im_end));
    assert_false(mask_bit(mask, tok_find(v.tok, "<")));
    assert_int_equal(smp_matcher_accept(m, tce), LM_OK);
    assert_true(smp_matcher_can_end(m));
    mask = smp_matcher_mask(m, &na);
    assert_int_equal(na, 1);
    assert_true(mask_bit(mask, im_end));
    smp_matcher_free(m);
    smp_grammar_free(g);
    /* !<...>: any one token but that one (end of generation excluded), special ones included */
    g = compile_ok("root ::= (!<|im_start|>){2}");
    assert_int_equal(smp_matcher_new(g, v.tok, &im_end, 1, (size_t)nv, &m, &err), LM_OK);
    mask = smp_matcher_mask(m, &na);
    assert_int_equal(na, (uint32_t)nv - 2);
    assert_false(mask_bit(mask, im_start));
    assert_false(mask_bit(mask, im_end));
    assert_true(mask_bit(mask, tc) && mask_bit(mask, tok_find(v.tok, "<|endoftext|>")));
    assert_int_equal(smp_matcher_accept(m, tok_find(v.tok, "<|endoftext|>")), LM_OK);
    assert_int_equal(smp_matcher_accept(m, tok_find(v.tok, "Paris")), LM_OK);
    mask = smp_matcher_mask(m, &na);
    assert_int_equal(na, 1);
    smp_matcher_free(m);
    smp_grammar_free(g);
    /* a reference the vocabulary lacks fails when bound, naming where it is */
    g = compile_ok("root ::= \"x\"\n  <|nope|>");
    assert_int_equal(smp_matcher_new(g, v.tok, &im_end, 1, (size_t)nv, &m, &err), LM_ERR_FORMAT);
    assert_string_equal(err.msg, "grammar line 2 column 3: token <|nope|> is not in the vocabulary");
    smp_grammar_free(g);
    g = compile_ok("root ::= <[2048]>");
    assert_int_equal(smp_matcher_new(g, v.tok, &im_end, 1, (size_t)nv, &m, &err), LM_ERR_FORMAT);
    assert_string_equal(err.msg, "grammar line 1 column 10: token id 2048 is outside the vocabulary");
    smp_grammar_free(g);
    /* Mistral's [TOOL_CALLS] through the <[...]> text form */
    vocab mv;
    vocab_load(&mv, "mistral", tu_data("tokenizers/mistral"));
    g = compile_ok("root ::= <[TOOL_CALLS]> \" [\"");
    assert_int_equal(smp_matcher_new(g, mv.tok, &mv.eog, 1, (size_t)tok_n_vocab(mv.tok), &m, &err), LM_OK);
    mask = smp_matcher_mask(m, &na);
    assert_int_equal(na, 1);
    assert_true(mask_bit(mask, tok_find(mv.tok, "[TOOL_CALLS]")));
    smp_matcher_free(m);
    smp_grammar_free(g);
    vocab_free(&mv);
    vocab_free(&v);
}

/* Ids past the tokenizer's (a model whose logits are padded) are never allowed; ids the mask
 * covers follow n_vocab. */
static void test_padded_vocab(void **state) {
    (void)state;
    vocab v;
    vocab_load(&v, "tinychat", tu_src("models/tinychat"));
    smp_grammar *g = compile_ok("root ::= [a-z]* | (!<|im_start|>)");
    smp_matcher *m = NULL;
    lm_error err = {0};
    assert_int_equal(smp_matcher_new(g, v.tok, &v.eog, 1, 2100, &m, &err), LM_OK);
    uint32_t na;
    const uint64_t *mask = smp_matcher_mask(m, &na);
    for (lm_token t = 2048; t < 2100; t++) {
        assert_false(mask_bit(mask, t));
        assert_false(smp_matcher_allows(m, t));
    }
    assert_int_equal(smp_matcher_accept(m, 2050), LM_ERR_MISUSE);
    smp_matcher_free(m);
    smp_grammar_free(g);
    vocab_free(&v);
}

/* ---- allocation failures: every allocation of schema -> grammar -> matcher -> steps ---- */

static lm_status alloc_attempt(const tok_tokenizer *tok, lm_token eog) {
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
                                 "\"b\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":3},"
                                 "\"c\":{\"enum\":[\"x\",null]}},\"required\":[\"a\"]}";
    static const char text[] = "{\"a\": \"h\u00e9 \\n \xe4\xb8\xad\", \"b\": [1, 22], \"c\": null}";
    lm_buf g = {0};
    lm_error err = {0};
    lm_status st = smp_json_schema_grammar(schema, sizeof schema - 1, 0, &g, &err);
    smp_grammar *gr = NULL;
    smp_matcher *m = NULL;
    if (!st) st = smp_grammar_compile(g.data, g.len, &gr, &err);
    if (!st) st = smp_matcher_new(gr, tok, &eog, 1, (size_t)tok_n_vocab(tok), &m, &err);
    for (size_t i = 0; !st && i < sizeof text - 1; i += 3) {
        uint32_t na;
        if (!smp_matcher_mask(m, &na)) st = LM_ERR_NOMEM;
        else st = smp_matcher_accept_bytes(m, text + i, LM_MIN(3, sizeof text - 1 - i));
    }
    if (!st && !smp_matcher_can_end(m)) st = LM_ERR_FORMAT;
    if (st && st != LM_ERR_NOMEM) fail_msg("status %d (%s) with allocation %ld failing", st, err.msg, lm_alloc_count());
    smp_matcher_free(m);
    smp_grammar_free(gr);
    lm_buf_free(&g);
    return st;
}

static void test_alloc_failures(void **state) {
    (void)state;
    vocab v;
    vocab_load(&v, "tinychat", tu_src("models/tinychat"));
    lm_alloc_fail_at(-1); /* count only */
    assert_int_equal(alloc_attempt(v.tok, v.eog), LM_OK);
    long total = lm_alloc_count();
    lm_alloc_fail_at(0);
    long n, recovered = 0;
    for (n = 1;; n++) {
        lm_alloc_fail_at(n);
        lm_status st = alloc_attempt(v.tok, v.eog);
        bool fired = lm_alloc_failed();
        lm_alloc_fail_at(0);
        if (!fired) {
            assert_int_equal(st, LM_OK);
            break;
        }
        /* NOMEM, or a whole match anyway when the allocation was optional (a state's table of
           256 transitions: without it they stay in the short inline list) */
        assert_true(st == LM_ERR_NOMEM || st == LM_OK);
        recovered += st == LM_OK;
    }
    assert_true(n > total);
    /* the trie of a fresh tokenizer: NULL when an allocation fails, built on a later call */
    vocab w;
    lm_error err = {0};
    if (tok_load_dir(tu_src("models/tinychat"), &w.tok, &err)) fail_msg("%s", err.msg);
    for (n = 1;; n++) {
        lm_alloc_fail_at(n);
        const tok_trie *tr = tok_get_trie(w.tok);
        bool fired = lm_alloc_failed();
        lm_alloc_fail_at(0);
        if (!fired) {
            assert_non_null(tr);
            break;
        }
        assert_null(tr);
    }
    print_message("%ld allocations swept (schema to mask; %ld recovered), %ld for the trie\n", total, recovered, n);
    tok_free(w.tok);
    vocab_free(&v);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals_and_escapes),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_rules_and_layout),
        cmocka_unit_test(test_flat_states),
        cmocka_unit_test(test_cache_rebuild),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_trie),
        cmocka_unit_test(test_brute_force_finite),
        cmocka_unit_test(test_json_checker),
        cmocka_unit_test(test_brute_force_json),
        cmocka_unit_test(test_token_refs),
        cmocka_unit_test(test_padded_vocab),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
