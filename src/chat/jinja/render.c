/* chat/jinja/render.c: evaluates a parsed template against JSON variables.
 * Owns: values (Python-like: None, bool, int, float, str, list, dict in insertion order,
 * namespace, macro), Python truthiness/str()/repr(), json.dumps-style tojson, the filters, tests,
 * methods and globals chat templates use, and the output/step/depth limits.
 * Does not own: parsing (parse.c). Every value lives in the render's arena until it ends. */
#include "chat/jinja/jinja_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct frame {
    struct frame *parent;
    vdict vars;
} frame;

struct vmacro {
    const node *n;     /* N_MACRO, or N_CALLBLOCK for caller() */
    frame *scope;      /* caller(): the call site's frame */
};

struct vmethod {
    val self;
    const char *name;
    size_t n;
};

enum { F_RANGE = 1, F_NAMESPACE, F_RAISE, F_STRFTIME, F_DICT, F_LOOP_CYCLE };

typedef struct ctx {
    arena a;              /* every value; its limit is max_memory */
    const jinja_opts *o;
    lm_buf *out;
    lm_buf *final;        /* the caller's output (out differs while a macro or set block captures) */
    lm_error *err;
    lm_status st;
    size_t steps, depth, out0;
    size_t held;          /* bytes in capture buffers now alive, counted against max_memory */
    const node *cur;      /* the statement running, for messages that have no node at hand */
    frame *root;
    int brk; /* 1 break, 2 continue */
} ctx;

static const val UNDEF = {.t = V_UNDEF};
static const val NONE = {.t = V_NONE};

/* ---- errors ---- */

static bool rfail(ctx *c, const node *at, const char *fmt, ...) LM_PRINTF(3, 4);
static bool rfail(ctx *c, const node *at, const char *fmt, ...) {
    if (c->st) return false;
    char m[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (at)
        c->st = lm_fail(c->err, LM_ERR_TEMPLATE, "template line %d column %d: %s", at->line, at->col, m);
    else
        c->st = lm_fail(c->err, LM_ERR_TEMPLATE, "template: %s", m);
    return false;
}

static size_t mem_limit(const ctx *c) { return c->o->max_memory ? c->o->max_memory : JINJA_MAX_MEMORY; }

static bool mem_fail(ctx *c) {
    return rfail(c, c->cur, "max_memory (%zu bytes) exceeded", mem_limit(c));
}

/* True while the render's memory plus more bytes of a temporary fit max_memory; else fails the
 * render naming the limit. Called inside every loop that grows a temporary buffer. */
static bool mem_ok(ctx *c, size_t more) {
    size_t lim = mem_limit(c), used = c->a.bytes + c->held;
    if (used <= lim && more <= lim - used) return true;
    return mem_fail(c);
}

static bool nomem(ctx *c) {
    if (c->a.over) return mem_fail(c);
    if (!c->st) c->st = lm_fail_nomem(c->err, "template render");
    return false;
}

static void *alloc(ctx *c, size_t n) {
    void *p = arena_alloc(&c->a, n);
    if (!p) nomem(c);
    return p;
}

/* ---- value helpers ---- */

static val vbool(bool b) { val v = {.t = V_BOOL}; v.u.b = b; return v; }
static val vint(int64_t i) { val v = {.t = V_INT}; v.u.i = i; return v; }
static val vfloat(double f) { val v = {.t = V_FLOAT}; v.u.f = f; return v; }
static val vstr(const char *p, size_t n) { val v = {.t = V_STR}; v.u.s.p = p; v.u.s.n = n; return v; }

static bool vstr_copy(ctx *c, const char *p, size_t n, val *out) {
    char *s = arena_strndup(&c->a, p, n);
    if (!s) return nomem(c);
    *out = vstr(s, n);
    return true;
}

static bool vstr_buf(ctx *c, lm_buf *b, val *out) {
    if (c->st) {
        lm_buf_free(b);
        return false;
    }
    if (b->oom) {
        lm_buf_free(b);
        return nomem(c);
    }
    bool ok = vstr_copy(c, b->data ? b->data : "", b->len, out);
    lm_buf_free(b);
    return ok;
}

static vlist *list_new(ctx *c, size_t cap) {
    vlist *l = alloc(c, sizeof *l);
    if (!l) return NULL;
    if (cap) {
        size_t bytes;
        if (!lm_mul_ok(cap, sizeof(val), &bytes)) {
            mem_fail(c);
            return NULL;
        }
        l->v = alloc(c, bytes);
        if (!l->v) return NULL;
        l->cap = cap;
    }
    return l;
}

static bool list_push(ctx *c, vlist *l, val v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4, bytes;
        if (!lm_mul_ok(cap, sizeof(val), &bytes)) return mem_fail(c);
        val *nv = alloc(c, bytes);
        if (!nv) return false;
        if (l->n) memcpy(nv, l->v, l->n * sizeof(val));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return true;
}

static val vlistv(vlist *l) { val v = {.t = V_LIST}; v.u.l = l; return v; }
static val vdictv(vdict *d) { val v = {.t = V_DICT}; v.u.d = d; return v; }

static val *dict_find(const vdict *d, const char *k, size_t kn) {
    for (size_t i = 0; i < d->n; i++)
        if (d->kn[i] == kn && memcmp(d->kp[i], k, kn) == 0) return &d->v[i];
    return NULL;
}

static bool dict_set(ctx *c, vdict *d, const char *k, size_t kn, val v) {
    val *e = dict_find(d, k, kn);
    if (e) {
        *e = v;
        return true;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        const char **kp = alloc(c, cap * sizeof(char *));
        size_t *kl = alloc(c, cap * sizeof(size_t));
        val *vv = alloc(c, cap * sizeof(val));
        if (!kp || !kl || !vv) return false;
        if (d->n) {
            memcpy(kp, d->kp, d->n * sizeof(char *));
            memcpy(kl, d->kn, d->n * sizeof(size_t));
            memcpy(vv, d->v, d->n * sizeof(val));
        }
        d->kp = kp;
        d->kn = kl;
        d->v = vv;
        d->cap = cap;
    }
    d->kp[d->n] = k;
    d->kn[d->n] = kn;
    d->v[d->n] = v;
    d->n++;
    return true;
}

static bool from_json(ctx *c, const cJSON *j, val *out) {
    if (cJSON_IsNull(j)) {
        *out = NONE;
    } else if (cJSON_IsBool(j)) {
        *out = vbool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        /* cJSON keeps no int/float distinction: integral values within 2^53 are ints */
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            *out = vint((int64_t)d);
        else
            *out = vfloat(d);
    } else if (cJSON_IsString(j)) {
        *out = vstr(j->valuestring, strlen(j->valuestring));
    } else if (cJSON_IsArray(j)) {
        vlist *l = list_new(c, (size_t)cJSON_GetArraySize(j));
        if (!l) return false;
        for (const cJSON *e = j->child; e; e = e->next) {
            val v;
            if (!from_json(c, e, &v) || !list_push(c, l, v)) return false;
        }
        *out = vlistv(l);
    } else if (cJSON_IsObject(j)) {
        vdict *d = alloc(c, sizeof *d);
        if (!d) return false;
        for (const cJSON *e = j->child; e; e = e->next) {
            val v;
            if (!from_json(c, e, &v) || !dict_set(c, d, e->string, strlen(e->string), v)) return false;
        }
        *out = vdictv(d);
    } else {
        *out = NONE;
    }
    return true;
}

static bool truthy(val v) {
    switch (v.t) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0;
    case V_STR: return v.u.s.n != 0;
    case V_LIST: return v.u.l->n != 0;
    case V_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static const char *type_name(val v) {
    static const char *names[] = {"undefined", "None", "bool", "int", "float", "str", "list",
                                  "dict", "namespace", "macro", "function", "method"};
    return names[v.t];
}

static bool is_num(val v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num(val v) { return v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : (double)v.u.b; }
static bool is_intlike(val v) { return v.t == V_INT || v.t == V_BOOL; }
static int64_t ival(val v) { return v.t == V_INT ? v.u.i : (int64_t)v.u.b; }

static bool equal(val a, val b) {
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return ival(a) == ival(b);
        return num(a) == num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case V_LIST:
        if (a.u.l->n != b.u.l->n || a.u.l->tuple != b.u.l->tuple) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal(a.u.l->v[i], b.u.l->v[i])) return false;
        return true;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            val *o = dict_find(b.u.d, a.u.d->kp[i], a.u.d->kn[i]);
            if (!o || !equal(a.u.d->v[i], *o)) return false;
        }
        return true;
    case V_NS: return a.u.d == b.u.d;
    case V_MACRO: return a.u.m == b.u.m;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

/* ---- text forms ---- */

/* Python repr() of a float: the shortest digits that read back the same. */
static void fmt_float(double f, char *out, size_t cap) {
    if (isnan(f)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    char buf[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    /* buf: [-]d[.ddd]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *s = buf;
    bool neg = *s == '-';
    if (neg) s++;
    while (*s && *s != 'e') {
        if (*s != '.') digits[nd++] = *s;
        s++;
    }
    int exp = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    size_t o = 0;
    char r[64];
    if (neg) r[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            r[o++] = '0';
            r[o++] = '.';
            for (int i = 0; i < -exp - 1; i++) r[o++] = '0';
            for (size_t i = 0; i < nd; i++) r[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp; i++) r[o++] = (size_t)i < nd ? digits[i] : '0';
            r[o++] = '.';
            if ((size_t)exp + 1 < nd)
                for (size_t i = (size_t)exp + 1; i < nd; i++) r[o++] = digits[i];
            else
                r[o++] = '0';
        }
        r[o] = 0;
    } else {
        r[o++] = digits[0];
        if (nd > 1) {
            r[o++] = '.';
            for (size_t i = 1; i < nd; i++) r[o++] = digits[i];
        }
        r[o] = 0;
        snprintf(r + o, sizeof r - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(out, cap, "%s", r);
}

static void put_repr(ctx *c, lm_buf *b, val v);

/* Python str() of v appended to b. Lists and dicts may share their items, so a small value can
 * print as a huge text: the buffer counts against max_memory as it grows (c->st says when not). */
static void put_str(ctx *c, lm_buf *b, val v) {
    char tmp[64];
    switch (v.t) {
    case V_UNDEF: break;
    case V_NONE: lm_buf_puts(b, "None"); break;
    case V_BOOL: lm_buf_puts(b, v.u.b ? "True" : "False"); break;
    case V_INT: lm_buf_printf(b, "%lld", (long long)v.u.i); break;
    case V_FLOAT: fmt_float(v.u.f, tmp, sizeof tmp); lm_buf_puts(b, tmp); break;
    case V_STR: lm_buf_append(b, v.u.s.p, v.u.s.n); break;
    case V_LIST:
        lm_buf_putc(b, v.u.l->tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n && !c->st; i++) {
            if (i) lm_buf_puts(b, ", ");
            put_repr(c, b, v.u.l->v[i]);
            if (!mem_ok(c, b->len)) return;
        }
        if (v.u.l->tuple && v.u.l->n == 1) lm_buf_putc(b, ',');
        lm_buf_putc(b, v.u.l->tuple ? ')' : ']');
        break;
    case V_DICT:
        lm_buf_putc(b, '{');
        for (size_t i = 0; i < v.u.d->n && !c->st; i++) {
            if (i) lm_buf_puts(b, ", ");
            put_repr(c, b, vstr(v.u.d->kp[i], v.u.d->kn[i]));
            lm_buf_puts(b, ": ");
            put_repr(c, b, v.u.d->v[i]);
            if (!mem_ok(c, b->len)) return;
        }
        lm_buf_putc(b, '}');
        break;
    case V_NS: lm_buf_puts(b, "<Namespace>"); break;
    default: lm_buf_printf(b, "<%s>", type_name(v)); break;
    }
}

static void put_repr(ctx *c, lm_buf *b, val v) {
    if (v.t != V_STR) {
        put_str(c, b, v);
        return;
    }
    bool has_sq = memchr(v.u.s.p, '\'', v.u.s.n) != NULL;
    bool has_dq = memchr(v.u.s.p, '"', v.u.s.n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    lm_buf_putc(b, q);
    for (size_t i = 0; i < v.u.s.n; i++) {
        unsigned char ch = (unsigned char)v.u.s.p[i];
        if (ch == (unsigned char)q || ch == '\\') {
            lm_buf_putc(b, '\\');
            lm_buf_putc(b, (char)ch);
        } else if (ch == '\n') lm_buf_puts(b, "\\n");
        else if (ch == '\r') lm_buf_puts(b, "\\r");
        else if (ch == '\t') lm_buf_puts(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) lm_buf_printf(b, "\\x%02x", ch);
        else lm_buf_putc(b, (char)ch);
    }
    lm_buf_putc(b, q);
}

static void json_str(lm_buf *b, const char *s, size_t n) {
    lm_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"': lm_buf_puts(b, "\\\""); break;
        case '\\': lm_buf_puts(b, "\\\\"); break;
        case '\n': lm_buf_puts(b, "\\n"); break;
        case '\r': lm_buf_puts(b, "\\r"); break;
        case '\t': lm_buf_puts(b, "\\t"); break;
        case '\b': lm_buf_puts(b, "\\b"); break;
        case '\f': lm_buf_puts(b, "\\f"); break;
        default:
            if (ch < 0x20) lm_buf_printf(b, "\\u%04x", ch);
            else lm_buf_putc(b, (char)ch);
        }
    }
    lm_buf_putc(b, '"');
}

static void json_nl(lm_buf *b, int indent, int level) {
    lm_buf_putc(b, '\n');
    for (int i = 0; i < indent * level && !b->oom; i++) lm_buf_putc(b, ' ');
}

/* json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson calls it:
 * separators ", "/": " without indent, ","/": " with it. */
static bool put_json(ctx *c, lm_buf *b, val v, int indent, int level, const node *at) {
    if (level > 200) return rfail(c, at, "tojson: nesting deeper than 200");
    char tmp[64];
    switch (v.t) {
    case V_UNDEF: case V_NONE: lm_buf_puts(b, "null"); break;
    case V_BOOL: lm_buf_puts(b, v.u.b ? "true" : "false"); break;
    case V_INT: lm_buf_printf(b, "%lld", (long long)v.u.i); break;
    case V_FLOAT:
        if (isnan(v.u.f)) lm_buf_puts(b, "NaN");
        else if (isinf(v.u.f)) lm_buf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else {
            fmt_float(v.u.f, tmp, sizeof tmp);
            lm_buf_puts(b, tmp);
        }
        break;
    case V_STR: json_str(b, v.u.s.p, v.u.s.n); break;
    case V_LIST:
        if (!v.u.l->n) {
            lm_buf_puts(b, "[]");
            break;
        }
        lm_buf_putc(b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) lm_buf_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_nl(b, indent, level + 1);
            if (!put_json(c, b, v.u.l->v[i], indent, level + 1, at) || !mem_ok(c, b->len)) return false;
        }
        if (indent >= 0) json_nl(b, indent, level);
        lm_buf_putc(b, ']');
        break;
    case V_DICT: case V_NS:
        if (!v.u.d->n) {
            lm_buf_puts(b, "{}");
            break;
        }
        lm_buf_putc(b, '{');
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) lm_buf_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_nl(b, indent, level + 1);
            json_str(b, v.u.d->kp[i], v.u.d->kn[i]);
            lm_buf_puts(b, ": ");
            if (!put_json(c, b, v.u.d->v[i], indent, level + 1, at) || !mem_ok(c, b->len)) return false;
        }
        if (indent >= 0) json_nl(b, indent, level);
        lm_buf_putc(b, '}');
        break;
    default:
        return rfail(c, at, "tojson: a %s is not JSON serializable", type_name(v));
    }
    return true;
}

