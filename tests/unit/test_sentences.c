/* tests/unit/test_sentences.c: the sentence chunker (lm_sentences_*, public in locallm.h) on a
 * table of texts in several languages, each fed whole, one byte at a time and in seeded random
 * pieces (the chunks must be the same every time); early first chunk, max length, stopping,
 * reset, flush, allocation failure. */
#include "testutil.h"

#include "locallm.h"

#include <stdio.h>

#define MAX_OUT 12

typedef struct chunks {
    char text[MAX_OUT * 2][256];
    size_t n;
    int stop_after; /* the callback returns non-zero on this chunk (1-based); 0: never */
} chunks;

static int collect(const char *t, size_t n, void *user) {
    chunks *c = user;
    assert_true(n > 0 && n < sizeof c->text[0]);
    assert_int_equal(strlen(t), n); /* NUL-terminated at len */
    assert_true(c->n < LM_ARRAY_LEN(c->text));
    memcpy(c->text[c->n], t, n);
    c->text[c->n][n] = 0;
    c->n++;
    return c->stop_after && (int)c->n == c->stop_after;
}

/* A chunker whose callback collects into out (emptied first). */
static lm_sentences *new_collector(const lm_sentences_params *p, chunks *out) {
    memset(out, 0, sizeof *out);
    lm_sentences *s = NULL;
    assert_int_equal(lm_sentences_new(p, collect, out, &s, NULL), LM_OK);
    assert_non_null(s);
    return s;
}

/* Feeds text in pieces: step 0 whole, 1 one byte at a time, else random lengths 1..step from
 * seed. */
static void feed(const lm_sentences_params *p, const char *text, size_t step, uint64_t seed,
                 chunks *out) {
    lm_sentences *s = new_collector(p, out);
    size_t len = strlen(text), i = 0;
    lm_rng r;
    lm_rng_seed(&r, seed);
    while (i < len) {
        size_t n = step == 0 ? len : step == 1 ? 1 : 1 + (size_t)(lm_rng_next(&r) % step);
        if (n > len - i) n = len - i;
        assert_int_equal(lm_sentences_push(s, text + i, n), LM_OK);
        i += n;
    }
    assert_int_equal(lm_sentences_flush(s), LM_OK);
    lm_sentences_free(s);
}

typedef struct tcase {
    const char *in;
    const char *out[MAX_OUT]; /* NULL-terminated */
} tcase;

