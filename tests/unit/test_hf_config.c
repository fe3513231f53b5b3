/* tests/unit/test_hf_config.c: config.json of every fixture in tests/data/models and
 * tests/data/stories260K/hf, rope scaling variants, MLX quantization overrides, wrong keys, and
 * allocation failures. */
#include "testutil.h"

#include "formats/formats.h"

#include <math.h>
#include <stdio.h>

static void load(const char *rel, hf_config *c) {
    lm_error err = {0};
    if (hf_config_load(tu_data(rel), c, &err)) fail_msg("%s: %s", rel, err.msg);
}

static void parse(const char *json, const char *gen, hf_config *c) {
    lm_error err = {0};
    if (hf_config_parse(json, strlen(json), gen, gen ? strlen(gen) : 0, "t.json", c, &err))
        fail_msg("%s", err.msg);
}

static void expect_err(const char *json, lm_status code, const char *piece) {
    hf_config c;
    lm_error err = {0};
    lm_status st = hf_config_parse(json, strlen(json), NULL, 0, "cfg.json", &c, &err);
    if (st != code || !strstr(err.msg, "cfg.json") || !strstr(err.msg, piece))
        fail_msg("expected %d '%s', got %d '%s'", code, piece, st, err.msg);
    /* the struct is left empty and freeing it is harmless */
    assert_null(c.q_overrides);
    assert_null(c.rope_short_factor);
    hf_config_free(&c);
}

typedef struct fx {
    const char *dir, *model_type, *arch, *dtype;
    int32_t layers, kv_heads, head_dim, max_pos, sliding_window;
    float eps, theta;
    int32_t rope_kind;
    bool tied;
    uint32_t q_bits; /* 0: not quantized */
} fx;

