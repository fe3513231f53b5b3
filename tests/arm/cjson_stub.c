/* tests/arm/cjson_stub.c: the cJSON entry points core/json.c and tests/unit/testutil.c call, for
 * the AArch64 kernel tests, which link core/ but never parse JSON and have no cross-built cJSON
 * library to link against. Every call fails as cJSON does on bad input. */
#include <cjson/cJSON.h>

void cJSON_InitHooks(cJSON_Hooks *hooks) { (void)hooks; }
cJSON *cJSON_ParseWithLengthOpts(const char *value, size_t buffer_length, const char **return_parse_end,
                                 cJSON_bool require_null_terminated) {
    (void)value;
    (void)buffer_length;
    (void)require_null_terminated;
    if (return_parse_end) *return_parse_end = value;
    return NULL;
}
char *cJSON_PrintUnformatted(const cJSON *item) {
    (void)item;
    return NULL;
}
void cJSON_Delete(cJSON *item) { (void)item; }
void cJSON_free(void *object) { (void)object; }