static const tcase CASES[] = {
    /* plain sentences */
    {"Hello world. How are you? I am fine!", {"Hello world.", "How are you?", "I am fine!"}},
    {"One sentence without an end", {"One sentence without an end"}},
    {"  Spaces around.   Then more.  ", {"Spaces around.", "Then more."}},
    {"Really?! Yes!!! No?", {"Really?!", "Yes!!!", "No?"}},
    {"It works…  Next one.", {"It works…", "Next one."}},
    {"Wait... what happened? Then... Nothing.", {"Wait... what happened?", "Then...", "Nothing."}},
    {"Yahoo! is a company. Done.", {"Yahoo! is a company.", "Done."}},
    {"End.", {"End."}},
    {"", {NULL}},
    {"   \n\n  ", {NULL}},
    /* closers */
    {"He said \"Stop.\" Then he left.", {"He said \"Stop.\"", "Then he left."}},
    {"(See above.) Next.", {"(See above.)", "Next."}},
    {"It is 'done.' Really.", {"It is 'done.'", "Really."}},
    {"She said “yes.” He said “no!” OK.", {"She said “yes.”", "He said “no!”", "OK."}},
    {"**Note.** Read this.", {"**Note.**", "Read this."}},
    {"[Done.] Go.", {"[Done.]", "Go."}},
    /* abbreviations */
    {"Dr. Smith arrived. He sat.", {"Dr. Smith arrived.", "He sat."}},
    {"Mr. and Mrs. Brown met Ms. Green. Prof. Lee came.",
     {"Mr. and Mrs. Brown met Ms. Green.", "Prof. Lee came."}},
    {"We met on St. Patrick's day. Fun.", {"We met on St. Patrick's day.", "Fun."}},
    {"Fruits, e.g. Apples, are good. Yes.", {"Fruits, e.g. Apples, are good.", "Yes."}},
    {"Some fruit, i.e. Apples. Yes.", {"Some fruit, i.e. Apples.", "Yes."}},
    {"Apples, pears, etc. are fruit. Bread etc. Is that all?",
     {"Apples, pears, etc. are fruit.", "Bread etc.", "Is that all?"}},
    {"The U.S. Army won. The U.K. Team lost.", {"The U.S. Army won.", "The U.K. Team lost."}},
    {"I left at 10 a.m. and came back at 5 p.m. Then I slept.",
     {"I left at 10 a.m. and came back at 5 p.m.", "Then I slept."}},
    {"Cats vs. Dogs is a film. Good.", {"Cats vs. Dogs is a film.", "Good."}},
    {"See No. 5 and Fig. 2 here. No. It is not.",
     {"See No. 5 and Fig. 2 here.", "No.", "It is not."}},
    {"J. R. R. Tolkien wrote it. Good.", {"J. R. R. Tolkien wrote it.", "Good."}},
    {"So do I. Then we go.", {"So do I.", "Then we go."}},
    {"He has a Ph.D. He is smart.", {"He has a Ph.D.", "He is smart."}},
    /* numbers, URLs, addresses */
    {"Pi is 3.14 roughly. Yes.", {"Pi is 3.14 roughly.", "Yes."}},
    {"Meet at 10:30 tomorrow. OK.", {"Meet at 10:30 tomorrow.", "OK."}},
    {"Install v1.2.3 now. Then restart.", {"Install v1.2.3 now.", "Then restart."}},
    {"Visit https://example.com/a.b?x=1. Then log in.",
     {"Visit https://example.com/a.b?x=1.", "Then log in."}},
    {"Go to example.com/path now. Bye.", {"Go to example.com/path now.", "Bye."}},
    {"Mail john.doe@example.org today. Thanks.", {"Mail john.doe@example.org today.", "Thanks."}},
    {"It costs 5. Then more.", {"It costs 5.", "Then more."}},
    {"Born in 1990. 2000 was later.", {"Born in 1990.", "2000 was later."}},
    /* lines, lists, markdown */
    {"First line\nSecond line", {"First line", "Second line"}},
    {"Title:\n- one item\n- two. Three\n* star\n+ plus",
     {"Title:", "one item", "two.", "Three", "star", "plus"}},
    {"Steps:\n1. Open the box.\n2. Take it out\n10) Done",
     {"Steps:", "Open the box.", "Take it out", "Done"}},
    {"• bullet one\n  • bullet two", {"bullet one", "bullet two"}},
    {"-5 degrees today.\n---", {"-5 degrees today.", "---"}},
    {"In 2019.\nNext.", {"In 2019.", "Next."}},
    {"3. \u00a0Spaced item", {"Spaced item"}},
    {"Line one.\r\nLine two.\r\n", {"Line one.", "Line two."}},
    {"Dr.\nWho", {"Dr.", "Who"}},
    /* French */
    {"Il a dit « Bonjour ! » Puis il est parti.", {"Il a dit « Bonjour ! »", "Puis il est parti."}},
    {"« Bonjour ! » puis rien. Voilà.", {"« Bonjour ! » puis rien.", "Voilà."}},
    {"Où es-tu ? Je suis là.", {"Où es-tu ?", "Je suis là."}},
    {"Mme. Dupont est là. M. Martin aussi.", {"Mme. Dupont est là.", "M. Martin aussi."}},
    /* German */
    {"Das ist gut, z.B. Äpfel. Über alles.", {"Das ist gut, z.B. Äpfel.", "Über alles."}},
    {"»Hallo!« Er ging. »Tschüss.«", {"»Hallo!«", "Er ging.", "»Tschüss.«"}},
    {"„Wie geht's?“ Gut.", {"„Wie geht's?“", "Gut."}},
    /* Spanish */
    {"¿Qué hora es? ¡Son las tres! Vale.", {"¿Qué hora es?", "¡Son las tres!", "Vale."}},
    {"Sr. García llegó. Él comió.", {"Sr. García llegó.", "Él comió."}},
    /* Chinese, Japanese */
    {"你好。我很好！你呢？", {"你好。", "我很好！", "你呢？"}},
    {"今日は晴れです。「行こう！」と言った。", {"今日は晴れです。", "「行こう！」", "と言った。"}},
    {"真的吗？！是的。", {"真的吗？！", "是的。"}},
    {"版本是1.2。好的", {"版本是1.2。", "好的"}},
    /* Russian */
    {"Привет. Как дела? Хорошо, т.е. нормально.", {"Привет.", "Как дела?", "Хорошо, т.е. нормально."}},
    {"Это г. Москва. Да.", {"Это г.", "Москва.", "Да."}},
    /* Arabic, Hindi */
    {"كيف حالك؟ أنا بخير.", {"كيف حالك؟", "أنا بخير."}},
    {"मैं ठीक हूँ। आप कैसे हैं?", {"मैं ठीक हूँ।", "आप कैसे हैं?"}},
    /* mixed and odd */
    {"Great! 😀 Next thing.", {"Great!", "😀 Next thing."}},
    {". Lone dot.", {".", "Lone dot."}},
    {"Tab\tseparated.\tNext.", {"Tab\tseparated.", "Next."}},
    {"No\u00a0break.\u00a0Next.", {"No\u00a0break.", "Next."}},
    {"Ideographic\u3000space.\u3000Next.", {"Ideographic\u3000space.", "Next."}},
};

