/* server/front.c: the server's listening socket, and a first look at each new connection's
 * request before the HTTP library gets the connection.
 * Owns: accepting connections, holding each until its request line and headers are complete
 * (looked at with MSG_PEEK, so the HTTP library still reads every byte), answering what MHD
 * would refuse with its built-in HTML pages with OpenAI's error JSON instead (a request line
 * that is not METHOD TARGET HTTP/1.x, an HTTP version other than 1.x, a header line without a
 * colon or with whitespace before it, a Content-Length that is not digits, a target or a head
 * too long, a chunked body malformed as far as it came), the header deadline and the cap on
 * connections of one address still sending their head; then handing the connection to MHD
 * (MHD_add_connection). Every response says Connection: close (server.c), so every request
 * comes through here.
 * Does not own: bodies past what the first look sees (MHD and server.c, with guard.c's body
 * deadline), the Host and Origin rules (guard.c).
 * Threads: one thread of its own polls the listening socket and the held connections.
 * Portability: poll() cannot wait for "more bytes than last time" on a socket whose bytes are
 * only peeked (it reports it readable until they are read), so a held connection whose head is
 * incomplete is looked at again after a pause that doubles up to 100 ms while nothing new came. */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the head check (pure) ---- */

static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Fills h with status and the message fmt, its one %s being arg's first n bytes (at most 40),
 * escaped. Returns -1. */
static int head_error(srv_head *h, int status, const char *fmt, const char *arg, size_t n) {
    h->status = status;
    char quoted[168]; /* 40 bytes, each at most 4 once escaped */
    lm_escape_text(quoted, sizeof quoted, arg ? arg : "", arg ? (n < 40 ? n : 40) : 0);
    snprintf(h->msg, sizeof h->msg, fmt, quoted);
    return -1;
}

