/* sample/json_schema.c: JSON Schema (the subset OpenAI's strict mode accepts) to grammar text,
 * and the grammar of JSON mode.
 * Owns: which keywords are understood, the rules they become, and errors naming the JSON path
 * of what cannot be enforced.
 * Does not own: compiling or running the grammar (grammar.c, matcher.c).
 *
 * The JSON written is RFC 8259 with limits that keep a small model from running away: white space
 * between tokens is nothing, one space, or one newline and up to 20 spaces or tabs (compact and
 * pretty-printed JSON both fit), numbers have at most 16 digits before and after the decimal
 * point and 3 in an exponent, and \u escapes never name a surrogate (strict parsers such as
 * cJSON refuse a lone one; characters past U+FFFF are written as UTF-8). Object keys come in the
 * order "properties" lists them. */
#include "sample/sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum {
    MAX_RULES = 20000,          /* rules one schema may become */
    MAX_COUNT = 10000,          /* minItems/maxItems/minLength/maxLength we write out */
    MAX_OUT = 8u << 20,         /* grammar bytes */
};

enum prim { P_WS, P_STRING, P_CHAR, P_NUMBER, P_INTEGER, P_BOOLEAN, P_NULL, P_VALUE, P_OBJECT, P_ARRAY, P_COUNT };
static const char *const PRIM_NAMES[P_COUNT] = {"ws", "string", "char", "number", "integer", "boolean",
                                                  "null", "value", "object", "array"};

typedef struct named {
    const cJSON *node; /* a $ref target, or NULL for a plain used name */
    char *name;
    int open;          /* a $ref target still being written: the nesting of objects and arrays
                          when it started; -1 once written */
} named;

typedef struct conv {
    const cJSON *doc;
    const char *prefix;
    const char *what;
    uint32_t flags;
    lm_buf *out;
    lm_error *err;
    lm_status st;
    named *names;
    size_t n_names, cap_names;
    bool prim[P_COUNT];
    int depth;
    int nesting; /* objects and arrays entered: a $ref back to a target open at the same
                    nesting would be a rule that reaches itself without reading anything */
} conv;

static bool cfail(conv *c, lm_status code, const char *path, const char *fmt, ...) LM_PRINTF(4, 5);
static bool cfail(conv *c, lm_status code, const char *path, const char *fmt, ...) {
    if (c->st) return false;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->st = lm_fail(c->err, code, "%s: %s: %s", c->what, path, msg);
    return false;
}

static bool cnomem(conv *c) {
    if (!c->st) c->st = lm_fail_nomem(c->err, "the JSON Schema grammar");
    return false;
}

/* ---- names ---- */

static bool name_used(const conv *c, const char *name) {
    for (size_t i = 0; i < c->n_names; i++)
        if (strcmp(c->names[i].name, name) == 0) return true;
    return false;
}

/* Records name (copied) as taken, for node when it is a $ref target. NULL on failure. */
static const char *add_name(conv *c, const char *name, const cJSON *node) {
    if (c->n_names >= MAX_RULES) {
        cfail(c, LM_ERR_UNSUPPORTED, "$", "the schema needs more than %d grammar rules", MAX_RULES);
        return NULL;
    }
    if (c->n_names == c->cap_names) {
        size_t cap = c->cap_names ? c->cap_names * 2 : 32;
        named *v = lm_realloc(c->names, cap * sizeof *v);
        if (!v) {
            cnomem(c);
            return NULL;
        }
        c->names = v;
        c->cap_names = cap;
    }
    char *s = lm_strdup(name);
    if (!s) {
        cnomem(c);
        return NULL;
    }
    c->names[c->n_names++] = (named){node, s, -1};
    return s;
}

/* A new rule name prefix-hint (hint sanitised), unique; owned by c. NULL on failure. */
static const char *new_name(conv *c, const char *hint, const cJSON *node) {
    char base[96];
    size_t n = (size_t)snprintf(base, sizeof base, "%s", c->prefix);
    if (hint && *hint && n + 1 < sizeof base) {
        base[n++] = '-';
        for (const char *h = hint; *h && n + 1 < sizeof base - 12; h++) {
            char ch = *h;
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
            base[n++] = ok ? ch : '-';
        }
        base[n] = 0;
    }
    char name[112];
    snprintf(name, sizeof name, "%s", base);
    for (unsigned k = 2; name_used(c, name); k++) snprintf(name, sizeof name, "%s-%u", base, k);
    return add_name(c, name, node);
}