static void check(const chunks *got, const tcase *c, const char *how) {
    size_t n_want = 0;
    while (n_want < MAX_OUT && c->out[n_want]) n_want++;
    bool same = got->n == n_want;
    for (size_t k = 0; same && k < n_want; k++) same = strcmp(got->text[k], c->out[k]) == 0;
    if (!same) {
        print_error("input: [%s] fed %s\n", c->in, how);
        for (size_t k = 0; k < got->n; k++) print_error("  got  [%s]\n", got->text[k]);
        for (size_t k = 0; k < n_want; k++) print_error("  want [%s]\n", c->out[k]);
        fail();
    }
}

/* Feeds c whole, one byte at a time and, when step is not 0, in random pieces of 1..step bytes
 * from seed: each way must give c's chunks. */
static void check_ways(const lm_sentences_params *p, const tcase *c, size_t step, uint64_t seed) {
    chunks got;
    feed(p, c->in, 0, 0, &got);
    check(&got, c, "whole");
    feed(p, c->in, 1, 0, &got);
    check(&got, c, "byte by byte");
    if (step) {
        char how[64];
        snprintf(how, sizeof how, "in random pieces of up to %zu bytes (seed %d)", step, (int)seed);
        feed(p, c->in, step, seed, &got);
        check(&got, c, how);
    }
}

static void test_table(void **state) {
    (void)state;
    assert_true(LM_ARRAY_LEN(CASES) >= 60);
    lm_sentences_params p = lm_sentences_default_params();
    for (size_t k = 0; k < LM_ARRAY_LEN(CASES); k++) {
        check_ways(&p, &CASES[k], 0, 0);
        for (uint64_t seed = 1; seed <= 8; seed++) {
            chunks got;
            char how[64];
            snprintf(how, sizeof how, "in random pieces (seed %d)", (int)seed);
            feed(&p, CASES[k].in, 2 + seed % 6, seed, &got);
            check(&got, &CASES[k], how);
        }
    }
}

static void test_keep_markers(void **state) {
    (void)state;
    lm_sentences_params p = lm_sentences_default_params();
    p.keep_list_markers = true;
    static const tcase c = {"Do:\n- one\n2. two. Three\n", {"Do:", "- one", "2. two.", "Three"}};
    check_ways(&p, &c, 0, 0);
}

static void test_early_first_chunk(void **state) {
    (void)state;
    lm_sentences_params p = lm_sentences_default_params();
    p.first_chunk_min_chars = 10;
    static const tcase cases[] = {
        /* "Well," is too short; "Well, you see," has 14 characters; later commas do not cut */
        {"Well, you see, it is late, very late. Yes, it is.",
         {"Well, you see,", "it is late, very late.", "Yes, it is."}},
        /* 10:30 and 1,000 have no space after the mark */
        {"At 10:30 we had 1,000 guests; all happy. OK.",
         {"At 10:30 we had 1,000 guests;", "all happy.", "OK."}},
        {"A sentence first. Then, after that, more.",
         {"A sentence first.", "Then, after that, more."}},
        {"我们今天早上一起去公园，然后去吃饭。好的", {"我们今天早上一起去公园，", "然后去吃饭。", "好的"}},
        {"The answer—as always—is 42.", {"The answer—", "as always—is 42."}},
        {"Short, yes.", {"Short, yes."}},
    };
    for (size_t k = 0; k < LM_ARRAY_LEN(cases); k++) check_ways(&p, &cases[k], 4, 7);
    /* after flush the next reply gets an early chunk again */
    chunks out;
    lm_sentences *s = new_collector(&p, &out);
    const char *t = "Well, you see, it is late.";
    assert_int_equal(lm_sentences_push(s, t, strlen(t)), LM_OK);
    assert_int_equal(lm_sentences_flush(s), LM_OK);
    assert_int_equal(lm_sentences_push(s, t, strlen(t)), LM_OK);
    assert_int_equal(lm_sentences_flush(s), LM_OK);
    assert_int_equal(out.n, 4);
    assert_string_equal(out.text[2], "Well, you see,");
    assert_string_equal(out.text[3], "it is late.");
    lm_sentences_free(s);
}

