/* core/file.c: whole-file mappings (mmap, or a read into owned memory), reading a whole file or
 * descriptor into a buffer (the one reader the library and the CLI use), and small path helpers.
 * Only regular files are read: FIFOs, sockets and devices are refused without blocking. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void lm_file_release(const lm_file *f, const void *p, size_t n) {
    if (!f->mapped || !p || n == 0) return;
    uintptr_t lo = (uintptr_t)p, hi = lo + n, base = (uintptr_t)f->data, end = base + f->size;
    if (lo < base || hi > end || hi < lo) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (!page) return;
    /* only whole pages inside the range: the neighbours' bytes stay */
    lo = (lo + page - 1) & ~(page - 1);
    hi &= ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a regular file";
}

/* Opens path for reading only if it is a regular file (after symlinks). O_NONBLOCK keeps open()
 * itself from waiting for a writer when path is a FIFO; fstat then refuses it, so a FIFO or a
 * device given as a model or config file fails at once instead of hanging. */
static lm_status open_regular(const char *path, int *fd_out, struct stat *st, lm_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return lm_fail(err, LM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return lm_fail(err, LM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return lm_fail(err, LM_ERR_IO, "%s: is %s, expected a regular file", path, kind_of(st->st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    return LM_OK;
}

lm_status lm_file_open(lm_file *f, const char *path, bool use_mmap, lm_error *err) {
    memset(f, 0, sizeof *f);
    int fd = -1;
    struct stat st;
    lm_status ost = open_regular(path, &fd, &st, err);
    if (ost) return ost;
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        f->data = (const uint8_t *)"";
        f->size = 0;
        return LM_OK;
    }
    if (use_mmap) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (p == MAP_FAILED) return lm_fail(err, LM_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
        f->data = p;
        f->size = size;
        f->mapped = true;
        return LM_OK;
    }
    uint8_t *buf = lm_malloc(size);
    if (!buf) {
        close(fd);
        return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            lm_free(buf);
            return lm_fail(err, LM_ERR_IO, "%s: read failed at byte %zu: %s", path, got, r == 0 ? "unexpected end of file" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    f->data = buf;
    f->size = size;
    return LM_OK;
}

void lm_file_close(lm_file *f) {
    if (!f || !f->data || f->size == 0) {
        if (f) memset(f, 0, sizeof *f);
        return;
    }
    if (f->mapped) munmap((void *)f->data, f->size);
    else lm_free((void *)f->data);
    memset(f, 0, sizeof *f);
}

lm_status lm_read_fd(int fd, const char *what, char **out, size_t *len, lm_error *err) {
    *out = NULL;
    lm_buf b = {0};
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            lm_buf_free(&b);
            lm_fail(err, LM_ERR_IO, "%s: read error: %s", what, strerror(e));
            errno = e;
            return LM_ERR_IO;
        }
        if (n == 0 || !lm_buf_append(&b, tmp, (size_t)n)) break;
    }
    size_t n = b.len;
    if (b.oom) lm_buf_free(&b);
    else *out = lm_buf_take(&b);
    if (!*out) {
        lm_fail(err, LM_ERR_NOMEM, "%s: out of memory reading the file", what);
        errno = ENOMEM;
        return LM_ERR_NOMEM;
    }
    if (len) *len = n;
    return LM_OK;
}

lm_status lm_read_text(const char *path, char **out, size_t *len, lm_error *err) {
    *out = NULL;
    int fd = -1;
    struct stat st;
    lm_status ost = open_regular(path, &fd, &st, err);
    if (ost) return ost;
    lm_status rst = lm_read_fd(fd, path, out, len, err);
    close(fd);
    return rst;
}

lm_status lm_file_publish(FILE *f, const char *part, const char *path, lm_error *err) {
    int rc = fflush(f);
    int e = errno;
    if (fclose(f) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0) {
        unlink(part);
        return lm_fail(err, LM_ERR_IO, "%s: write failed: %s", part, strerror(e));
    }
    if (rename(part, path) != 0) {
        e = errno;
        unlink(part);
        return lm_fail(err, LM_ERR_IO, "%s: cannot rename to %s: %s", part, path, strerror(e));
    }
    return LM_OK;
}

bool lm_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool lm_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *lm_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a > 0 && dir[a - 1] != '/';
    char *p = lm_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a++] = '/';
    memcpy(p + a, name, b + 1);
    return p;
}
