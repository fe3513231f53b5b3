/* cli/convo.c: the conversation chat and voice hold: a growing list of messages whose strings are
 * owned (malloc'd) by the list. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

bool cli_convo_reserve(cli_convo *c) {
    if (c->n + 1 < c->cap) return true;
    size_t cap = c->cap ? c->cap * 2 : 8;
    lm_message *m = realloc(c->msgs, cap * sizeof *m);
    if (!m) return false;
    c->msgs = m;
    c->cap = cap;
    return true;
}

bool cli_convo_add(cli_convo *c, const char *role, const char *content) {
    if (!cli_convo_reserve(c)) return false;
    lm_message *m = &c->msgs[c->n];
    memset(m, 0, sizeof *m);
    m->role = strdup(role);
    m->content = strdup(content);
    if (!m->role || !m->content) {
        free((char *)m->role);
        free((char *)m->content);
        return false;
    }
    c->n++;
    return cli_convo_reserve(c);
}

void cli_convo_clear(cli_convo *c, bool keep_system) {
    size_t w = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (keep_system && strcmp(c->msgs[i].role, "system") == 0) {
            c->msgs[w++] = c->msgs[i];
            continue;
        }
        free((char *)c->msgs[i].role);
        free((char *)c->msgs[i].content);
        free((char *)c->msgs[i].tool_calls_json);
        free((char *)c->msgs[i].tool_call_id);
        free((char *)c->msgs[i].name);
    }
    c->n = w;
}

void cli_convo_free(cli_convo *c) {
    cli_convo_clear(c, false);
    free(c->msgs);
    memset(c, 0, sizeof *c);
}
