/* core/pool.c: a persistent thread pool whose runs are split into chunks that threads take from a
 * shared counter, and which lets go of threads the machine does not give it.
 * Owns: waking workers (a short spin on a generation counter, then a condition variable, so
 * back-to-back runs of one token cost no syscalls while an idle model costs no CPU), handing out
 * chunks, waiting for a run's end, and the number of threads that take part.
 *
 * Why chunks from a counter: a run ends when its last chunk is done. Split statically, one thread
 * that the OS preempted (speech recognition or TTS beside the model) stalls every run until it is
 * scheduled again; with chunks taken by whoever is running, a thread that is off the CPU when a
 * run starts takes nothing and the others do its share.
 * Why fewer threads under contention: a thread preempted in the middle of a chunk still stalls the
 * run, and a caller that shares its core with another process issues runs at half speed while
 * the other threads wait for them. The caller measures, over windows of about 100 ms of
 * back-to-back runs, the time lost: its waits for others of over half a millisecond (a time
 * slice lost, not a slow chunk) plus the window's wall time it was not on a CPU (its thread CPU
 * time, read once a window). When over 30 % of the window is lost (two threads are worth one
 * only past that), the pool uses one thread less, and after a while tries one more again (a
 * probe of one window), keeping it if the loss stays under the bar. The caller is thread 0 of
 * every run and always takes part. */
#include "core.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#if (defined(__x86_64__) || (defined(__i386__) && defined(__SSE__))) && defined(__GNUC__)
#define LM_HAVE_MXCSR 1 /* read and written by builtins: no ISA header outside src/compute */
#endif
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define CPU_RELAX() __builtin_ia32_pause() /* no ISA header outside src/compute */
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERS 20000
#define CLOSED 0xFFFFFFFFu           /* the claim word's chunk index while a run is being set up */
#define STALL_NS 500000ull           /* a wait this long means a thread lost its time slice */
#define WINDOW_NS 100000000ull       /* wall time of runs per decision */
#define GAP_NS 5000000ull            /* runs further apart: the caller was idle, a new window */
#define LOST_PCT 30                  /* a window losing more than this has a thread too many */
#define PROBE_AFTER_NS 2000000000ull /* first probe for a dropped thread after 2 s, then longer */

typedef struct worker {
    struct lm_pool *pool;
    pthread_t thread;
    int ith;
} worker;

struct lm_pool {
    int n;
    worker *workers;
    /* the run: written by the caller before the claim word is published */
    _Atomic(lm_chunk_fn) fn;
    _Atomic(void *) ctx;
    atomic_int n_chunks;
    atomic_uint_fast64_t claim;  /* run generation << 32 | next chunk to take */
    atomic_int done;             /* chunks finished in the current run */
    atomic_uint gen;             /* bumped once per run (what sleeping workers watch) */
    atomic_int n_active;         /* threads taking part, 1..n */
    atomic_int n_sleeping;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* a run started (for threads that take part) */
    pthread_cond_t idle_cv;      /* n_active grew (for those that do not) */
    /* adaptivity: the caller's alone */
    uint64_t win_start, win_last; /* the window's first run start and last run end (ns) */
    uint64_t win_cpu;            /* the caller's thread CPU time at the window's start (ns) */
    uint64_t win_lost;           /* long waits in the window (ns) */
    int n_best;                  /* threads before a probe, to fall back to */
    bool probing;
    uint64_t probe_at;           /* when to try one more thread (ns), 0: never */
    uint64_t probe_wait;
};