static void test_max_chunk(void **state) {
    (void)state;
    lm_sentences_params p = lm_sentences_default_params();
    p.max_chunk_chars = 12;
    static const tcase cases[] = {
        {"one two three four five six seven. End.",
         {"one two three", "four five six", "seven.", "End."}},
        {"Supercalifragilistic word", {"Supercalifragilistic", "word"}},
        {"一二三四五六七八九十一二，三四五。", {"一二三四五六七八九十一二，", "三四五。"}},
    };
    for (size_t k = 0; k < LM_ARRAY_LEN(cases); k++) check_ways(&p, &cases[k], 5, 3);
}

/* A sentence is emitted as soon as the next word shows it ended, not at flush. */
static void test_emits_early(void **state) {
    (void)state;
    chunks out;
    lm_sentences *s = new_collector(NULL, &out);
    assert_int_equal(lm_sentences_push(s, "Hello there.", 12), LM_OK);
    assert_int_equal(out.n, 0); /* could be "Mr." or "3.14": wait */
    assert_int_equal(lm_sentences_push(s, " ", 1), LM_OK);
    assert_int_equal(out.n, 0); /* the next word could start lowercase */
    assert_int_equal(lm_sentences_push(s, "H", 1), LM_OK);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.text[0], "Hello there.");
    size_t n;
    const char *pend = lm_sentences_pending(s, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(pend, " H", 2);
    assert_int_equal(lm_sentences_push(s, "ow\n", 3), LM_OK); /* a newline cuts at once */
    assert_int_equal(out.n, 2);
    assert_string_equal(out.text[1], "How");
    assert_int_equal(lm_sentences_push(s, "你好。", strlen("你好。")), LM_OK);
    assert_int_equal(out.n, 2); /* a closer may follow */
    assert_int_equal(lm_sentences_push(s, "\xe6", 1), LM_OK); /* half of 我 */
    assert_int_equal(out.n, 2);
    assert_int_equal(lm_sentences_push(s, "\x88\x91", 2), LM_OK);
    assert_int_equal(out.n, 3);
    assert_string_equal(out.text[2], "你好。");
    assert_int_equal(lm_sentences_flush(s), LM_OK);
    assert_int_equal(out.n, 4);
    assert_string_equal(out.text[3], "我");
    lm_sentences_free(s);
}

static void test_stop_and_reset(void **state) {
    (void)state;
    chunks out;
    lm_sentences *s = new_collector(NULL, &out);
    out.stop_after = 2;
    const char *t = "One. Two. Three. Four.";
    assert_int_equal(lm_sentences_push(s, t, strlen(t)), LM_ERR_CANCELLED);
    assert_non_null(strstr(lm_sentences_errmsg(s), "asked to stop"));
    assert_int_equal(out.n, 2);
    assert_string_equal(out.text[1], "Two.");
    assert_int_equal(lm_sentences_push(s, " Five.", 6), LM_ERR_CANCELLED);
    assert_int_equal(lm_sentences_flush(s), LM_ERR_CANCELLED);
    assert_int_equal(out.n, 2);
    /* flush made it ready for the next reply */
    out.stop_after = 0;
    assert_int_equal(lm_sentences_push(s, "Six. Seven", 10), LM_OK);
    assert_int_equal(out.n, 3);
    assert_string_equal(out.text[2], "Six.");
    lm_sentences_reset(s); /* drops " Seven" */
    size_t n;
    lm_sentences_pending(s, &n);
    assert_int_equal(n, 0);
    assert_int_equal(lm_sentences_push(s, "- Eight", 7), LM_OK);
    assert_int_equal(lm_sentences_flush(s), LM_OK);
    assert_int_equal(out.n, 4);
    assert_string_equal(out.text[3], "Eight"); /* reset starts a line again */
    /* stop on the flushed chunk */
    out.stop_after = 5;
    assert_int_equal(lm_sentences_push(s, "Nine", 4), LM_OK);
    assert_int_equal(lm_sentences_flush(s), LM_ERR_CANCELLED);
    assert_int_equal(out.n, 5);
    assert_int_equal(lm_sentences_flush(s), LM_OK); /* nothing left, not stopped any more */
    lm_sentences_free(s);
}

