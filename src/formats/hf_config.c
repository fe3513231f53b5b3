/* formats/hf_config.c: reads a Hugging Face config.json (and generation_config.json).
 * Owns: the keys a decoder-only model needs, their defaults (as transformers' config classes
 * set them), rope scaling in hub (`rope_scaling`) and transformers-5 (`rope_parameters`) form,
 * and MLX quantization settings with per-module overrides.
 * Does not own: what the values mean to an architecture (model/arch.c); e.g. qwen2's q/k/v
 * biases exist whatever attention_bias says, and that is decided there. */
#include "formats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "null";
}

/* Key of obj, the last one when repeated: Python's json (which wrote and reads these files
 * upstream) keeps the last duplicate. */
static const cJSON *find(const cJSON *obj, const char *key) {
    const cJSON *found = NULL, *e;
    if (!cJSON_IsObject(obj)) return NULL;
    cJSON_ArrayForEach(e, obj) if (e->string && strcmp(e->string, key) == 0) found = e;
    return found;
}

/* Key of obj; NULL when absent or JSON null (both mean "use the default" in HF configs). */
static const cJSON *item(const cJSON *obj, const char *key) {
    const cJSON *j = find(obj, key);
    return cJSON_IsNull(j) ? NULL : j;
}

/* Reads an int32 key. Absent/null: *out = def, or an error naming the key when required. */
static lm_status get_int(const cJSON *obj, const char *key, bool required, int32_t def,
                         int32_t *out, const char *name, lm_error *err) {
    const cJSON *j = item(obj, key);
    if (!j) {
        if (required)
            return lm_fail(err, LM_ERR_FORMAT, "%s: missing required key '%s'", name, key);
        *out = def;
        return LM_OK;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!(d >= (double)INT32_MIN && d <= (double)INT32_MAX) || d != floor(d))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%s': expected an integer, got %s", name, key,
                       cJSON_IsNumber(j) ? "a non-integer or out-of-range number" : type_name(j));
    *out = (int32_t)d;
    return LM_OK;
}

static lm_status get_pos_int(const cJSON *obj, const char *key, bool required, int32_t def,
                             int32_t *out, const char *name, lm_error *err) {
    lm_status st = get_int(obj, key, required, def, out, name, err);
    if (!st && *out <= 0 && (required || item(obj, key)))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%s': expected a positive integer, got %d",
                       name, key, (int)*out);
    return st;
}

static lm_status get_float(const cJSON *obj, const char *key, float def, float *out,
                           const char *name, lm_error *err) {
    const cJSON *j = item(obj, key);
    if (!j) {
        *out = def;
        return LM_OK;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%s': expected a number, got %s", name, key,
                       type_name(j));
    *out = (float)j->valuedouble;
    return LM_OK;
}

static lm_status get_bool(const cJSON *obj, const char *key, bool def, bool *out,
                          const char *name, lm_error *err) {
    const cJSON *j = item(obj, key);
    if (!j) {
        *out = def;
        return LM_OK;
    }
    if (!cJSON_IsBool(j))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%s': expected true or false, got %s", name,
                       key, type_name(j));
    *out = cJSON_IsTrue(j);
    return LM_OK;
}

/* Copies a string key into buf (cap bytes). Absent/null leaves buf as "" unless required. */
static lm_status get_str(const cJSON *obj, const char *key, bool required, char *buf, size_t cap,
                         const char *name, lm_error *err) {
    const cJSON *j = item(obj, key);
    if (!j) {
        if (required)
            return lm_fail(err, LM_ERR_FORMAT, "%s: missing required key '%s'", name, key);
        return LM_OK;
    }
    if (!cJSON_IsString(j))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%s': expected a string, got %s", name, key,
                       type_name(j));
    if (strlen(j->valuestring) >= cap)
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%s': '%.40s' is longer than %zu bytes", name,
                       key, j->valuestring, cap - 1);
    memcpy(buf, j->valuestring, strlen(j->valuestring) + 1);
    return LM_OK;
}

/* eos_token_id: an int or a list of ints. Absent leaves the ids alone (so generation_config.json
 * overrides config.json only where it has the key); null clears them in config.json but is
 * "not set" in generation_config.json (transformers then keeps the model config's). */
