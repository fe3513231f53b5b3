/* tests/fuzz/fuzz_hf_config.c: config.json parsing over arbitrary bytes. The input is
 * config.json, optionally followed by a NUL byte and generation_config.json. */
#include "formats/formats.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *cfg = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t cfg_len = nul ? (size_t)(nul - data) : size;
    const char *gen = nul ? (const char *)nul + 1 : NULL;
    size_t gen_len = nul ? size - cfg_len - 1 : 0;
    hf_config c;
    lm_error err = {0};
    if (hf_config_parse(cfg, cfg_len, gen, gen_len, "fuzz.json", &c, &err) == LM_OK) {
        uint32_t bits, gs;
        hf_config_module_quant(&c, "lm_head", &bits, &gs);
        hf_config_module_quant(&c, "model.layers.0.mlp.down_proj", &bits, &gs);
        for (uint32_t i = 0; i < c.n_q_overrides; i++)
            hf_config_module_quant(&c, c.q_overrides[i].module, &bits, &gs);
        if (c.n_eos < 0 || c.n_eos > HF_MAX_EOS || c.head_dim <= 0) abort();
    }
    hf_config_free(&c);
    return 0;
}