static void test_fixtures(void **state) {
    (void)state;
    static const fx F[] = {
        {"models/llama2-bf16", "llama", "LlamaForCausalLM", "bfloat16", 2, 4, 32, 4096, 0, 1e-5f,
         10000.0f, HF_ROPE_DEFAULT, false, 0},
        {"models/llama2-f16", "llama", "LlamaForCausalLM", "float16", 2, 4, 32, 4096, 0, 1e-5f,
         10000.0f, HF_ROPE_DEFAULT, false, 0},
        {"models/llama2-f32", "llama", "LlamaForCausalLM", "float32", 2, 4, 32, 4096, 0, 1e-5f,
         10000.0f, HF_ROPE_DEFAULT, false, 0},
        {"models/llama2-mlx-oddbits", "llama", "LlamaForCausalLM", "float16", 2, 4, 32, 4096, 0,
         1e-5f, 10000.0f, HF_ROPE_DEFAULT, false, 4},
        {"models/llama3-bf16", "llama", "LlamaForCausalLM", "bfloat16", 3, 2, 32, 131072, 0,
         1e-5f, 500000.0f, HF_ROPE_LLAMA3, true, 0},
        {"models/llama3-f32", "llama", "LlamaForCausalLM", "float32", 3, 2, 32, 131072, 0, 1e-5f,
         500000.0f, HF_ROPE_LLAMA3, true, 0},
        {"models/llama3-mlx-q4", "llama", "LlamaForCausalLM", "bfloat16", 3, 2, 32, 131072, 0,
         1e-5f, 500000.0f, HF_ROPE_LLAMA3, true, 4},
        {"models/llama3-mlx-q8", "llama", "LlamaForCausalLM", "bfloat16", 3, 2, 32, 131072, 0,
         1e-5f, 500000.0f, HF_ROPE_LLAMA3, true, 8},
        {"models/mistral-bf16", "mistral", "MistralForCausalLM", "bfloat16", 2, 2, 64, 32768, 0,
         1e-5f, 1e6f, HF_ROPE_DEFAULT, false, 0},
        {"models/mistral-f32", "mistral", "MistralForCausalLM", "float32", 2, 2, 64, 32768, 0,
         1e-5f, 1e6f, HF_ROPE_DEFAULT, false, 0},
        {"models/mistral-mlx-mixed46", "mistral", "MistralForCausalLM", "bfloat16", 2, 2, 64,
         32768, 0, 1e-5f, 1e6f, HF_ROPE_DEFAULT, false, 4},
        {"models/phi3-bf16", "phi3", "Phi3ForCausalLM", "bfloat16", 2, 2, 32, 4096, 2047, 1e-5f,
         10000.0f, HF_ROPE_DEFAULT, false, 0},
        {"models/phi3-f32", "phi3", "Phi3ForCausalLM", "float32", 2, 2, 32, 4096, 2047, 1e-5f,
         10000.0f, HF_ROPE_DEFAULT, false, 0},
        {"models/qwen2-bf16", "qwen2", "Qwen2ForCausalLM", "bfloat16", 2, 2, 32, 32768, 0, 1e-6f,
         1e6f, HF_ROPE_DEFAULT, false, 0},
        {"models/qwen2-f32", "qwen2", "Qwen2ForCausalLM", "float32", 2, 2, 32, 32768, 0, 1e-6f,
         1e6f, HF_ROPE_DEFAULT, false, 0},
        {"models/qwen2-mlx-q4", "qwen2", "Qwen2ForCausalLM", "float16", 2, 2, 32, 32768, 0,
         1e-6f, 1e6f, HF_ROPE_DEFAULT, false, 4},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(F); i++) {
        hf_config c;
        load(F[i].dir, &c);
        const fx *f = &F[i];
        assert_string_equal(c.model_type, f->model_type);
        assert_string_equal(c.architectures0, f->arch);
        assert_string_equal(c.torch_dtype, f->dtype);
        assert_int_equal(c.hidden_size, 128);
        assert_int_equal(c.n_layers, f->layers);
        assert_int_equal(c.n_heads, 4);
        assert_int_equal(c.n_kv_heads, f->kv_heads);
        assert_int_equal(c.head_dim, f->head_dim);
        assert_int_equal(c.intermediate_size, 256);
        assert_int_equal(c.vocab_size, 512);
        assert_int_equal(c.max_position_embeddings, f->max_pos);
        assert_int_equal(c.sliding_window, f->sliding_window);
        assert_true(c.rms_norm_eps == f->eps);
        assert_true(c.rope_theta == f->theta);
        assert_int_equal(c.rope_kind, f->rope_kind);
        assert_int_equal(c.tie_word_embeddings, f->tied);
        assert_false(c.attention_bias);
        assert_false(c.mlp_bias);
        assert_true(c.partial_rotary_factor == 1.0f);
        assert_int_equal(c.n_eos, 1);
        assert_int_equal(c.eos_ids[0], 2);
        assert_int_equal(c.bos_id, 1);
        assert_int_equal(c.has_quant, f->q_bits != 0);
        if (f->q_bits) {
            assert_int_equal(c.q_bits, f->q_bits);
            assert_int_equal(c.q_group_size, 64);
        }
        if (f->rope_kind == HF_ROPE_LLAMA3) {
            assert_true(c.rope_factor == 32.0f);
            assert_true(c.rope_low_freq_factor == 1.0f);
            assert_true(c.rope_high_freq_factor == 4.0f);
            assert_int_equal(c.rope_original_max_pos, 8192);
        } else {
            assert_true(c.rope_factor == 1.0f);
        }
        if (strcmp(f->model_type, "phi3") == 0) assert_int_equal(c.rope_original_max_pos, 4096);
        assert_null(c.rope_short_factor);
        hf_config_free(&c);
    }
}

static void test_stories(void **state) {
    (void)state;
    hf_config c;
    load("stories260K/hf", &c);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.hidden_size, 64);
    assert_int_equal(c.n_layers, 5);
    assert_int_equal(c.n_heads, 8);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.intermediate_size, 172);
    assert_int_equal(c.max_position_embeddings, 512);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_ids[0], 2);
    assert_int_equal(c.bos_id, 1);
    assert_false(c.has_quant);
    uint32_t b = 99, g = 99;
    assert_false(hf_config_module_quant(&c, "model.layers.0.mlp.down_proj", &b, &g));
    hf_config_free(&c);
    hf_config_free(&c); /* twice is harmless: free zeroes */
}

