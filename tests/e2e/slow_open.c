/* tests/e2e/slow_open.c: an LD_PRELOAD shim for test_providers.sh that keeps a model "loading":
 * open() of a path ending in "/loading.gguf" waits until PATH.go exists (at most 120 s), then
 * opens it. It stands in for a slow disk now that the library refuses FIFOs (which used to block
 * in open() and served this purpose). Built by the test with the system compiler; not linked
 * into anything else. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void wait_for_go(const char *path) {
    size_t n = strlen(path), k = strlen("/loading.gguf");
    if (n < k || strcmp(path + n - k, "/loading.gguf") != 0) return;
    char go[4096];
    snprintf(go, sizeof go, "%s.go", path);
    struct stat st;
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (int i = 0; i < 6000 && stat(go, &st) != 0; i++) nanosleep(&ts, NULL);
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

#define OPEN_SHIM(name)                                                                           \
    int name(const char *path, int flags, ...) {                                                  \
        mode_t mode = 0;                                                                          \
        if (flags & O_CREAT) {                                                                    \
            va_list ap;                                                                           \
            va_start(ap, flags);                                                                  \
            mode = (mode_t)va_arg(ap, int);                                                       \
            va_end(ap);                                                                           \
        }                                                                                         \
        wait_for_go(path);                                                                        \
        open_fn real = (open_fn)dlsym(RTLD_NEXT, #name);                                          \
        return real(path, flags, mode);                                                           \
    }
OPEN_SHIM(open)
OPEN_SHIM(open64)

#define OPENAT_SHIM(name)                                                                         \
    int name(int dir, const char *path, int flags, ...) {                                         \
        mode_t mode = 0;                                                                          \
        if (flags & O_CREAT) {                                                                    \
            va_list ap;                                                                           \
            va_start(ap, flags);                                                                  \
            mode = (mode_t)va_arg(ap, int);                                                       \
            va_end(ap);                                                                           \
        }                                                                                         \
        wait_for_go(path);                                                                        \
        openat_fn real = (openat_fn)dlsym(RTLD_NEXT, #name);                                      \
        return real(dir, path, flags, mode);                                                      \
    }
OPENAT_SHIM(openat)
OPENAT_SHIM(openat64)
