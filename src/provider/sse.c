/* provider/sse.c: an incremental parser for text/event-stream (the WHATWG server-sent events
 * format): lines end in \n, \r\n or \r; "data:" lines accumulate (one leading space dropped);
 * a blank line dispatches the event; lines starting with ':' are comments. */
#include "provider/provider.h"

void sse_init(sse_parser *p, sse_event_fn fn, void *user) {
    memset(p, 0, sizeof *p);
    p->fn = fn;
    p->user = user;
}

void sse_free(sse_parser *p) {
    lm_buf_free(&p->line);
    lm_buf_free(&p->data);
}

static void dispatch(sse_parser *p) {
    if (p->has_data && !p->stopped) {
        if (p->fn(p->data.data ? p->data.data : "", p->data.len, p->user)) p->stopped = true;
    }
    lm_buf_reset(&p->data);
    p->has_data = false;
}

static void process_line(sse_parser *p, const char *l, size_t n) {
    if (n == 0) {
        dispatch(p);
        return;
    }
    if (l[0] == ':') return;
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = colon ? n - fl - 1 : 0;
    if (vl && v[0] == ' ') {
        v++;
        vl--;
    }
    if (fl == 4 && memcmp(l, "data", 4) == 0) {
        if (p->has_data) lm_buf_putc(&p->data, '\n');
        lm_buf_append(&p->data, v, vl);
        p->has_data = true;
    }
    /* event, id and retry fields are not needed by chat completions */
}

bool sse_feed(sse_parser *p, const char *bytes, size_t n) {
    for (size_t i = 0; i < n && !p->stopped; i++) {
        char c = bytes[i];
        bool after_cr = p->last_cr;
        p->last_cr = c == '\r';
        if (c == '\n' && after_cr) continue; /* the \n of a \r\n, possibly split across feeds */
        if (c == '\n' || c == '\r') {
            process_line(p, p->line.data ? p->line.data : "", p->line.len);
            lm_buf_reset(&p->line);
            continue;
        }
        lm_buf_putc(&p->line, c);
    }
    return !p->stopped && !p->line.oom && !p->data.oom;
}

void sse_finish(sse_parser *p) {
    if (p->line.len) {
        process_line(p, p->line.data, p->line.len);
        lm_buf_reset(&p->line);
    }
    dispatch(p);
}