static lm_status get_eos(const cJSON *obj, bool is_gen, hf_config *c, const char *name,
                         lm_error *err) {
    const cJSON *j = find(obj, "eos_token_id");
    if (!j || (is_gen && cJSON_IsNull(j))) return LM_OK;
    if (cJSON_IsNull(j)) {
        c->n_eos = 0;
        return LM_OK;
    }
    if (cJSON_IsNumber(j)) {
        lm_status st = get_int(obj, "eos_token_id", true, 0, &c->eos_ids[0], name, err);
        if (!st) c->n_eos = 1;
        return st;
    }
    if (!cJSON_IsArray(j))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'eos_token_id': expected an integer or a "
                       "list of integers, got %s", name, type_name(j));
    int n = cJSON_GetArraySize(j);
    if (n > HF_MAX_EOS)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: key 'eos_token_id': %d ids, at most %d "
                       "supported", name, n, HF_MAX_EOS);
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, j) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
            e->valuedouble < 0 || e->valuedouble > INT32_MAX)
            return lm_fail(err, LM_ERR_FORMAT, "%s: key 'eos_token_id'[%d]: expected a "
                           "non-negative integer", name, i);
        c->eos_ids[i++] = (int32_t)e->valuedouble;
    }
    c->n_eos = n;
    return LM_OK;
}

static lm_status get_bos(const cJSON *obj, bool is_gen, hf_config *c, const char *name,
                         lm_error *err) {
    const cJSON *j = find(obj, "bos_token_id");
    if (!j || (is_gen && cJSON_IsNull(j))) return LM_OK;
    /* Some configs list one bos id in an array; take the first. */
    if (cJSON_IsArray(j) && cJSON_GetArraySize(j) >= 1) j = j->child;
    if (cJSON_IsNull(j)) {
        c->bos_id = -1;
        return LM_OK;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < 0 ||
        j->valuedouble > INT32_MAX)
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'bos_token_id': expected a non-negative "
                       "integer, got %s", name, type_name(j));
    c->bos_id = (int32_t)j->valuedouble;
    return LM_OK;
}

/* Reads a list of floats of exactly n entries into a new array. */
static lm_status get_factors(const cJSON *obj, const char *key, int32_t n, float **out,
                             const char *name, lm_error *err) {
    const cJSON *j = item(obj, key);
    if (!cJSON_IsArray(j))
        return lm_fail(err, LM_ERR_FORMAT, "%s: rope scaling '%s': expected a list of numbers",
                       name, key);
    if (cJSON_GetArraySize(j) != n)
        return lm_fail(err, LM_ERR_FORMAT, "%s: rope scaling '%s': %d entries, expected %d "
                       "(rotary dims / 2)", name, key, cJSON_GetArraySize(j), (int)n);
    float *v = lm_calloc(n > 0 ? (size_t)n : 1, sizeof *v);
    if (!v) return lm_fail_nomem(err, "rope factors");
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, j) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) {
            lm_free(v);
            return lm_fail(err, LM_ERR_FORMAT, "%s: rope scaling '%s'[%d]: expected a number",
                           name, key, i);
        }
        v[i++] = (float)e->valuedouble;
    }
    *out = v;
    return LM_OK;
}

/* rope scaling: the hub's `rope_scaling` object or transformers-5 `rope_parameters` (which
 * also carries rope_theta). Kinds and fields as in transformers' modeling_rope_utils.py. */