static bool to_str(ctx *c, val v, val *out) {
    if (v.t == V_STR) {
        *out = v;
        return true;
    }
    lm_buf b = {0};
    put_str(c, &b, v);
    return vstr_buf(c, &b, out);
}

/* ---- scopes ---- */

static frame *frame_new(ctx *c, frame *parent) {
    frame *f = alloc(c, sizeof *f);
    if (f) f->parent = parent;
    return f;
}

static val lookup(ctx *c, frame *f, const char *k, size_t kn) {
    for (; f; f = f->parent) {
        val *v = dict_find(&f->vars, k, kn);
        if (v) return *v;
    }
    static const struct { const char *n; int id; } fns[] = {
        {"range", F_RANGE}, {"namespace", F_NAMESPACE}, {"raise_exception", F_RAISE},
        {"strftime_now", F_STRFTIME}, {"dict", F_DICT}};
    for (size_t i = 0; i < LM_ARRAY_LEN(fns); i++)
        if (strlen(fns[i].n) == kn && memcmp(fns[i].n, k, kn) == 0) {
            val v = {.t = V_FUNC};
            v.u.fn = fns[i].id;
            return v;
        }
    (void)c;
    return UNDEF;
}

/* ---- evaluation ---- */

typedef struct args {
    val *pos;
    size_t n_pos;
    const char **kn;
    size_t *kl;
    val *kw;
    size_t n_kw;
} args;

static bool eval(ctx *c, frame *f, const node *n, val *out);
static bool exec_body(ctx *c, frame *f, const nlist *body);

static bool step(ctx *c, const node *at) {
    size_t lim = c->o->max_steps ? c->o->max_steps : 10000000;
    if (++c->steps > lim) return rfail(c, at, "max_steps (%zu loop iterations and calls) exceeded", lim);
    return true;
}

static bool eval_args(ctx *c, frame *f, const node *n, args *a) {
    memset(a, 0, sizeof *a);
    if (n->args.n) {
        a->pos = alloc(c, n->args.n * sizeof(val));
        if (!a->pos) return false;
        for (size_t i = 0; i < n->args.n; i++)
            if (!eval(c, f, n->args.v[i], &a->pos[i])) return false;
        a->n_pos = n->args.n;
    }
    if (n->n_kwn) {
        a->kw = alloc(c, n->n_kwn * sizeof(val));
        if (!a->kw) return false;
        for (size_t i = 0; i < n->n_kwn; i++)
            if (!eval(c, f, n->kwv.v[i], &a->kw[i])) return false;
        a->kn = n->kwn;
        a->kl = n->kwl;
        a->n_kw = n->n_kwn;
    }
    return true;
}

/* The i-th positional argument or the keyword argument name; dflt when absent. */
static val arg(const args *a, size_t i, const char *name, val dflt) {
    if (i < a->n_pos) return a->pos[i];
    if (name)
        for (size_t k = 0; k < a->n_kw; k++)
            if (a->kl[k] == strlen(name) && memcmp(a->kn[k], name, a->kl[k]) == 0) return a->kw[k];
    return dflt;
}

static bool method_of(ctx *c, val obj, const char *k, size_t kn, val *out) {
    static const char *const methods[] = {"strip", "lstrip", "rstrip", "startswith", "endswith",
                                          "split", "rsplit", "upper", "lower", "replace", "title",
                                          "capitalize", "get", "items", "keys", "values", "append",
                                          "pop", "join", "find", "count", "index", "extend",
                                          "update", "splitlines", NULL};
    if (obj.t != V_STR && obj.t != V_DICT && obj.t != V_LIST) return false;
    for (int i = 0; methods[i]; i++)
        if (strlen(methods[i]) == kn && memcmp(methods[i], k, kn) == 0) {
            vmethod *m = alloc(c, sizeof *m);
            if (!m) return false;
            m->self = obj;
            m->name = methods[i];
            m->n = kn;
            out->t = V_METHOD;
            out->u.me = m;
            return true;
        }
    return false;
}

/* obj.k (attr_first: Jinja's getattr, methods before keys) or obj['k'] (keys before methods). */
static bool lookup_member(ctx *c, val obj, const char *k, size_t kn, bool attr_first, val *out) {
    if (attr_first && obj.t == V_DICT && method_of(c, obj, k, kn, out)) return true;
    if (obj.t == V_DICT || obj.t == V_NS) {
        val *v = dict_find(obj.u.d, k, kn);
        if (v) {
            *out = *v;
            return true;
        }
    }
    if (method_of(c, obj, k, kn, out)) return true;
    if (c->st) return false;
    *out = UNDEF;
    return true;
}

static bool norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

/* a key or attribute named by a filter argument (map(attribute=...), selectattr...) */
static bool get_attr(ctx *c, val obj, const char *k, size_t kn, val *out) {
    return lookup_member(c, obj, k, kn, false, out);
}