int srv_head_check(const char *buf, size_t n, size_t max, srv_head *h) {
    memset(h, 0, sizeof *h);
    char limit[24];
    snprintf(limit, sizeof limit, "%zu", max);
    size_t i = 0;
    /* empty lines before the request line are allowed (RFC 9112 2.2) */
    while (i < n && (buf[i] == '\r' || buf[i] == '\n')) i++;
    const char *line = buf + i;
    const char *eol = memchr(line, '\n', n - i);
    if (!eol) {
        if (n >= max) return head_error(h, 414, "the request line is longer than the %s bytes allowed", limit, strlen(limit));
        return 0;
    }
    size_t len = (size_t)(eol - line);
    if (len && line[len - 1] == '\r') len--;
    /* METHOD SP TARGET SP HTTP/1.x */
    const char *sp1 = memchr(line, ' ', len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
    if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1 || memchr(sp2 + 1, ' ', len - (size_t)(sp2 + 1 - line)))
        return head_error(h, 400, "the request line is not 'METHOD TARGET HTTP/1.1'%s", NULL, 0);
    for (const char *p = line; p < sp1; p++)
        if (!is_tchar((unsigned char)*p))
            return head_error(h, 400, "the method '%s' has a character a method cannot have", line, (size_t)(sp1 - line));
    const char *ver = sp2 + 1;
    size_t vlen = len - (size_t)(ver - line);
    if (!(vlen == 8 && memcmp(ver, "HTTP/1.", 7) == 0 && ver[7] >= '0' && ver[7] <= '9')) {
        if (vlen >= 5 && memcmp(ver, "HTTP/", 5) == 0)
            return head_error(h, 505, "HTTP version '%s' is not supported (HTTP/1.0 and HTTP/1.1 are)", ver, vlen);
        return head_error(h, 400, "the request line ends in '%s', not an HTTP version", ver, vlen);
    }
    /* header lines up to the empty one */
    size_t at = (size_t)(eol + 1 - buf);
    for (int k = 1;; k++) {
        const char *hl = buf + at;
        const char *e = memchr(hl, '\n', n - at);
        if (!e) break;
        size_t hlen = (size_t)(e - hl);
        if (hlen && hl[hlen - 1] == '\r') hlen--;
        at = (size_t)(e + 1 - buf);
        if (hlen == 0) {
            h->len = at;
            return 1;
        }
        if (hl[0] == ' ' || hl[0] == '\t') continue; /* obsolete line folding: MHD joins it */
        const char *colon = memchr(hl, ':', hlen);
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        if (!colon) return head_error(h, 400, "header line %s has no colon", num, strlen(num));
        if (colon == hl) return head_error(h, 400, "header line %s has no name before its colon", num, strlen(num));
        for (const char *p = hl; p < colon; p++)
            if (!is_tchar((unsigned char)*p))
                return head_error(h, 400,
                                  *p == ' ' || *p == '\t' ? "header line %s has whitespace before its colon"
                                                          : "header line %s has a name with a character a name cannot have",
                                  num, strlen(num));
        /* the value without the white space around it */
        const char *v = colon + 1, *ve = hl + hlen;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t nlen = (size_t)(colon - hl), vlen2 = (size_t)(ve - v);
        if (nlen == 14 && strncasecmp(hl, "Content-Length", 14) == 0) {
            uint64_t cl = 0;
            bool digits = vlen2 > 0 && vlen2 <= 19;
            for (const char *p = v; digits && p < ve; p++) {
                if (*p < '0' || *p > '9') digits = false;
                else cl = cl * 10 + (uint64_t)(*p - '0');
            }
            if (!digits && vlen2 > 19) {
                digits = true;
                for (const char *p = v; p < ve; p++) digits = digits && *p >= '0' && *p <= '9';
                if (digits) cl = UINT64_MAX;
                else return head_error(h, 400, "Content-Length '%s' is not a number of bytes", v, vlen2);
            }
            if (!digits) return head_error(h, 400, "Content-Length '%s' is not a number of bytes", v, vlen2);
            if (h->has_length && h->length != cl) return head_error(h, 400, "two different Content-Length headers%s", NULL, 0);
            h->has_length = true;
            h->length = cl;
            if (cl > SRV_MAX_BODY) {
                char mx[24];
                snprintf(mx, sizeof mx, "%u", SRV_MAX_BODY);
                return head_error(h, 413, "the request body is larger than %s bytes", mx, strlen(mx));
            }
        } else if (nlen == 17 && strncasecmp(hl, "Transfer-Encoding", 17) == 0) {
            h->chunked = vlen2 == 7 && strncasecmp(v, "chunked", 7) == 0;
        }
    }
    if (n >= max) return head_error(h, 431, "the request's headers are longer than the %s bytes allowed", limit, strlen(limit));
    return 0;
}

static int body_error(srv_head *h, int status, const char *what, size_t k) {
    char num[24];
    snprintf(num, sizeof num, "%zu", k);
    h->status = status;
    if (status == 413)
        snprintf(h->msg, sizeof h->msg, "the request body is larger than %u bytes", SRV_MAX_BODY);
    else
        snprintf(h->msg, sizeof h->msg, "the chunked body is malformed: chunk %s %s", num, what);
    return -1;
}