static lm_status read_rope(const cJSON *root, hf_config *c, const char *name, lm_error *err) {
    lm_status st;
    const cJSON *rs = item(root, "rope_scaling");
    const cJSON *rp = item(root, "rope_parameters");
    if (rs && !cJSON_IsObject(rs))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'rope_scaling': expected an object or "
                       "null, got %s", name, type_name(rs));
    if (rp && !cJSON_IsObject(rp))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'rope_parameters': expected an object or "
                       "null, got %s", name, type_name(rp));
    if ((st = get_float(root, "rope_theta", 10000.0f, &c->rope_theta, name, err))) return st;
    if (rp && item(rp, "rope_theta") &&
        (st = get_float(rp, "rope_theta", 10000.0f, &c->rope_theta, name, err)))
        return st;
    if (rp && item(rp, "partial_rotary_factor") &&
        (st = get_float(rp, "partial_rotary_factor", 1.0f, &c->partial_rotary_factor, name, err)))
        return st;
    if (!(c->rope_theta > 0.0f))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'rope_theta': expected a positive number",
                       name);
    const cJSON *sc = rs ? rs : rp;
    c->rope_kind = HF_ROPE_DEFAULT;
    c->rope_factor = 1.0f;
    c->rope_attn_factor = 1.0f;
    if ((st = get_int(root, "original_max_position_embeddings", false, 0,
                      &c->rope_original_max_pos, name, err)))
        return st;
    if (!sc) return LM_OK;
    const cJSON *ty = item(sc, "rope_type");
    if (!ty) ty = item(sc, "type");
    if (!ty) {
        if (rs)
            return lm_fail(err, LM_ERR_FORMAT, "%s: key 'rope_scaling': missing 'rope_type' "
                           "(or 'type')", name);
        return LM_OK; /* rope_parameters with only rope_theta */
    }
    if (!cJSON_IsString(ty))
        return lm_fail(err, LM_ERR_FORMAT, "%s: rope scaling 'rope_type': expected a string, "
                       "got %s", name, type_name(ty));
    const char *t = ty->valuestring;
    if ((st = get_float(sc, "factor", 1.0f, &c->rope_factor, name, err))) return st;
    if ((st = get_int(sc, "original_max_position_embeddings", false, c->rope_original_max_pos,
                      &c->rope_original_max_pos, name, err)))
        return st;
    if (strcmp(t, "default") == 0) {
        c->rope_kind = HF_ROPE_DEFAULT;
    } else if (strcmp(t, "linear") == 0) {
        c->rope_kind = HF_ROPE_LINEAR;
    } else if (strcmp(t, "dynamic") == 0) {
        c->rope_kind = HF_ROPE_DYNAMIC;
    } else if (strcmp(t, "llama3") == 0) {
        c->rope_kind = HF_ROPE_LLAMA3;
        if ((st = get_float(sc, "low_freq_factor", 1.0f, &c->rope_low_freq_factor, name, err)) ||
            (st = get_float(sc, "high_freq_factor", 4.0f, &c->rope_high_freq_factor, name, err)))
            return st;
        if (c->rope_original_max_pos <= 0)
            return lm_fail(err, LM_ERR_FORMAT, "%s: llama3 rope scaling: missing "
                           "'original_max_position_embeddings'", name);
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return lm_fail(err, LM_ERR_FORMAT, "%s: llama3 rope scaling: high_freq_factor must "
                           "exceed low_freq_factor", name);
    } else if (strcmp(t, "yarn") == 0) {
        c->rope_kind = HF_ROPE_YARN;
        /* transformers' default: 0.1 * ln(factor) + 1 */
        float def = c->rope_factor > 1.0f ? 0.1f * logf(c->rope_factor) + 1.0f : 1.0f;
        if ((st = get_float(sc, "attention_factor", def, &c->rope_attn_factor, name, err)))
            return st;
    } else if (strcmp(t, "longrope") == 0 || strcmp(t, "su") == 0) {
        c->rope_kind = HF_ROPE_LONGROPE;
        int32_t rot = (int32_t)((float)c->head_dim * c->partial_rotary_factor);
        c->n_rope_factors = rot / 2;
        if ((st = get_factors(sc, "short_factor", c->n_rope_factors, &c->rope_short_factor, name,
                              err)) ||
            (st = get_factors(sc, "long_factor", c->n_rope_factors, &c->rope_long_factor, name,
                              err)))
            return st;
        if (c->rope_original_max_pos <= 1)
            return lm_fail(err, LM_ERR_FORMAT, "%s: longrope scaling: missing "
                           "'original_max_position_embeddings' (or not above 1)", name);
        /* Phi-3: scale = max_pos / original; attention factor sqrt(1 + ln(scale) / ln(orig)). */
        float scale = (float)c->max_position_embeddings / (float)c->rope_original_max_pos;
        float def = scale <= 1.0f ? 1.0f
                                  : sqrtf(1.0f + logf(scale) / logf((float)c->rope_original_max_pos));
        if ((st = get_float(sc, "attention_factor", def, &c->rope_attn_factor, name, err)))
            return st;
    } else {
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: rope scaling type '%.40s' is not supported",
                       name, t);
    }
    if (!(c->rope_factor > 0.0f))
        return lm_fail(err, LM_ERR_FORMAT, "%s: rope scaling 'factor': expected a positive "
                       "number", name);
    return LM_OK;
}

