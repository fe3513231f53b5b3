/* formats/write_internal.h: what gguf_write.c and st_write.c share.
 * Owns: the table of declared tensors, the "<path>.part" file and the cursor that streams tensor
 * data into it in declaration order, and publishing the file when every byte has come.
 * Nobody outside src/formats sees it. */
#ifndef LM_FORMATS_WRITE_INTERNAL_H
#define LM_FORMATS_WRITE_INTERNAL_H

#include "formats/formats.h"

#include <stdio.h>

/* One declared tensor. type is an enum cm_type (GGUF) or an enum st_dtype (safetensors). */
typedef struct wr_tensor {
    char *name;            /* owned */
    uint32_t type, n_dims;
    uint64_t ne[8];        /* GGUF uses the first 4, ne[0] contiguous; safetensors the shape */
    uint64_t nbytes, offset;
} wr_tensor;

/* Embedded in each writer, zeroed by its calloc. */
typedef struct wr_file {
    wr_tensor *t;
    size_t n_t, cap_t;
    uint32_t align;        /* the data of each tensor is padded with zeros to a multiple; 0 or 1: none */
    FILE *f;               /* open from wr_open until wr_finish */
    char *path, *part;     /* owned */
    size_t cur;            /* tensor being written */
    uint64_t cur_done;     /* its bytes written so far */
} wr_file;

/* Closes and removes an unfinished "<path>.part", frees the table and the paths; not w itself. */
void wr_release(wr_file *w);
/* True when a tensor of that name was declared. */
bool wr_has(const wr_file *w, const char *name);
/* Appends a zeroed tensor with a copy of name; the caller fills the rest. NULL on NOMEM (nothing
 * is appended). Valid until the next wr_add. */
wr_tensor *wr_add(wr_file *w, const char *name);
/* Creates "<path>.part" for writing. LM_ERR_NOMEM or LM_ERR_IO naming the part file. */
lm_status wr_open(wr_file *w, const char *path, lm_error *err);
/* Writes n raw bytes to the part file (the header, before any tensor data). */
lm_status wr_bytes(wr_file *w, const void *p, size_t n, lm_error *err);
/* Streams tensor data: bytes fill the tensors in declaration order, each padded to the
 * alignment when complete. LM_ERR_MISUSE when more bytes come than were declared. Call after
 * wr_open only. */
lm_status wr_data(wr_file *w, const void *data, size_t n, lm_error *err);
/* Checks every tensor is complete, then closes the file and renames it to path
 * (lm_file_publish). LM_ERR_MISUSE naming the first incomplete tensor. Call after wr_open only. */
lm_status wr_finish(wr_file *w, lm_error *err);

#endif