int srv_chunked_check(const char *b, size_t n, srv_head *h) {
    size_t at = 0, total = 0;
    for (size_t k = 1;; k++) {
        /* chunk-size [; extension] CRLF (bare LF taken, as MHD takes it) */
        const char *e = memchr(b + at, '\n', n - at);
        size_t i = at, digits = 0;
        uint64_t size = 0;
        while (i < n && b[i] != ';' && b[i] != '\r' && b[i] != '\n' && b[i] != ' ' && b[i] != '\t') {
            char c = b[i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) return body_error(h, 400, "has a size that is not hexadecimal", k);
            if (size > SRV_MAX_BODY) return body_error(h, 413, NULL, k);
            size = size * 16 + (uint64_t)d;
            digits++;
            i++;
        }
        if (!e) return 0; /* the size line is not whole yet */
        if (!digits) return body_error(h, 400, "has no size", k);
        if (size > SRV_MAX_BODY || total + size > SRV_MAX_BODY) return body_error(h, 413, NULL, k);
        total += size;
        at = (size_t)(e + 1 - b);
        if (size == 0) {
            /* trailer lines, then the empty line */
            for (;;) {
                const char *t = memchr(b + at, '\n', n - at);
                if (!t) return 0;
                size_t tl = (size_t)(t - (b + at));
                at = (size_t)(t + 1 - b);
                if (tl == 0 || (tl == 1 && b[at - 2] == '\r')) {
                    h->len += at; /* the body's bytes after the head */
                    return 1;
                }
            }
        }
        if (n - at < size + 1) return 0;
        at += (size_t)size;
        if (b[at] == '\r') {
            if (n - at < 2) return 0;
            if (b[at + 1] != '\n') return body_error(h, 400, "is not followed by CRLF", k);
            at += 2;
        } else if (b[at] == '\n') {
            at++;
        } else {
            return body_error(h, 400, "is not followed by CRLF", k);
        }
    }
}

/* ---- the thread ---- */

#define HEAD_MAX 32768          /* a head longer than this is refused (the peek sees this much) */
#define MAX_HELD 512            /* connections held at once; over it the one held longest goes */
#define MIN_WAIT_MS 250.0       /* as guard.c: a held connection counts against its address's
                                   cap only once it has waited this long */
#define DRAIN_MS 1000.0         /* after an error answer, unread bytes are read this long */
#define BODY_WAIT_MS 200.0      /* a chunked body not yet whole after its head is looked at this
                                   long, then handed over as it is */

typedef struct held {
    int fd;
    struct sockaddr_storage sa;
    socklen_t sa_len;
    double since_ms;    /* accepted */
    double next_ms;     /* look again at or after this */
    double pause_ms;    /* the current pause between looks */
    size_t seen;        /* bytes the last look saw */
    double head_ms;     /* when its head was seen whole (a chunked body is awaited), 0 before */
    bool draining;      /* answered with an error: reading what is left before closing */
} held;

struct srv_front {
    int lfd, wake[2];
    struct MHD_Daemon *d;
    unsigned header_ms, per_addr;
    held *h;
    size_t n;
    pthread_t th;
    atomic_bool stop; /* set before the wake byte is written */
    char buf[HEAD_MAX];
};

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr, &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
    return false;
}

static void drop(srv_front *f, size_t i) {
    close(f->h[i].fd);
    f->h[i] = f->h[--f->n];
}

/* Sends the error answer of h on fd (best effort: a client that does not read loses it). */
static void answer(int fd, const srv_head *h) {
    char *body = srv_error_body((unsigned)h->status, h->msg);
    const char *reason = h->status == 413 ? "Content Too Large" : h->status == 414 ? "URI Too Long"
                       : h->status == 431 ? "Request Header Fields Too Large"
                       : h->status == 505 ? "HTTP Version Not Supported" : "Bad Request";
    char head[256];
    size_t blen = body ? strlen(body) : 0;
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      h->status, reason, blen);
    int flags = 0;
#ifdef MSG_NOSIGNAL
    flags = MSG_NOSIGNAL;
#endif
    if (hn > 0 && send(fd, head, (size_t)hn, flags) == hn && body) (void)send(fd, body, blen, flags);
    lm_free(body);
}