static const char *prim(conv *c, enum prim p) {
    c->prim[p] = true;
    if (p == P_STRING) c->prim[P_CHAR] = true;
    if (p == P_NUMBER) c->prim[P_INTEGER] = true;
    if (p == P_VALUE || p == P_OBJECT || p == P_ARRAY) {
        for (int i = 0; i < P_COUNT; i++) c->prim[i] = true;
    }
    return PRIM_NAMES[p];
}

/* Appends "prefix-name" of a primitive. */
static void put_prim(conv *c, lm_buf *b, enum prim p) {
    lm_buf_printf(b, "%s-%s", c->prefix, prim(c, p));
}

/* ---- text ---- */

/* Appends s as a grammar string literal. */
static void put_literal(lm_buf *b, const char *s) {
    lm_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            lm_buf_putc(b, '\\');
            lm_buf_putc(b, (char)*p);
        } else if (*p == '\n') {
            lm_buf_puts(b, "\\n");
        } else if (*p == '\r') {
            lm_buf_puts(b, "\\r");
        } else if (*p == '\t') {
            lm_buf_puts(b, "\\t");
        } else if (*p < 0x20) {
            lm_buf_printf(b, "\\x%02X", *p);
        } else {
            lm_buf_putc(b, (char)*p);
        }
    }
    lm_buf_putc(b, '"');
}

/* Grammar literals must be UTF-8, and cJSON passes any bytes through its strings. */
static bool utf8_valid(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = lm_utf8_decode(s + i, n - i, &cp);
        if (l == 1 && (unsigned char)s[i] >= 0x80) return false;
        i += (size_t)l;
    }
    return true;
}

/* Appends the JSON text of v (compact) as a grammar literal. */
static bool put_json_literal(conv *c, lm_buf *b, const cJSON *v, const char *path) {
    char *t = lm_json_print(v);
    if (!t) return cnomem(c);
    bool ok = utf8_valid(t);
    if (ok) put_literal(b, t);
    lm_free(t);
    return ok ? true : cfail(c, LM_ERR_FORMAT, path, "a value in enum or const is not valid UTF-8");
}

static bool emit_rule(conv *c, const char *name, lm_buf *body) {
    if (body->oom) return cnomem(c);
    lm_buf_printf(c->out, "%s ::= %s\n", name, body->data ? body->data : "");
    if (c->out->oom) return cnomem(c);
    if (c->out->len > MAX_OUT)
        return cfail(c, LM_ERR_UNSUPPORTED, "$", "the grammar would be more than %u bytes", (unsigned)MAX_OUT);
    return true;
}

/* path + suffix into buf (truncated with "..." when long). */
static void sub_path(char *buf, size_t cap, const char *path, const char *fmt, ...) LM_PRINTF(4, 5);
static void sub_path(char *buf, size_t cap, const char *path, const char *fmt, ...) {
    size_t n = (size_t)snprintf(buf, cap, "%s", path);
    if (n >= cap) n = cap - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
    if (strlen(buf) >= cap - 1 && cap > 4) memcpy(buf + cap - 4, "...", 4);
}

/* ---- keywords ---- */

static const char *const ANNOTATIONS[] = {"title", "description", "default", "examples", "$schema", "$id",
                                          "$comment", "format", "strict", "deprecated", "readOnly",
                                          "writeOnly", "$defs", "definitions"};
static const char *const KNOWN[] = {"type", "properties", "required", "additionalProperties", "items",
                                    "minItems", "maxItems", "minLength", "maxLength", "enum", "const",
                                    "anyOf", "oneOf", "$ref"};

static bool in_list(const char *k, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(k, list[i]) == 0) return true;
    return false;
}

static bool has(const cJSON *node, const char *k) { return cJSON_GetObjectItemCaseSensitive(node, k) != NULL; }

