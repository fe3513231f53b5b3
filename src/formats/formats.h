/* formats/formats.h: the internal header of src/formats.
 * Owns: reading GGUF files, safetensors files and sets, and Hugging Face config.json /
 * generation_config.json, checking every length, count and offset before use.
 * Does not own: what tensors and keys mean to a model (model/arch.c). */
#ifndef LM_FORMATS_H
#define LM_FORMATS_H

#include "core/core.h"

/* ================================ GGUF (formats/gguf.c) ====================================== */

/* Metadata value types, numbered as in the GGUF spec. */
enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10, GGUF_I64 = 11,
    GGUF_F64 = 12,
};

/* A string inside the file: not NUL-terminated; points into the mapping. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_value {
    uint32_t type; /* enum gguf_vtype */
    union {
        uint64_t u;  /* U8..U64 */
        int64_t i;   /* I8..I64 */
        double f;    /* F32, F64 */
        bool b;
        gguf_str s;
        struct {
            uint32_t elem_type;
            uint64_t n;
            const uint8_t *raw;       /* fixed-size elements: n * size, little-endian, in file */
            struct gguf_value *items; /* STRING and ARRAY elements: n parsed values (owned) */
        } arr;
    } v;
} gguf_value;

typedef struct gguf_kv {
    gguf_str key;
    gguf_value val;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;          /* NUL-terminated copy (owned by the gguf_file) */
    uint32_t n_dims;
    uint64_t ne[4];      /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    uint32_t type;       /* enum cm_type */
    uint64_t offset;     /* relative to the data section */
    const void *data;    /* inside the mapping */
    uint64_t nbytes;
} gguf_tensor;

typedef struct gguf_file {
    char *path;          /* owned copy, used in messages */
    lm_file file;
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the tensor data section */
} gguf_file;

/* Opens and validates a GGUF file. Errors are LM_ERR_FORMAT/LM_ERR_UNSUPPORTED naming the file,
 * the field and what was expected; LM_ERR_IO when it cannot be read. *out freed by gguf_close. */
lm_status gguf_open(const char *path, bool use_mmap, gguf_file **out, lm_error *err);
/* Same over a caller's buffer (borrowed; must outlive the result). name is used in messages. */
lm_status gguf_parse(const void *data, size_t size, const char *name, gguf_file **out,
                     lm_error *err);
void gguf_close(gguf_file *g);

const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
/* Typed getters: true when the key exists with a compatible type (any integer type for the
 * integer getters if the value fits; F32/F64 for floats, integers too). */
bool gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_file *g, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_file *g, const char *key, float *out);
bool gguf_get_bool(const gguf_file *g, const char *key, bool *out);
bool gguf_get_str(const gguf_file *g, const char *key, gguf_str *out);
/* Array value of the key, or NULL (wrong type or missing). */
const gguf_value *gguf_get_arr(const gguf_file *g, const char *key);
/* Element i of a numeric array as double/int64 (false if out of range or not numeric). */
bool gguf_arr_f64(const gguf_value *arr, uint64_t i, double *out);
bool gguf_arr_i64(const gguf_value *arr, uint64_t i, int64_t *out);
/* True if s equals the C string z. */
bool gguf_str_eq(gguf_str s, const char *z);
const char *gguf_vtype_name(uint32_t t);

/* ============================ safetensors (formats/safetensors.c) ============================= */

enum st_dtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I8, ST_U8, ST_I16, ST_U16, ST_I32, ST_U32, ST_I64, ST_U64,
    ST_BOOL, ST_F8_E4M3, ST_F8_E5M2,
};

typedef struct st_tensor {
    char *name;           /* owned by the set */
    uint32_t dtype;       /* enum st_dtype */
    uint32_t n_dims;
    uint64_t shape[8];    /* outermost first, as in the file (PyTorch order) */
    const void *data;     /* inside the mapping; may be unaligned (MLX writes no padding) */
    uint64_t nbytes;
    uint32_t file;        /* index into the set's files */
} st_tensor;

typedef struct st_set {
    uint32_t n_files;
    char **paths;         /* owned */
    lm_file *files;
    uint64_t n_tensors;
    st_tensor *tensors;   /* sorted by name */
    cJSON *metadata;      /* "__metadata__" of the first file, or NULL (owned) */
} st_set;

/* Opens a model folder's weights: model.safetensors.index.json when present, else every
 * model*.safetensors (sorted), else a single *.safetensors. */
lm_status st_open_dir(const char *dir, bool use_mmap, st_set **out, lm_error *err);
/* Opens one file as a set of one. */
lm_status st_open_file(const char *path, bool use_mmap, st_set **out, lm_error *err);
/* Validates a header over a caller's buffer (fuzzing, tests). */
lm_status st_parse(const void *data, size_t size, const char *name, st_set **out, lm_error *err);
void st_close(st_set *s);
const st_tensor *st_find(const st_set *s, const char *name);
uint32_t st_dtype_size(uint32_t dtype);
const char *st_dtype_name(uint32_t dtype);
/* The GGUF/GGML type id of a float dtype (F32 0, F16 1, BF16 30: the numbering compute/'s
 * element types follow), UINT32_MAX for any other dtype. */
uint32_t st_dtype_ggml(uint32_t dtype);