static bool get_item(ctx *c, val obj, val key, val *out) {
    if (key.t == V_STR) return lookup_member(c, obj, key.u.s.p, key.u.s.n, false, out);
    if (is_intlike(key)) {
        size_t i;
        if (obj.t == V_LIST && norm_index(ival(key), obj.u.l->n, &i)) {
            *out = obj.u.l->v[i];
            return true;
        }
        if (obj.t == V_STR && norm_index(ival(key), obj.u.s.n, &i)) {
            *out = vstr(obj.u.s.p + i, 1);
            return true;
        }
    }
    *out = UNDEF;
    return true;
}

static bool eval_slice(ctx *c, frame *f, const node *n, val obj, val *out) {
    val vs = NONE, ve = NONE, vst = NONE;
    if (n->b && !eval(c, f, n->b, &vs)) return false;
    if (n->c && !eval(c, f, n->c, &ve)) return false;
    if (n->args.n && !eval(c, f, n->args.v[0], &vst)) return false;
    int64_t len = obj.t == V_LIST ? (int64_t)obj.u.l->n : obj.t == V_STR ? (int64_t)obj.u.s.n : -1;
    if (len < 0) return rfail(c, n, "cannot slice a %s", type_name(obj));
    int64_t st = vst.t == V_NONE ? 1 : ival(vst);
    if (vst.t != V_NONE && !is_intlike(vst)) return rfail(c, n, "slice step must be an integer");
    if (st == 0) return rfail(c, n, "slice step cannot be zero");
    int64_t lo, hi;
    /* Python's PySlice_AdjustIndices */
    if (vs.t == V_NONE) lo = st < 0 ? len - 1 : 0;
    else {
        lo = ival(vs);
        if (lo < 0) lo += len;
        if (lo < 0) lo = st < 0 ? -1 : 0;
        else if (lo >= len) lo = st < 0 ? len - 1 : len;
    }
    if (ve.t == V_NONE) hi = st < 0 ? -1 : len;
    else {
        hi = ival(ve);
        if (hi < 0) hi += len;
        if (hi < 0) hi = st < 0 ? -1 : 0;
        else if (hi >= len) hi = st < 0 ? len - 1 : len;
    }
    if (obj.t == V_LIST) {
        vlist *l = list_new(c, 0);
        if (!l) return false;
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st)
            if (!list_push(c, l, obj.u.l->v[i])) return false;
        *out = vlistv(l);
        return true;
    }
    if (st == 1) {
        *out = vstr(obj.u.s.p + lo, hi > lo ? (size_t)(hi - lo) : 0);
        return true;
    }
    lm_buf b = {0};
    for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) lm_buf_putc(&b, obj.u.s.p[i]);
    return vstr_buf(c, &b, out);
}

/* Turns an iterable into a list view: lists as is, dicts as their keys, strings as characters. */
static bool iter_list(ctx *c, val v, const node *at, vlist **out) {
    if (v.t == V_LIST) {
        *out = v.u.l;
        return true;
    }
    if (v.t == V_UNDEF || v.t == V_NONE) {
        if (v.t == V_NONE) return rfail(c, at, "'NoneType' object is not iterable");
        vlist *l = list_new(c, 0);
        *out = l;
        return l != NULL;
    }
    if (v.t == V_DICT) {
        vlist *l = list_new(c, v.u.d->n);
        if (!l) return false;
        for (size_t i = 0; i < v.u.d->n; i++)
            if (!list_push(c, l, vstr(v.u.d->kp[i], v.u.d->kn[i]))) return false;
        *out = l;
        return true;
    }
    if (v.t == V_STR) {
        vlist *l = list_new(c, v.u.s.n);
        if (!l) return false;
        for (size_t i = 0; i < v.u.s.n;) {
            int k = lm_utf8_seq_len((unsigned char)v.u.s.p[i]);
            if (k < 1 || i + (size_t)k > v.u.s.n) k = 1;
            if (!list_push(c, l, vstr(v.u.s.p + i, (size_t)k))) return false;
            i += (size_t)k;
        }
        *out = l;
        return true;
    }
    return rfail(c, at, "'%s' object is not iterable", type_name(v));
}

static bool contains(ctx *c, val hay, val needle, const node *at, bool *out) {
    if (hay.t == V_STR) {
        if (needle.t != V_STR) return rfail(c, at, "'in <string>' requires a string on the left");
        bool found = needle.u.s.n == 0;
        for (size_t i = 0; !found && i + needle.u.s.n <= hay.u.s.n; i++)
            found = memcmp(hay.u.s.p + i, needle.u.s.p, needle.u.s.n) == 0;
        *out = found;
        return true;
    }
    if (hay.t == V_DICT || hay.t == V_NS) {
        *out = needle.t == V_STR && dict_find(hay.u.d, needle.u.s.p, needle.u.s.n);
        return true;
    }
    if (hay.t == V_LIST) {
        *out = false;
        for (size_t i = 0; i < hay.u.l->n && !*out; i++) *out = equal(hay.u.l->v[i], needle);
        return true;
    }
    if (hay.t == V_UNDEF) {
        *out = false;
        return true;
    }
    return rfail(c, at, "argument of type '%s' is not iterable", type_name(hay));
}

static int cmp_vals(val a, val b, bool *ok) {
    *ok = true;
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        if (is_intlike(a) && is_intlike(b)) return ival(a) < ival(b) ? -1 : ival(a) > ival(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == V_STR && b.t == V_STR) {
        size_t n = LM_MIN(a.u.s.n, b.u.s.n);
        int r = memcmp(a.u.s.p, b.u.s.p, n);
        if (r) return r < 0 ? -1 : 1;
        return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    }
    *ok = false;
    return 0;
}

static bool binop(ctx *c, const node *n, int op, val a, val b, val *out) {
    bool ok = true;
    switch (op) {
    case OP_EQ: *out = vbool(equal(a, b)); return true;
    case OP_NE: *out = vbool(!equal(a, b)); return true;
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: {
        int r = cmp_vals(a, b, &ok);
        if (!ok) return rfail(c, n, "cannot compare %s with %s", type_name(a), type_name(b));
        *out = vbool(op == OP_LT ? r < 0 : op == OP_LE ? r <= 0 : op == OP_GT ? r > 0 : r >= 0);
        return true;
    }
    case OP_IN: case OP_NOTIN: {
        bool r;
        if (!contains(c, b, a, n, &r)) return false;
        *out = vbool(op == OP_IN ? r : !r);
        return true;
    }
    case OP_CAT: {
        lm_buf buf = {0};
        put_str(c, &buf, a);
        if (!c->st) put_str(c, &buf, b);
        if (!c->st) mem_ok(c, buf.len);
        return vstr_buf(c, &buf, out);
    }
    default: break;
    }
    if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
        char *s = alloc(c, a.u.s.n + b.u.s.n + 1);
        if (!s) return false;
        memcpy(s, a.u.s.p, a.u.s.n);
        memcpy(s + a.u.s.n, b.u.s.p, b.u.s.n);
        *out = vstr(s, a.u.s.n + b.u.s.n);
        return true;
    }
    if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST) {
        vlist *l = list_new(c, a.u.l->n + b.u.l->n);
        if (!l) return false;
        for (size_t i = 0; i < a.u.l->n; i++) list_push(c, l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++) list_push(c, l, b.u.l->v[i]);
        *out = vlistv(l);
        return true;
    }
    if (op == OP_MUL && ((a.t == V_STR && is_intlike(b)) || (b.t == V_STR && is_intlike(a)))) {
        val s = a.t == V_STR ? a : b;
        int64_t k = a.t == V_STR ? ival(b) : ival(a);
        lm_buf buf = {0};
        size_t lim = c->o->max_output ? c->o->max_output : (size_t)16 << 20, total;
        if (k > 0 && s.u.s.n && (!lm_mul_ok((size_t)k, s.u.s.n, &total) || total > lim))
            return rfail(c, n, "max_output (%zu bytes) exceeded", lim);
        if (k > 0 && !mem_ok(c, s.u.s.n * (size_t)k)) return false;
        for (int64_t i = 0; i < k; i++) {
            lm_buf_append(&buf, s.u.s.p, s.u.s.n);
            if (buf.len > lim) {
                lm_buf_free(&buf);
                return rfail(c, n, "max_output (%zu bytes) exceeded", lim);
            }
        }
        return vstr_buf(c, &buf, out);
    }
    if (!is_num(a) || !is_num(b)) {
        if (a.t == V_UNDEF || b.t == V_UNDEF)
            return rfail(c, n, "undefined value in arithmetic");
        return rfail(c, n, "unsupported operand types for arithmetic: %s and %s", type_name(a), type_name(b));
    }
    bool ints = is_intlike(a) && is_intlike(b);
    if (ints) {
        int64_t x = ival(a), y = ival(b), r;
        switch (op) {
        case OP_ADD: if (__builtin_add_overflow(x, y, &r)) goto ovf; *out = vint(r); return true;
        case OP_SUB: if (__builtin_sub_overflow(x, y, &r)) goto ovf; *out = vint(r); return true;
        case OP_MUL: if (__builtin_mul_overflow(x, y, &r)) goto ovf; *out = vint(r); return true;
        case OP_FDIV: case OP_MOD:
            if (y == 0) return rfail(c, n, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) goto ovf;
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
            *out = op == OP_FDIV ? vint(r) : vint(x - r * y);
            return true;
        case OP_POW:
            if (y >= 0) { /* by squaring: 1 ** 10**18 must not loop 10**18 times */
                int64_t p = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(p, base, &p)) goto ovf;
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) goto ovf;
                }
                *out = vint(p);
                return true;
            }
            break;
        default: break;
        }
    }
    double x = num(a), y = num(b);
    switch (op) {
    case OP_ADD: *out = vfloat(x + y); return true;
    case OP_SUB: *out = vfloat(x - y); return true;
    case OP_MUL: *out = vfloat(x * y); return true;
    case OP_DIV:
        if (y == 0) return rfail(c, n, "division by zero");
        *out = vfloat(x / y);
        return true;
    case OP_FDIV:
        if (y == 0) return rfail(c, n, "division by zero");
        *out = vfloat(floor(x / y));
        return true;
    case OP_MOD:
        if (y == 0) return rfail(c, n, "modulo by zero");
        *out = vfloat(x - floor(x / y) * y);
        return true;
    case OP_POW: *out = vfloat(pow(x, y)); return true;
    default: return rfail(c, n, "bad operator");
    }
