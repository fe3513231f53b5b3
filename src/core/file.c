/* core/file.c: whole-file mappings (mmap, or a read into owned memory) and small path helpers. */
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

lm_status lm_file_open(lm_file *f, const char *path, bool use_mmap, lm_error *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lm_fail(err, LM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lm_fail(err, LM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return lm_fail(err, LM_ERR_IO, "%s: is a directory, expected a file", path);
    }
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

lm_status lm_read_text(const char *path, char **out, size_t *len, lm_error *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return lm_fail(err, LM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    lm_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, fp)) > 0) lm_buf_append(&b, tmp, n);
    bool bad = ferror(fp);
    fclose(fp);
    if (bad) {
        lm_buf_free(&b);
        return lm_fail(err, LM_ERR_IO, "%s: read error", path);
    }
    if (b.oom) {
        lm_buf_free(&b);
        return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory reading the file", path);
    }
    if (len) *len = b.len;
    *out = lm_buf_take(&b);
    if (!*out) return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory reading the file", path);
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