/* A count keyword (minItems...) as an integer in [0, MAX_COUNT]; absent leaves *v. */
static bool get_count(conv *c, const cJSON *node, const char *k, const char *path, long *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(node, k);
    if (!x) return true;
    /* floor, not a cast: a cast of 1e30 to long is undefined */
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0) || x->valuedouble != floor(x->valuedouble))
        return cfail(c, LM_ERR_FORMAT, path, "'%s' must be a non-negative integer", k);
    if (x->valuedouble > MAX_COUNT) {
        if (c->flags & SMP_SCHEMA_LENIENT) return true;
        return cfail(c, LM_ERR_UNSUPPORTED, path, "'%s' above %d is not supported", k, MAX_COUNT);
    }
    *v = (long)x->valuedouble;
    return true;
}

static const char *visit(conv *c, const cJSON *node, const char *path, const char *hint);

/* {m,n} suffix for a repetition (n < 0: unbounded). */
static void put_repeat(lm_buf *b, long m, long n) {
    if (m == 0 && n < 0) lm_buf_putc(b, '*');
    else if (m == 1 && n < 0) lm_buf_putc(b, '+');
    else if (m == 0 && n == 1) lm_buf_putc(b, '?');
    else if (n < 0) lm_buf_printf(b, "{%ld,}", m);
    else if (m == n) lm_buf_printf(b, "{%ld}", m);
    else lm_buf_printf(b, "{%ld,%ld}", m, n);
}

static bool string_body(conv *c, const cJSON *node, const char *path, lm_buf *b) {
    long lo = 0, hi = -1;
    if (!get_count(c, node, "minLength", path, &lo) || !get_count(c, node, "maxLength", path, &hi)) return false;
    if (hi >= 0 && hi < lo) return cfail(c, LM_ERR_FORMAT, path, "maxLength %ld is below minLength %ld", hi, lo);
    if (lo == 0 && hi < 0) {
        put_prim(c, b, P_STRING);
        return true;
    }
    lm_buf_puts(b, "\"\\\"\" ");
    if (hi != 0) {
        put_prim(c, b, P_CHAR);
        put_repeat(b, lo, hi);
    }
    lm_buf_puts(b, " \"\\\"\"");
    prim(c, P_STRING);
    return true;
}

static bool array_body(conv *c, const cJSON *node, const char *path, const char *name, lm_buf *b) {
    long lo = 0, hi = -1;
    if (!get_count(c, node, "minItems", path, &lo) || !get_count(c, node, "maxItems", path, &hi)) return false;
    if (hi >= 0 && hi < lo) return cfail(c, LM_ERR_FORMAT, path, "maxItems %ld is below minItems %ld", hi, lo);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(node, "items");
    char ipath[256];
    sub_path(ipath, sizeof ipath, path, ".items");
    const char *item;
    if (items) {
        if (cJSON_IsArray(items))
            return cfail(c, LM_ERR_UNSUPPORTED, ipath, "an array of item schemas (tuple form) is not supported");
        item = visit(c, items, ipath, "item");
    } else {
        prim(c, P_VALUE);
        item = NULL;
    }
    if (c->st) return false;
    char itemref[128];
    if (item) snprintf(itemref, sizeof itemref, "%s", item);
    else snprintf(itemref, sizeof itemref, "%s-value", c->prefix);
    const char *ws = prim(c, P_WS);
    lm_buf_printf(b, "\"[\" %s-%s ", c->prefix, ws);
    if (hi != 0) {
        bool opt = lo == 0;
        lm_buf_printf(b, "%s%s %s-%s", opt ? "( " : "", itemref, c->prefix, ws);
        long rlo = lo > 0 ? lo - 1 : 0, rhi = hi < 0 ? -1 : hi - 1;
        if (rhi != 0) {
            lm_buf_printf(b, " ( \",\" %s-%s %s %s-%s )", c->prefix, ws, itemref, c->prefix, ws);
            put_repeat(b, rlo, rhi);
        }
        lm_buf_puts(b, opt ? " )? " : " ");
    }
    lm_buf_puts(b, "\"]\"");
    return b->oom ? cnomem(c) : true;
}

typedef struct prop {
    const char *rule;
    char *key; /* the key as a grammar literal of its JSON text, owned */
} prop;

/* The key's JSON text as a grammar literal ("\"city\""), heap; NULL on NOMEM. */
static char *key_literal(const char *key) {
    cJSON *ks = cJSON_CreateString(key);
    char *kt = ks ? lm_json_print(ks) : NULL;
    cJSON_Delete(ks);
    if (!kt) return NULL;
    lm_buf kb = {0};
    put_literal(&kb, kt);
    lm_free(kt);
    if (kb.oom) {
        lm_buf_free(&kb);
        return NULL;
    }
    return lm_buf_take(&kb);
}

