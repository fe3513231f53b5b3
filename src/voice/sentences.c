/* voice/sentences.c: the sentence chunker (lm_sentences_*, declared in locallm.h).
 * Owns: the text of the reply not emitted yet, and deciding where a chunk ends.
 * Does not own: speaking the chunks (the caller's callback).
 *
 * Where a chunk ends:
 *  - at a newline (always; empty lines give no chunk);
 *  - after . ! ? … (and runs of them, "?!", "...") plus any closing quotes or brackets right after
 *    them (" ' ” ’ “ ‘ ) ] } » « › 」 』 ） 】 》 * _), once the next character is known to be
 *    white space and the first character after that white space is not a lowercase letter. So
 *    "Wait... what?" stays one chunk and "Wait... Then" is two: an ellipsis follows the same rule
 *    as a full stop. French « Bonjour ! » keeps its spaced » when a « is open in the chunk;
 *  - right after CJK 。！？｡ and Arabic/Urdu/Hindi/Amharic ؟ ۔ । ॥ ። (no following space needed),
 *    with the closers after them;
 *  - the first chunk of a reply may end early at a clause mark (, ; : ، ؛ followed by white
 *    space, ' – ', —, 、，；：) once it holds first_chunk_min_chars characters;
 *  - past max_chunk_chars characters a chunk is cut at the next white space or clause mark.
 * A full stop is not a boundary after: titles and fixed abbreviations (Mr Mrs Ms Dr Prof St Mt Rev
 * Gen Sen Gov Capt Col Lt Sgt Sr Sra Srta Dra Mme Mlle Hr Fr Frl vs cf viz approx ca e.g. i.e.
 * z.B. d.h. u.a. bzw, any case); No Nr Nos Fig Vol pp p Art Sec Ch Eq Ref Tab Abb S before a
 * digit; a single capital letter ("J. R. R. Tolkien", so "Plan B. Then" is not cut either); an
 * upper-case dotted initialism (U.S., U.K.; lower-case ones like a.m./p.m. end a sentence before
 * a capital); a number at the start of a line ("1. item", a list marker). Decimals (3.14), times
 * (10:30), versions (v1.2.3), URLs and e-mail addresses never contain "terminator + white space".
 * Known misses: German ordinals before a noun ("am 3. Oktober") are cut.
 *
 * List markers: a chunk that starts a line and begins with "- ", "* ", "+ ", "• " or a number
 * followed by ". " or ") " has the marker removed (TTS should not read "dash" or "one"), unless
 * keep_list_markers is set.
 *
 * Chunks are trimmed of white space (ASCII, NBSP, the Unicode spaces, U+3000), never empty, and
 * byte-for-byte copies of the input otherwise (invalid UTF-8 passes through). The chunks do not
 * depend on how the text was split into pieces: a piece may end inside a UTF-8 sequence.
 *
 * How it stays independent of the piece boundaries: every decision is a function of the pending
 * text alone. Scanning a position answers "cut", "no cut" or "cannot tell yet" (the look-ahead
 * it needs has not arrived); on "cannot tell yet" the scan stops there and resumes at the same
 * position after the next push, or decides with end-of-text at flush. */
#include "voice/voice.h"

#include "core/core.h"

#include <utf8proc.h>

struct lm_sentences {
    lm_sentences_params p;
    lm_sentence_fn fn;
    void *user;
    char *buf;        /* pending text, buf[0..len), NUL-terminated; buf[0] starts the chunk */
    size_t len, cap;
    size_t scan;      /* buf[0..scan) holds no cut */
    size_t n_chars;   /* code points in buf[0..scan) from the first non-space one */
    long n_guil;      /* « minus » in buf[0..scan): a spaced » after a terminator is its closer */
    bool line_start;  /* buf[0] begins a line (for list markers) */
    bool stopped;     /* the callback returned non-zero */
    size_t n_emitted; /* chunks emitted in this reply */
    lm_error err;
};

typedef enum { PASS, MORE, CUT } verdict;

/* ---- characters ---- */

static bool is_newline(uint32_t c) { return c == '\n' || c == 0x2028 || c == 0x2029; }

