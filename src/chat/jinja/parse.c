/* chat/jinja/parse.c: turns template text into a tree of nodes (the Jinja subset chat templates
 * use).
 * Owns: the lexer (text, {{ }}, {% %}, {# #}, '-' whitespace control, and the facts trim_blocks and
 * lstrip_blocks need at render time), the statement and expression parser, syntax errors with
 * line and column.
 * Does not own: evaluation (render.c). Grammar and precedence follow Jinja2's parser
 * (https://github.com/pallets/jinja/blob/main/src/jinja2/parser.py). */
#include "chat/jinja/jinja_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_PARSE_DEPTH 200

/* ---- arena ---- */

struct arena_blk {
    arena_blk *next;
    size_t cap, used;
    _Alignas(16) char data[];
};

void *arena_alloc(arena *a, size_t n) {
    if (n > SIZE_MAX / 2) return NULL;
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        size_t total = sizeof(arena_blk) + cap;
        if (a->limit && (total > a->limit || a->bytes > a->limit - total)) {
            a->over = true;
            return NULL;
        }
        arena_blk *b = lm_malloc(total);
        if (!b) return NULL;
        b->next = a->head;
        b->cap = cap;
        b->used = 0;
        a->head = b;
        a->bytes += total;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

void arena_free(arena *a) {
    while (a->head) {
        arena_blk *n = a->head->next;
        lm_free(a->head);
        a->head = n;
    }
    a->bytes = 0;
}

char *arena_strndup(arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- tokens ---- */

enum { TK_EOF, TK_TEXT, TK_VBEGIN, TK_VEND, TK_BBEGIN, TK_BEND, TK_NAME, TK_STR, TK_INT,
       TK_FLOAT, TK_OP };

typedef struct tok {
    int t;
    int line, col;
    const char *s; /* source text (TK_STR: the decoded value) */
    size_t n;
    int64_t i;
    double f;
    /* TK_TEXT */
    size_t lstrip_n;
    bool trim_nl;
} tok;

typedef struct parser {
    arena *a;
    const char *src;
    size_t len;
    tok *t;
    size_t n_t, cap_t, pos;
    int depth;
    lm_error *err;
    lm_status st;
} parser;

static void line_col(const parser *p, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < p->len; i++) {
        if (p->src[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static bool perr_at(parser *p, int line, int col, const char *expected, const char *found,
                    size_t found_n) {
    if (p->st) return false;
    p->st = lm_fail(p->err, LM_ERR_FORMAT, "template line %d column %d: expected %s, found %.*s",
                    line, col, expected, (int)LM_MIN(found_n, 40), found);
    return false;
}

static bool nomem(parser *p) {
    if (!p->st) p->st = lm_fail_nomem(p->err, "template");
    return false;
}

static tok *push_tok(parser *p, int type, size_t off) {
    if (p->n_t == p->cap_t) {
        size_t cap = p->cap_t ? p->cap_t * 2 : 256;
        tok *nt = lm_realloc(p->t, cap * sizeof(tok));
        if (!nt) {
            nomem(p);
            return NULL;
        }
        p->t = nt;
        p->cap_t = cap;
    }
    tok *t = &p->t[p->n_t++];
    memset(t, 0, sizeof(*t));
    t->t = type;
    line_col(p, off, &t->line, &t->col);
    return t;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_id0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Emits the text [a, b). left_strip: the tag before it ended with '-'; after_block: it was a
 * block or comment (trim_blocks applies); right_strip: the next tag opens with '-';
 * before_block: the next tag is a block or comment without '+' (lstrip_blocks applies). */
static bool emit_text(parser *p, size_t a, size_t b, bool left_strip, bool after_block,
                      bool right_strip, bool before_block) {
    size_t orig_a = a;
    if (left_strip)
        while (a < b && is_ws(p->src[a])) a++;
    if (right_strip)
        while (b > a && is_ws(p->src[b - 1])) b--;
    if (a >= b) return true;
    tok *t = push_tok(p, TK_TEXT, a);
    if (!t) return false;
    t->s = p->src + a;
    t->n = b - a;
    t->trim_nl = !left_strip && after_block && p->src[a] == '\n';
    if (!right_strip && before_block) {
        size_t k = b;
        while (k > a && (p->src[k - 1] == ' ' || p->src[k - 1] == '\t')) k--;
        bool line_start = (k > a && p->src[k - 1] == '\n') || (k == orig_a && (k == 0 || p->src[k - 1] == '\n'));
        if (line_start) t->lstrip_n = b - k;
    }
    return true;
}

static bool lex_string(parser *p, size_t *i) {
    size_t start = *i;
    char q = p->src[*i];
    lm_buf b = {0};
    size_t k = *i + 1;
    for (;;) {
        if (k >= p->len) {
            lm_buf_free(&b);
            int l, c;
            line_col(p, start, &l, &c);
            return perr_at(p, l, c, "the end of a string literal", "end of template", 15);
        }
        char c = p->src[k];
        if (c == q) break;
        if (c == '\\' && k + 1 < p->len) {
            char e = p->src[k + 1];
            k += 2;
            switch (e) {
            case 'n': lm_buf_putc(&b, '\n'); break;
            case 't': lm_buf_putc(&b, '\t'); break;
            case 'r': lm_buf_putc(&b, '\r'); break;
            case '\\': lm_buf_putc(&b, '\\'); break;
            case '\'': lm_buf_putc(&b, '\''); break;
            case '"': lm_buf_putc(&b, '"'); break;
            case 'u': case 'x': {
                int nd = e == 'u' ? 4 : 2;
                uint32_t cp = 0;
                int d = 0;
                for (; d < nd && k < p->len; d++, k++) {
                    char h = p->src[k];
                    int v = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                          : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                    if (v < 0) break;
                    cp = cp * 16 + (uint32_t)v;
                }
                char u[4];
                int un = lm_utf8_encode(cp, u);
                lm_buf_append(&b, u, (size_t)un);
                break;
            }
            default:
                lm_buf_putc(&b, '\\');
                lm_buf_putc(&b, e);
            }
            continue;
        }
        lm_buf_putc(&b, c);
        k++;
    }
    if (b.oom) {
        lm_buf_free(&b);
        return nomem(p);
    }
    tok *t = push_tok(p, TK_STR, start);
    if (!t) {
        lm_buf_free(&b);
        return false;
    }
    t->s = arena_strndup(p->a, b.data ? b.data : "", b.len);
    t->n = b.len;
    lm_buf_free(&b);
    if (!t->s) return nomem(p);
    *i = k + 1;
    return true;
}

/* Lexes the inside of a {{ }} or {% %} tag starting at *i; stops after the closer. */
static bool lex_tag(parser *p, size_t *i, char close, bool *strip_after) {
    static const char *ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
    size_t k = *i;
    int braces = 0;
    for (;;) {
        while (k < p->len && is_ws(p->src[k])) k++;
        if (k >= p->len) {
            int l, c;
            line_col(p, k, &l, &c);
            return perr_at(p, l, c, close == '}' ? "'}}'" : "'%}'", "end of template", 15);
        }
        const char *s = p->src + k;
        size_t rest = p->len - k;
        if (rest >= 3 && s[0] == '-' && s[1] == close && s[2] == '}') {
            *strip_after = true;
            if (!push_tok(p, close == '}' ? TK_VEND : TK_BEND, k)) return false;
            *i = k + 3;
            return true;
        }
        /* like Jinja's lexer, "}}" inside an open dict literal closes the dict */
        if (rest >= 2 && s[0] == close && s[1] == '}' && !(close == '}' && braces > 0)) {
            *strip_after = false;
            if (!push_tok(p, close == '}' ? TK_VEND : TK_BEND, k)) return false;
            *i = k + 2;
            return true;
        }
        if (rest >= 3 && s[0] == '+' && s[1] == close && s[2] == '}') {
            *strip_after = false;
            if (!push_tok(p, close == '}' ? TK_VEND : TK_BEND, k)) return false;
            *i = k + 3;
            return true;
        }
        if (*s == '\'' || *s == '"') {
            if (!lex_string(p, &k)) return false;
            continue;
        }
        if (is_id0(*s)) {
            size_t e = k;
            while (e < p->len && (is_id0(p->src[e]) || is_digit(p->src[e]))) e++;
            tok *t = push_tok(p, TK_NAME, k);
            if (!t) return false;
            t->s = s;
            t->n = e - k;
            k = e;
            continue;
        }
        if (is_digit(*s)) {
            size_t e = k;
            bool fl = false;
            while (e < p->len && (is_digit(p->src[e]) || p->src[e] == '_')) e++;
            if (e + 1 < p->len && p->src[e] == '.' && is_digit(p->src[e + 1])) {
                fl = true;
                e++;
                while (e < p->len && is_digit(p->src[e])) e++;
            }
            if (e < p->len && (p->src[e] == 'e' || p->src[e] == 'E')) {
                size_t f = e + 1;
                if (f < p->len && (p->src[f] == '+' || p->src[f] == '-')) f++;
                if (f < p->len && is_digit(p->src[f])) {
                    fl = true;
                    e = f;
                    while (e < p->len && is_digit(p->src[e])) e++;
                }
            }
            char num[64];
            size_t nn = 0;
            for (size_t j = k; j < e && nn < sizeof(num) - 1; j++)
                if (p->src[j] != '_') num[nn++] = p->src[j];
            num[nn] = 0;
            tok *t = push_tok(p, fl ? TK_FLOAT : TK_INT, k);
            if (!t) return false;
            t->s = s;
            t->n = e - k;
            if (fl) {
                t->f = strtod(num, NULL);
            } else {
                errno = 0;
                t->i = strtoll(num, NULL, 10);
                if (errno) return perr_at(p, t->line, t->col, "an integer that fits 64 bits", s, e - k);
            }
            k = e;
            continue;
        }
        size_t on = 0;
        for (size_t j = 0; j < LM_ARRAY_LEN(ops2); j++)
            if (rest >= 2 && s[0] == ops2[j][0] && s[1] == ops2[j][1]) on = 2;
        if (!on && strchr(".,:|()[]{}+-*/%~<>=", *s)) on = 1;
        if (!on) {
            int l, c;
            line_col(p, k, &l, &c);
            return perr_at(p, l, c, "an expression", s, 1);
        }
        tok *t = push_tok(p, TK_OP, k);
        if (!t) return false;
        t->s = s;
        t->n = on;
        k += on;
        if (on == 1 && *s == '{') braces++;
        if (on == 1 && *s == '}' && braces > 0) braces--;
    }
}

static bool lex(parser *p) {
    size_t i = 0, text_start = 0;
    bool left_strip = false, after_block = false;
    for (;;) {
        size_t k = text_start;
        const char *open = NULL;
        while (k + 1 < p->len) {
            if (p->src[k] == '{' && (p->src[k + 1] == '{' || p->src[k + 1] == '%' || p->src[k + 1] == '#')) {
                open = p->src + k;
                break;
            }
            k++;
        }
        if (!open) {
            if (!emit_text(p, text_start, p->len, left_strip, after_block, false, false)) return false;
            break;
        }
        char kind = open[1];
        char mod = k + 2 < p->len ? p->src[k + 2] : 0;
        bool right_strip = mod == '-';
        bool before_block = kind != '{' && mod != '+';
        if (!emit_text(p, text_start, k, left_strip, after_block, right_strip, before_block)) return false;
        i = k + 2 + (mod == '-' || mod == '+');
        if (kind == '#') {
            size_t e = i;
            while (e + 1 < p->len && !(p->src[e] == '#' && p->src[e + 1] == '}')) e++;
            if (e + 1 >= p->len) {
                int l, c;
                line_col(p, k, &l, &c);
                return perr_at(p, l, c, "'#}' closing the comment", "end of template", 15);
            }
            left_strip = e > i && p->src[e - 1] == '-';
            after_block = true;
            text_start = e + 2;
            continue;
        }
        if (!push_tok(p, kind == '{' ? TK_VBEGIN : TK_BBEGIN, k)) return false;
        bool strip_after = false;
        if (!lex_tag(p, &i, kind == '{' ? '}' : '%', &strip_after)) return false;
        left_strip = strip_after;
        after_block = kind == '%';
        text_start = i;
    }
    return push_tok(p, TK_EOF, p->len) != NULL;
}

/* ---- parser ---- */

static tok *cur(parser *p) { return &p->t[p->pos]; }

static bool is_op(const tok *t, const char *op) {
    return t->t == TK_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}
static bool is_name(const tok *t, const char *nm) {
    return t->t == TK_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0;
}

static bool fail_expected(parser *p, const char *expected) {
    tok *t = cur(p);
    switch (t->t) {
    case TK_EOF: return perr_at(p, t->line, t->col, expected, "end of template", 15);
    case TK_TEXT: return perr_at(p, t->line, t->col, expected, "template text", 13);
    case TK_VEND: return perr_at(p, t->line, t->col, expected, "'}}'", 4);
    case TK_BEND: return perr_at(p, t->line, t->col, expected, "'%}'", 4);
    case TK_VBEGIN: return perr_at(p, t->line, t->col, expected, "'{{'", 4);
    case TK_BBEGIN: return perr_at(p, t->line, t->col, expected, "'{%'", 4);
    case TK_STR: return perr_at(p, t->line, t->col, expected, "a string", 8);
    default: {
        char q[48];
        int n = snprintf(q, sizeof q, "'%.*s'", (int)LM_MIN(t->n, 40), t->s);
        return perr_at(p, t->line, t->col, expected, q, (size_t)n);
    }
    }
}

static bool expect_op(parser *p, const char *op) {
    if (!is_op(cur(p), op)) {
        char e[16];
        snprintf(e, sizeof e, "'%s'", op);
        return fail_expected(p, e);
    }
    p->pos++;
    return true;
}

static node *mk(parser *p, int kind, const tok *at) {
    node *n = arena_alloc(p->a, sizeof(node));
    if (!n) {
        nomem(p);
        return NULL;
    }
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static bool nl_push(parser *p, nlist *l, node *n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        node **v = arena_alloc(p->a, cap * sizeof(node *));
        if (!v) return nomem(p);
        if (l->n) memcpy(v, l->v, l->n * sizeof(node *));
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
    return true;
}

static bool name_push(parser *p, node *n, const char *s, size_t len) {
    const char **kn = arena_alloc(p->a, (n->n_kwn + 1) * sizeof(char *));
    size_t *kl = arena_alloc(p->a, (n->n_kwn + 1) * sizeof(size_t));
    if (!kn || !kl) return nomem(p);
    if (n->n_kwn) {
        memcpy(kn, n->kwn, n->n_kwn * sizeof(char *));
        memcpy(kl, n->kwl, n->n_kwn * sizeof(size_t));
    }
    kn[n->n_kwn] = s;
    kl[n->n_kwn] = len;
    n->kwn = kn;
    n->kwl = kl;
    n->n_kwn++;
    return true;
}

static node *parse_expr(parser *p);
static node *parse_or(parser *p);
static node *parse_unary(parser *p, bool with_filter);

/* (args) after a call, a filter or a test: positional and name=value */
static bool parse_args(parser *p, node *n) {
    if (!expect_op(p, "(")) return false;
    while (!is_op(cur(p), ")")) {
        if (cur(p)->t == TK_NAME && is_op(&p->t[p->pos + 1], "=")) {
            tok *nt = cur(p);
            p->pos += 2;
            node *v = parse_expr(p);
            if (!v || !name_push(p, n, nt->s, nt->n) || !nl_push(p, &n->kwv, v)) return false;
        } else {
            if (n->n_kwn) return fail_expected(p, "a keyword argument after keyword arguments");
            node *v = parse_expr(p);
            if (!v || !nl_push(p, &n->args, v)) return false;
        }
        if (is_op(cur(p), ",")) {
            p->pos++;
            continue;
        }
        if (!is_op(cur(p), ")")) return fail_expected(p, "',' or ')'");
    }
    p->pos++;
    return true;
}

static node *parse_primary(parser *p) {
    tok *t = cur(p);
    node *n;
    if (++p->depth > MAX_PARSE_DEPTH) {
        perr_at(p, t->line, t->col, "less nesting (limit 200)", "deeper nesting", 14);
        return NULL;
    }
    if (t->t == TK_NAME) {
        p->pos++;
        if (!(n = mk(p, E_LIT, t))) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) {
            n->lit.t = V_BOOL;
            n->lit.u.b = true;
        } else if (is_name(t, "false") || is_name(t, "False")) {
            n->lit.t = V_BOOL;
        } else if (is_name(t, "none") || is_name(t, "None")) {
            n->lit.t = V_NONE;
        } else {
            n->kind = E_NAME;
            n->name = t->s;
            n->name_n = t->n;
        }
    } else if (t->t == TK_STR) {
        if (!(n = mk(p, E_LIT, t))) return NULL;
        p->pos++;
        n->lit.t = V_STR;
        n->lit.u.s.p = t->s;
        n->lit.u.s.n = t->n;
        while (cur(p)->t == TK_STR) { /* adjacent literals concatenate */
            tok *u = cur(p);
            char *s = arena_alloc(p->a, n->lit.u.s.n + u->n + 1);
            if (!s) {
                nomem(p);
                return NULL;
            }
            memcpy(s, n->lit.u.s.p, n->lit.u.s.n);
            memcpy(s + n->lit.u.s.n, u->s, u->n);
            n->lit.u.s.p = s;
            n->lit.u.s.n += u->n;
            p->pos++;
        }
    } else if (t->t == TK_INT || t->t == TK_FLOAT) {
        if (!(n = mk(p, E_LIT, t))) return NULL;
        p->pos++;
        if (t->t == TK_INT) {
            n->lit.t = V_INT;
            n->lit.u.i = t->i;
        } else {
            n->lit.t = V_FLOAT;
            n->lit.u.f = t->f;
        }
    } else if (is_op(t, "(")) {
        p->pos++;
        if (is_op(cur(p), ")")) { /* empty tuple */
            p->pos++;
            if ((n = mk(p, E_LIST, t))) n->tuple = true;
        } else {
            node *e = parse_expr(p);
            if (!e) return NULL;
            if (is_op(cur(p), ",")) {
                if (!(n = mk(p, E_LIST, t)) || !nl_push(p, &n->args, e)) return NULL;
                n->tuple = true;
                while (is_op(cur(p), ",")) {
                    p->pos++;
                    if (is_op(cur(p), ")")) break;
                    node *x = parse_expr(p);
                    if (!x || !nl_push(p, &n->args, x)) return NULL;
                }
            } else {
                n = e;
            }
            if (!expect_op(p, ")")) return NULL;
        }
    } else if (is_op(t, "[")) {
        p->pos++;
        if (!(n = mk(p, E_LIST, t))) return NULL;
        while (!is_op(cur(p), "]")) {
            node *x = parse_expr(p);
            if (!x || !nl_push(p, &n->args, x)) return NULL;
            if (is_op(cur(p), ",")) {
                p->pos++;
                continue;
            }
            if (!is_op(cur(p), "]")) {
                fail_expected(p, "',' or ']'");
                return NULL;
            }
        }
        p->pos++;
    } else if (is_op(t, "{")) {
        p->pos++;
        if (!(n = mk(p, E_DICT, t))) return NULL;
        while (!is_op(cur(p), "}")) {
            node *k = parse_expr(p);
            if (!k || !expect_op(p, ":")) return NULL;
            node *v = parse_expr(p);
            if (!v || !nl_push(p, &n->args, k) || !nl_push(p, &n->kwv, v)) return NULL;
            if (is_op(cur(p), ",")) {
                p->pos++;
                continue;
            }
            if (!is_op(cur(p), "}")) {
                fail_expected(p, "',' or '}'");
                return NULL;
            }
        }
        p->pos++;
    } else {
        fail_expected(p, "an expression");
        return NULL;
    }
    p->depth--;
    return n;
}

static node *parse_postfix(parser *p, node *n) {
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, ".")) {
            p->pos++;
            tok *a = cur(p);
            node *m = mk(p, E_ATTR, a);
            if (!m) return NULL;
            if (a->t == TK_NAME) {
                m->name = a->s;
                m->name_n = a->n;
            } else if (a->t == TK_INT) {
                m->kind = E_ITEM;
                node *k = mk(p, E_LIT, a);
                if (!k) return NULL;
                k->lit.t = V_INT;
                k->lit.u.i = a->i;
                m->b = k;
            } else {
                fail_expected(p, "an attribute name");
                return NULL;
            }
            p->pos++;
            m->a = n;
            n = m;
        } else if (is_op(t, "[")) {
            p->pos++;
            node *parts[3] = {NULL, NULL, NULL};
            int np = 0;
            bool slice = false;
            for (;;) {
                if (is_op(cur(p), ":")) {
                    slice = true;
                    if (np >= 2) {
                        fail_expected(p, "']'");
                        return NULL;
                    }
                    np++;
                    p->pos++;
                    continue;
                }
                if (is_op(cur(p), "]")) break;
                if (parts[np]) {
                    fail_expected(p, "':' or ']'");
                    return NULL;
                }
                if (!(parts[np] = parse_expr(p))) return NULL;
            }
            p->pos++;
            node *m = mk(p, slice ? E_SLICE : E_ITEM, t);
            if (!m) return NULL;
            m->a = n;
            if (slice) {
                m->b = parts[0];
                m->c = parts[1];
                if (parts[2] && !nl_push(p, &m->args, parts[2])) return NULL;
            } else {
                if (!parts[0]) {
                    fail_expected(p, "a subscript");
                    return NULL;
                }
                m->b = parts[0];
            }
            n = m;
        } else if (is_op(t, "(")) {
            node *m = mk(p, E_CALL, t);
            if (!m) return NULL;
            m->a = n;
            if (!parse_args(p, m)) return NULL;
            n = m;
        } else {
            return n;
        }
    }
}

int jinja_filter_id(const char *name, size_t n) {
    static const struct {
        const char *name;
        int id;
    } names[] = {
        {"safe", JF_SAFE}, {"e", JF_ESCAPE}, {"escape", JF_ESCAPE}, {"forceescape", JF_ESCAPE},
        {"default", JF_DEFAULT}, {"d", JF_DEFAULT}, {"tojson", JF_TOJSON}, {"string", JF_STRING},
        {"length", JF_LENGTH}, {"count", JF_LENGTH}, {"int", JF_INT}, {"float", JF_FLOAT},
        {"abs", JF_ABS}, {"items", JF_ITEMS}, {"indent", JF_INDENT}, {"trim", JF_TRIM},
        {"upper", JF_UPPER}, {"lower", JF_LOWER}, {"title", JF_TITLE},
        {"capitalize", JF_CAPITALIZE}, {"replace", JF_REPLACE}, {"list", JF_LIST},
        {"first", JF_FIRST}, {"last", JF_LAST}, {"join", JF_JOIN}, {"reverse", JF_REVERSE},
        {"sort", JF_SORT}, {"unique", JF_UNIQUE}, {"map", JF_MAP}, {"selectattr", JF_SELECTATTR},
        {"rejectattr", JF_REJECTATTR}, {"select", JF_SELECT}, {"reject", JF_REJECT},
        {"sum", JF_SUM},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(names); i++)
        if (strlen(names[i].name) == n && memcmp(names[i].name, name, n) == 0) return names[i].id;
    return JF_UNKNOWN;
}

static node *parse_filters(parser *p, node *n) {
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, "|")) {
            p->pos++;
            tok *f = cur(p);
            if (f->t != TK_NAME) {
                fail_expected(p, "a filter name");
                return NULL;
            }
            p->pos++;
            node *m = mk(p, E_FILTER, f);
            if (!m) return NULL;
            m->name = f->s;
            m->name_n = f->n;
            m->op = jinja_filter_id(f->s, f->n);
            m->a = n;
            if (is_op(cur(p), "(") && !parse_args(p, m)) return NULL;
            n = m;
        } else if (is_name(t, "is")) {
            p->pos++;
            bool neg = false;
            if (is_name(cur(p), "not")) {
                neg = true;
                p->pos++;
            }
            tok *f = cur(p);
            if (f->t != TK_NAME) {
                fail_expected(p, "a test name");
                return NULL;
            }
            p->pos++;
            node *m = mk(p, E_TEST, f);
            if (!m) return NULL;
            m->name = f->s;
            m->name_n = f->n;
            m->op = neg;
            m->a = n;
            tok *x = cur(p);
            if (is_op(x, "(")) {
                if (!parse_args(p, m)) return NULL;
            } else if ((x->t == TK_NAME && !is_name(x, "else") && !is_name(x, "or") &&
                        !is_name(x, "and") && !is_name(x, "if") && !is_name(x, "is")) ||
                       x->t == TK_STR || x->t == TK_INT || x->t == TK_FLOAT || is_op(x, "[") ||
                       is_op(x, "{")) {
                node *arg = parse_primary(p);
                if (!arg || !(arg = parse_postfix(p, arg)) || !nl_push(p, &m->args, arg)) return NULL;
            }
            n = m;
        } else {
            return n;
        }
    }
}