/* An object with the listed properties in order, optional ones (not in required) may be left
 * out, then additional ones when allowed. Rules rest_k hold "the members from k on, after one
 * was written" (each starting with a comma); the object starts with member j for any j up to
 * the first required one, or (all optional) with nothing. */
static bool object_body(conv *c, const cJSON *node, const char *path, const char *name, lm_buf *b) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(node, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(node, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(node, "additionalProperties");
    char sp[256];
    if (props && !cJSON_IsObject(props)) {
        sub_path(sp, sizeof sp, path, ".properties");
        return cfail(c, LM_ERR_FORMAT, sp, "must be an object");
    }
    if (req && !cJSON_IsArray(req)) {
        sub_path(sp, sizeof sp, path, ".required");
        return cfail(c, LM_ERR_FORMAT, sp, "must be an array of property names");
    }
    size_t n = props ? (size_t)cJSON_GetArraySize(props) : 0;
    prop *pv = lm_calloc(n + 1, sizeof *pv);
    bool *required = lm_calloc(n + 1, sizeof *required);
    char **rest = lm_calloc(n + 2, sizeof *rest);
    lm_buf body = {0}, xm = {0};
    bool ok = pv && required && rest ? true : cnomem(c);
    size_t i = 0;
    const cJSON *p;
    if (ok && props) {
        cJSON_ArrayForEach(p, props) {
            sub_path(sp, sizeof sp, path, ".properties.%s", p->string);
            for (size_t j = 0; j < i && ok; j++)
                if (strcmp(pv[j].key, p->string) == 0) ok = cfail(c, LM_ERR_FORMAT, sp, "listed twice");
            if (ok && !utf8_valid(p->string)) ok = cfail(c, LM_ERR_FORMAT, sp, "the property name is not valid UTF-8");
            if (!ok) break;
            pv[i].key = lm_strdup(p->string); /* the raw key for now, the literal below */
            if (!pv[i].key) {
                ok = cnomem(c);
                break;
            }
            i++;
            pv[i - 1].rule = visit(c, p, sp, p->string);
            if (!pv[i - 1].rule) {
                ok = false;
                break;
            }
        }
    }
    if (ok && req) {
        size_t k = 0;
        cJSON_ArrayForEach(p, req) {
            sub_path(sp, sizeof sp, path, ".required[%zu]", k++);
            if (!cJSON_IsString(p)) {
                ok = cfail(c, LM_ERR_FORMAT, sp, "must be a string");
                break;
            }
            size_t j = 0;
            while (j < n && strcmp(pv[j].key, p->valuestring) != 0) j++;
            if (j == n) {
                ok = cfail(c, LM_ERR_FORMAT, sp, "'%.60s' is not in properties", p->valuestring);
                break;
            }
            required[j] = true;
        }
    }
    for (size_t j = 0; ok && j < n; j++) {
        char *lit = key_literal(pv[j].key);
        if (!lit) {
            ok = cnomem(c);
            break;
        }
        lm_free(pv[j].key);
        pv[j].key = lit;
    }
    /* additional properties: none when properties are listed (strict mode's rule) unless asked */
    const char *extra = NULL;
    bool any_extra = false;
    if (ok && addl) {
        sub_path(sp, sizeof sp, path, ".additionalProperties");
        if (cJSON_IsTrue(addl)) {
            any_extra = true;
        } else if (cJSON_IsObject(addl)) {
            extra = visit(c, addl, sp, "additional");
            any_extra = extra != NULL;
            ok = extra != NULL;
        } else if (!cJSON_IsFalse(addl)) {
            ok = cfail(c, LM_ERR_FORMAT, sp, "must be a boolean or a schema");
        }
    } else if (ok && !props) {
        any_extra = true;
    }
    const char *P = c->prefix;
    prim(c, P_WS);
    if (ok && any_extra) {
        prim(c, P_STRING);
        if (!extra) prim(c, P_VALUE);
        lm_buf_printf(&xm, "%s-string %s-ws \":\" %s-ws ", P, P, P);
        if (extra) lm_buf_puts(&xm, extra);
        else lm_buf_printf(&xm, "%s-value", P);
        lm_buf_printf(&xm, " %s-ws", P);
        if (xm.oom) ok = cnomem(c);
    }
    /* names relative to the prefix, for the rest_k rules */
    size_t plen = strlen(P);
    const char *rel = name && strncmp(name, P, plen) == 0 && name[plen] == '-' ? name + plen + 1 : "";
    size_t lowest = n == 0 ? 0 : 1; /* rest_0 is only needed when there is no property */
    for (size_t k = n + 1; ok && k-- > lowest;) {
        char hint[80];
        snprintf(hint, sizeof hint, "%.60s%srest%zu", rel, *rel ? "-" : "", k);
        const char *rn = new_name(c, hint, NULL);
        if (!rn || !(rest[k] = lm_strdup(rn))) {
            ok = rn ? cnomem(c) : false;
            break;
        }
        lm_buf_reset(&body);
        if (k == n) {
            if (any_extra) lm_buf_printf(&body, "( \",\" %s-ws %s )*", P, xm.data);
            else lm_buf_puts(&body, "\"\"");
        } else if (required[k]) {
            lm_buf_printf(&body, "\",\" %s-ws %s %s-ws \":\" %s-ws %s %s-ws %s", P, pv[k].key, P, P, pv[k].rule, P, rest[k + 1]);
        } else {
            lm_buf_printf(&body, "( \",\" %s-ws %s %s-ws \":\" %s-ws %s %s-ws )? %s", P, pv[k].key, P, P, pv[k].rule, P,
                          rest[k + 1]);
        }
        ok = emit_rule(c, rn, &body);
    }
    if (ok) {
        size_t first_req = 0;
        while (first_req < n && !required[first_req]) first_req++;
        lm_buf_reset(&body);
        size_t n_alt = 0;
        for (size_t j = 0; j < n && j <= first_req; j++)
            lm_buf_printf(&body, "%s%s %s-ws \":\" %s-ws %s %s-ws %s", n_alt++ ? " | " : "", pv[j].key, P, P, pv[j].rule, P,
                          j + 1 <= n ? rest[j + 1] : "");
        if (first_req >= n && any_extra) lm_buf_printf(&body, "%s%s %s", n_alt++ ? " | " : "", xm.data, rest[n] ? rest[n] : "");
        lm_buf_printf(b, "\"{\" %s-ws ", P);
        if (n_alt) lm_buf_printf(b, "( %s )%s ", body.data, first_req >= n ? "?" : "");
        lm_buf_puts(b, "\"}\"");
        if (body.oom || xm.oom || b->oom) ok = cnomem(c);
    }
    lm_buf_free(&body);
    lm_buf_free(&xm);
    if (rest)
        for (size_t k = 0; k <= n; k++) lm_free(rest[k]);
    lm_free(rest);
    if (pv)
        for (size_t k = 0; k < n; k++) lm_free(pv[k].key);
    lm_free(pv);
    lm_free(required);
    return ok;
}

/* Resolves "#", "#/$defs/x", "#/definitions/x" or any "#/json/pointer" in the document. */
static const cJSON *resolve_ref(conv *c, const char *ref, const char *path) {
    if (ref[0] != '#') {
        cfail(c, LM_ERR_UNSUPPORTED, path, "$ref '%.80s': only references inside the schema (#...) are supported", ref);
        return NULL;
    }
    const cJSON *cur = c->doc;
    const char *p = ref + 1;
    if (*p && *p != '/') {
        cfail(c, LM_ERR_UNSUPPORTED, path, "$ref '%.80s': anchors are not supported, only #/pointers", ref);
        return NULL;
    }
    while (*p == '/') {
        p++;
        char tok[256];
        size_t n = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~' && (*p == '0' || *p == '1')) ch = *p++ == '0' ? '~' : '/';
            if (n + 1 < sizeof tok) tok[n++] = ch;
        }
        tok[n] = 0;
        if (cJSON_IsArray(cur)) {
            char *end;
            long idx = strtol(tok, &end, 10);
            cur = *tok && !*end && idx >= 0 ? cJSON_GetArrayItem(cur, (int)idx) : NULL;
        } else {
            cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, tok) : NULL;
        }
        if (!cur) {
            cfail(c, LM_ERR_FORMAT, path, "$ref '%.80s' points at nothing", ref);
            return NULL;
        }
    }
    return cur;
}