/* Looks at held connection i; returns false when it left the list. */
static bool look(srv_front *f, size_t i, double now) {
    held *c = &f->h[i];
    if (c->draining) {
        ssize_t r = recv(c->fd, f->buf, sizeof f->buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) || now - c->next_ms > DRAIN_MS) {
            drop(f, i);
            return false;
        }
        return true;
    }
    ssize_t r = recv(c->fd, f->buf, sizeof f->buf, MSG_PEEK);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(f, i);
        return false;
    }
    size_t n = r > 0 ? (size_t)r : 0;
    srv_head h;
    int st = srv_head_check(f->buf, n, sizeof f->buf, &h);
    if (st > 0 && h.chunked) {
        /* the chunked body as far as it came: a malformed one is answered here too (MHD would
           answer HTML); one still coming after BODY_WAIT_MS, or past the window, goes on */
        int bs = srv_chunked_check(f->buf + h.len, n - h.len, &h);
        if (bs < 0) st = -1;
        else if (bs == 0 && n < sizeof f->buf) {
            if (!c->head_ms) c->head_ms = now;
            if (now - c->head_ms < BODY_WAIT_MS) st = 0;
        }
    }
    if (st > 0) {
        /* MHD reads the head itself; it closes the socket when it cannot take it */
        int fd = c->fd;
        struct sockaddr_storage sa = c->sa;
        socklen_t sl = c->sa_len;
        f->h[i] = f->h[--f->n];
        (void)MHD_add_connection(f->d, fd, (const struct sockaddr *)&sa, sl);
        return false;
    }
    if (st < 0) {
        answer(c->fd, &h);
        shutdown(c->fd, SHUT_WR);
        c->draining = true;
        c->next_ms = now;
        return true;
    }
    /* incomplete: look again later, sooner when it grew */
    c->pause_ms = n > c->seen ? 1.0 : (c->pause_ms * 2 < 100 ? c->pause_ms * 2 : 100);
    c->seen = n;
    c->next_ms = now + c->pause_ms;
    return true;
}

/* A new connection from sa: held, after making room (the oldest of its address that waited
 * MIN_WAIT_MS beyond the cap, or the oldest of all beyond MAX_HELD). */
