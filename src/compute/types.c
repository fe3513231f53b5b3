/* compute/types.c: the element types' facts (compute/backend.h's cm_type_get), apart from any
 * kernel so that formats/ (GGUF reading and writing), model/ and convert/ reach them without
 * depending on the CPU backend.
 * Owns: the table of GGML/GGUF block sizes and bytes, and the row size of n elements.
 * Block layouts are the GGML/GGUF format (ggml-common.h in https://github.com/ggml-org/ggml);
 * compute/cpu/quants_ref.c reads and writes them. */
#include "compute/backend.h"

#define QK 32    /* elements per block of the legacy types */
#define QK_K 256 /* elements per super-block of the K types */

static const cm_type_info g_types[] = {
    [CM_F32] = {"F32", 1, 4, true},
    [CM_F16] = {"F16", 1, 2, true},
    [CM_Q4_0] = {"Q4_0", QK, 18, true},
    [CM_Q4_1] = {"Q4_1", QK, 20, true},
    [CM_Q5_0] = {"Q5_0", QK, 22, true},
    [CM_Q5_1] = {"Q5_1", QK, 24, true},
    [CM_Q8_0] = {"Q8_0", QK, 34, true},
    [CM_Q8_1] = {"Q8_1", QK, 36, true},
    [CM_Q2_K] = {"Q2_K", QK_K, 84, true},
    [CM_Q3_K] = {"Q3_K", QK_K, 110, true},
    [CM_Q4_K] = {"Q4_K", QK_K, 144, true},
    [CM_Q5_K] = {"Q5_K", QK_K, 176, true},
    [CM_Q6_K] = {"Q6_K", QK_K, 210, true},
    [CM_Q8_K] = {"Q8_K", QK_K, 292, true},
    [CM_I8] = {"I8", 1, 1, false},
    [CM_I16] = {"I16", 1, 2, false},
    [CM_I32] = {"I32", 1, 4, false},
    [CM_I64] = {"I64", 1, 8, false},
    [CM_F64] = {"F64", 1, 8, false},
    [CM_BF16] = {"BF16", 1, 2, true},
};

/* Q8_0X4: the activations of the AVX-512 Q4_0 decode kernel, never a tensor's type. x in the
 * Q8_0 blocks of CM_Q8_0 (same d and quants), regrouped so that one 512-bit vpdpbusd of four
 * Q4_0 blocks' nibbles meets them without shuffles. Groups of 4 blocks (the last one has the
 * nb % 4 blocks left, if any); a group of r blocks takes 64 * r bytes in four fields of 16 * r:
 *   i8  lo[16r]:  lo[16k + j] = q_k[j], the elements of block k under Q4_0's low nibbles
 *   i8  hi[16r]:  hi[16k + j] = q_k[16 + j], under the high nibbles
 *   i32 nsum[4r]: lane 4k + i: -8 * (lo[16k + 4i ..+3] + hi[16k + 4i ..+3]), Q4_0's offset 8
 *   f32 d[4r]:    lane 4k + i: d_k
 * Multi-byte fields little-endian. Blocks of 32 elements, 64 bytes each on average. */
static const cm_type_info g_q8_0x4 = {"Q8_0X4", QK, 64, false};

const cm_type_info *cm_type_get(uint32_t type) {
    if (type == CM_Q8_0X4) return &g_q8_0x4;
    if (type >= LM_ARRAY_LEN(g_types) || !g_types[type].name) return NULL;
    return &g_types[type];
}

bool cm_type_row_bytes(uint32_t type, uint64_t n, uint64_t *bytes) {
    const cm_type_info *t = cm_type_get(type);
    if (!t || n % t->block_size) return false;
    uint64_t blocks = n / t->block_size;
    if (blocks > UINT64_MAX / t->block_bytes) return false;
    *bytes = blocks * t->block_bytes;
    return true;
}
