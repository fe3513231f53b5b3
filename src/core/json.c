/* core/json.c: JSON through cJSON: parsing one whole value with a message naming the byte and
 * line where it went wrong, loading a file, printing into lm_malloc'd memory.
 * cJSON allocates with whatever allocator the host program gave it (cJSON_InitHooks is the host's
 * to call, never the library's). A failed allocation is reported as LM_ERR_NOMEM when it came
 * through lm_malloc, which is the case in the tests that fail the Nth allocation: they route
 * cJSON through lm_malloc themselves (tests/unit/testutil.c). */
#include "core.h"

lm_status lm_json_parse(const char *text, size_t len, const char *what, cJSON **out, lm_error *err) {
    *out = NULL;
    const char *end = NULL;
    long before = lm_alloc_count();
    bool failed_before = lm_alloc_failed();
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!j) {
        if (!failed_before && lm_alloc_failed() && lm_alloc_count() > before)
            return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory parsing JSON", what);
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        size_t line = 1;
        for (size_t i = 0; i < off && i < len; i++)
            if (text[i] == '\n') line++;
        return lm_fail(err, LM_ERR_FORMAT, "%s: invalid JSON near byte %zu (line %zu)", what, off, line);
    }
    /* One value and nothing after it but white space: "{...} xyz" is not a JSON document. */
    size_t off = end && end >= text ? (size_t)(end - text) : len;
    while (off < len && (text[off] == ' ' || text[off] == '\t' || text[off] == '\n' || text[off] == '\r')) off++;
    if (off < len) {
        cJSON_Delete(j);
        size_t line = 1;
        for (size_t i = 0; i < off; i++)
            if (text[i] == '\n') line++;
        return lm_fail(err, LM_ERR_FORMAT, "%s: unexpected text after the JSON value at byte %zu (line %zu)", what, off, line);
    }
    *out = j;
    return LM_OK;
}

lm_status lm_json_load(const char *path, cJSON **out, lm_error *err) {
    char *text;
    size_t len;
    lm_status st = lm_read_text(path, &text, &len, err);
    if (st) return st;
    st = lm_json_parse(text, len, path, out, err);
    lm_free(text);
    return st;
}

char *lm_json_print(const cJSON *j) {
    char *text = cJSON_PrintUnformatted(j);
    if (!text) return NULL;
    /* copied so that the caller's lm_free is right whatever allocator the host gave cJSON */
    char *out = lm_strdup(text);
    cJSON_free(text);
    return out;
}