/* Takes and runs chunks of run g until none is left; returns how many it ran. */
static int take_chunks(lm_pool *p, uint32_t g, int ith) {
    int ran = 0;
    for (;;) {
        uint64_t v = atomic_load_explicit(&p->claim, memory_order_acquire);
        if ((uint32_t)(v >> 32) != g) break;
        lm_chunk_fn fn = atomic_load_explicit(&p->fn, memory_order_acquire);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_acquire);
        int n = atomic_load_explicit(&p->n_chunks, memory_order_acquire);
        int c = (uint32_t)v == CLOSED ? INT_MAX : (int)(uint32_t)v;
        if (c >= n) break;
        /* A successful claim proves run g is still on, so fn, ctx and n were its own: the caller
         * closes the claim word (CLOSED) before it writes the next run's fn, ctx and n (release),
         * so a load here that saw any of those makes this compare-exchange see the closed word
         * and fail. Without that, a thread that read run g's claim word after its last chunk was
         * taken could pair it with the next run's larger n and still win the exchange (the word
         * not yet moved on), running a chunk of neither run beside the caller. */
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &v, v + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        fn(ctx, c, n, ith);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        ran++;
    }
    return ran;
}

unsigned lm_fp_subnormals_off(void) {
#ifdef LM_HAVE_MXCSR
    unsigned old = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(old | 0x8040u); /* FTZ (bit 15), DAZ (bit 6) */
    return old;
#else
    return 0;
#endif
}

void lm_fp_restore(unsigned state) {
#ifdef LM_HAVE_MXCSR
    __builtin_ia32_ldmxcsr(state);
#else
    (void)state;
#endif
}

static void *worker_main(void *arg) {
    worker *w = arg;
    lm_fp_subnormals_off(); /* the pool's threads run kernels only: see core.h */
    lm_pool *p = w->pool;
    unsigned seen = 0; /* gen at creation: a run may start before this thread does */
    for (;;) {
        if (w->ith >= atomic_load(&p->n_active)) {
            /* not taking part: sleep until the pool wants this thread again */
            pthread_mutex_lock(&p->mu);
            while (w->ith >= atomic_load(&p->n_active) && !atomic_load(&p->stop))
                pthread_cond_wait(&p->idle_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
            if (atomic_load(&p->stop)) return NULL;
            unsigned g = atomic_load(&p->gen);
            take_chunks(p, g, w->ith); /* joins a run in flight, if any */
            seen = g;
            continue;
        }
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop) && w->ith < atomic_load(&p->n_active)) {
            if (++spins < SPIN_ITERS) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return NULL;
        if (g == seen) continue; /* left the run-taking threads meanwhile */
        seen = g;
        take_chunks(p, g, w->ith);
    }
}

lm_pool *lm_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    lm_pool *p = lm_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->fn, NULL);
    atomic_init(&p->ctx, NULL);
    atomic_init(&p->n_chunks, 0);
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->n_active, n_threads);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->stop, false);
    p->n_best = n_threads;
    p->probe_wait = PROBE_AFTER_NS;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->idle_cv, NULL);
    if (n_threads > 1) {
        p->workers = lm_calloc((size_t)n_threads, sizeof *p->workers);
        if (!p->workers) {
            lm_pool_free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i;
            if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
                p->n = i; /* threads 1..i-1 exist */
                lm_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void lm_pool_free(lm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->idle_cv);
    pthread_mutex_unlock(&p->mu);
    if (p->workers)
        for (int i = 1; i < p->n; i++) pthread_join(p->workers[i].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->idle_cv);
    lm_free(p->workers);
    lm_free(p);
}

int lm_pool_size(const lm_pool *p) { return p ? p->n : 1; }

/* Sets the threads that take part; wakes those that now do. */
static void set_active(lm_pool *p, int n) {
    int was = atomic_exchange(&p->n_active, n);
    if (n > was) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->idle_cv);
        pthread_mutex_unlock(&p->mu);
    }
}

/* The calling thread's CPU time in ns; 0 where the clock is missing (then only waits count). */
static uint64_t thread_cpu_ns(void) {
#if defined(_POSIX_THREAD_CPUTIME) && _POSIX_THREAD_CPUTIME >= 0
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
#endif
    return 0;
}