static void hold(srv_front *f, int fd, const struct sockaddr_storage *sa, socklen_t sl, double now) {
    for (;;) {
        size_t same = 0, oldest = SIZE_MAX;
        for (size_t i = 0; i < f->n; i++) {
            if (f->h[i].draining || !same_addr(&f->h[i].sa, sa) || now - f->h[i].since_ms < MIN_WAIT_MS) continue;
            same++;
            if (oldest == SIZE_MAX || f->h[i].since_ms < f->h[oldest].since_ms) oldest = i;
        }
        if (!f->per_addr || same < f->per_addr || oldest == SIZE_MAX) break;
        drop(f, oldest);
    }
    if (f->n == MAX_HELD) {
        size_t oldest = 0;
        for (size_t i = 1; i < f->n; i++)
            if (f->h[i].since_ms < f->h[oldest].since_ms) oldest = i;
        drop(f, oldest);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    held *c = &f->h[f->n++];
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->sa = *sa;
    c->sa_len = sl;
    c->since_ms = c->next_ms = now;
    c->pause_ms = 1.0;
}

static void *front_main(void *arg) {
    srv_front *f = arg;
    struct pollfd *pf = lm_calloc(MAX_HELD + 2, sizeof *pf);
    size_t *idx = lm_calloc(MAX_HELD + 2, sizeof *idx);
    if (!pf || !idx) {
        lm_free(pf);
        lm_free(idx);
        return NULL;
    }
    for (;;) {
        double now = lm_time_ms();
        /* deadlines, then the looks that are due */
        for (size_t i = 0; i < f->n;) {
            if (f->h[i].draining ? now - f->h[i].next_ms > DRAIN_MS : now - f->h[i].since_ms > f->header_ms) {
                drop(f, i);
                continue;
            }
            if (f->h[i].draining || now < f->h[i].next_ms || look(f, i, now)) i++;
        }
        size_t np = 0;
        pf[np++] = (struct pollfd){.fd = f->wake[0], .events = POLLIN};
        pf[np++] = (struct pollfd){.fd = f->lfd, .events = POLLIN};
        double wait = 100;
        for (size_t i = 0; i < f->n; i++) {
            if (f->h[i].draining || f->h[i].seen == 0) {
                /* nothing seen yet (or draining): readable means there is something to look at */
                idx[np] = i;
                pf[np++] = (struct pollfd){.fd = f->h[i].fd, .events = POLLIN};
            } else if (f->h[i].next_ms - now < wait) {
                wait = f->h[i].next_ms - now;
            }
        }
        int rc = poll(pf, (nfds_t)np, wait < 0 ? 0 : (int)wait + 1);
        if (rc < 0 && errno != EINTR) break;
        if (pf[0].revents) {
            char b[16];
            (void)!read(f->wake[0], b, sizeof b);
            if (atomic_load(&f->stop)) break;
        }
        now = lm_time_ms();
        /* readable held ones, from the end so that removals keep the earlier indices */
        for (size_t k = np; k-- > 2;)
            if (pf[k].revents) {
                f->h[idx[k]].next_ms = now;
                look(f, idx[k], now);
            }
        if (pf[1].revents & POLLIN) {
            for (int k = 0; k < 64; k++) {
                struct sockaddr_storage sa;
                socklen_t sl = sizeof sa;
                int fd = accept(f->lfd, (struct sockaddr *)&sa, &sl);
                if (fd < 0) break;
                hold(f, fd, &sa, sl, now);
            }
        }
    }
    lm_free(pf);
    lm_free(idx);
    return NULL;
}

lm_status srv_front_new(const struct sockaddr *sa, socklen_t sa_len, unsigned header_s, unsigned per_addr,
                        srv_front **out, uint16_t *port, lm_error *err) {
    *out = NULL;
    srv_front *f = lm_calloc(1, sizeof *f);
    if (!f) return lm_fail_nomem(err, "the listening socket");
    f->h = lm_calloc(MAX_HELD, sizeof *f->h);
    atomic_init(&f->stop, false);
    f->wake[0] = f->wake[1] = -1;
    f->lfd = socket(sa->sa_family, SOCK_STREAM, 0);
    int one = 1;
    bool ok = f->h && f->lfd >= 0 && pipe(f->wake) == 0;
    if (ok) {
        (void)setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        (void)fcntl(f->lfd, F_SETFD, FD_CLOEXEC);
        (void)fcntl(f->wake[0], F_SETFD, FD_CLOEXEC);
        (void)fcntl(f->wake[1], F_SETFD, FD_CLOEXEC);
        int fl = fcntl(f->lfd, F_GETFL);
        ok = fl >= 0 && fcntl(f->lfd, F_SETFL, fl | O_NONBLOCK) == 0 && bind(f->lfd, sa, sa_len) == 0 &&
             listen(f->lfd, 128) == 0;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    if (ok && getsockname(f->lfd, (struct sockaddr *)&got, &gl) == 0)
        *port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                : ((struct sockaddr_in *)&got)->sin_port);
    if (!ok) {
        int e = errno;
        srv_front_free(f);
        return lm_fail(err, LM_ERR_NETWORK, "%s", strerror(e));
    }
    f->header_ms = header_s * 1000u;
    f->per_addr = per_addr;
    *out = f;
    return LM_OK;
}

lm_status srv_front_start(srv_front *f, struct MHD_Daemon *d, lm_error *err) {
    f->d = d;
    if (pthread_create(&f->th, NULL, front_main, f) != 0) {
        f->d = NULL;
        return lm_fail(err, LM_ERR_NOMEM, "cannot start the accepting thread");
    }
    return LM_OK;
}

void srv_front_stop(srv_front *f) {
    if (!f || !f->d) return;
    atomic_store(&f->stop, true);
    (void)!write(f->wake[1], "x", 1);
    pthread_join(f->th, NULL);
    f->d = NULL;
}

void srv_front_free(srv_front *f) {
    if (!f) return;
    srv_front_stop(f);
    for (size_t i = 0; i < f->n; i++) close(f->h[i].fd);
    if (f->lfd >= 0) close(f->lfd);
    if (f->wake[0] >= 0) close(f->wake[0]);
    if (f->wake[1] >= 0) close(f->wake[1]);
    lm_free(f->h);
    lm_free(f);
}