static node *parse_unary(parser *p, bool with_filter) {
    tok *t = cur(p);
    node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        p->pos++;
        if (++p->depth > MAX_PARSE_DEPTH) {
            perr_at(p, t->line, t->col, "less nesting (limit 200)", "deeper nesting", 14);
            return NULL;
        }
        if (!(n = mk(p, is_op(t, "-") ? E_NEG : E_POS, t))) return NULL;
        if (!(n->a = parse_unary(p, false))) return NULL;
        p->depth--;
    } else {
        if (!(n = parse_primary(p))) return NULL;
    }
    if (!(n = parse_postfix(p, n))) return NULL;
    if (with_filter) n = parse_filters(p, n);
    return n;
}

static node *bin(parser *p, int op, const tok *t, node *a, node *b) {
    node *n = mk(p, E_BIN, t);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static node *parse_pow(parser *p) {
    node *n = parse_unary(p, true);
    while (n && is_op(cur(p), "**")) {
        tok *t = cur(p);
        p->pos++;
        node *r = parse_unary(p, true);
        n = r ? bin(p, OP_POW, t, n, r) : NULL;
    }
    return n;
}

static node *parse_math2(parser *p) {
    node *n = parse_pow(p);
    for (;;) {
        if (!n) return NULL;
        tok *t = cur(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FDIV
               : is_op(t, "%") ? OP_MOD : 0;
        if (!op) return n;
        p->pos++;
        node *r = parse_pow(p);
        n = r ? bin(p, op, t, n, r) : NULL;
    }
}

static node *parse_concat(parser *p) {
    node *n = parse_math2(p);
    while (n && is_op(cur(p), "~")) {
        tok *t = cur(p);
        p->pos++;
        node *r = parse_math2(p);
        n = r ? bin(p, OP_CAT, t, n, r) : NULL;
    }
    return n;
}

static node *parse_math1(parser *p) {
    node *n = parse_concat(p);
    for (;;) {
        if (!n) return NULL;
        tok *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) return n;
        p->pos++;
        node *r = parse_concat(p);
        n = r ? bin(p, op, t, n, r) : NULL;
    }
}

static node *parse_compare(parser *p) {
    node *n = parse_math1(p);
    for (;;) {
        if (!n) return NULL;
        tok *t = cur(p);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT
               : is_op(t, "<=") ? OP_LE : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE
               : is_name(t, "in") ? OP_IN : 0;
        if (!op && is_name(t, "not") && is_name(&p->t[p->pos + 1], "in")) {
            op = OP_NOTIN;
            p->pos++;
        }
        if (!op) return n;
        p->pos++;
        node *r = parse_math1(p);
        n = r ? bin(p, op, t, n, r) : NULL;
    }
}

static node *parse_not(parser *p) {
    tok *t = cur(p);
    if (is_name(t, "not")) {
        p->pos++;
        if (++p->depth > MAX_PARSE_DEPTH) {
            perr_at(p, t->line, t->col, "less nesting (limit 200)", "deeper nesting", 14);
            return NULL;
        }
        node *n = mk(p, E_NOT, t);
        if (!n || !(n->a = parse_not(p))) return NULL;
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static node *parse_and(parser *p) {
    node *n = parse_not(p);
    while (n && is_name(cur(p), "and")) {
        tok *t = cur(p);
        p->pos++;
        node *r = parse_not(p);
        node *m = r ? mk(p, E_AND, t) : NULL;
        if (!m) return NULL;
        m->a = n;
        m->b = r;
        n = m;
    }
    return n;
}

static node *parse_or(parser *p) {
    node *n = parse_and(p);
    while (n && is_name(cur(p), "or")) {
        tok *t = cur(p);
        p->pos++;
        node *r = parse_and(p);
        node *m = r ? mk(p, E_OR, t) : NULL;
        if (!m) return NULL;
        m->a = n;
        m->b = r;
        n = m;
    }
    return n;
}

static node *parse_expr(parser *p) {
    node *n = parse_or(p);
    while (n && is_name(cur(p), "if")) {
        tok *t = cur(p);
        p->pos++;
        node *m = mk(p, E_COND, t);
        if (!m) return NULL;
        m->a = n;
        if (!(m->b = parse_or(p))) return NULL;
        if (is_name(cur(p), "else")) {
            p->pos++;
            if (!(m->c = parse_expr(p))) return NULL;
        }
        n = m;
    }
    return n;
}

/* ---- statements ---- */

static bool expect_bend(parser *p) {
    if (cur(p)->t != TK_BEND) return fail_expected(p, "'%}'");
    p->pos++;
    return true;
}

/* Parses statements into body until a block tag whose keyword is in stops (NULL-terminated);
 * leaves pos on that keyword and returns its index, or -1 on error. stops == NULL: until EOF. */
static int parse_body(parser *p, nlist *body, const char *const *stops, const char *what);
/* One {% keyword ... %} statement; pos is on the keyword kw. */
static node *parse_stmt(parser *p, tok *kw);

static bool parse_name_list(parser *p, node *n) {
    for (;;) {
        tok *t = cur(p);
        if (t->t != TK_NAME) return fail_expected(p, "a variable name");
        if (!name_push(p, n, t->s, t->n)) return false;
        p->pos++;
        if (!is_op(cur(p), ",")) return true;
        p->pos++;
    }
}

/* {% if %} / {% elif %} ... {% else %} ... {% endif %}; an elif is a nested if in the else branch. */
static node *parse_if(parser *p, tok *kw) {
    static const char *const if_stops[] = {"elif", "else", "endif", NULL};
    static const char *const endif[] = {"endif", NULL};
    node *n;
    if (!(n = mk(p, N_IF, kw)) || !(n->a = parse_expr(p)) || !expect_bend(p)) return NULL;
    int w = parse_body(p, &n->body, if_stops, "endif");
    if (w < 0) return NULL;
    tok *t = cur(p);
    if (w == 0) {
        node *e = parse_stmt(p, t);
        if (!e || !nl_push(p, &n->else_body, e)) return NULL;
        return n; /* the nested elif consumed endif */
    }
    p->pos++;
    if (!expect_bend(p)) return NULL;
    if (w == 1) {
        if (parse_body(p, &n->else_body, endif, "endif") < 0) return NULL;
        p->pos++;
        if (!expect_bend(p)) return NULL;
    }
    return n;
}

/* {% for names in expr [if cond] %} ... [{% else %} ...] {% endfor %}. */
static node *parse_for(parser *p, tok *kw) {
    static const char *const for_stops[] = {"else", "endfor", NULL};
    static const char *const endfor[] = {"endfor", NULL};
    node *n;
    if (!(n = mk(p, N_FOR, kw)) || !parse_name_list(p, n)) return NULL;
    if (!is_name(cur(p), "in")) {
        fail_expected(p, "'in'");
        return NULL;
    }
    p->pos++;
    if (!(n->a = parse_or(p))) return NULL;
    if (is_name(cur(p), "if")) {
        p->pos++;
        if (!(n->b = parse_expr(p))) return NULL;
    }
    if (is_name(cur(p), "recursive")) {
        fail_expected(p, "'%}' (recursive loops are not supported)");
        return NULL;
    }
    if (!expect_bend(p)) return NULL;
    int w = parse_body(p, &n->body, for_stops, "endfor");
    if (w < 0) return NULL;
    p->pos++;
    if (!expect_bend(p)) return NULL;
    if (w == 0) {
        if (parse_body(p, &n->else_body, endfor, "endfor") < 0) return NULL;
        p->pos++;
        if (!expect_bend(p)) return NULL;
    }
    return n;
}

/* {% set a = x %}, {% set a, b = x %}, {% set ns.attr = x %} and the block form {% set a %}...{% endset %}. */
static node *parse_set(parser *p, tok *kw) {
    static const char *const endset[] = {"endset", NULL};
    node *n;
    if (!(n = mk(p, N_SET, kw))) return NULL;
    tok *t = cur(p);
    if (t->t != TK_NAME) {
        fail_expected(p, "a variable name");
        return NULL;
    }
    if (is_op(&p->t[p->pos + 1], ".")) {
        n->name = t->s;
        n->name_n = t->n;
        p->pos += 2;
        tok *a = cur(p);
        if (a->t != TK_NAME) {
            fail_expected(p, "an attribute name");
            return NULL;
        }
        n->attr = a->s;
        n->attr_n = a->n;
        p->pos++;
    } else if (!parse_name_list(p, n)) {
        return NULL;
    }
    if (cur(p)->t == TK_BEND && !n->attr) {
        p->pos++;
        n->kind = N_SETBLOCK;
        if (parse_body(p, &n->body, endset, "endset") < 0) return NULL;
        p->pos++;
        if (!expect_bend(p)) return NULL;
        return n;
    }
    if (!expect_op(p, "=")) return NULL;
    if (!(n->a = parse_expr(p))) return NULL;
    if (is_op(cur(p), ",")) { /* set a = x, y: a tuple */
        node *l = mk(p, E_LIST, cur(p));
        if (!l || !nl_push(p, &l->args, n->a)) return NULL;
        while (is_op(cur(p), ",")) {
            p->pos++;
            node *x = parse_expr(p);
            if (!x || !nl_push(p, &l->args, x)) return NULL;
        }
        n->a = l;
    }
    if (!expect_bend(p)) return NULL;
    return n;
}

/* {% macro name(params, with=defaults) %} ... {% endmacro [name] %}. */
static node *parse_macro(parser *p, tok *kw) {
    static const char *const endmacro[] = {"endmacro", NULL};
    node *n;
    if (!(n = mk(p, N_MACRO, kw))) return NULL;
    tok *t = cur(p);
    if (t->t != TK_NAME) {
        fail_expected(p, "a macro name");
        return NULL;
    }
    n->name = t->s;
    n->name_n = t->n;
    p->pos++;
    if (!expect_op(p, "(")) return NULL;
    while (!is_op(cur(p), ")")) {
        tok *a = cur(p);
        if (a->t != TK_NAME) {
            fail_expected(p, "a parameter name");
            return NULL;
        }
        p->pos++;
        node *def = NULL;
        if (is_op(cur(p), "=")) {
            p->pos++;
            if (!(def = parse_expr(p))) return NULL;
        }
        if (!name_push(p, n, a->s, a->n) || !nl_push(p, &n->kwv, def)) return NULL;
        if (is_op(cur(p), ",")) {
            p->pos++;
            continue;
        }
        if (!is_op(cur(p), ")")) {
            fail_expected(p, "',' or ')'");
            return NULL;
        }
    }
    p->pos++;
    if (!expect_bend(p)) return NULL;
    if (parse_body(p, &n->body, endmacro, "endmacro") < 0) return NULL;
    p->pos++;
    if (cur(p)->t == TK_NAME) p->pos++;
    if (!expect_bend(p)) return NULL;
    return n;
}

/* {% call macro(args) %} ... {% endcall %}: the body is the macro's caller(). */
static node *parse_call(parser *p, tok *kw) {
    static const char *const endcall[] = {"endcall", NULL};
    node *n;
    if (!(n = mk(p, N_CALLBLOCK, kw))) return NULL;
    if (!(n->a = parse_expr(p))) return NULL;
    if (n->a->kind != E_CALL) {
        perr_at(p, kw->line, kw->col, "a macro call after 'call'", kw->s, kw->n);
        return NULL;
    }
    if (!expect_bend(p)) return NULL;
    if (parse_body(p, &n->body, endcall, "endcall") < 0) return NULL;
    p->pos++;
    if (!expect_bend(p)) return NULL;
    return n;
}

/* {% generation %} ... {% endgeneration %}, transformers' extension: renders its body as is. */
static node *parse_generation(parser *p, tok *kw) {
    static const char *const endgen[] = {"endgeneration", NULL};
    node *n;
    if (!(n = mk(p, N_BODY, kw)) || !expect_bend(p)) return NULL;
    if (parse_body(p, &n->body, endgen, "endgeneration") < 0) return NULL;
    p->pos++;
    if (!expect_bend(p)) return NULL;
    return n;
}
static node *parse_stmt(parser *p, tok *kw) {
    p->pos++;
    if (is_name(kw, "if") || is_name(kw, "elif")) return parse_if(p, kw);
    if (is_name(kw, "for")) return parse_for(p, kw);
    if (is_name(kw, "set")) return parse_set(p, kw);
    if (is_name(kw, "macro")) return parse_macro(p, kw);
    if (is_name(kw, "call")) return parse_call(p, kw);
    if (is_name(kw, "generation")) return parse_generation(p, kw);
    if (is_name(kw, "break") || is_name(kw, "continue")) {
        node *n;
        if (!(n = mk(p, is_name(kw, "break") ? N_BREAK : N_CONTINUE, kw)) || !expect_bend(p)) return NULL;
        return n;
    }
    p->pos--;
    fail_expected(p, "a statement (if, for, set, macro, call, break, continue)");
    return NULL;
}

static int parse_body(parser *p, nlist *body, const char *const *stops, const char *what) {
    if (++p->depth > MAX_PARSE_DEPTH) {
        tok *t = cur(p);
        perr_at(p, t->line, t->col, "less nesting (limit 200)", "deeper nesting", 14);
        return -1;
    }
    for (;;) {
        tok *t = cur(p);
        node *n = NULL;
        if (t->t == TK_EOF) {
            if (!stops) break;
            char e[48];
            snprintf(e, sizeof e, "'{%% %s %%}'", what);
            fail_expected(p, e);
            return -1;
        }
        if (t->t == TK_TEXT) {
            if (!(n = mk(p, N_TEXT, t))) return -1;
            n->text = t->s;
            n->text_n = t->n;
            n->lstrip_n = t->lstrip_n;
            n->trim_nl = t->trim_nl;
            p->pos++;
        } else if (t->t == TK_VBEGIN) {
            p->pos++;
            if (!(n = mk(p, N_OUT, t)) || !(n->a = parse_expr(p))) return -1;
            if (cur(p)->t != TK_VEND) {
                fail_expected(p, "'}}'");
                return -1;
            }
            p->pos++;
        } else if (t->t == TK_BBEGIN) {
            p->pos++;
            tok *kw = cur(p);
            if (kw->t != TK_NAME) {
                fail_expected(p, "a statement keyword");
                return -1;
            }
            if (stops)
                for (int i = 0; stops[i]; i++)
                    if (is_name(kw, stops[i])) {
                        p->depth--;
                        return i;
                    }
            static const char *const enders[] = {"endif", "endfor", "elif", "else", "endset",
                                                 "endmacro", "endcall", "endgeneration", NULL};
            for (int i = 0; enders[i]; i++)
                if (is_name(kw, enders[i])) {
                    char e[64];
                    if (stops)
                        snprintf(e, sizeof e, "'{%% %s %%}'", what);
                    else
                        snprintf(e, sizeof e, "a statement");
                    fail_expected(p, e);
                    return -1;
                }
            if (!(n = parse_stmt(p, kw))) return -1;
        } else {
            fail_expected(p, "template text or a tag");
            return -1;
        }
        if (!nl_push(p, body, n)) return -1;
    }
    p->depth--;
    return 0;
}

lm_status jinja_parse(const char *src, size_t len, jinja_template **out, lm_error *err) {
    *out = NULL;
    jinja_template *t = lm_calloc(1, sizeof *t);
    if (!t) return lm_fail_nomem(err, "template");
    /* Jinja's default keep_trailing_newline=False drops one final newline. */
    if (len && src[len - 1] == '\n') len--;
    char *copy = arena_strndup(&t->a, src, len);
    if (!copy) {
        jinja_free(t);
        return lm_fail_nomem(err, "template");
    }
    parser p = {.a = &t->a, .src = copy, .len = len, .err = err};
    if (lex(&p)) parse_body(&p, &t->root, NULL, NULL);
    lm_free(p.t);
    if (p.st) {
        jinja_free(t);
        return p.st;
    }
    *out = t;
    return LM_OK;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    arena_free(&t->a);
    lm_free(t);
}