static void window_open(lm_pool *p, uint64_t at) {
    p->win_start = p->win_last = at;
    p->win_cpu = thread_cpu_ns();
    p->win_lost = 0;
}

/* After each run (started at t0, ended at now, the caller waiting `wait` ns for others at the end):
 * adds to the window, and at its end moves the number of threads. */
static void adapt(lm_pool *p, uint64_t t0, uint64_t now, uint64_t wait) {
    if (!p->win_start || t0 - p->win_last > GAP_NS) window_open(p, t0);
    p->win_last = now;
    if (wait > STALL_NS) p->win_lost += wait;
    uint64_t wall = now - p->win_start;
    if (wall < WINDOW_NS) return;
    uint64_t cpu0 = p->win_cpu, cpu = cpu0 ? thread_cpu_ns() - cpu0 : wall;
    uint64_t lost = p->win_lost + (wall > cpu ? wall - cpu : 0);
    bool bad = lost * 100 > wall * LOST_PCT;
    int act = atomic_load(&p->n_active);
    if (p->probing) {
        p->probing = false;
        if (bad) { /* the probe failed: back, and wait longer before the next one */
            act = p->n_best;
            set_active(p, act);
            p->probe_wait = p->probe_wait * 2 < 16 * PROBE_AFTER_NS ? p->probe_wait * 2 : 16 * PROBE_AFTER_NS;
            p->probe_at = now + p->probe_wait;
        } else { /* the extra thread earns its place */
            p->n_best = act;
            p->probe_wait = PROBE_AFTER_NS;
            p->probe_at = act < p->n ? now + p->probe_wait : 0;
        }
    } else if (bad && act > 1) {
        set_active(p, --act);
        p->n_best = act;
        p->probe_at = now + p->probe_wait;
    }
    if (p->probe_at && now >= p->probe_at && act < p->n) {
        set_active(p, act + 1);
        p->probing = true;
        p->probe_at = 0;
    }
    window_open(p, now);
}

void lm_pool_run_chunks(lm_pool *p, lm_chunk_fn fn, void *ctx, int n_chunks) {
    if (n_chunks <= 0) return;
    if (!p || p->n == 1) {
        for (int c = 0; c < n_chunks; c++) fn(ctx, c, n_chunks, 0);
        return;
    }
    uint64_t t0 = lm_time_ns();
    uint32_t g = atomic_load(&p->gen) + 1;
    atomic_store_explicit(&p->claim, (uint64_t)g << 32 | CLOSED, memory_order_relaxed); /* see take_chunks */
    atomic_store_explicit(&p->fn, fn, memory_order_release);
    atomic_store_explicit(&p->ctx, ctx, memory_order_release);
    atomic_store_explicit(&p->n_chunks, n_chunks, memory_order_release);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)g << 32, memory_order_release);
    atomic_store(&p->gen, g); /* seq_cst: pairs with the n_sleeping check below */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    take_chunks(p, g, 0);
    uint64_t t_own = 0;
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_chunks) {
        if (!t_own) t_own = lm_time_ns();
        if (++spins < 2000) CPU_RELAX();
        else sched_yield(); /* the one we wait for may want this core */
    }
    uint64_t now = lm_time_ns();
    adapt(p, t0, now, t_own ? now - t_own : 0);
}

/* The classic form: n chunks of the pool's size, so a kernel that splits its work by (ith, nth)
 * and keeps per-thread scratch by ith runs unchanged: each chunk index runs once per run, on
 * whichever thread takes it. */
typedef struct static_run {
    lm_task_fn fn;
    void *ctx;
} static_run;

static void static_chunk(void *ctx, int chunk, int n_chunks, int ith) {
    (void)ith;
    static_run *r = ctx;
    r->fn(r->ctx, chunk, n_chunks);
}

void lm_pool_run(lm_pool *p, lm_task_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    static_run r = {fn, ctx};
    lm_pool_run_chunks(p, static_chunk, &r, p->n);
}

int lm_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