ovf:
    return rfail(c, n, "integer overflow");
}

/* ---- string helpers ---- */

static bool in_chars(char ch, val chars) {
    if (chars.t != V_STR) return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
    return memchr(chars.u.s.p, ch, chars.u.s.n) != NULL;
}

static val strip(val s, val chars, bool left, bool right) {
    size_t a = 0, b = s.u.s.n;
    if (left) while (a < b && in_chars(s.u.s.p[a], chars)) a++;
    if (right) while (b > a && in_chars(s.u.s.p[b - 1], chars)) b--;
    return vstr(s.u.s.p + a, b - a);
}

static bool case_map(ctx *c, val s, int mode, val *out) { /* 0 upper 1 lower 2 title 3 capitalize */
    char *p = alloc(c, s.u.s.n + 1);
    if (!p) return false;
    bool prev_alpha = false;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.p[i];
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        bool up;
        if (mode == 0) up = true;
        else if (mode == 1) up = false;
        else if (mode == 2) up = !prev_alpha;
        else up = i == 0;
        if (alpha) ch = up ? (ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch) : (ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch);
        p[i] = ch;
        prev_alpha = alpha || (unsigned char)ch >= 0x80 || (ch >= '0' && ch <= '9' && mode == 2 && prev_alpha);
    }
    *out = vstr(p, s.u.s.n);
    return true;
}

static bool str_replace(ctx *c, val s, val from, val to, int64_t count, val *out) {
    if (from.t != V_STR || to.t != V_STR) return rfail(c, NULL, "replace() needs strings");
    lm_buf b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (from.u.s.n == 0) {
        for (; i <= s.u.s.n && mem_ok(c, b.len); i++) {
            if (count < 0 || done < count) {
                lm_buf_append(&b, to.u.s.p, to.u.s.n);
                done++;
            }
            if (i < s.u.s.n) lm_buf_putc(&b, s.u.s.p[i]);
        }
        return vstr_buf(c, &b, out);
    }
    while (i < s.u.s.n && mem_ok(c, b.len)) {
        if ((count < 0 || done < count) && i + from.u.s.n <= s.u.s.n &&
            memcmp(s.u.s.p + i, from.u.s.p, from.u.s.n) == 0) {
            lm_buf_append(&b, to.u.s.p, to.u.s.n);
            i += from.u.s.n;
            done++;
        } else {
            lm_buf_putc(&b, s.u.s.p[i++]);
        }
    }
    return vstr_buf(c, &b, out);
}

static bool str_split(ctx *c, val s, val sep, int64_t maxsplit, val *out) {
    vlist *l = list_new(c, 0);
    if (!l) return false;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    int64_t done = 0;
    if (sep.t != V_STR) { /* whitespace runs, no empty pieces */
        for (;;) {
            while (i < n && in_chars(p[i], NONE)) i++;
            if (i >= n) break;
            size_t st = i;
            if (maxsplit >= 0 && done >= maxsplit) {
                size_t e = n;
                while (e > st && in_chars(p[e - 1], NONE)) e--;
                if (!list_push(c, l, vstr(p + st, e - st))) return false;
                break;
            }
            while (i < n && !in_chars(p[i], NONE)) i++;
            if (!list_push(c, l, vstr(p + st, i - st))) return false;
            done++;
        }
    } else {
        if (sep.u.s.n == 0) return rfail(c, NULL, "split(): empty separator");
        size_t st = 0;
        while (i + sep.u.s.n <= n && (maxsplit < 0 || done < maxsplit)) {
            if (memcmp(p + i, sep.u.s.p, sep.u.s.n) == 0) {
                if (!list_push(c, l, vstr(p + st, i - st))) return false;
                i += sep.u.s.n;
                st = i;
                done++;
            } else {
                i++;
            }
        }
        if (!list_push(c, l, vstr(p + st, n - st))) return false;
    }
    *out = vlistv(l);
    return true;
}

static bool affix(val s, val x, bool end) {
    if (x.t == V_LIST) {
        for (size_t i = 0; i < x.u.l->n; i++)
            if (affix(s, x.u.l->v[i], end)) return true;
        return false;
    }
    if (x.t != V_STR || x.u.s.n > s.u.s.n) return false;
    return memcmp(s.u.s.p + (end ? s.u.s.n - x.u.s.n : 0), x.u.s.p, x.u.s.n) == 0;
}

static bool join(ctx *c, vlist *l, val sep, val attr, val *out) {
    lm_buf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i && sep.t == V_STR) lm_buf_append(&b, sep.u.s.p, sep.u.s.n);
        val v = l->v[i];
        if (attr.t == V_STR && !get_attr(c, v, attr.u.s.p, attr.u.s.n, &v)) {
            lm_buf_free(&b);
            return false;
        }
        put_str(c, &b, v);
        if (c->st || !mem_ok(c, b.len)) break;
    }
    return vstr_buf(c, &b, out);
}

static bool items_list(ctx *c, val d, val *out) {
    vlist *l = list_new(c, d.u.d->n);
    if (!l) return false;
    for (size_t i = 0; i < d.u.d->n; i++) {
        vlist *pair = list_new(c, 2);
        if (!pair) return false;
        pair->tuple = true;
        list_push(c, pair, vstr(d.u.d->kp[i], d.u.d->kn[i]));
        list_push(c, pair, d.u.d->v[i]);
        list_push(c, l, vlistv(pair));
    }
    *out = vlistv(l);
    return true;
}

static bool call_method(ctx *c, const node *n, vmethod *m, const args *a, val *out) {
    val s = m->self;
    const char *nm = m->name;
    #define IS(x) (strcmp(nm, x) == 0)
    if (s.t == V_STR) {
        if (IS("strip") || IS("lstrip") || IS("rstrip")) {
            *out = strip(s, arg(a, 0, "chars", NONE), !IS("rstrip"), !IS("lstrip"));
            return true;
        }
        if (IS("startswith") || IS("endswith")) {
            *out = vbool(affix(s, arg(a, 0, NULL, NONE), IS("endswith")));
            return true;
        }
        if (IS("split") || IS("rsplit")) {
            val ms = arg(a, 1, "maxsplit", vint(-1));
            return str_split(c, s, arg(a, 0, "sep", NONE), is_intlike(ms) ? ival(ms) : -1, out);
        }
        if (IS("upper")) return case_map(c, s, 0, out);
        if (IS("lower")) return case_map(c, s, 1, out);
        if (IS("title")) return case_map(c, s, 2, out);
        if (IS("capitalize")) {
            val lo;
            if (!case_map(c, s, 1, &lo)) return false;
            return case_map(c, lo, 3, out);
        }
        if (IS("replace")) {
            val cnt = arg(a, 2, "count", vint(-1));
            return str_replace(c, s, arg(a, 0, NULL, NONE), arg(a, 1, NULL, NONE), is_intlike(cnt) ? ival(cnt) : -1, out);
        }
        if (IS("join")) {
            vlist *l;
            if (!iter_list(c, arg(a, 0, NULL, NONE), n, &l)) return false;
            return join(c, l, s, NONE, out);
        }
        if (IS("find") || IS("count")) {
            val x = arg(a, 0, NULL, NONE);
            if (x.t != V_STR) return rfail(c, n, "%s() needs a string", nm);
            int64_t cnt = 0, pos = -1;
            for (size_t i = 0; i + x.u.s.n <= s.u.s.n; i++)
                if (memcmp(s.u.s.p + i, x.u.s.p, x.u.s.n) == 0) {
                    if (pos < 0) pos = (int64_t)i;
                    cnt++;
                    if (x.u.s.n) i += x.u.s.n - 1;
                }
            *out = vint(IS("find") ? pos : cnt);
            return true;
        }
        if (IS("splitlines")) return str_split(c, s, vstr("\n", 1), -1, out);
    } else if (s.t == V_DICT) {
        if (IS("get")) {
            val k = arg(a, 0, NULL, NONE), v = UNDEF;
            if (k.t == V_STR) {
                val *e = dict_find(s.u.d, k.u.s.p, k.u.s.n);
                if (e) v = *e;
            }
            *out = v.t == V_UNDEF ? arg(a, 1, "default", NONE) : v;
            return true;
        }
        if (IS("items")) return items_list(c, s, out);
        if (IS("keys") || IS("values")) {
            vlist *l = list_new(c, s.u.d->n);
            if (!l) return false;
            for (size_t i = 0; i < s.u.d->n; i++)
                list_push(c, l, IS("keys") ? vstr(s.u.d->kp[i], s.u.d->kn[i]) : s.u.d->v[i]);
            *out = vlistv(l);
            return true;
        }
        if (IS("update")) {
            val o = arg(a, 0, NULL, NONE);
            if (o.t == V_DICT)
                for (size_t i = 0; i < o.u.d->n; i++)
                    if (!dict_set(c, s.u.d, o.u.d->kp[i], o.u.d->kn[i], o.u.d->v[i])) return false;
            *out = NONE;
            return true;
        }
    } else if (s.t == V_LIST) {
        if (IS("append")) {
            if (!list_push(c, s.u.l, arg(a, 0, NULL, NONE))) return false;
            *out = NONE;
            return true;
        }
        if (IS("extend")) {
            vlist *l;
            if (!iter_list(c, arg(a, 0, NULL, NONE), n, &l)) return false;
            size_t k = l->n; /* l may be the list itself: x.extend(x) doubles it, as in Python */
            for (size_t i = 0; i < k; i++)
                if (!list_push(c, s.u.l, l->v[i])) return false;
            *out = NONE;
            return true;
        }
        if (IS("pop")) {
            if (!s.u.l->n) return rfail(c, n, "pop from empty list");
            val iv = arg(a, 0, NULL, vint(-1));
            size_t i;
            if (!is_intlike(iv) || !norm_index(ival(iv), s.u.l->n, &i)) return rfail(c, n, "pop index out of range");
            *out = s.u.l->v[i];
            memmove(s.u.l->v + i, s.u.l->v + i + 1, (s.u.l->n - i - 1) * sizeof(val));
            s.u.l->n--;
            return true;
        }
        if (IS("index")) {
            val x = arg(a, 0, NULL, NONE);
            for (size_t i = 0; i < s.u.l->n; i++)
                if (equal(s.u.l->v[i], x)) {
                    *out = vint((int64_t)i);
                    return true;
                }
            return rfail(c, n, "index(): value is not in list");
        }
        if (IS("count")) {
            val x = arg(a, 0, NULL, NONE);
            int64_t k = 0;
            for (size_t i = 0; i < s.u.l->n; i++) k += equal(s.u.l->v[i], x);
            *out = vint(k);
            return true;
        }
    }
    #undef IS
    return rfail(c, n, "'%s' object has no method '%s'", type_name(s), nm);
}