/* The rule for a schema node: writes its rules and returns its name (owned by c), NULL on error. */
static const char *visit(conv *c, const cJSON *node, const char *path, const char *hint) {
    if (c->st) return NULL;
    if (++c->depth > 200) {
        cfail(c, LM_ERR_UNSUPPORTED, path, "schemas nested deeper than 200");
        return NULL;
    }
    const char *result = NULL;
    lm_buf b = {0};
    if (cJSON_IsTrue(node)) {
        prim(c, P_VALUE);
        const char *name = new_name(c, hint, NULL);
        if (name) {
            lm_buf_printf(&b, "%s-value", c->prefix);
            if (emit_rule(c, name, &b)) result = name;
        }
        goto done;
    }
    if (cJSON_IsFalse(node)) {
        cfail(c, LM_ERR_UNSUPPORTED, path, "the schema false allows no value");
        goto done;
    }
    if (!cJSON_IsObject(node)) {
        cfail(c, LM_ERR_FORMAT, path, "a schema must be an object or a boolean");
        goto done;
    }
    /* every keyword understood, ignored as an annotation, or refused */
    const cJSON *kw;
    cJSON_ArrayForEach(kw, node) {
        if (in_list(kw->string, KNOWN, LM_ARRAY_LEN(KNOWN)) || in_list(kw->string, ANNOTATIONS, LM_ARRAY_LEN(ANNOTATIONS)))
            continue;
        if (c->flags & SMP_SCHEMA_LENIENT) continue;
        cfail(c, LM_ERR_UNSUPPORTED, path, "keyword '%.60s' is not supported", kw->string);
        goto done;
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(node, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) {
            cfail(c, LM_ERR_FORMAT, path, "$ref must be a string");
            goto done;
        }
        const cJSON *target = resolve_ref(c, ref->valuestring, path);
        if (!target) goto done;
        for (size_t i = 0; i < c->n_names; i++)
            if (c->names[i].node == target) {
                if (c->names[i].open == c->nesting) {
                    cfail(c, LM_ERR_UNSUPPORTED, path,
                          "$ref '%.80s' comes back to itself without an object or array in between, so it "
                          "describes no value", ref->valuestring);
                    goto done;
                }
                result = c->names[i].name;
                goto done;
            }
        const char *slash = strrchr(ref->valuestring, '/');
        const char *tn = new_name(c, slash && slash[1] ? slash + 1 : "self", target);
        if (!tn) goto done;
        size_t tn_index = c->n_names - 1;
        c->names[tn_index].open = c->nesting;
        char tp[256];
        sub_path(tp, sizeof tp, "$", "%s", ref->valuestring + 1);
        for (char *q = tp + 1; *q; q++)
            if (*q == '/') *q = '.';
        /* the target's own rule, written under the reserved name so recursion finds it */
        const char *inner = visit(c, target, tp, slash && slash[1] ? slash + 1 : "self");
        if (!inner) goto done;
        c->names[tn_index].open = -1;
        lm_buf_puts(&b, inner);
        if (emit_rule(c, tn, &b)) result = tn;
        goto done;
    }
    const char *name = new_name(c, hint, NULL);
    if (!name) goto done;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(node, "enum");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(node, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(node, "anyOf");
    const char *any_kw = "anyOf";
    if (!any) {
        any = cJSON_GetObjectItemCaseSensitive(node, "oneOf");
        any_kw = "oneOf";
    }
    if (cn) {
        if (!put_json_literal(c, &b, cn, path)) goto done;
    } else if (en) {
        if (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0) {
            cfail(c, LM_ERR_FORMAT, path, "enum must be a non-empty array");
            goto done;
        }
        const cJSON *v;
        bool first = true;
        cJSON_ArrayForEach(v, en) {
            if (!first) lm_buf_puts(&b, " | ");
            first = false;
            if (!put_json_literal(c, &b, v, path)) goto done;
        }
    } else if (any) {
        if (!cJSON_IsArray(any) || cJSON_GetArraySize(any) == 0) {
            cfail(c, LM_ERR_FORMAT, path, "%s must be a non-empty array of schemas", any_kw);
            goto done;
        }
        if (has(node, "type") && !(c->flags & SMP_SCHEMA_LENIENT)) {
            cfail(c, LM_ERR_UNSUPPORTED, path, "'type' beside '%s' is not supported (put it in each alternative)", any_kw);
            goto done;
        }
        size_t k = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, any) {
            char ap[256];
            sub_path(ap, sizeof ap, path, ".%s[%zu]", any_kw, k);
            char h[16];
            snprintf(h, sizeof h, "%zu", k);
            const char *alt = visit(c, v, ap, h);
            if (!alt) goto done;
            lm_buf_printf(&b, "%s%s", k++ ? " | " : "", alt);
        }
    } else {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
        const char *types[8];
        size_t nt = 0;
        if (!type) {
            /* implied by the keywords present; else any value */
            if (has(node, "properties") || has(node, "required") || has(node, "additionalProperties")) types[nt++] = "object";
            else if (has(node, "items") || has(node, "minItems") || has(node, "maxItems")) types[nt++] = "array";
            else if (has(node, "minLength") || has(node, "maxLength")) types[nt++] = "string";
        } else if (cJSON_IsString(type)) {
            types[nt++] = type->valuestring;
        } else if (cJSON_IsArray(type) && cJSON_GetArraySize(type) > 0) {
            const cJSON *t;
            cJSON_ArrayForEach(t, type) {
                if (!cJSON_IsString(t) || nt == LM_ARRAY_LEN(types)) {
                    cfail(c, LM_ERR_FORMAT, path, "'type' must be a type name or a list of them");
                    goto done;
                }
                types[nt++] = t->valuestring;
            }
        } else {
            cfail(c, LM_ERR_FORMAT, path, "'type' must be a type name or a list of them");
            goto done;
        }
        if (!nt) put_prim(c, &b, P_VALUE);
        for (size_t i = 0; i < nt; i++) {
            const char *t = types[i];
            if (i) lm_buf_puts(&b, " | ");
            bool ok = true;
            if (strcmp(t, "string") == 0) ok = string_body(c, node, path, &b);
            else if (strcmp(t, "number") == 0) put_prim(c, &b, P_NUMBER);
            else if (strcmp(t, "integer") == 0) put_prim(c, &b, P_INTEGER);
            else if (strcmp(t, "boolean") == 0) put_prim(c, &b, P_BOOLEAN);
            else if (strcmp(t, "null") == 0) put_prim(c, &b, P_NULL);
            else if (strcmp(t, "object") == 0) {
                lm_buf ob = {0};
                c->nesting++;
                ok = object_body(c, node, path, name, &ob);
                c->nesting--;
                if (ok && ob.oom) ok = cnomem(c);
                if (ok) lm_buf_printf(&b, "%s", ob.data ? ob.data : "");
                lm_buf_free(&ob);
            } else if (strcmp(t, "array") == 0) {
                lm_buf ab = {0};
                c->nesting++;
                ok = array_body(c, node, path, name, &ab);
                c->nesting--;
                if (ok && ab.oom) ok = cnomem(c);
                if (ok) lm_buf_printf(&b, "%s", ab.data ? ab.data : "");
                lm_buf_free(&ab);
            } else {
                cfail(c, LM_ERR_FORMAT, path, "unknown type '%.40s' (expected string, number, integer, boolean, null, object or array)", t);
                goto done;
            }
            if (!ok) goto done;
        }
    }
    if (emit_rule(c, name, &b)) result = name;
done:
    lm_buf_free(&b);
    c->depth--;
    return c->st ? NULL : result;
}

