/* server/guard.c: what a connection must satisfy before its request reaches a handler.
 * Owns: the Host and Origin rules against DNS rebinding and other sites' pages, read deadlines
 * (the headers, then the body, each within a time from when it began, however slowly it
 * trickles), and the cap on connections of one client address still sending their headers.
 * Does not own: the HTTP library's own limits (the total and per-address connection caps are
 * MHD options set in server.c) or answering (server.c sends the errors).
 * Threads: MHD's connection threads call open/phase/close; one watchdog thread of the guard shuts
 * down the sockets whose deadline passed, which wakes their connection thread to close them. */
#include "server/server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- Host and Origin ---- */

bool srv_host_is_loopback(const char *host) {
    if (!host || !*host) return true; /* the default bind */
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return strcasecmp(host, "localhost") == 0;
}

/* The name part of a Host header value: "[::1]:8080" -> "[::1]", "localhost:80" -> "localhost".
 * False when the port is not digits. */
static bool host_name(const char *v, char *name, size_t cap) {
    size_t n = strlen(v);
    const char *colon = NULL;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close) return false;
        if (close[1] == ':') colon = close + 1;
        else if (close[1]) return false;
    } else {
        colon = strchr(v, ':');
    }
    if (colon) {
        for (const char *p = colon + 1; *p; p++)
            if (!isdigit((unsigned char)*p)) return false;
        n = (size_t)(colon - v);
    }
    if (n == 0 || n >= cap) return false;
    memcpy(name, v, n);
    name[n] = '\0';
    return true;
}

static bool is_loopback_name(const char *name) {
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0) return true;
    if (strcmp(name, "[::1]") == 0) return true;
    struct in_addr a4;
    return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

bool srv_host_allowed(const srv_config *cfg, const char *host_header) {
    if (!srv_host_is_loopback(cfg->host)) return true; /* reachable by name from elsewhere: any */
    if (!host_header) return true;                     /* HTTP/1.0 without Host: no name to rebind */
    char name[256];
    if (!host_name(host_header, name, sizeof name)) return false;
    if (is_loopback_name(name)) return true;
    for (size_t i = 0; i < cfg->n_allow_hosts; i++) {
        const char *a = cfg->allow_hosts[i];
        if (strcmp(a, "*") == 0 || strcasecmp(a, name) == 0) return true;
        /* "[::1]"-style names may be listed without their brackets */
        size_t la = strlen(a), ln = strlen(name);
        if (ln == la + 2 && name[0] == '[' && strncasecmp(name + 1, a, la) == 0) return true;
    }
    return false;
}

bool srv_origin_allowed(const srv_config *cfg, const char *origin) {
    if (!origin) return true; /* not a browser's cross-site request: curl, the SDKs */
    for (size_t i = 0; i < cfg->n_cors; i++)
        if (strcmp(cfg->cors[i], "*") == 0 || strcasecmp(cfg->cors[i], origin) == 0) return true;
    return false;
}

/* ---- deadlines ---- */

/* A connection counts against its address's cap on waiting ones only once it has waited this
 * long: a burst of clients that send their requests at once is never cut short while their
 * threads start (slow under a sanitizer on a busy machine). */
#define GUARD_MIN_WAIT_MS 250.0

struct srv_guard_conn {
    srv_guard_conn *prev, *next;
    int fd;
    unsigned char addr[16];
    size_t addr_len;
    srv_guard_phase phase;
    double since_ms, deadline_ms; /* deadline 0: none */
    bool shut;                    /* the watchdog closed it already */
};

struct srv_guard {
    unsigned header_ms, body_ms, idle_ms, pending_per_addr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_guard_conn *head;         /* (mu) newest first */
    bool stop;                    /* (mu) */
    pthread_t th;
    _Atomic uint64_t n_shut;
};

static void shut(srv_guard *g, srv_guard_conn *gc) {
    if (gc->shut) return;
    gc->shut = true;
    shutdown(gc->fd, SHUT_RDWR);
    atomic_fetch_add(&g->n_shut, 1);
}

static void evict_oldest(srv_guard *g, const srv_guard_conn *gc);
static bool waiting_for_headers(const srv_guard_conn *gc);