static bool call_macro(ctx *c, const node *at, vmacro *m, const args *a, const vmacro *caller, val *out);

static bool do_strftime(ctx *c, const node *n, val fmt, val *out) {
    if (fmt.t != V_STR) return rfail(c, n, "strftime_now() needs a format string");
    time_t t = c->o->now ? (time_t)c->o->now(c->o->now_user) : time(NULL);
    struct tm tmv;
    if (!localtime_r(&t, &tmv)) return rfail(c, n, "strftime_now(): time out of range");
    char f[128], buf[256];
    snprintf(f, sizeof f, "%.*s", (int)LM_MIN(fmt.u.s.n, 120), fmt.u.s.p);
    size_t k = strftime(buf, sizeof buf, f, &tmv);
    return vstr_copy(c, buf, k, out);
}

/* range(stop) / range(start, stop[, step]): the first value, the step and how many values. */
static bool range_args(ctx *c, const node *n, const args *a, int64_t *lo, int64_t *st, size_t *count) {
    int64_t hi;
    *lo = 0;
    *st = 1;
    for (size_t i = 0; i < a->n_pos; i++)
        if (!is_intlike(a->pos[i])) return rfail(c, n, "range() needs integers");
    if (a->n_pos == 1) hi = ival(a->pos[0]);
    else if (a->n_pos >= 2) {
        *lo = ival(a->pos[0]);
        hi = ival(a->pos[1]);
        if (a->n_pos >= 3) *st = ival(a->pos[2]);
    } else return rfail(c, n, "range() needs an argument");
    if (*st == 0) return rfail(c, n, "range() step cannot be zero");
    /* in unsigned arithmetic: hi - lo may not fit an int64_t */
    uint64_t span, step = *st > 0 ? (uint64_t)*st : 0 - (uint64_t)*st;
    if (*st > 0) span = hi > *lo ? (uint64_t)hi - (uint64_t)*lo : 0;
    else span = *lo > hi ? (uint64_t)*lo - (uint64_t)hi : 0;
    uint64_t k = span ? (span - 1) / step + 1 : 0;
    *count = k > SIZE_MAX ? SIZE_MAX : (size_t)k;
    return true;
}

/* The i-th value of a range (i < its count, so it fits an int64_t). */
static val range_at(int64_t lo, int64_t st, size_t i) {
    return vint((int64_t)((uint64_t)lo + (uint64_t)i * (uint64_t)st));
}

static bool call_value(ctx *c, frame *f, const node *n, val fn, const args *a, val *out) {
    (void)f;
    if (!step(c, n)) return false;
    if (fn.t == V_METHOD) return call_method(c, n, fn.u.me, a, out);
    if (fn.t == V_MACRO) return call_macro(c, n, fn.u.m, a, NULL, out);
    if (fn.t != V_FUNC) {
        if (fn.t == V_UNDEF && n->a && n->a->kind == E_NAME)
            return rfail(c, n, "'%.*s' is undefined", (int)n->a->name_n, n->a->name);
        return rfail(c, n, "a %s is not callable", type_name(fn));
    }
    switch (fn.u.fn) {
    case F_RAISE: {
        val m;
        if (!to_str(c, arg(a, 0, NULL, vstr("", 0)), &m)) return false;
        if (!c->st) c->st = lm_fail(c->err, LM_ERR_TEMPLATE, "%.*s", (int)LM_MIN(m.u.s.n, 240), m.u.s.p);
        return false;
    }
    case F_STRFTIME: return do_strftime(c, n, arg(a, 0, NULL, NONE), out);
    case F_NAMESPACE: case F_DICT: {
        vdict *d = alloc(c, sizeof *d);
        if (!d) return false;
        if (a->n_pos && a->pos[0].t == V_DICT)
            for (size_t i = 0; i < a->pos[0].u.d->n; i++)
                if (!dict_set(c, d, a->pos[0].u.d->kp[i], a->pos[0].u.d->kn[i], a->pos[0].u.d->v[i])) return false;
        for (size_t i = 0; i < a->n_kw; i++)
            if (!dict_set(c, d, a->kn[i], a->kl[i], a->kw[i])) return false;
        out->t = fn.u.fn == F_NAMESPACE ? V_NS : V_DICT;
        out->u.d = d;
        return true;
    }
    case F_RANGE: {
        int64_t lo, st;
        size_t count;
        if (!range_args(c, n, a, &lo, &st, &count)) return false;
        size_t bytes;
        if (!lm_mul_ok(count, sizeof(val), &bytes) || !mem_ok(c, bytes)) return mem_fail(c);
        vlist *l = list_new(c, count);
        if (!l) return false;
        for (size_t i = 0; i < count; i++)
            if (!step(c, n) || !list_push(c, l, range_at(lo, st, i))) return false;
        *out = vlistv(l);
        return true;
    }
    }
    return rfail(c, n, "unknown function");
}

/* ---- tests ---- */

static bool apply_test(ctx *c, const node *n, val v, const args *a, bool *out) {
    const char *nm = n->name;
    size_t nn = n->name_n;
    #define T(x) (nn == strlen(x) && memcmp(nm, x, nn) == 0)
    val x = arg(a, 0, NULL, UNDEF);
    if (T("defined")) *out = v.t != V_UNDEF;
    else if (T("undefined")) *out = v.t == V_UNDEF;
    else if (T("none")) *out = v.t == V_NONE;
    else if (T("string")) *out = v.t == V_STR;
    else if (T("number")) *out = v.t == V_INT || v.t == V_FLOAT;
    else if (T("integer")) *out = v.t == V_INT;
    else if (T("float")) *out = v.t == V_FLOAT;
    else if (T("boolean")) *out = v.t == V_BOOL;
    else if (T("true")) *out = v.t == V_BOOL && v.u.b;
    else if (T("false")) *out = v.t == V_BOOL && !v.u.b;
    else if (T("mapping")) *out = v.t == V_DICT;
    else if (T("iterable")) *out = v.t == V_LIST || v.t == V_DICT || v.t == V_STR;
    else if (T("sequence")) *out = v.t == V_LIST || v.t == V_DICT || v.t == V_STR;
    else if (T("callable")) *out = v.t == V_MACRO || v.t == V_FUNC || v.t == V_METHOD;
    else if (T("equalto") || T("eq") || T("==") || T("sameas")) *out = equal(v, x);
    else if (T("ne") || T("!=")) *out = !equal(v, x);
    else if (T("lt") || T("le") || T("gt") || T("ge") || T("lessthan") || T("greaterthan")) {
        bool ok;
        int r = cmp_vals(v, x, &ok);
        if (!ok) return rfail(c, n, "cannot compare %s with %s", type_name(v), type_name(x));
        *out = T("lt") || T("lessthan") ? r < 0 : T("le") ? r <= 0 : T("gt") || T("greaterthan") ? r > 0 : r >= 0;
    } else if (T("in")) return contains(c, x, v, n, out);
    else if (T("odd") || T("even") || T("divisibleby")) {
        if (!is_intlike(v)) return rfail(c, n, "test '%.*s' needs an integer", (int)nn, nm);
        int64_t d = T("divisibleby") ? (is_intlike(x) ? ival(x) : 0) : 2;
        if (d == 0) return rfail(c, n, "divisibleby needs a non-zero integer");
        int64_t r = ival(v) % d;
        *out = T("odd") ? r != 0 : r == 0;
    } else if (T("lower") || T("upper")) {
        if (v.t != V_STR) *out = false;
        else {
            bool ok = true;
            for (size_t i = 0; i < v.u.s.n; i++) {
                char ch = v.u.s.p[i];
                if (T("lower") ? (ch >= 'A' && ch <= 'Z') : (ch >= 'a' && ch <= 'z')) ok = false;
            }
            *out = ok;
        }
    } else {
        return rfail(c, n, "unknown test '%.*s'", (int)nn, nm);
    }
    #undef T
    return true;
}

/* a test by name, used by select/reject filters */
static bool test_by_name(ctx *c, const node *at, val v, val tname, const val *targ, bool *out) {
    if (tname.t != V_STR) return rfail(c, at, "select: test name must be a string");
    node tn = *at;
    tn.name = tname.u.s.p;
    tn.name_n = tname.u.s.n;
    args a = {0};
    val tmp[1];
    if (targ) {
        tmp[0] = *targ;
        a.pos = tmp;
        a.n_pos = 1;
    }
    return apply_test(c, &tn, v, &a, out);
}

/* ---- filters ---- */

/* Stable merge sort (Python's sort is stable; reverse keeps equal items in their order). */
static bool sort_vals(ctx *c, const node *n, vlist *l, val attr, bool reverse) {
    size_t len = l->n;
    if (len < 2) return true;
    val *key = alloc(c, len * sizeof(val)), *tv = alloc(c, len * sizeof(val)), *tk = alloc(c, len * sizeof(val));
    if (!key || !tv || !tk) return false;
    for (size_t i = 0; i < len; i++) {
        key[i] = l->v[i];
        if (attr.t == V_STR && !get_attr(c, l->v[i], attr.u.s.p, attr.u.s.n, &key[i])) return false;
    }
    for (size_t w = 1; w < len; w *= 2) {
        for (size_t lo = 0; lo + w < len; lo += 2 * w) {
            size_t mid = lo + w, hi = LM_MIN(lo + 2 * w, len), i = lo, j = mid, o = 0;
            while (i < mid || j < hi) {
                bool right = i >= mid;
                if (!right && j < hi) {
                    bool ok;
                    int r = cmp_vals(key[i], key[j], &ok);
                    if (!ok) return rfail(c, n, "sort: cannot compare %s with %s", type_name(key[i]), type_name(key[j]));
                    right = reverse ? r < 0 : r > 0;
                }
                size_t k = right ? j++ : i++;
                tv[o] = l->v[k];
                tk[o++] = key[k];
            }
            memcpy(l->v + lo, tv, o * sizeof(val));
            memcpy(key + lo, tk, o * sizeof(val));
        }
        if (w > len / 2) break;
    }
    return true;
}