static void test_mlx_quant(void **state) {
    (void)state;
    hf_config c;
    uint32_t b, g;
    load("models/mistral-mlx-mixed46", &c);
    assert_int_equal(c.n_q_overrides, 16);
    assert_true(hf_config_module_quant(&c, "model.layers.1.self_attn.v_proj", &b, &g));
    assert_int_equal(b, 6);
    assert_int_equal(g, 64);
    assert_true(hf_config_module_quant(&c, "model.layers.1.mlp.down_proj", &b, &g));
    assert_int_equal(b, 6);
    assert_true(hf_config_module_quant(&c, "lm_head", &b, &g));
    assert_int_equal(b, 6);
    assert_true(hf_config_module_quant(&c, "model.layers.0.mlp.down_proj", &b, &g));
    assert_int_equal(b, 4);
    assert_true(hf_config_module_quant(&c, "model.layers.0.self_attn.v_proj", &b, &g));
    assert_int_equal(b, 4);
    assert_true(hf_config_module_quant(&c, "model.embed_tokens", &b, &g));
    assert_int_equal(b, 4);
    for (uint32_t i = 1; i < c.n_q_overrides; i++)
        assert_true(strcmp(c.q_overrides[i - 1].module, c.q_overrides[i].module) < 0);
    hf_config_free(&c);

    load("models/llama2-mlx-oddbits", &c);
    assert_int_equal(c.n_q_overrides, 9);
    assert_false(hf_config_module_quant(&c, "model.layers.0.mlp.down_proj", &b, &g));
    static const struct {
        const char *m;
        uint32_t bits, gs;
    } want[] = {
        {"model.embed_tokens", 8, 128},
        {"model.layers.0.self_attn.q_proj", 2, 32},
        {"model.layers.0.self_attn.k_proj", 3, 64},
        {"model.layers.0.self_attn.v_proj", 5, 128},
        {"model.layers.0.mlp.gate_proj", 6, 64},
        {"model.layers.0.mlp.up_proj", 8, 32},
        {"model.layers.1.mlp.down_proj", 4, 128},
        {"lm_head", 6, 32},
        {"model.layers.0.self_attn.o_proj", 4, 64}, /* no entry: the default */
        {"model.layers.1.self_attn.q_proj", 4, 64},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(want); i++) {
        if (!hf_config_module_quant(&c, want[i].m, &b, &g)) fail_msg("%s not quantized", want[i].m);
        if (b != want[i].bits || g != want[i].gs)
            fail_msg("%s: %u bits g%u", want[i].m, (unsigned)b, (unsigned)g);
    }
    hf_config_free(&c);

    load("models/qwen2-mlx-q4", &c);
    assert_int_equal(c.n_q_overrides, 0);
    assert_true(hf_config_module_quant(&c, "lm_head", &b, &g));
    assert_int_equal(b, 4);
    assert_int_equal(g, 64);
    hf_config_free(&c);

    /* quantization_config alone (MLX fields) counts; a mode other than affine does not run */
    parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1,"
          "\"num_attention_heads\":2,\"intermediate_size\":16,\"vocab_size\":10,"
          "\"quantization_config\":{\"group_size\":32,\"bits\":3,\"x\":true}}",
          NULL, &c);
    assert_true(c.has_quant);
    assert_int_equal(c.q_bits, 3);
    assert_true(hf_config_module_quant(&c, "x", &b, &g));
    assert_int_equal(b, 3);
    assert_int_equal(g, 32);
    hf_config_free(&c);
}

#define BASE                                                                                   \
    "\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":1,"                     \
    "\"num_attention_heads\":4,\"intermediate_size\":16,\"vocab_size\":10"

static void test_defaults_and_gen(void **state) {
    (void)state;
    hf_config c;
    parse("{" BASE ",\"head_dim\":null,\"num_key_value_heads\":null,\"eos_token_id\":[5,7,9],"
          "\"unknown_key\":{\"a\":[1]},\"sliding_window\":4096,\"dtype\":\"float16\"}",
          NULL, &c);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_kv_heads, 4);
    assert_true(c.rope_theta == 10000.0f);
    assert_true(fabsf(c.rms_norm_eps - 1e-6f) < 1e-12f);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos_ids[2], 9);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.sliding_window, 4096); /* no use_sliding_window key: used */
    assert_string_equal(c.torch_dtype, "float16");
    assert_false(c.tie_word_embeddings);
    assert_string_equal(c.architectures0, "");
    hf_config_free(&c);

    /* generation_config.json's ids win where present */
    parse("{" BASE ",\"eos_token_id\":2,\"bos_token_id\":1,\"attention_bias\":true}",
          "{\"eos_token_id\":[128001,128008,128009],\"bos_token_id\":128000}", &c);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos_ids[0], 128001);
    assert_int_equal(c.eos_ids[2], 128009);
    assert_int_equal(c.bos_id, 128000);
    assert_true(c.attention_bias);
    hf_config_free(&c);
    parse("{" BASE ",\"eos_token_id\":2,\"bos_token_id\":1}",
          "{\"max_length\":20,\"eos_token_id\":null,\"bos_token_id\":null}", &c);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_ids[0], 2);
    assert_int_equal(c.bos_id, 1);
    hf_config_free(&c);
}

