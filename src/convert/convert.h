/* convert/convert.h: the internal header of src/convert (`locallm convert`, lm_convert()).
 * Owns: turning a Hugging Face or MLX model folder into a GGUF file (tensor names, llama.cpp's
 * per-tensor type mix, hyper-parameter and tokenizer metadata) or an MLX folder.
 * Does not own: reading the source files (formats/), writing GGUF/safetensors bytes
 * (formats/gguf_write.c, st_write.c) or the quantizers (compute/quantize.h). */
#ifndef LM_CONVERT_H
#define LM_CONVERT_H

#include "core/core.h"
#include "formats/formats.h"

/* A source folder: its config and its weights. */
typedef struct cv_src {
    const char *dir;
    hf_config cfg;
    st_set *st;
    const char *gguf_arch;   /* "llama" (llama, mistral), "qwen2", "qwen3", "phi3" */
    bool interleave_qk;      /* GGUF llama rotates interleaved pairs: permute q/k rows */
} cv_src;

/* One source weight: a plain f32/f16/bf16 tensor or an MLX-quantized one. */
typedef struct cv_weight {
    const st_tensor *w, *scales, *biases; /* scales/biases NULL unless MLX-quantized */
    uint32_t bits, group_size;
    size_t rows, cols;                    /* a vector: rows 1 */
    uint32_t n_dims;                      /* 1 or 2 */
} cv_weight;

/* Finds the tensor name ("model.layers.0.mlp.up_proj.weight") in the source, with its MLX
 * scales and biases when it is quantized, and checks their shapes. */
lm_status cv_weight_find(const cv_src *s, const char *name, cv_weight *out, lm_error *err);
/* Rows [r0, r0 + n) of w as floats (n * cols floats; a vector is one row). */
void cv_weight_rows(const cv_weight *w, size_t r0, size_t n, float *out);

/* Writes the tokenizer.ggml.* keys (and tokenizer.chat_template*) for dir's tokenizer.json
 * [+ tokenizer_config.json, chat_template.jinja] into w. n_vocab: the model's embedding rows
 * (the token list is padded to it with "[PAD<id>]" entries, as llama.cpp's converter does; more
 * tokens than that is an error), or 0 for a vocabulary-only file. *n_tokens gets the count. */
lm_status cv_vocab_gguf(const char *dir, const hf_config *cfg, int32_t n_vocab, gguf_writer *w,
                        int32_t *n_tokens, lm_error *err);

/* The MLX output (convert/mlx.c). */
lm_status cv_write_mlx(cv_src *s, const char *out, const lm_convert_params *p, lm_pool *pool,
                       lm_error *err);

/* Progress and cancellation shared by both outputs. */
typedef struct cv_progress {
    const lm_convert_params *p;
    uint64_t done, total;
} cv_progress;
/* Adds bytes and reports; LM_ERR_CANCELLED (err filled) when the callback asks to stop. */
lm_status cv_progress_add(cv_progress *pr, uint64_t bytes, const char *stage, lm_error *err);

#endif /* LM_CONVERT_H */