/* {group_size, bits[, mode]} of the whole model or of one module. */
static lm_status read_qparams(const cJSON *q, const char *what, uint32_t def_bits,
                              uint32_t def_gs, uint32_t *bits, uint32_t *gs, const char *name,
                              lm_error *err) {
    int32_t b, g;
    lm_status st;
    if ((st = get_int(q, "bits", def_bits == 0, (int32_t)def_bits, &b, name, err)) ||
        (st = get_int(q, "group_size", def_gs == 0, (int32_t)def_gs, &g, name, err)))
        return st;
    if (b < 1 || b > 8)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: quantization of %s: %d bits, expected 1..8",
                       name, what, (int)b);
    if (g <= 0 || g > 65536)
        return lm_fail(err, LM_ERR_FORMAT, "%s: quantization of %s: group_size %d, expected a "
                       "positive integer", name, what, (int)g);
    const cJSON *mode = item(q, "mode");
    if (mode && (!cJSON_IsString(mode) || strcmp(mode->valuestring, "affine") != 0))
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: quantization of %s: mode '%.20s' is not "
                       "supported (only affine)", name, what,
                       cJSON_IsString(mode) ? mode->valuestring : "?");
    *bits = (uint32_t)b;
    *gs = (uint32_t)g;
    return LM_OK;
}

static int cmp_override(const void *a, const void *b) {
    return strcmp(((const hf_quant_override *)a)->module, ((const hf_quant_override *)b)->module);
}

/* MLX writes "quantization" (and a copy as "quantization_config"): {group_size, bits, [mode]}
 * plus, per module, {group_size, bits} or false. */
static lm_status read_quant(const cJSON *root, hf_config *c, const char *name, lm_error *err) {
    const cJSON *q = item(root, "quantization");
    if (!q) {
        const cJSON *qc = item(root, "quantization_config");
        if (!qc) return LM_OK;
        if (cJSON_IsObject(qc) && item(qc, "quant_method")) {
            const cJSON *m = item(qc, "quant_method");
            return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: quantization_config: quant_method "
                           "'%.30s' is not supported (only MLX affine)", name,
                           cJSON_IsString(m) ? m->valuestring : "?");
        }
        if (!cJSON_IsObject(qc) || !item(qc, "group_size") || !item(qc, "bits")) return LM_OK;
        q = qc;
    }
    if (!cJSON_IsObject(q))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'quantization': expected an object, got %s",
                       name, type_name(q));
    lm_status st = read_qparams(q, "the model", 0, 0, &c->q_bits, &c->q_group_size, name, err);
    if (st) return st;
    c->has_quant = true;
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, q) if (cJSON_IsObject(e) || cJSON_IsBool(e)) n++;
    if (n > HF_MAX_QUANT_OVERRIDES)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: quantization: %zu per-module entries, at "
                       "most %d supported", name, n, HF_MAX_QUANT_OVERRIDES);
    if (n == 0) return LM_OK;
    if (!(c->q_overrides = lm_calloc(n, sizeof *c->q_overrides)))
        return lm_fail_nomem(err, "quantization overrides");
    cJSON_ArrayForEach(e, q) {
        if (!cJSON_IsObject(e) && !cJSON_IsBool(e)) continue;
        hf_quant_override *o = &c->q_overrides[c->n_q_overrides];
        if (!(o->module = lm_strdup(e->string))) return lm_fail_nomem(err, "module name");
        c->n_q_overrides++;
        if (cJSON_IsBool(e)) {
            o->quantized = cJSON_IsTrue(e);
            o->bits = o->quantized ? c->q_bits : 0;
            o->group_size = o->quantized ? c->q_group_size : 0;
            continue;
        }
        char what[96];
        snprintf(what, sizeof what, "'%.80s'", e->string);
        if ((st = read_qparams(e, what, c->q_bits, c->q_group_size, &o->bits, &o->group_size,
                               name, err)))
            return st;
        o->quantized = true;
    }
    qsort(c->q_overrides, c->n_q_overrides, sizeof *c->q_overrides, cmp_override);
    for (uint32_t i = 1; i < c->n_q_overrides; i++)
        if (strcmp(c->q_overrides[i - 1].module, c->q_overrides[i].module) == 0)
            return lm_fail(err, LM_ERR_FORMAT, "%s: quantization: module '%.80s' listed twice",
                           name, c->q_overrides[i].module);
    return LM_OK;
}

