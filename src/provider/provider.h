/* provider/provider.h: the internal header of src/provider.
 * Owns: the provider interface (a vtable behind lm_provider), call handles (lm_call), the local
 * (slots on an engine), OpenAI-compatible and fallback implementations, and the incremental SSE
 * parser the OpenAI client uses. */
#ifndef LM_PROVIDER_H
#define LM_PROVIDER_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/core.h"

typedef struct provider_ops {
    bool (*is_ready)(const lm_provider *p);
    /* call is never NULL here (lm_provider_chat supplies a private one); its fields are reset */
    lm_status (*chat)(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                      const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_call *call,
                      lm_gen_stats *stats);
    lm_status (*complete)(lm_provider *p, const char *prompt, size_t len, const lm_gen_params *gp,
                          lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats);
    void (*destroy)(lm_provider *p);
} provider_ops;

struct lm_provider {
    const provider_ops *ops;
    char name[64];
};

struct lm_call {
    atomic_bool cancel;       /* the one field another thread (or a signal handler) touches */
    char errmsg[512];
    char answered_by[64];
    char skipped[512];
    char *tool_calls;         /* owned JSON text, or NULL */
};

/* Clears what a previous call left (not the cancel flag). */
void call_clear(lm_call *c);
/* Formats the call's message and returns code. */
lm_status call_fail(lm_call *c, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);
bool call_cancelled(const lm_call *c);
/* Takes json (owned) as the call's tool calls. */
void call_set_tool_calls(lm_call *c, char *json);

/* Incremental parser of a text/event-stream body: feed bytes as they arrive in any split;
 * on_data is called with each complete event's data (multi-line data joined with '\n'). */
typedef int (*sse_event_fn)(const char *data, size_t len, void *user); /* non-zero: stop */
typedef struct sse_parser {
    lm_buf line;   /* the current, unfinished line */
    lm_buf data;   /* data lines of the current event */
    bool has_data;
    sse_event_fn fn;
    void *user;
    bool stopped;
    bool last_cr;  /* the previous byte ended a line with \r (a following \n is part of it) */
} sse_parser;

void sse_init(sse_parser *p, sse_event_fn fn, void *user);
/* Returns false once the callback asked to stop or memory ran out. */
bool sse_feed(sse_parser *p, const char *bytes, size_t n);
void sse_finish(sse_parser *p); /* dispatches a last event not followed by a blank line */
void sse_free(sse_parser *p);

#endif
