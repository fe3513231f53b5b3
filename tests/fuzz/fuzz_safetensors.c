/* tests/fuzz/fuzz_safetensors.c: the safetensors header parser over arbitrary bytes. A set that
 * parses must hold sorted, findable tensors inside the buffer. */
#include "formats/formats.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_set *s = NULL;
    lm_error err = {0};
    if (st_parse(data, size, "fuzz.safetensors", &s, &err) != LM_OK) return 0;
    for (uint64_t i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        if (st_find(s, t->name) != t) abort();
        const uint8_t *p = t->data;
        if (p < data || t->nbytes > size || p + t->nbytes > data + size) abort();
        volatile uint8_t sink = 0;
        if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1]; /* in bounds, or ASan says so */
        (void)sink;
    }
    st_close(s);
    return 0;
}