/* Defaults that differ by model_type, from transformers' config classes. */
static float default_eps(const char *mt) {
    return strcmp(mt, "phi3") == 0 ? 1e-5f : 1e-6f;
}

static int32_t default_max_pos(const char *mt) {
    if (strcmp(mt, "mistral") == 0) return 4096 * 32;
    if (strcmp(mt, "qwen2") == 0) return 32768;
    if (strcmp(mt, "phi3") == 0) return 4096;
    return 2048;
}

static lm_status parse_root(const cJSON *root, const cJSON *gen, const char *name,
                            const char *gen_name, hf_config *c, lm_error *err) {
    lm_status st;
    if (!cJSON_IsObject(root))
        return lm_fail(err, LM_ERR_FORMAT, "%s: expected a JSON object", name);
    if ((st = get_str(root, "model_type", true, c->model_type, sizeof c->model_type, name, err)))
        return st;
    /* Multimodal configs (llava, mistral3, gemma3...) nest the text model; say so rather than
     * report a missing key. */
    if (!item(root, "hidden_size") && cJSON_IsObject(item(root, "text_config")))
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: model_type '%s' keeps its text model in "
                       "'text_config' (multimodal), which is not supported", name, c->model_type);
    const cJSON *arch = item(root, "architectures");
    if (arch) {
        if (!cJSON_IsArray(arch) || (arch->child && !cJSON_IsString(arch->child)))
            return lm_fail(err, LM_ERR_FORMAT, "%s: key 'architectures': expected a list of "
                           "strings, got %s", name, type_name(arch));
        if (arch->child) {
            if (strlen(arch->child->valuestring) >= sizeof c->architectures0)
                return lm_fail(err, LM_ERR_FORMAT, "%s: key 'architectures': name too long",
                               name);
            strcpy(c->architectures0, arch->child->valuestring);
        }
    }
    if ((st = get_pos_int(root, "hidden_size", true, 0, &c->hidden_size, name, err)) ||
        (st = get_pos_int(root, "num_hidden_layers", true, 0, &c->n_layers, name, err)) ||
        (st = get_pos_int(root, "num_attention_heads", true, 0, &c->n_heads, name, err)) ||
        (st = get_pos_int(root, "num_key_value_heads", false, c->n_heads, &c->n_kv_heads, name,
                          err)) ||
        (st = get_pos_int(root, "intermediate_size", true, 0, &c->intermediate_size, name,
                          err)) ||
        (st = get_pos_int(root, "vocab_size", true, 0, &c->vocab_size, name, err)) ||
        (st = get_pos_int(root, "max_position_embeddings", false, default_max_pos(c->model_type),
                          &c->max_position_embeddings, name, err)))
        return st;
    if (c->n_heads % c->n_kv_heads != 0)
        return lm_fail(err, LM_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of "
                       "num_key_value_heads %d", name, (int)c->n_heads, (int)c->n_kv_heads);
    if (!item(root, "head_dim") && c->hidden_size % c->n_heads != 0)
        return lm_fail(err, LM_ERR_FORMAT, "%s: no 'head_dim' and hidden_size %d is not a "
                       "multiple of num_attention_heads %d", name, (int)c->hidden_size,
                       (int)c->n_heads);
    if ((st = get_pos_int(root, "head_dim", false, c->hidden_size / c->n_heads, &c->head_dim,
                          name, err)))
        return st;
    if ((st = get_float(root, "rms_norm_eps", default_eps(c->model_type), &c->rms_norm_eps, name,
                        err)) ||
        (st = get_float(root, "partial_rotary_factor", 1.0f, &c->partial_rotary_factor, name,
                        err)))
        return st;
    if (!(c->rms_norm_eps > 0.0f))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'rms_norm_eps': expected a positive number",
                       name);
    if ((st = read_rope(root, c, name, err))) return st;
    if (!(c->partial_rotary_factor > 0.0f && c->partial_rotary_factor <= 1.0f))
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'partial_rotary_factor': expected a number "
                       "in (0, 1]", name);
    bool tie_def = strncmp(c->model_type, "gemma", 5) == 0;
    if ((st = get_bool(root, "tie_word_embeddings", tie_def, &c->tie_word_embeddings, name,
                       err)) ||
        (st = get_bool(root, "attention_bias", false, &c->attention_bias, name, err)) ||
        (st = get_bool(root, "mlp_bias", false, &c->mlp_bias, name, err)))
        return st;
    bool use_sw;
    if ((st = get_bool(root, "use_sliding_window", true, &use_sw, name, err)) ||
        (st = get_int(root, "sliding_window", false, 0, &c->sliding_window, name, err)))
        return st;
    if (c->sliding_window < 0)
        return lm_fail(err, LM_ERR_FORMAT, "%s: key 'sliding_window': expected a positive "
                       "integer or null", name);
    if (!use_sw) c->sliding_window = 0;
    c->bos_id = -1;
    if ((st = get_eos(root, false, c, name, err)) || (st = get_bos(root, false, c, name, err))) return st;
    if (gen) {
        if (!cJSON_IsObject(gen))
            return lm_fail(err, LM_ERR_FORMAT, "%s: expected a JSON object", gen_name);
        if ((st = get_eos(gen, true, c, gen_name, err)) ||
            (st = get_bos(gen, true, c, gen_name, err)))
            return st;
    }
    if ((st = get_str(root, "torch_dtype", false, c->torch_dtype, sizeof c->torch_dtype, name,
                      err)))
        return st;
    if (!c->torch_dtype[0] &&
        (st = get_str(root, "dtype", false, c->torch_dtype, sizeof c->torch_dtype, name, err)))
        return st;
    return read_quant(root, c, name, err);
}