/* The shared rules, prefix-ws and friends, that were used. */
static bool emit_prims(conv *c) {
    const char *P = c->prefix;
    lm_buf *o = c->out;
    lm_buf_printf(o, "%s-ws ::= ( \" \" | \"\\n\" [ \\t]{0,20} )?\n", P);
    if (c->prim[P_STRING]) lm_buf_printf(o, "%s-string ::= \"\\\"\" %s-char* \"\\\"\"\n", P, P);
    if (c->prim[P_CHAR])
        lm_buf_printf(o, "%s-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} ) )\n", P);
    if (c->prim[P_INTEGER]) lm_buf_printf(o, "%s-integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n", P);
    if (c->prim[P_NUMBER])
        lm_buf_printf(o, "%s-number ::= %s-integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n", P, P);
    if (c->prim[P_BOOLEAN]) lm_buf_printf(o, "%s-boolean ::= \"true\" | \"false\"\n", P);
    if (c->prim[P_NULL]) lm_buf_printf(o, "%s-null ::= \"null\"\n", P);
    if (c->prim[P_VALUE]) {
        lm_buf_printf(o, "%s-value ::= %s-object | %s-array | %s-string | %s-number | %s-boolean | %s-null\n", P, P, P, P,
                      P, P, P);
        lm_buf_printf(o,
                      "%s-object ::= \"{\" %s-ws ( %s-string %s-ws \":\" %s-ws %s-value %s-ws ( \",\" %s-ws %s-string "
                      "%s-ws \":\" %s-ws %s-value %s-ws )* )? \"}\"\n",
                      P, P, P, P, P, P, P, P, P, P, P, P, P);
        lm_buf_printf(o, "%s-array ::= \"[\" %s-ws ( %s-value %s-ws ( \",\" %s-ws %s-value %s-ws )* )? \"]\"\n", P, P,
                      P, P, P, P, P);
    }
    return o->oom ? cnomem(c) : true;
}