static void *watchdog(void *arg) {
    srv_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        double now = lm_time_ms();
        for (srv_guard_conn *gc = g->head; gc; gc = gc->next)
            if (gc->deadline_ms > 0 && now >= gc->deadline_ms) shut(g, gc);
        for (srv_guard_conn *gc = g->head; gc; gc = gc->next)
            if (waiting_for_headers(gc)) evict_oldest(g, gc);
        lm_cond_wait_ms(&g->cv, &g->mu, 100);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

lm_status srv_guard_new(unsigned header_s, unsigned body_s, unsigned pending_per_addr, srv_guard **out,
                        lm_error *err) {
    *out = NULL;
    srv_guard *g = lm_calloc(1, sizeof *g);
    if (!g) return lm_fail_nomem(err, "connection guard");
    g->header_ms = header_s * 1000u;
    g->body_ms = body_s * 1000u;
    /* a kept-alive connection may wait for its next request longer than a header may take */
    g->idle_ms = g->header_ms > 30000u ? g->header_ms : 30000u;
    g->pending_per_addr = pending_per_addr;
    atomic_init(&g->n_shut, 0);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (pthread_create(&g->th, NULL, watchdog, g) != 0) {
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        lm_free(g);
        return lm_fail(err, LM_ERR_NOMEM, "cannot start the connection watchdog thread");
    }
    *out = g;
    return LM_OK;
}

void srv_guard_free(srv_guard *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->th, NULL);
    while (g->head) {
        srv_guard_conn *gc = g->head;
        g->head = gc->next;
        lm_free(gc);
    }
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    lm_free(g);
}

static void set_phase(srv_guard *g, srv_guard_conn *gc, srv_guard_phase ph, unsigned ms) {
    gc->phase = ph;
    gc->since_ms = lm_time_ms();
    gc->deadline_ms = ms ? gc->since_ms + ms : 0;
}

static bool waiting_for_headers(const srv_guard_conn *gc) {
    return !gc->shut && (gc->phase == SRV_GUARD_HEAD || gc->phase == SRV_GUARD_IDLE);
}

/* Keeps at most pending_per_addr connections of gc's address waiting for their headers longer
 * than GUARD_MIN_WAIT_MS: the ones waiting longest go. A client that sends its request at once
 * never waits that long, so trickling connections from one address cannot hold its share of
 * the server (MHD's per-address cap) nor the server's. (mu) */
static void evict_oldest(srv_guard *g, const srv_guard_conn *gc) {
    if (!g->pending_per_addr) return;
    double now = lm_time_ms();
    for (;;) {
        size_t n = 0;
        srv_guard_conn *oldest = NULL;
        for (srv_guard_conn *o = g->head; o; o = o->next) {
            if (!waiting_for_headers(o) || now - o->since_ms < GUARD_MIN_WAIT_MS || o->addr_len != gc->addr_len ||
                memcmp(o->addr, gc->addr, gc->addr_len))
                continue;
            n++;
            if (!oldest || o->since_ms <= oldest->since_ms) oldest = o;
        }
        if (n <= g->pending_per_addr || !oldest) return;
        shut(g, oldest);
    }
}

srv_guard_conn *srv_guard_open(srv_guard *g, int fd, const struct sockaddr *sa) {
    srv_guard_conn *gc = lm_calloc(1, sizeof *gc);
    if (!gc) return NULL;
    gc->fd = fd;
    if (sa && sa->sa_family == AF_INET) {
        memcpy(gc->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        gc->addr_len = 4;
    } else if (sa && sa->sa_family == AF_INET6) {
        memcpy(gc->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        gc->addr_len = 16;
    }
    set_phase(g, gc, SRV_GUARD_HEAD, g->header_ms);
    pthread_mutex_lock(&g->mu);
    gc->next = g->head;
    if (g->head) g->head->prev = gc;
    g->head = gc;
    evict_oldest(g, gc);
    pthread_mutex_unlock(&g->mu);
    return gc;
}

void srv_guard_phase_set(srv_guard *g, srv_guard_conn *gc, srv_guard_phase ph) {
    if (!g || !gc) return;
    unsigned ms = ph == SRV_GUARD_HEAD ? g->header_ms : ph == SRV_GUARD_IDLE ? g->idle_ms
                : ph == SRV_GUARD_BODY ? g->body_ms : 0;
    pthread_mutex_lock(&g->mu);
    set_phase(g, gc, ph, ms);
    if (ph == SRV_GUARD_IDLE) evict_oldest(g, gc);
    pthread_mutex_unlock(&g->mu);
}

void srv_guard_close(srv_guard *g, srv_guard_conn *gc) {
    if (!g || !gc) return;
    pthread_mutex_lock(&g->mu);
    if (gc->prev) gc->prev->next = gc->next;
    else g->head = gc->next;
    if (gc->next) gc->next->prev = gc->prev;
    pthread_mutex_unlock(&g->mu);
    lm_free(gc);
}

