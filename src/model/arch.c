/* model/arch.c: the architecture table. Adding a family is a row here plus, at most, one op in
 * the forward pass. Tensor names per format are bound in model/load.c from these flags. */
#include "model/model.h"

const lm_arch_desc lm_arch_table[LM_ARCH_COUNT] = {
    [LM_ARCH_LLAMA] = {"llama", false, false, false, false, true},
    [LM_ARCH_MISTRAL] = {"mistral", false, false, false, false, true},
    [LM_ARCH_QWEN2] = {"qwen2", true, false, false, false, false},
    [LM_ARCH_QWEN3] = {"qwen3", false, true, false, false, false},
    [LM_ARCH_PHI3] = {"phi3", false, false, true, true, false},
};

int lm_arch_find(const char *name) {
    for (int i = 0; i < LM_ARCH_COUNT; i++)
        if (strcmp(lm_arch_table[i].name, name) == 0) return i;
    return -1;
}

const char *lm_arch_list(void) { return "llama, mistral, qwen2, qwen3, phi3"; }