static void test_rope_variants(void **state) {
    (void)state;
    hf_config c;
    parse("{" BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}}", NULL, &c);
    assert_int_equal(c.rope_kind, HF_ROPE_LINEAR);
    assert_true(c.rope_factor == 4.0f);
    hf_config_free(&c);
    parse("{" BASE ",\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":250.0}}", NULL,
          &c);
    assert_int_equal(c.rope_kind, HF_ROPE_DEFAULT);
    assert_true(c.rope_theta == 250.0f);
    hf_config_free(&c);
    parse("{" BASE ",\"rope_parameters\":{\"rope_theta\":77.0}}", NULL, &c);
    assert_true(c.rope_theta == 77.0f);
    hf_config_free(&c);
    parse("{" BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
          "\"original_max_position_embeddings\":4096}}",
          NULL, &c);
    assert_int_equal(c.rope_kind, HF_ROPE_YARN);
    assert_true(fabsf(c.rope_attn_factor - (0.1f * logf(4.0f) + 1.0f)) < 1e-6f);
    assert_int_equal(c.rope_original_max_pos, 4096);
    hf_config_free(&c);
    parse("{" BASE ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}}", NULL, &c);
    assert_int_equal(c.rope_kind, HF_ROPE_DYNAMIC);
    hf_config_free(&c);

    /* Phi-3 style longrope: head_dim 16, partial 0.5 -> 4 factors each; original from the top */
    const char *lr = "{" BASE ",\"partial_rotary_factor\":0.5,\"max_position_embeddings\":131072,"
                     "\"original_max_position_embeddings\":4096,\"rope_scaling\":{\"type\":\"%s\","
                     "\"short_factor\":[1,1.5,2,2.5],\"long_factor\":[3,4,5,6.5]}}";
    for (int k = 0; k < 2; k++) {
        char buf[1024];
        snprintf(buf, sizeof buf, lr, k ? "su" : "longrope");
        parse(buf, NULL, &c);
        assert_int_equal(c.rope_kind, HF_ROPE_LONGROPE);
        assert_int_equal(c.n_rope_factors, 4);
        assert_true(c.rope_short_factor[1] == 1.5f);
        assert_true(c.rope_long_factor[3] == 6.5f);
        assert_int_equal(c.rope_original_max_pos, 4096);
        assert_true(fabsf(c.rope_attn_factor - sqrtf(1.0f + logf(32.0f) / logf(4096.0f))) < 1e-6f);
        assert_true(c.partial_rotary_factor == 0.5f);
        hf_config_free(&c);
    }
    expect_err("{" BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1,1],"
               "\"long_factor\":[1,1],\"original_max_position_embeddings\":4096}}",
               LM_ERR_FORMAT, "'short_factor': 2 entries, expected 8");
    expect_err("{" BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1,1,1,1,1,1,1,"
               "1],\"long_factor\":[1,1,1,1,1,1,1,\"x\"],\"original_max_position_embeddings\":64}}",
               LM_ERR_FORMAT, "'long_factor'[7]: expected a number");
    expect_err("{" BASE ",\"rope_scaling\":{\"type\":\"mrope\"}}", LM_ERR_UNSUPPORTED,
               "rope scaling type 'mrope' is not supported");
    expect_err("{" BASE ",\"rope_scaling\":{\"factor\":2}}", LM_ERR_FORMAT, "missing 'rope_type'");
    expect_err("{" BASE ",\"rope_scaling\":\"linear\"}", LM_ERR_FORMAT,
               "'rope_scaling': expected an object or null, got a string");
    expect_err("{" BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}", LM_ERR_FORMAT,
               "original_max_position_embeddings");
}