static bool copy_list(ctx *c, vlist *src, vlist **out) {
    vlist *l = list_new(c, src->n);
    if (!l) return false;
    for (size_t i = 0; i < src->n; i++) list_push(c, l, src->v[i]);
    *out = l;
    return true;
}

/* Each filter gets the value, its arguments and, for those that work on a sequence (on_list in
 * the table), the value as a list (l; NULL for the others). */
typedef bool filter_fn(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out);

static bool f_safe(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    *out = v;
    return true;
}

static bool f_escape(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val s = UNDEF; /* to_str sets it; gcc cannot tell */
    if (!to_str(c, v, &s)) return false;
    lm_buf b = {0};
    if (!mem_ok(c, s.u.s.n)) return false;
    for (size_t i = 0; i < s.u.s.n && (i % 4096 || mem_ok(c, b.len)); i++) {
        char ch = s.u.s.p[i];
        if (ch == '&') lm_buf_puts(&b, "&amp;");
        else if (ch == '<') lm_buf_puts(&b, "&lt;");
        else if (ch == '>') lm_buf_puts(&b, "&gt;");
        else if (ch == '"') lm_buf_puts(&b, "&#34;");
        else if (ch == '\'') lm_buf_puts(&b, "&#39;");
        else lm_buf_putc(&b, ch);
    }
    return vstr_buf(c, &b, out);
}

static bool f_default(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val dflt = arg(a, 0, "default_value", vstr("", 0));
    bool boolean = truthy(arg(a, 1, "boolean", vbool(false)));
    *out = (v.t == V_UNDEF || (boolean && !truthy(v))) ? dflt : v;
    return true;
}

static bool f_tojson(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val ind = arg(a, 0, "indent", NONE);
    lm_buf b = {0};
    if (!put_json(c, &b, v, is_intlike(ind) ? (int)ival(ind) : -1, 0, n)) {
        lm_buf_free(&b);
        return false;
    }
    return vstr_buf(c, &b, out);
}

static bool f_string(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    return to_str(c, v, out);
}

static bool f_length(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    if (v.t == V_STR) {
        int64_t k = 0;
        for (size_t i = 0; i < v.u.s.n; i++) k += ((unsigned char)v.u.s.p[i] & 0xC0) != 0x80;
        *out = vint(k);
    } else if (v.t == V_LIST) *out = vint((int64_t)v.u.l->n);
    else if (v.t == V_DICT || v.t == V_NS) *out = vint((int64_t)v.u.d->n);
    else if (v.t == V_UNDEF) *out = vint(0);
    else return rfail(c, n, "object of type '%s' has no len()", type_name(v));
    return true;
}

static bool f_int(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val dflt = arg(a, 0, "default", vint(0));
    if (is_intlike(v)) *out = vint(ival(v));
    else if (v.t == V_FLOAT) *out = vint((int64_t)v.u.f);
    else if (v.t == V_STR) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)LM_MIN(v.u.s.n, 60), v.u.s.p);
        char *e;
        long long k = strtoll(buf, &e, 10);
        if (e != buf && *e == 0) *out = vint(k);
        else {
            double d = strtod(buf, &e);
            *out = (e != buf && *e == 0) ? vint((int64_t)d) : dflt;
        }
    } else *out = dflt;
    return true;
}

static bool f_float(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val dflt = arg(a, 0, "default", vfloat(0));
    if (is_num(v)) *out = vfloat(num(v));
    else if (v.t == V_STR) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)LM_MIN(v.u.s.n, 60), v.u.s.p);
        char *e;
        double d = strtod(buf, &e);
        *out = (e != buf && *e == 0) ? vfloat(d) : dflt;
    } else *out = dflt;
    return true;
}

static bool f_abs(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    if (v.t == V_INT) *out = vint(v.u.i < 0 ? -v.u.i : v.u.i);
    else if (is_num(v)) *out = vfloat(fabs(num(v)));
    else return rfail(c, n, "abs: a %s is not a number", type_name(v));
    return true;
}

static bool f_items(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    if (v.t == V_UNDEF) {
        vlist *e = list_new(c, 0);
        *out = vlistv(e);
        return e != NULL;
    }
    if (v.t != V_DICT) return rfail(c, n, "items: a %s is not a mapping", type_name(v));
    return items_list(c, v, out);
}

/* indent(width=4, first=False, blank=False) */
static bool f_indent(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val s = UNDEF, w = arg(a, 0, "width", vint(4));
    bool first = truthy(arg(a, 1, "first", vbool(false))), blank = truthy(arg(a, 2, "blank", vbool(false)));
    if (!to_str(c, v, &s)) return false;
    lm_buf pad = {0}, b = {0};
    if (w.t == V_STR) lm_buf_append(&pad, w.u.s.p, w.u.s.n);
    else for (int64_t i = 0; i < (is_intlike(w) ? ival(w) : 4) && i < 1000; i++) lm_buf_putc(&pad, ' ');
    size_t ls = 0;
    for (size_t i = 0; i <= s.u.s.n; i++) {
        if (i < s.u.s.n && s.u.s.p[i] != '\n') continue;
        if (!mem_ok(c, b.len + pad.len)) break;
        bool empty = i == ls;
        if ((ls > 0 || first) && (blank || !empty) && pad.data) lm_buf_append(&b, pad.data, pad.len);
        lm_buf_append(&b, s.u.s.p + ls, i - ls);
        if (i < s.u.s.n) lm_buf_putc(&b, '\n');
        ls = i + 1;
    }
    lm_buf_free(&pad);
    return vstr_buf(c, &b, out);
}

static bool f_trim(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val s = UNDEF; /* to_str sets it; gcc cannot tell */
    if (!to_str(c, v, &s)) return false;
    *out = strip(s, arg(a, 0, "chars", NONE), true, true);
    return true;
}

static bool f_replace(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val s = UNDEF; /* to_str sets it; gcc cannot tell */
    if (!to_str(c, v, &s)) return false;
    val cnt = arg(a, 2, "count", NONE);
    return str_replace(c, s, arg(a, 0, "old", NONE), arg(a, 1, "new", NONE), is_intlike(cnt) ? ival(cnt) : -1, out);
}

/* upper, lower, title (case_map's modes 0, 1, 2) and capitalize (lower, then mode 3) */
static bool f_case(ctx *c, const node *n, val v, int mode, val *out) {
    val s = UNDEF; /* to_str sets it; gcc cannot tell */
    if (!to_str(c, v, &s)) return false;
    if (mode == 3) {
        val lo;
        if (!case_map(c, s, 1, &lo)) return false;
        return case_map(c, lo, 3, out);
    }
    return case_map(c, s, mode, out);
}
static bool f_upper(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return f_case(c, n, v, 0, out); }
static bool f_lower(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return f_case(c, n, v, 1, out); }
static bool f_title(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return f_case(c, n, v, 2, out); }
static bool f_capitalize(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return f_case(c, n, v, 3, out); }

/* ---- filters over a sequence (l is the value as a list) ---- */

static bool f_list(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    vlist *cp;
    if (!copy_list(c, l, &cp)) return false;
    *out = vlistv(cp);
    return true;
}

static bool f_first(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    *out = l->n ? l->v[0] : UNDEF;
    return true;
}

static bool f_last(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    *out = l->n ? l->v[l->n - 1] : UNDEF;
    return true;
}

static bool f_join(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    return join(c, l, arg(a, 0, "d", vstr("", 0)), arg(a, 1, "attribute", NONE), out);
}

static bool f_reverse(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    if (v.t == V_STR) {
        lm_buf b = {0};
        if (!mem_ok(c, v.u.s.n)) return false;
        for (size_t i = l->n; i-- > 0;) lm_buf_append(&b, l->v[i].u.s.p, l->v[i].u.s.n);
        return vstr_buf(c, &b, out);
    }
    vlist *r = list_new(c, l->n);
    if (!r) return false;
    for (size_t i = l->n; i-- > 0;) list_push(c, r, l->v[i]);
    *out = vlistv(r);
    return true;
}

static bool f_sort(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    vlist *r;
    if (!copy_list(c, l, &r)) return false;
    if (!sort_vals(c, n, r, arg(a, 2, "attribute", NONE), truthy(arg(a, 0, "reverse", vbool(false))))) return false;
    *out = vlistv(r);
    return true;
}

static bool f_unique(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    vlist *r = list_new(c, l->n);
    if (!r) return false;
    val attr = arg(a, 1, "attribute", NONE);
    for (size_t i = 0; i < l->n; i++) {
        val ki = l->v[i];
        if (attr.t == V_STR && !get_attr(c, ki, attr.u.s.p, attr.u.s.n, &ki)) return false;
        /* quadratic: every 16 comparisons count as a step, so a huge list meets max_steps */
        c->steps += r->n / 16;
        if (!step(c, n)) return false;
        bool seen = false;
        for (size_t j = 0; j < r->n && !seen; j++) {
            val kj = r->v[j];
            if (attr.t == V_STR && !get_attr(c, kj, attr.u.s.p, attr.u.s.n, &kj)) return false;
            seen = equal(ki, kj);
        }
        if (!seen) list_push(c, r, l->v[i]);
    }
    *out = vlistv(r);
    return true;
}

static bool apply_filter(ctx *c, frame *f, const node *n, int id, val v, const args *a, val *out);

static bool f_map(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    vlist *r = list_new(c, l->n);
    if (!r) return false;
    val attr = arg(a, 99, "attribute", NONE);
    for (size_t i = 0; i < l->n; i++) {
        val x = l->v[i];
        if (attr.t == V_STR) {
            if (!get_attr(c, x, attr.u.s.p, attr.u.s.n, &x)) return false;
            if (x.t == V_UNDEF) x = arg(a, 99, "default", UNDEF);
        } else if (a->n_pos >= 1 && a->pos[0].t == V_STR) {
            /* map('filter', args...): the filter named by a string, found when it runs */
            node fn = *n;
            fn.name = a->pos[0].u.s.p;
            fn.name_n = a->pos[0].u.s.n;
            args rest = *a;
            rest.pos = a->pos + 1;
            rest.n_pos = a->n_pos - 1;
            if (!apply_filter(c, f, &fn, jinja_filter_id(fn.name, fn.name_n), x, &rest, &x)) return false;
        } else {
            return rfail(c, n, "map: needs a filter name or attribute=");
        }
        list_push(c, r, x);
    }
    *out = vlistv(r);
    return true;
}

