/* hub/hub.h: the internal header of src/hub.
 * Owns: model references (a path, or a Hugging Face id "org/name[@revision]") and the Hugging Face
 * cache layout that huggingface_hub writes (models--org--name/refs, snapshots, blobs). */
#ifndef LM_HUB_H
#define LM_HUB_H

#include "core/core.h"

/* Splits and validates "org/name[@revision]": only [A-Za-z0-9._-] in org and name, no ".." and no
 * leading '.', '-' or '/'; revision [A-Za-z0-9._/-] without "..". false when ref is not a valid id. */
bool hub_parse_id(const char *ref, char *org, size_t org_cap, char *name, size_t name_cap,
                  char *rev, size_t rev_cap);

#endif