static void test_errors(void **state) {
    (void)state;
    expect_err("{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"num_attention_heads\":4,"
               "\"intermediate_size\":16,\"vocab_size\":10}",
               LM_ERR_FORMAT, "missing required key 'hidden_size'");
    expect_err("{\"hidden_size\":64}", LM_ERR_FORMAT, "missing required key 'model_type'");
    expect_err("{" BASE ",\"hidden_size\":\"abc\"}", LM_ERR_FORMAT,
               "key 'hidden_size': expected an integer, got a string");
    expect_err("{" BASE ",\"num_hidden_layers\":1.5}", LM_ERR_FORMAT,
               "key 'num_hidden_layers': expected an integer");
    expect_err("{" BASE ",\"num_attention_heads\":0}", LM_ERR_FORMAT,
               "'num_attention_heads': expected a positive integer");
    expect_err("{" BASE ",\"num_key_value_heads\":3}", LM_ERR_FORMAT, "not a multiple");
    expect_err("{" BASE ",\"rms_norm_eps\":\"1e-5\"}", LM_ERR_FORMAT,
               "key 'rms_norm_eps': expected a number, got a string");
    expect_err("{" BASE ",\"tie_word_embeddings\":1}", LM_ERR_FORMAT,
               "key 'tie_word_embeddings': expected true or false, got a number");
    expect_err("{" BASE ",\"eos_token_id\":\"</s>\"}", LM_ERR_FORMAT, "'eos_token_id'");
    expect_err("{" BASE ",\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}", LM_ERR_UNSUPPORTED, "9 ids");
    expect_err("{" BASE ",\"model_type\":\"" "abcdefghijabcdefghijabcdefghijabcdefghij" "\"}",
               LM_ERR_FORMAT, "longer than 31 bytes");
    expect_err("{" BASE ",\"quantization\":{\"bits\":4}}", LM_ERR_FORMAT,
               "missing required key 'group_size'");
    expect_err("{" BASE ",\"quantization\":{\"bits\":4,\"group_size\":64,\"mode\":\"mxfp4\"}}",
               LM_ERR_UNSUPPORTED, "mode 'mxfp4'");
    expect_err("{" BASE ",\"quantization\":{\"bits\":4,\"group_size\":64,"
               "\"model.layers.0.mlp\":{\"bits\":12,\"group_size\":64}}}",
               LM_ERR_UNSUPPORTED, "'model.layers.0.mlp': 12 bits");
    expect_err("{" BASE ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
               "\"group_size\":128}}",
               LM_ERR_UNSUPPORTED, "quant_method 'gptq'");
    expect_err("{" BASE ",\"quantization\":[4]}", LM_ERR_FORMAT, "'quantization': expected an object");
    expect_err("{" BASE, LM_ERR_FORMAT, "invalid JSON");
    expect_err("[]", LM_ERR_FORMAT, "expected a JSON object");
    expect_err("{\"model_type\":\"llava\",\"text_config\":{\"hidden_size\":64}}",
               LM_ERR_UNSUPPORTED, "'text_config'");
    hf_config c0;
    parse("{" BASE ",\"eos_token_id\":null,\"bos_token_id\":[3]}", NULL, &c0);
    assert_int_equal(c0.n_eos, 0);
    assert_int_equal(c0.bos_id, 3);
    hf_config_free(&c0);

    hf_config c;
    lm_error err = {0};
    const char *g = "{\"eos_token_id\":\"x\"}";
    const char *cfg = "{" BASE "}";
    assert_int_equal(hf_config_parse(cfg, strlen(cfg), g, strlen(g), "c.json", &c, &err),
                     LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "generation_config.json: key 'eos_token_id'"));
    assert_int_equal(hf_config_load("/nonexistent/model", &c, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "config.json"));
}

static lm_status load_attempt(const void *arg, lm_error *err) {
    hf_config c;
    lm_status st = hf_config_load(tu_data(arg), &c, err);
    if (st) {
        assert_null(c.q_overrides);
        return st;
    }
    hf_config_free(&c);
    return LM_OK;
}

static lm_status parse_attempt(const void *arg, lm_error *err) {
    const char *text = arg;
    hf_config c;
    lm_status st = hf_config_parse(text, strlen(text), NULL, 0, "lr.json", &c, err);
    if (st) {
        assert_null(c.rope_short_factor);
        return st;
    }
    assert_int_equal(c.n_rope_factors, 8);
    hf_config_free(&c);
    return LM_OK;
}

static void test_nomem(void **state) {
    (void)state;
    const char *dirs[] = {"models/llama2-mlx-oddbits", "stories260K/hf"};
    for (size_t d = 0; d < LM_ARRAY_LEN(dirs); d++)
        tu_alloc_sweep(dirs[d], load_attempt, dirs[d], false, 99999);
    const char *lr = "{" BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1,1,1,1,"
                     "1,1,1,1],\"long_factor\":[1,1,1,1,1,1,1,1],"
                     "\"original_max_position_embeddings\":64}}";
    tu_alloc_sweep("longrope", parse_attempt, lr, false, 1L << 30);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),      cmocka_unit_test(test_stories),
        cmocka_unit_test(test_mlx_quant),     cmocka_unit_test(test_defaults_and_gen),
        cmocka_unit_test(test_rope_variants), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