lm_status smp_json_schema_rules(const cJSON *schema, const cJSON *root_doc, const char *prefix, const char *what,
                                uint32_t flags, lm_buf *out, lm_error *err) {
    conv c = {.doc = root_doc ? root_doc : schema, .prefix = prefix, .what = what ? what : "json_schema",
              .flags = flags, .out = out, .err = err};
    /* taken: the value rule (the prefix itself) and the shared rules (a property called "ws"
       must not become prefix-ws) */
    lm_buf b = {0};
    bool ok = add_name(&c, prefix, NULL) != NULL;
    for (int i = 0; ok && i < P_COUNT; i++) {
        char nm[96];
        snprintf(nm, sizeof nm, "%s-%s", prefix, PRIM_NAMES[i]);
        ok = add_name(&c, nm, NULL) != NULL;
    }
    const char *top = ok ? visit(&c, schema, "$", "value") : NULL;
    if (top) {
        lm_buf_puts(&b, top);
        if (emit_rule(&c, prefix, &b)) emit_prims(&c);
    }
    lm_buf_free(&b);
    for (size_t i = 0; i < c.n_names; i++) lm_free(c.names[i].name);
    lm_free(c.names);
    return c.st;
}

lm_status smp_json_schema_grammar(const char *schema, size_t len, uint32_t flags, lm_buf *out, lm_error *err) {
    cJSON *doc = NULL;
    lm_status st = lm_json_parse(schema, len, "json_schema", &doc, err);
    if (st) return st;
    size_t start = out->len;
    /* white space around the value, as JSON allows: models often open with a space or end
       with a newline, and a token such as "}\n" must not be refused for its newline */
    lm_buf_puts(out, "root ::= json-ws json json-ws\n");
    st = out->oom ? lm_fail_nomem(err, "the JSON Schema grammar")
                  : smp_json_schema_rules(doc, doc, "json", "json_schema", flags, out, err);
    cJSON_Delete(doc);
    if (st) { /* nothing half-written stays */
        out->len = start;
        if (out->data) out->data[start] = 0;
    }
    return st;
}

bool smp_json_object_grammar(lm_buf *out) {
    lm_buf_puts(out, "root ::= json-ws json-object json-ws\n"
                     "json-value ::= json-object | json-array | json-string | json-number | \"true\" | \"false\" | \"null\"\n"
                     "json-object ::= \"{\" json-ws ( json-string json-ws \":\" json-ws json-value json-ws ( \",\" json-ws "
                     "json-string json-ws \":\" json-ws json-value json-ws )* )? \"}\"\n"
                     "json-array ::= \"[\" json-ws ( json-value json-ws ( \",\" json-ws json-value json-ws )* )? \"]\"\n"
                     "json-string ::= \"\\\"\" json-char* \"\\\"\"\n"
                     "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} ) )\n"
                     "json-number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n"
                     "json-ws ::= ( \" \" | \"\\n\" [ \\t]{0,20} )?\n");
    return !out->oom;
}
