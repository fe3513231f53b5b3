/* convert/source.c: what both outputs of a conversion (convert.c: GGUF, mlx.c: MLX) read and
 * report: the source weights (plain f32/f16/bf16 or MLX-quantized, with their shapes checked) as
 * float rows, and progress with cancellation. */
#include "convert/convert.h"

#include "compute/quantize.h"

#include <stdio.h>

/* ---- progress ---- */

lm_status cv_progress_add(cv_progress *pr, uint64_t bytes, const char *stage, lm_error *err) {
    pr->done += bytes;
    if (!pr->p->progress) return LM_OK;
    float f = pr->total ? (float)((double)pr->done / (double)pr->total) : 1.0f;
    if (pr->p->progress(f > 1 ? 1 : f, stage, pr->p->progress_user))
        return lm_fail(err, LM_ERR_CANCELLED, "conversion cancelled");
    return LM_OK;
}

/* ---- source weights ---- */

lm_status cv_weight_find(const cv_src *s, const char *name, cv_weight *out, lm_error *err) {
    memset(out, 0, sizeof *out);
    const st_tensor *t = st_find(s->st, name);
    if (!t) return lm_fail(err, LM_ERR_FORMAT, "%s: missing tensor '%s'", s->dir, name);
    out->w = t;
    size_t nl = strlen(name);
    if (nl > 7 && strcmp(name + nl - 7, ".weight") == 0) {
        char sn[320];
        snprintf(sn, sizeof sn, "%.*s.scales", (int)(nl - 7), name);
        out->scales = st_find(s->st, sn);
        if (out->scales) {
            snprintf(sn, sizeof sn, "%.*s.biases", (int)(nl - 7), name);
            out->biases = st_find(s->st, sn);
            char module[320];
            snprintf(module, sizeof module, "%.*s", (int)(nl - 7), name);
            uint32_t bits = 0, gs = 0;
            if (!out->biases || !hf_config_module_quant(&s->cfg, module, &bits, &gs) || bits < 2 || bits > 8 || gs == 0)
                return lm_fail(err, LM_ERR_FORMAT, "%s: '%s' has scales but no biases or no quantization in config.json", s->dir, name);
            const st_tensor *sc = out->scales, *bi = out->biases;
            if (t->dtype != ST_U32 || t->n_dims != 2 || (t->shape[1] * 32) % bits || sc->n_dims != 2 ||
                sc->shape[0] != t->shape[0] || bi->n_dims != 2 || bi->shape[0] != sc->shape[0] ||
                bi->shape[1] != sc->shape[1] || bi->dtype != sc->dtype || st_dtype_ggml(sc->dtype) == UINT32_MAX)
                return lm_fail(err, LM_ERR_FORMAT, "%s: '%s': MLX weight, scales and biases do not fit together", s->dir, name);
            out->bits = bits;
            out->group_size = gs;
            out->rows = (size_t)t->shape[0];
            out->cols = (size_t)(t->shape[1] * 32 / bits);
            out->n_dims = 2;
            if (out->cols % gs || sc->shape[1] != out->cols / gs)
                return lm_fail(err, LM_ERR_FORMAT, "%s: '%s': scales do not match %zu columns in groups of %u", s->dir, name, out->cols, gs);
            return LM_OK;
        }
    }
    if (st_dtype_ggml(t->dtype) == UINT32_MAX)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; expected F32, F16, BF16 or MLX-quantized U32",
                       s->dir, name, st_dtype_name(t->dtype));
    if (t->n_dims == 1) {
        out->rows = 1;
        out->cols = (size_t)t->shape[0];
        out->n_dims = 1;
    } else if (t->n_dims == 2) {
        out->rows = (size_t)t->shape[0];
        out->cols = (size_t)t->shape[1];
        out->n_dims = 2;
    } else {
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: tensor '%s' has %u dimensions; expected 1 or 2", s->dir, name, t->n_dims);
    }
    return LM_OK;
}

void cv_weight_rows(const cv_weight *w, size_t r0, size_t n, float *out) {
    if (w->scales) {
        cm_matrix m = {0};
        m.type = CM_MLX;
        m.rows = w->rows;
        m.cols = w->cols;
        m.data = w->w->data;
        m.row_bytes = w->cols * w->bits / 8;
        m.bits = w->bits;
        m.group_size = w->group_size;
        m.sb_type = st_dtype_ggml(w->scales->dtype);
        m.scales = w->scales->data;
        m.biases = w->biases->data;
        for (size_t r = 0; r < n; r++) cm_mlx_dequant_row(&m, r0 + r, out + r * w->cols);
        return;
    }
    uint32_t es = st_dtype_size(w->w->dtype);
    const uint8_t *p = (const uint8_t *)w->w->data + r0 * w->cols * es;
    size_t k = n * w->cols;
    for (size_t i = 0; i < k; i++) {
        if (es == 4) {
            memcpy(&out[i], p + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            out[i] = w->w->dtype == ST_F16 ? lm_f16_to_f32(h) : lm_bf16_to_f32(h);
        }
    }
}