/* select/reject(test, args...) and selectattr/rejectattr(attribute, test, args...): the items
 * whose value (or attribute) passes the test (truthy without one) are kept, or left out. */
static bool select_items(ctx *c, const node *n, vlist *l, const args *a, bool attr_form, bool keep_if, val *out) {
    size_t base = attr_form ? 1 : 0;
    val attr = attr_form ? arg(a, 0, NULL, NONE) : NONE;
    if (attr_form && attr.t != V_STR) return rfail(c, n, "%.*s: needs an attribute name", (int)n->name_n, n->name);
    bool has_test = a->n_pos > base;
    val tname = has_test ? a->pos[base] : NONE;
    const val *targ = a->n_pos > base + 1 ? &a->pos[base + 1] : NULL;
    vlist *r = list_new(c, l->n);
    if (!r) return false;
    for (size_t i = 0; i < l->n; i++) {
        val x = l->v[i];
        if (attr_form && !get_attr(c, x, attr.u.s.p, attr.u.s.n, &x)) return false;
        bool t;
        if (has_test) {
            if (!test_by_name(c, n, x, tname, targ, &t)) return false;
        } else {
            t = truthy(x);
        }
        if (t == keep_if) list_push(c, r, l->v[i]);
    }
    *out = vlistv(r);
    return true;
}
static bool f_selectattr(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return select_items(c, n, l, a, true, true, out); }
static bool f_rejectattr(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return select_items(c, n, l, a, true, false, out); }
static bool f_select(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return select_items(c, n, l, a, false, true, out); }
static bool f_reject(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) { return select_items(c, n, l, a, false, false, out); }

static bool f_sum(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    val acc = arg(a, 1, "start", vint(0));
    val attr = arg(a, 0, "attribute", NONE);
    for (size_t i = 0; i < l->n; i++) {
        val x = l->v[i];
        if (attr.t == V_STR && !get_attr(c, x, attr.u.s.p, attr.u.s.n, &x)) return false;
        if (!binop(c, n, OP_ADD, acc, x, &acc)) return false;
    }
    *out = acc;
    return true;
}

/* An unknown name still turns the value into a list first, as the name chain this table replaced
 * did, so a template gets the same message either way. */
static bool f_unknown(ctx *c, frame *f, const node *n, val v, vlist *l, const args *a, val *out) {
    return rfail(c, n, "unknown filter '%.*s'", (int)n->name_n, n->name);
}

static const struct {
    filter_fn *fn;
    bool on_list;
} FILTERS[JF_COUNT] = {
    [JF_UNKNOWN] = {f_unknown, true},     [JF_SAFE] = {f_safe, false},
    [JF_ESCAPE] = {f_escape, false},      [JF_DEFAULT] = {f_default, false},
    [JF_TOJSON] = {f_tojson, false},      [JF_STRING] = {f_string, false},
    [JF_LENGTH] = {f_length, false},      [JF_INT] = {f_int, false},
    [JF_FLOAT] = {f_float, false},        [JF_ABS] = {f_abs, false},
    [JF_ITEMS] = {f_items, false},        [JF_INDENT] = {f_indent, false},
    [JF_TRIM] = {f_trim, false},          [JF_UPPER] = {f_upper, false},
    [JF_LOWER] = {f_lower, false},        [JF_TITLE] = {f_title, false},
    [JF_CAPITALIZE] = {f_capitalize, false}, [JF_REPLACE] = {f_replace, false},
    [JF_LIST] = {f_list, true},           [JF_FIRST] = {f_first, true},
    [JF_LAST] = {f_last, true},           [JF_JOIN] = {f_join, true},
    [JF_REVERSE] = {f_reverse, true},     [JF_SORT] = {f_sort, true},
    [JF_UNIQUE] = {f_unique, true},       [JF_MAP] = {f_map, true},
    [JF_SELECTATTR] = {f_selectattr, true}, [JF_REJECTATTR] = {f_rejectattr, true},
    [JF_SELECT] = {f_select, true},       [JF_REJECT] = {f_reject, true},
    [JF_SUM] = {f_sum, true},
};

/* Runs filter id (resolved when parsed; n names it for messages) on v. */
static bool apply_filter(ctx *c, frame *f, const node *n, int id, val v, const args *a, val *out) {
    if (!step(c, n)) return false;
    if (id < 0 || id >= JF_COUNT) id = JF_UNKNOWN;
    vlist *l = NULL;
    if (FILTERS[id].on_list && !iter_list(c, v, n, &l)) return false;
    return FILTERS[id].fn(c, f, n, v, l, a, out);
}

static bool eval(ctx *c, frame *f, const node *n, val *out) {
    size_t lim = c->o->max_depth ? c->o->max_depth : 200;
    if (++c->depth > lim * 8 + 64) /* expression nesting, bounded well above statements */
        return rfail(c, n, "max_depth (%zu) exceeded", lim);
    bool ok = true;
    val a, b;
    switch (n->kind) {
    case E_LIT: *out = n->lit; break;
    case E_NAME: *out = lookup(c, f, n->name, n->name_n); break;
    case E_ATTR:
        ok = eval(c, f, n->a, &a) && lookup_member(c, a, n->name, n->name_n, true, out);
        break;
    case E_ITEM:
        ok = eval(c, f, n->a, &a) && eval(c, f, n->b, &b) && get_item(c, a, b, out);
        break;
    case E_SLICE:
        ok = eval(c, f, n->a, &a) && eval_slice(c, f, n, a, out);
        break;
    case E_CALL: {
        args ar;
        ok = eval(c, f, n->a, &a) && eval_args(c, f, n, &ar) && call_value(c, f, n, a, &ar, out);
        break;
    }
    case E_FILTER: {
        args ar;
        ok = eval(c, f, n->a, &a) && eval_args(c, f, n, &ar) && apply_filter(c, f, n, n->op, a, &ar, out);
        break;
    }
    case E_TEST: {
        args ar;
        bool t = false;
        ok = eval(c, f, n->a, &a) && eval_args(c, f, n, &ar) && apply_test(c, n, a, &ar, &t);
        *out = vbool(n->op ? !t : t);
        break;
    }
    case E_BIN:
        ok = eval(c, f, n->a, &a) && eval(c, f, n->b, &b) && binop(c, n, n->op, a, b, out);
        break;
    case E_NOT:
        ok = eval(c, f, n->a, &a);
        *out = vbool(!truthy(a));
        break;
    case E_NEG: case E_POS:
        ok = eval(c, f, n->a, &a);
        if (ok) {
            if (!is_num(a)) ok = rfail(c, n, "bad operand type for unary %c: %s", n->kind == E_NEG ? '-' : '+', type_name(a));
            else if (n->kind == E_POS) *out = a;
            else if (is_intlike(a)) {
                if (ival(a) == INT64_MIN) ok = rfail(c, n, "integer overflow");
                else *out = vint(-ival(a));
            } else *out = vfloat(-a.u.f);
        }
        break;
    case E_AND:
        ok = eval(c, f, n->a, &a);
        if (ok) ok = truthy(a) ? eval(c, f, n->b, out) : (*out = a, true);
        break;
    case E_OR:
        ok = eval(c, f, n->a, &a);
        if (ok) ok = truthy(a) ? (*out = a, true) : eval(c, f, n->b, out);
        break;
    case E_COND:
        ok = eval(c, f, n->b, &a);
        if (ok) {
            if (truthy(a)) ok = eval(c, f, n->a, out);
            else if (n->c) ok = eval(c, f, n->c, out);
            else *out = UNDEF;
        }
        break;
    case E_LIST: {
        vlist *l = list_new(c, n->args.n);
        ok = l != NULL;
        if (ok) l->tuple = n->tuple;
        for (size_t i = 0; ok && i < n->args.n; i++)
            ok = eval(c, f, n->args.v[i], &a) && list_push(c, l, a);
        if (ok) *out = vlistv(l);
        break;
    }
    case E_DICT: {
        vdict *d = alloc(c, sizeof *d);
        ok = d != NULL;
        for (size_t i = 0; ok && i < n->args.n; i++) {
            ok = eval(c, f, n->args.v[i], &a) && eval(c, f, n->kwv.v[i], &b);
            if (ok && a.t != V_STR) {
                ok = to_str(c, a, &a);
            }
            ok = ok && dict_set(c, d, a.u.s.p, a.u.s.n, b);
        }
        if (ok) *out = vdictv(d);
        break;
    }
    default: ok = rfail(c, n, "not an expression");
    }
    c->depth--;
    return ok && !c->st;
}

/* ---- statements ---- */

static bool emit(ctx *c, const node *at, const char *s, size_t n) {
    size_t lim = c->o->max_output ? c->o->max_output : (size_t)16 << 20;
    if (c->out->len - c->out0 + n > lim) return rfail(c, at, "max_output (%zu bytes) exceeded", lim);
    if (c->out != c->final) { /* captured text is held until the capture ends */
        if (!mem_ok(c, n)) return false;
        c->held += n;
    }
    if (!lm_buf_append(c->out, s, n)) return nomem(c);
    return true;
}

static bool assign_targets(ctx *c, frame *f, const node *n, val v) {
    if (n->n_kwn == 1) return dict_set(c, &f->vars, n->kwn[0], n->kwl[0], v);
    vlist *l;
    if (!iter_list(c, v, n, &l)) return false;
    if (l->n != n->n_kwn)
        return rfail(c, n, "cannot unpack %zu values into %zu names", l->n, n->n_kwn);
    for (size_t i = 0; i < n->n_kwn; i++)
        if (!dict_set(c, &f->vars, n->kwn[i], n->kwl[i], l->v[i])) return false;
    return true;
}

/* What a for loop walks: a list, or a range() that is never built. */
typedef struct seq {
    vlist *l;        /* NULL: the range lo, lo + st, ... */
    int64_t lo, st;
    size_t n;
} seq;

static val seq_at(const seq *q, size_t i) { return q->l ? q->l->v[i] : range_at(q->lo, q->st, i); }

/* True (with *q set) when the loop's iterable is a call of the global range(), which is then
 * walked without building its list: nested range(100000) loops cost no memory per iteration. */