/* ============================ config.json (formats/hf_config.c) ============================== */

#define HF_MAX_EOS 8
#define HF_MAX_QUANT_OVERRIDES 1024

enum hf_rope_kind { HF_ROPE_DEFAULT, HF_ROPE_LINEAR, HF_ROPE_LLAMA3, HF_ROPE_LONGROPE,
                    HF_ROPE_DYNAMIC, HF_ROPE_YARN };

typedef struct hf_quant_override {
    char *module;         /* e.g. "model.layers.0.mlp.down_proj" (owned) */
    bool quantized;       /* false: the config says false for it */
    uint32_t bits, group_size;
} hf_quant_override;

typedef struct hf_config {
    char model_type[32];
    char architectures0[64];    /* first of "architectures", or "" */
    int32_t hidden_size, n_layers, n_heads, n_kv_heads, head_dim, intermediate_size, vocab_size;
    int32_t max_position_embeddings;
    float rms_norm_eps, rope_theta;
    float partial_rotary_factor; /* 1 unless set */
    /* rope scaling */
    int32_t rope_kind;           /* enum hf_rope_kind */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_original_max_pos;
    float *rope_short_factor, *rope_long_factor; /* longrope, head_dim/2 each (owned) or NULL */
    int32_t n_rope_factors;
    float rope_attn_factor;      /* longrope attention scale (computed when absent) */
    bool tie_word_embeddings;
    bool attention_bias;
    bool mlp_bias;
    int32_t sliding_window;      /* 0 when not used (use_sliding_window false or null) */
    int32_t eos_ids[HF_MAX_EOS];
    int32_t n_eos;
    int32_t bos_id;              /* -1 when absent */
    char torch_dtype[16];
    /* MLX quantization: has_quant when "quantization" (or "quantization_config" with MLX
       fields) is present */
    bool has_quant;
    uint32_t q_bits, q_group_size;
    hf_quant_override *q_overrides;
    uint32_t n_q_overrides;
} hf_config;

/* Reads dir/config.json and, when present, dir/generation_config.json (whose eos/bos ids take
 * precedence). A missing required key is LM_ERR_FORMAT naming it. Free with hf_config_free. */
lm_status hf_config_load(const char *dir, hf_config *out, lm_error *err);
/* Parses config text (for tests and fuzzing); gen may be NULL. */
lm_status hf_config_parse(const char *config_json, size_t len, const char *gen_json,
                          size_t gen_len, const char *name, hf_config *out, lm_error *err);
void hf_config_free(hf_config *c);
/* Quantization of a module by name ("model.layers.0.self_attn.q_proj"): false when the config
 * says the module is not quantized; else bits and group size (override or default). */
bool hf_config_module_quant(const hf_config *c, const char *module, uint32_t *bits,
                            uint32_t *group_size);


/* ============================ GGUF writing (formats/gguf_write.c) ============================ */

/* Collects metadata and a tensor table in memory, then streams the tensors' data in the order
 * they were declared. Setters never fail on their own: the first NOMEM or misuse (a key set
 * twice, a bad shape) is kept and returned by gguf_w_begin. */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void); /* NULL on NOMEM; free with gguf_writer_free */
/* Also removes an unfinished "<path>.part". */
void gguf_writer_free(gguf_writer *w);
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_w_f32(gguf_writer *w, const char *key, float v);
void gguf_w_bool(gguf_writer *w, const char *key, bool v);
void gguf_w_str(gguf_writer *w, const char *key, const char *s);
void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *s, size_t n);
void gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n);
void gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* Declares a tensor of type (enum cm_type, a GGML type) and shape ne[0..n_dims) (ne[0] the
 * row length, a whole number of the type's blocks). */
void gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                   const uint64_t *ne);
/* Writes the header to "<path>.part". After it only gguf_w_data and gguf_w_finish. */
lm_status gguf_w_begin(gguf_writer *w, const char *path, lm_error *err);
/* Appends n bytes of tensor data (tensors in declaration order, any split of the bytes). */
lm_status gguf_w_data(gguf_writer *w, const void *data, size_t n, lm_error *err);
/* Checks every tensor got all its bytes, closes and renames "<path>.part" to path. */
lm_status gguf_w_finish(gguf_writer *w, lm_error *err);

/* ========================= safetensors writing (formats/st_write.c) ========================= */

/* Writes one safetensors file: an 8-byte header length, the JSON header (tensors sorted by name,
 * each with dtype, shape and data_offsets; metadata when given) padded with spaces to 8 bytes,
 * then the data in the order declared. Like the GGUF writer: declare, begin, data, finish. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_free(st_writer *w);
/* metadata: a JSON object of string values, or NULL; copied. */
lm_status st_w_metadata(st_writer *w, const cJSON *metadata, lm_error *err);
/* shape outermost first; dtype an enum st_dtype. name copied. */
lm_status st_w_tensor(st_writer *w, const char *name, uint32_t dtype, uint32_t n_dims,
                      const uint64_t *shape, lm_error *err);
lm_status st_w_begin(st_writer *w, const char *path, lm_error *err);
lm_status st_w_data(st_writer *w, const void *data, size_t n, lm_error *err);
lm_status st_w_finish(st_writer *w, lm_error *err);

#endif /* LM_FORMATS_H */
