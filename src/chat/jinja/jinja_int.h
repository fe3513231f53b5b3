/* chat/jinja/jinja_int.h: private to chat/jinja/: the token, node and value types shared by the
 * parser (parse.c) and the renderer (render.c).
 * Owns: the template's arena (tokens, nodes and literal strings live until jinja_free). */
#ifndef LM_JINJA_INT_H
#define LM_JINJA_INT_H

#include "chat/chat.h"

/* ---- arena: many small allocations freed at once ---- */

typedef struct arena_blk arena_blk;
typedef struct arena {
    arena_blk *head;
    size_t bytes;  /* held in blocks, headers included */
    size_t limit;  /* 0: none; else a block that would take bytes past it is refused */
    bool over;     /* an allocation was refused by limit (not by the system) */
} arena;

void *arena_alloc(arena *a, size_t n); /* zeroed, 16-aligned; NULL on NOMEM or past limit */
void arena_free(arena *a);
char *arena_strndup(arena *a, const char *s, size_t n);

/* ---- values ---- */

enum vtype { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO,
             V_FUNC, V_METHOD };

typedef struct vlist vlist;
typedef struct vdict vdict;
typedef struct vmacro vmacro;
typedef struct vmethod vmethod;

typedef struct val {
    int t;
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;
        vlist *l;
        vdict *d;   /* V_DICT and V_NS */
        vmacro *m;
        int fn;     /* V_FUNC: a builtin id */
        vmethod *me;
    } u;
} val;

struct vlist {
    val *v;
    size_t n, cap;
    bool tuple; /* prints as (a, b): items() pairs and (a, b) literals */
};

struct vdict {
    const char **kp;
    size_t *kn;
    val *v;
    size_t n, cap;
};

/* ---- nodes ---- */

enum nkind {
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_BREAK, N_CONTINUE,
    N_BODY,
    /* expressions */
    E_LIT, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NOT, E_NEG,
    E_POS, E_AND, E_OR, E_COND, E_LIST, E_DICT
};

typedef struct node node;
typedef struct nlist {
    node **v;
    size_t n, cap;
} nlist;

struct node {
    int kind;
    int line, col;
    int op;              /* E_BIN: an operator id; E_TEST: negated; E_FILTER: enum jinja_filter */
    const char *name;    /* E_NAME, E_ATTR, E_FILTER, E_TEST, N_SET target, N_MACRO */
    size_t name_n;
    const char *attr;    /* N_SET ns.attr */
    size_t attr_n;
    node *a, *b, *c;     /* operands; E_SLICE: a[b:c:d] with d in args.v[0] */
    nlist args;          /* call/filter/test positional args; E_LIST items; E_DICT keys,values */
    nlist kwv;           /* keyword argument values; N_MACRO defaults */
    const char **kwn;    /* keyword argument names; N_MACRO/N_FOR parameter/target names */
    size_t *kwl;
    size_t n_kwn;
    nlist body, else_body;
    val lit;             /* E_LIT */
    bool tuple;          /* E_LIST written as (a, b) */
    /* N_TEXT: text [0, n); lstrip_n bytes at the end go under lstrip_blocks; the first byte
     * ('\n') goes under trim_blocks when trim_nl */
    const char *text;
    size_t text_n, lstrip_n;
    bool trim_nl;
};

/* Filters by what they do, resolved from their name when parsed (the op of an E_FILTER node) so
 * that rendering calls render.c's function for the id instead of comparing names. Aliases share an
 * id ("e", "escape" and "forceescape"; "d" and "default"; "length" and "count"). JF_UNKNOWN is kept
 * for a name that is no filter: rendering it reports the name, as Jinja does at run time here. */
enum jinja_filter {
    JF_UNKNOWN, JF_SAFE, JF_ESCAPE, JF_DEFAULT, JF_TOJSON, JF_STRING, JF_LENGTH, JF_INT, JF_FLOAT,
    JF_ABS, JF_ITEMS, JF_INDENT, JF_TRIM, JF_UPPER, JF_LOWER, JF_TITLE, JF_CAPITALIZE, JF_REPLACE,
    JF_LIST, JF_FIRST, JF_LAST, JF_JOIN, JF_REVERSE, JF_SORT, JF_UNIQUE, JF_MAP, JF_SELECTATTR,
    JF_REJECTATTR, JF_SELECT, JF_REJECT, JF_SUM, JF_COUNT
};
/* The id of a filter name (parse.c), JF_UNKNOWN when there is none. */
int jinja_filter_id(const char *name, size_t n);

enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CAT, OP_EQ, OP_NE, OP_LT,
       OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

struct jinja_template {
    arena a;
    nlist root;
};

#endif /* LM_JINJA_INT_H */