static bool lazy_range(ctx *c, frame *f, const node *it, seq *q, bool *lazy) {
    *lazy = false;
    if (it->kind != E_CALL || it->a->kind != E_NAME) return true;
    val fn = lookup(c, f, it->a->name, it->a->name_n);
    if (fn.t != V_FUNC || fn.u.fn != F_RANGE) return true;
    args ar;
    if (!eval_args(c, f, it, &ar) || !step(c, it)) return false;
    memset(q, 0, sizeof *q);
    if (!range_args(c, it, &ar, &q->lo, &q->st, &q->n)) return false;
    *lazy = true;
    return true;
}

static bool exec_for(ctx *c, frame *f, const node *n) {
    seq src;
    bool lazy;
    if (!lazy_range(c, f, n->a, &src, &lazy)) return false;
    if (!lazy) {
        val it;
        if (!eval(c, f, n->a, &it) || !iter_list(c, it, n, &src.l)) return false; /* a dict: its keys */
        src.n = src.l->n;
    }
    /* One frame (and one loop object, as Jinja's LoopContext) serves every iteration: what an
     * iteration sets is cleared before the next, and nothing keeps a frame past its call. */
    frame *lf = frame_new(c, f);
    if (!lf) return false;
    /* the filtered sequence first, so loop.length/last count only kept items */
    seq items = src;
    if (n->b) {
        items.l = list_new(c, 0);
        if (!items.l) return false;
        for (size_t i = 0; i < src.n; i++) {
            val x = seq_at(&src, i), cond;
            lf->vars.n = 0;
            if (!step(c, n) || !assign_targets(c, lf, n, x) || !eval(c, lf, n->b, &cond)) return false;
            if (truthy(cond) && !list_push(c, items.l, x)) return false;
        }
        items.n = items.l->n;
    } else if (!lazy) {
        if (!copy_list(c, src.l, &items.l)) return false; /* the body may append to the source */
    }
    size_t len = items.n;
    vdict *loop = alloc(c, sizeof *loop);
    if (!loop) return false;
    val lv = {.t = V_NS}; /* an object: loop.index is the key, never a dict method */
    lv.u.d = loop;
    for (size_t i = 0; i < len; i++) {
        if (!step(c, n)) return false;
        lf->vars.n = 0;
        if (!dict_set(c, loop, "index", 5, vint((int64_t)i + 1)) ||
            !dict_set(c, loop, "index0", 6, vint((int64_t)i)) ||
            !dict_set(c, loop, "revindex", 8, vint((int64_t)(len - i))) ||
            !dict_set(c, loop, "revindex0", 9, vint((int64_t)(len - i - 1))) ||
            !dict_set(c, loop, "first", 5, vbool(i == 0)) ||
            !dict_set(c, loop, "last", 4, vbool(i + 1 == len)) ||
            !dict_set(c, loop, "length", 6, vint((int64_t)len)) ||
            !dict_set(c, loop, "depth", 5, vint(1)) ||
            !dict_set(c, loop, "depth0", 6, vint(0)) ||
            !dict_set(c, loop, "previtem", 8, i ? seq_at(&items, i - 1) : UNDEF) ||
            !dict_set(c, loop, "nextitem", 8, i + 1 < len ? seq_at(&items, i + 1) : UNDEF) ||
            !dict_set(c, &lf->vars, "loop", 4, lv) || !assign_targets(c, lf, n, seq_at(&items, i)))
            return false;
        if (!exec_body(c, lf, &n->body)) return false;
        if (c->brk == 1) {
            c->brk = 0;
            break;
        }
        c->brk = 0;
    }
    if (len == 0 && n->else_body.n) return exec_body(c, f, &n->else_body);
    return true;
}

static bool call_macro(ctx *c, const node *at, vmacro *m, const args *a, const vmacro *caller, val *out) {
    size_t lim = c->o->max_depth ? c->o->max_depth : 200;
    if (c->depth > lim) return rfail(c, at, "max_depth (%zu) exceeded", lim);
    const node *mn = m->n;
    frame *f = frame_new(c, m->scope ? m->scope : c->root);
    if (!f) return false;
    if (mn->kind == N_MACRO) {
        for (size_t i = 0; i < mn->n_kwn; i++) {
            val v = UNDEF;
            bool found = false;
            if (i < a->n_pos) {
                v = a->pos[i];
                found = true;
            }
            for (size_t k = 0; k < a->n_kw && !found; k++)
                if (a->kl[k] == mn->kwl[i] && memcmp(a->kn[k], mn->kwn[i], a->kl[k]) == 0) {
                    v = a->kw[k];
                    found = true;
                }
            if (!found && mn->kwv.v[i] && !eval(c, f, mn->kwv.v[i], &v)) return false;
            if (!dict_set(c, &f->vars, mn->kwn[i], mn->kwl[i], v)) return false;
        }
        if (caller) {
            val cv = {.t = V_MACRO};
            cv.u.m = (vmacro *)caller;
            if (!dict_set(c, &f->vars, "caller", 6, cv)) return false;
        }
    }
    lm_buf *saved = c->out;
    size_t saved0 = c->out0;
    lm_buf local = {0};
    c->out = &local;
    c->out0 = 0;
    c->depth++;
    bool ok = exec_body(c, f, &mn->body);
    c->depth--;
    c->out = saved;
    c->out0 = saved0;
    c->held -= local.len;
    c->brk = 0;
    if (!ok) {
        lm_buf_free(&local);
        return false;
    }
    return vstr_buf(c, &local, out);
}

static bool exec_node(ctx *c, frame *f, const node *n) {
    c->cur = n;
    size_t lim = c->o->max_depth ? c->o->max_depth : 200;
    if (c->depth > lim) return rfail(c, n, "max_depth (%zu) exceeded", lim);
    val v;
    switch (n->kind) {
    case N_TEXT: {
        const char *s = n->text;
        size_t len = n->text_n;
        if (c->o->lstrip_blocks) len -= n->lstrip_n;
        if (c->o->trim_blocks && n->trim_nl && len > 0) {
            s++;
            len--;
        }
        return emit(c, n, s, len);
    }
    case N_OUT: {
        if (!eval(c, f, n->a, &v)) return false;
        if (v.t == V_STR) return emit(c, n, v.u.s.p, v.u.s.n);
        lm_buf b = {0};
        put_str(c, &b, v);
        if (c->st || b.oom) {
            lm_buf_free(&b);
            return c->st ? false : nomem(c);
        }
        bool ok = emit(c, n, b.data ? b.data : "", b.len);
        lm_buf_free(&b);
        return ok;
    }
    case N_IF:
        if (!eval(c, f, n->a, &v)) return false;
        return exec_body(c, f, truthy(v) ? &n->body : &n->else_body);
    case N_FOR: {
        c->depth++;
        bool ok = exec_for(c, f, n);
        c->depth--;
        return ok;
    }
    case N_SET:
        if (!eval(c, f, n->a, &v)) return false;
        if (n->attr) {
            val ns = lookup(c, f, n->name, n->name_n);
            if (ns.t != V_NS && ns.t != V_DICT)
                return rfail(c, n, "cannot assign attribute on '%.*s' (a %s, not a namespace)", (int)n->name_n, n->name, type_name(ns));
            return dict_set(c, ns.u.d, n->attr, n->attr_n, v);
        }
        return assign_targets(c, f, n, v);
    case N_SETBLOCK: {
        lm_buf *saved = c->out;
        size_t saved0 = c->out0;
        lm_buf local = {0};
        c->out = &local;
        c->out0 = 0;
        bool ok = exec_body(c, f, &n->body);
        c->out = saved;
        c->out0 = saved0;
        c->held -= local.len;
        if (!ok) {
            lm_buf_free(&local);
            return false;
        }
        return vstr_buf(c, &local, &v) && assign_targets(c, f, n, v);
    }
    case N_MACRO: {
        vmacro *m = alloc(c, sizeof *m);
        if (!m) return false;
        m->n = n;
        m->scope = NULL;
        val mv = {.t = V_MACRO};
        mv.u.m = m;
        return dict_set(c, &f->vars, n->name, n->name_n, mv);
    }
    case N_CALLBLOCK: {
        const node *call = n->a;
        val fn;
        args ar;
        if (!eval(c, f, call->a, &fn) || !eval_args(c, f, call, &ar)) return false;
        if (fn.t != V_MACRO) return rfail(c, n, "call block needs a macro, got a %s", type_name(fn));
        vmacro *callerm = alloc(c, sizeof *callerm);
        if (!callerm) return false;
        callerm->n = n;
        callerm->scope = f;
        if (!step(c, n) || !call_macro(c, n, fn.u.m, &ar, callerm, &v)) return false;
        return emit(c, n, v.u.s.p, v.u.s.n);
    }
    case N_BREAK: c->brk = 1; return true;
    case N_CONTINUE: c->brk = 2; return true;
    case N_BODY: return exec_body(c, f, &n->body);
    default: return rfail(c, n, "not a statement");
    }
}

static bool exec_body(ctx *c, frame *f, const nlist *body) {
    for (size_t i = 0; i < body->n; i++) {
        if (!exec_node(c, f, body->v[i])) return false;
        if (c->brk) return true;
    }
    return true;
}

jinja_opts jinja_default_opts(void) {
    jinja_opts o = {0};
    o.trim_blocks = true;
    o.lstrip_blocks = true;
    return o;
}

lm_status jinja_render(const jinja_template *t, const cJSON *vars, const jinja_opts *opts,
                       lm_buf *out, lm_error *err) {
    if (!t || !out) return lm_fail(err, LM_ERR_MISUSE, "jinja_render: NULL template or output");
    jinja_opts dflt = jinja_default_opts();
    ctx c = {.o = opts ? opts : &dflt, .out = out, .final = out, .err = err, .out0 = out->len};
    c.a.limit = mem_limit(&c);
    c.root = frame_new(&c, NULL);
    if (c.root && vars) {
        if (!cJSON_IsObject(vars)) {
            arena_free(&c.a);
            return lm_fail(err, LM_ERR_MISUSE, "jinja_render: vars must be a JSON object");
        }
        for (const cJSON *e = vars->child; e && !c.st; e = e->next) {
            val v;
            if (from_json(&c, e, &v)) dict_set(&c, &c.root->vars, e->string, strlen(e->string), v);
        }
    }
    if (!c.st) exec_body(&c, c.root, &t->root);
    arena_free(&c.a);
    if (!c.st && out->oom) c.st = lm_fail_nomem(err, "template output");
    if (c.st) {
        out->len = c.out0;
        if (out->data) out->data[out->len] = 0;
    }
    return c.st;
}