static void test_misuse_and_nomem(void **state) {
    (void)state;
    lm_sentences *none = (lm_sentences *)&none;
    lm_error err = {0};
    assert_int_equal(lm_sentences_new(NULL, NULL, NULL, &none, &err), LM_ERR_MISUSE);
    assert_null(none);
    assert_non_null(strstr(err.msg, "callback is NULL"));
    assert_int_equal(lm_sentences_push(NULL, "a", 1), LM_ERR_MISUSE);
    assert_int_equal(lm_sentences_flush(NULL), LM_ERR_MISUSE);
    lm_sentences_reset(NULL);
    lm_sentences_free(NULL);
    chunks out;
    lm_sentences *s = new_collector(NULL, &out);
    assert_int_equal(lm_sentences_push(s, NULL, 3), LM_ERR_MISUSE);
    assert_non_null(strstr(lm_sentences_errmsg(s), "piece: NULL"));
    assert_int_equal(lm_sentences_push(s, NULL, 0), LM_OK);
    assert_int_equal(lm_sentences_flush(s), LM_OK); /* empty input: no chunk */
    assert_int_equal(out.n, 0);
    lm_sentences_free(s);
    s = new_collector(NULL, &out);
    lm_alloc_fail_at(1);
    assert_int_equal(lm_sentences_push(s, "Hi. There", 9), LM_ERR_NOMEM);
    lm_alloc_fail_at(0);
    assert_non_null(strstr(lm_sentences_errmsg(s), "sentence buffer"));
    assert_int_equal(out.n, 0);
    assert_int_equal(lm_sentences_push(s, "Hi. There", 9), LM_OK);
    assert_int_equal(lm_sentences_flush(s), LM_OK);
    assert_int_equal(out.n, 2);
    lm_sentences_free(s);
    lm_alloc_fail_at(1);
    assert_int_equal(lm_sentences_new(NULL, collect, &out, &s, &err), LM_ERR_NOMEM);
    lm_alloc_fail_at(0);
    assert_null(s);
}

static int total_len(const char *t, size_t n, void *user) {
    (void)t;
    *(size_t *)user += n;
    return 0;
}

/* Invalid UTF-8 passes through, and a long text grows the buffer. */
static void test_bytes_and_growth(void **state) {
    (void)state;
    static const tcase c = {"Bad \xff\xfe byte. Cut \xe4\xbd here.", {"Bad \xff\xfe byte.",
                                                                       "Cut \xe4\xbd here."}};
    check_ways(NULL, &c, 0, 0);
    size_t got_len = 0;
    lm_sentences *s = NULL;
    assert_int_equal(lm_sentences_new(NULL, total_len, &got_len, &s, NULL), LM_OK);
    assert_non_null(s);
    for (int k = 0; k < 1000; k++) assert_int_equal(lm_sentences_push(s, "word ", 5), LM_OK);
    assert_int_equal(got_len, 0);
    size_t n;
    lm_sentences_pending(s, &n);
    assert_int_equal(n, 5000);
    assert_int_equal(lm_sentences_flush(s), LM_OK);
    assert_int_equal(got_len, 4999);
    lm_sentences_free(s);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),           cmocka_unit_test(test_keep_markers),
        cmocka_unit_test(test_early_first_chunk), cmocka_unit_test(test_max_chunk),
        cmocka_unit_test(test_emits_early),     cmocka_unit_test(test_stop_and_reset),
        cmocka_unit_test(test_misuse_and_nomem), cmocka_unit_test(test_bytes_and_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