/* White space that is not a newline. */
static bool is_blank(uint32_t c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

static bool is_space(uint32_t c) { return is_blank(c) || is_newline(c); }

/* Ends a sentence only when white space follows. */
static bool is_latin_term(uint32_t c) {
    return c == '.' || c == '!' || c == '?' || c == 0x2026 || (c >= 0x203C && c <= 0x203D) ||
           (c >= 0x2047 && c <= 0x2049);
}

/* Ends a sentence whatever follows (scripts that write no space after it, or never use it
 * inside a sentence). */
static bool is_strong_term(uint32_t c) {
    return c == 0x3002 || c == 0xFF01 || c == 0xFF1F || c == 0xFF61 || c == 0x061F ||
           c == 0x06D4 || c == 0x0964 || c == 0x0965 || c == 0x1362;
}

static bool is_term(uint32_t c) { return is_latin_term(c) || is_strong_term(c); }

/* Stays with the sentence when right after its terminator. */
static bool is_closer(uint32_t c) {
    switch (c) {
    case '"': case '\'': case ')': case ']': case '}': case '*': case '_':
    case 0x2019: case 0x201D: case 0x201C: case 0x2018: case 0xBB: case 0xAB: case 0x203A:
    case 0x2039: case 0x300D: case 0x300F: case 0xFF09: case 0x3011: case 0x300B: case 0x3009:
    case 0x3015: case 0xFF3D: case 0xFF63: case 0xFF02:
        return true;
    default:
        return false;
    }
}

/* Opening marks skipped before the word a full stop follows. */
static bool is_opener(uint32_t c) {
    switch (c) {
    case '"': case '\'': case '(': case '[': case '{': case '*': case '_': case 0xAB: case 0xBB:
    case 0xBF: case 0xA1: case 0x201C: case 0x2018: case 0x201E: case 0x201A:
        return true;
    default:
        return false;
    }
}

/* Clause marks that need white space after them (so 10:30 and 1,000 are not cut). */
static bool is_soft_clause(uint32_t c) {
    return c == ',' || c == ';' || c == ':' || c == 0x060C || c == 0x061B;
}

/* Clause marks written without a space after them. */
static bool is_hard_clause(uint32_t c) {
    return c == 0x2014 || c == 0x3001 || c == 0xFF0C || c == 0xFF1B || c == 0xFF1A;
}

static bool is_lower(uint32_t c) {
    return c < 0x110000 && utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_LL;
}

static bool is_upper(uint32_t c) {
    return c < 0x110000 && (utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_LU ||
                            utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_LT);
}

static bool is_letter(uint32_t c) {
    if (c >= 0x110000) return false;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

static bool is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

/* ---- decoding the pending text ---- */

/* Decodes the code point at buf[i] (i < len) into *c and returns its length, or 0 when the text
 * ends inside it and more may come. Invalid bytes decode one at a time as U+FFFD. */
static size_t cp_at(const lm_sentences *s, size_t i, bool eof, uint32_t *c) {
    const unsigned char *b = (const unsigned char *)s->buf;
    size_t avail = s->len - i;
    size_t n = (size_t)lm_utf8_seq_len(b[i]);
    if (n > avail && !eof) {
        size_t k = 1;
        while (k < avail && (b[i + k] & 0xC0) == 0x80) k++;
        if (k == avail) return 0;
    }
    return (size_t)lm_utf8_decode(s->buf + i, avail, c);
}

/* Start of the code point that ends just before i (i > 0). */
static size_t prev_start(const char *buf, size_t i) {
    size_t j = i - 1;
    while (j > 0 && i - j < 4 && ((unsigned char)buf[j] & 0xC0) == 0x80) j--;
    return j;
}

/* ---- the word before a full stop ---- */

static const char *const NEVER_END[] = {
    "mr", "mrs", "ms", "mx", "dr", "prof", "st", "mt", "rev", "gen", "sen", "gov", "capt",
    "col", "lt", "sgt", "sr", "sra", "srta", "dra", "mme", "mlle", "hr", "fr", "frl", "vs", "cf",
    "viz", "approx", "ca", "e.g", "i.e", "z.b", "d.h", "u.a", "bzw",
};

static const char *const BEFORE_DIGIT[] = {
    "no", "nr", "nos", "fig", "vol", "pp", "p", "art", "sec", "ch", "eq", "ref", "tab", "abb", "s",
};

static bool in_list(const char *w, size_t n, const char *const *list, size_t n_list) {
    for (size_t k = 0; k < n_list; k++) {
        size_t m = strlen(list[k]);
        if (m != n) continue;
        size_t j = 0;
        while (j < n) {
            char a = w[j];
            if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
            if (a != list[k][j]) break;
            j++;
        }
        if (j == n) return true;
    }
    return false;
}

/* The word buf[w..i) before the full stop at i (after its opening marks): true when the stop
 * does not end a sentence even though white space and a non-lowercase character c follow. */
static bool stop_is_not_end(const lm_sentences *s, size_t i, uint32_t c) {
    size_t w = i;
    while (w > 0) {
        size_t q = prev_start(s->buf, w);
        uint32_t c0;
        lm_utf8_decode(s->buf + q, i - q, &c0);
        if (is_space(c0)) break;
        w = q;
    }
    while (w < i) {
        uint32_t c0;
        size_t n = (size_t)lm_utf8_decode(s->buf + w, i - w, &c0);
        if (!is_opener(c0)) break;
        w += n;
    }
    const char *word = s->buf + w;
    size_t n = i - w;
    if (n == 0) return false;
    if (in_list(word, n, NEVER_END, LM_ARRAY_LEN(NEVER_END))) return true;
    if (is_digit(c) && in_list(word, n, BEFORE_DIGIT, LM_ARRAY_LEN(BEFORE_DIGIT))) return true;
    /* letter (. letter)*: a capital initial or a dotted initialism */
    size_t j = w;
    bool all_upper = true;
    for (;;) {
        uint32_t c0;
        size_t m = (size_t)lm_utf8_decode(s->buf + j, i - j, &c0);
        if (!is_letter(c0) || (n == 1 && c0 == 'I')) return false; /* "So do I." ends */
        all_upper = all_upper && is_upper(c0);
        j += m;
        if (j == i) break;
        if (s->buf[j] != '.') return false;
        j++;
        if (j == i) return false;
    }
    return all_upper;
}

/* ---- deciding ---- */

/* Moves *j past terminators and closers; *d_guil gets their « minus », *n_terms counts the
 * terminators. */
static verdict absorb(const lm_sentences *s, size_t *j, bool eof, long *d_guil, size_t *n_terms) {
    for (;;) {
        if (*j == s->len) return eof ? PASS : MORE;
        uint32_t c;
        size_t n = cp_at(s, *j, eof, &c);
        if (!n) return MORE;
        if (!is_term(c) && !is_closer(c)) return PASS;
        if (c == 0xAB) (*d_guil)++;
        if (c == 0xBB) (*d_guil)--;
        if (is_term(c)) (*n_terms)++;
        *j += n;
    }
}

/* Moves *j past blanks; *c gets the character there (0 at the end of the text). */
static verdict skip_blanks(const lm_sentences *s, size_t *j, bool eof, uint32_t *c) {
    for (;;) {
        if (*j == s->len) {
            *c = 0;
            return eof ? PASS : MORE;
        }
        size_t n = cp_at(s, *j, eof, c);
        if (!n) return MORE;
        if (!is_blank(*c)) return PASS;
        *j += n;
    }
}

/* buf[0..i) is blanks then 1-9 digits, at the start of a line: "12." is a list marker. */
static bool is_number_marker(const lm_sentences *s, size_t i) {
    if (!s->line_start) return false;
    size_t j = 0;
    while (j < i && (s->buf[j] == ' ' || s->buf[j] == '\t')) j++;
    if (i - j < 1 || i - j > 9) return false;
    for (; j < i; j++)
        if (!is_digit((unsigned char)s->buf[j])) return false;
    return true;
}

/* A Latin terminator at i (n bytes): the chunk may end at *end. */
static verdict latin_end(const lm_sentences *s, size_t i, size_t n, bool eof, size_t *end) {
    uint32_t c = (unsigned char)s->buf[i];
    if (c == '.' && is_number_marker(s, i)) return PASS;
    size_t j = i + n;
    long d = 0;
    size_t n_terms = 0;
    verdict v = absorb(s, &j, eof, &d, &n_terms);
    if (v != PASS) return v;
    bool single_stop = c == '.' && n_terms == 0;
    if (s->n_guil + d > 0) {
        /* French « Bonjour ! » : a spaced » closes the sentence */
        size_t m = j;
        uint32_t c2;
        if (skip_blanks(s, &m, eof, &c2) == MORE) return MORE;
        if (c2 == 0xBB && m > j) {
            j = m + 2;
            v = absorb(s, &j, eof, &d, &n_terms);
            if (v != PASS) return v;
        }
    }
    *end = j;
    if (j == s->len) return CUT; /* only reached at eof */
    uint32_t c2;
    size_t n2 = cp_at(s, j, eof, &c2);
    if (!n2) return MORE;
    if (is_newline(c2)) return CUT;
    if (!is_blank(c2)) return PASS;
    size_t m = j;
    uint32_t c3;
    v = skip_blanks(s, &m, eof, &c3);
    if (v == MORE) return MORE;
    if (m == s->len || is_newline(c3)) return CUT;
    if (is_lower(c3)) return PASS;
    if (single_stop && stop_is_not_end(s, i, c3)) return PASS;
    return CUT;
}

/* A clause mark at i (n bytes) may end the chunk right after it. */
static verdict clause_end(const lm_sentences *s, size_t i, size_t n, uint32_t c, bool eof) {
    size_t j = i + n;
    if (j == s->len) return eof ? CUT : MORE;
    uint32_t c2;
    if (!cp_at(s, j, eof, &c2)) return MORE;
    if (is_soft_clause(c)) return is_space(c2) ? CUT : PASS;
    if (c == 0x2013) {
        bool spaced_before = i > 0 && is_blank((unsigned char)s->buf[i - 1]);
        return spaced_before && is_space(c2) ? CUT : PASS;
    }
    return is_hard_clause(c2) || is_closer(c2) ? PASS : CUT;
}

/* ---- emitting ---- */

/* Length of a list marker at the start of t (already trimmed on the left), with the blanks after
 * it; 0 when there is none. */
static size_t marker_len(const char *t, size_t n) {
    size_t j = 0;
    if (n >= 1 && (t[0] == '-' || t[0] == '*' || t[0] == '+')) {
        j = 1;
    } else if (n >= 3 && (unsigned char)t[0] == 0xE2 && (unsigned char)t[1] == 0x80 &&
               (unsigned char)t[2] == 0xA2) { /* • */
        j = 3;
    } else {
        while (j < n && j < 10 && is_digit((unsigned char)t[j])) j++;
        if (j == 0 || j > 9 || j + 1 >= n || (t[j] != '.' && t[j] != ')')) return 0;
        j++;
        if (t[j] != ' ' && t[j] != '\t') return 0;
    }
    if (j < n && t[j] != ' ' && t[j] != '\t') return 0;
    while (j < n && (t[j] == ' ' || t[j] == '\t')) j++;
    return j;
}

/* The first position from a (up to b) that is not white space. */
static size_t skip_space(const char *buf, size_t a, size_t b) {
    while (a < b) {
        uint32_t c;
        size_t n = (size_t)lm_utf8_decode(buf + a, b - a, &c);
        if (!is_space(c)) break;
        a += n;
    }
    return a;
}

/* Emits buf[0..end) trimmed, drops buf[0..next) and starts a new chunk there. */
static void cut_chunk(lm_sentences *s, size_t end, size_t next, bool line_start) {
    size_t b = end;
    size_t a = skip_space(s->buf, 0, b);
    while (b > a) {
        size_t q = prev_start(s->buf, b);
        uint32_t c;
        size_t n = (size_t)lm_utf8_decode(s->buf + q, b - q, &c);
        if (q + n != b || !is_space(c)) break;
        b = q;
    }
    if (s->line_start && !s->p.keep_list_markers) {
        a = skip_space(s->buf, a + marker_len(s->buf + a, b - a), b);
    }
    if (a < b && !s->stopped) {
        char saved = s->buf[b];
        s->buf[b] = 0;
        if (s->fn(s->buf + a, b - a, s->user)) s->stopped = true;
        s->buf[b] = saved;
        s->n_emitted++;
    }
    memmove(s->buf, s->buf + next, s->len - next + 1);
    s->len -= next;
    s->scan = 0;
    s->n_chars = 0;
    s->n_guil = 0;
    s->line_start = line_start;
}

/* Emits every chunk that is complete; at eof the look-ahead that never came counts as the end of
 * the text. */
static void run(lm_sentences *s, bool eof) {
    size_t i = s->scan;
    while (i < s->len && !s->stopped) {
        uint32_t c;
        size_t n = cp_at(s, i, eof, &c);
        if (!n) break;
        size_t end = i, next = i + n;
        bool line_start = false;
        verdict v = PASS;
        if (is_newline(c)) {
            v = CUT;
            line_start = true;
        } else if (is_blank(c) && s->p.max_chunk_chars && s->n_chars >= s->p.max_chunk_chars) {
            v = CUT;
        } else if (is_strong_term(c)) {
            end = i + n;
            long d = 0;
            size_t n_terms = 0;
            v = absorb(s, &end, eof, &d, &n_terms);
            if (v == PASS) v = CUT;
            next = end;
        } else if (is_latin_term(c)) {
            v = latin_end(s, i, n, eof, &end);
            next = end;
        } else if (is_soft_clause(c) || is_hard_clause(c) || c == 0x2013) {
            bool early = s->p.first_chunk_min_chars && s->n_emitted == 0 &&
                         s->n_chars + 1 >= s->p.first_chunk_min_chars;
            bool long_ = s->p.max_chunk_chars && s->n_chars + 1 >= s->p.max_chunk_chars;
            if (early || long_) {
                v = clause_end(s, i, n, c, eof);
                end = next = i + n;
            }
        }
        if (v == MORE) break;
        if (v == CUT) {
            cut_chunk(s, end, next, line_start);
            i = 0;
            continue;
        }
        if (s->n_chars || !is_space(c)) s->n_chars++;
        if (c == 0xAB) s->n_guil++;
        if (c == 0xBB) s->n_guil--;
        i += n;
    }
    s->scan = i;
}

/* ---- API ---- */

lm_sentences_params lm_sentences_default_params(void) {
    lm_sentences_params p;
    memset(&p, 0, sizeof p);
    return p;
}

lm_status lm_sentences_new(const lm_sentences_params *p, lm_sentence_fn fn, void *user, lm_sentences **out,
                           lm_error *err) {
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "lm_sentences_new: out is NULL");
    *out = NULL;
    if (!fn) return lm_fail(err, LM_ERR_MISUSE, "lm_sentences_new: the chunk callback is NULL");
    lm_sentences *s = lm_calloc(1, sizeof *s);
    if (!s) return lm_fail(err, LM_ERR_NOMEM, "lm_sentences_new: out of memory");
    s->p = p ? *p : lm_sentences_default_params();
    s->fn = fn;
    s->user = user;
    s->line_start = true;
    *out = s;
    return LM_OK;
}

lm_status lm_sentences_push(lm_sentences *s, const char *piece, size_t len) {
    if (!s) return LM_ERR_MISUSE;
    lm_error_clear(&s->err);
    if (!piece && len) {
        return lm_fail(&s->err, LM_ERR_MISUSE, "lm_sentences_push: piece: NULL with len %zu",
                       len);
    }
    if (s->stopped) {
        return lm_fail(&s->err, LM_ERR_CANCELLED,
                       "lm_sentences_push: the callback asked to stop; flush or reset first");
    }
    if (len >= SIZE_MAX - s->len - 1) {
        return lm_fail(&s->err, LM_ERR_NOMEM, "lm_sentences_push: %zu bytes pending", s->len);
    }
    if (s->len + len + 1 > s->cap) {
        size_t cap = LM_MAX(s->cap, (size_t)128);
        while (cap < s->len + len + 1) cap = cap > SIZE_MAX / 2 ? s->len + len + 1 : cap * 2;
        char *b = lm_realloc(s->buf, cap);
        if (!b) return lm_fail_nomem(&s->err, "sentence buffer");
        s->buf = b;
        s->cap = cap;
    }
    if (len) memcpy(s->buf + s->len, piece, len);
    s->len += len;
    s->buf[s->len] = 0;
    run(s, false);
    if (s->stopped) {
        return lm_fail(&s->err, LM_ERR_CANCELLED, "lm_sentences_push: the callback asked to stop");
    }
    return LM_OK;
}

lm_status lm_sentences_flush(lm_sentences *s) {
    if (!s) return LM_ERR_MISUSE;
    lm_error_clear(&s->err);
    if (s->len && !s->stopped) {
        run(s, true);
        if (s->len) cut_chunk(s, s->len, s->len, true);
    }
    bool stopped = s->stopped;
    lm_sentences_reset(s);
    if (stopped) {
        return lm_fail(&s->err, LM_ERR_CANCELLED, "lm_sentences_flush: the callback asked to stop");
    }
    return LM_OK;
}

void lm_sentences_reset(lm_sentences *s) {
    if (!s) return;
    s->len = 0;
    if (s->buf) s->buf[0] = 0;
    s->scan = 0;
    s->n_chars = 0;
    s->n_guil = 0;
    s->line_start = true;
    s->stopped = false;
    s->n_emitted = 0;
}

const char *lm_sentences_pending(const lm_sentences *s, size_t *len) {
    if (len) *len = s && s->buf ? s->len : 0;
    return s && s->buf ? s->buf : "";
}

const char *lm_sentences_errmsg(const lm_sentences *s) { return s ? s->err.msg : ""; }

void lm_sentences_free(lm_sentences *s) {
    if (!s) return;
    lm_free(s->buf);
    lm_free(s);
}