static lm_status parse_impl(const char *cfg, size_t len, const char *gen_json, size_t gen_len,
                            const char *name, const char *gen_name, hf_config *out,
                            lm_error *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = NULL, *gen = NULL;
    lm_status st = lm_json_parse(cfg, len, name, &root, err);
    if (!st && gen_json) st = lm_json_parse(gen_json, gen_len, gen_name, &gen, err);
    if (!st) st = parse_root(root, gen, name, gen_name, out, err);
    cJSON_Delete(root);
    cJSON_Delete(gen);
    if (st) hf_config_free(out);
    return st;
}

lm_status hf_config_parse(const char *config_json, size_t len, const char *gen_json,
                          size_t gen_len, const char *name, hf_config *out, lm_error *err) {
    if (!name) name = "config.json";
    return parse_impl(config_json, len, gen_json, gen_len, name, "generation_config.json", out,
                      err);
}

lm_status hf_config_load(const char *dir, hf_config *out, lm_error *err) {
    memset(out, 0, sizeof *out);
    char *path = lm_path_join(dir, "config.json");
    char *gpath = lm_path_join(dir, "generation_config.json");
    char *text = NULL, *gtext = NULL;
    size_t len = 0, glen = 0;
    lm_status st = LM_OK;
    if (!path || !gpath) st = lm_fail_nomem(err, "path");
    if (!st) st = lm_read_text(path, &text, &len, err);
    if (!st && lm_path_exists(gpath)) st = lm_read_text(gpath, &gtext, &glen, err);
    if (!st) st = parse_impl(text, len, gtext, glen, path, gpath, out, err);
    lm_free(text);
    lm_free(gtext);
    lm_free(path);
    lm_free(gpath);
    return st;
}

void hf_config_free(hf_config *c) {
    if (!c) return;
    lm_free(c->rope_short_factor);
    lm_free(c->rope_long_factor);
    for (uint32_t i = 0; i < c->n_q_overrides; i++) lm_free(c->q_overrides[i].module);
    lm_free(c->q_overrides);
    memset(c, 0, sizeof *c);
}

bool hf_config_module_quant(const hf_config *c, const char *module, uint32_t *bits,
                            uint32_t *group_size) {
    if (!c || !c->has_quant) return false;
    hf_quant_override key = {.module = (char *)module};
    const hf_quant_override *o =
        c->n_q_overrides ? bsearch(&key, c->q_overrides, c->n_q_overrides, sizeof key,
                                   cmp_override)
                         : NULL;
    if (o && !o->quantized) return false;
    if (bits) *bits = o ? o->bits : c->q_bits;
    if (group_size) *group_size = o ? o->group_size : c->q_group_size;
    return true;
}
