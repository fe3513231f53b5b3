/* hub/catalog.c: the recommended models by short name ("llama3.2:3b"), as in the guide's list.
 * Owns: the table (repo id, format, parameters, download size, the shapes that size the KV cache,
 * a description) and turning a short name into a Hugging Face id.
 * Does not own: downloading (download.c) or the memory arithmetic (memory.c).
 *
 * The shapes come from each model's config.json (num_hidden_layers, num_key_value_heads,
 * hidden_size / num_attention_heads). Sizes are approximate (the repos' file listings, rounded).
 * These machines cannot reach the hub, so the repo ids could not be checked here: the mlx-community
 * ids are the ones the guide names; the GGUF ids are the widely used bartowski quantisations (and
 * Microsoft's own Phi-3 GGUF, whose 4-bit file is named "q4", not Q4_K_M). */
#include "hub/hub.h"

#include <ctype.h>
#include <stdio.h>

static const hub_model_entry CATALOG[] = {
    {"llama3.2:1b", "mlx-community/Llama-3.2-1B-Instruct-4bit", "mlx", 1.24, 0.70, 16, 8, 64, 131072,
     "Meta Llama 3.2 1B Instruct, 4-bit MLX: fastest, for simple tasks"},
    {"llama3.2:3b", "mlx-community/Llama-3.2-3B-Instruct-4bit", "mlx", 3.21, 1.80, 28, 8, 128, 131072,
     "Meta Llama 3.2 3B Instruct, 4-bit MLX: the guide's default, good on 8 GB"},
    {"phi3:mini", "mlx-community/Phi-3-mini-4k-instruct-4bit", "mlx", 3.82, 2.15, 32, 32, 96, 4096,
     "Microsoft Phi-3 mini 4k Instruct, 4-bit MLX: strong reasoning for its size"},
    {"qwen2.5:3b", "mlx-community/Qwen2.5-3B-Instruct-4bit", "mlx", 3.09, 1.74, 36, 2, 128, 32768,
     "Qwen 2.5 3B Instruct, 4-bit MLX: multilingual, small KV cache"},
    {"qwen2.5:7b", "mlx-community/Qwen2.5-7B-Instruct-4bit", "mlx", 7.62, 4.30, 28, 4, 128, 32768,
     "Qwen 2.5 7B Instruct, 4-bit MLX: good all-rounder on 16 GB"},
    {"qwen2.5:14b", "mlx-community/Qwen2.5-14B-Instruct-4bit", "mlx", 14.7, 8.31, 48, 8, 128, 32768,
     "Qwen 2.5 14B Instruct, 4-bit MLX: needs 16 GB or more"},
    {"qwen2.5:32b", "mlx-community/Qwen2.5-32B-Instruct-4bit", "mlx", 32.8, 18.4, 64, 8, 128, 32768,
     "Qwen 2.5 32B Instruct, 4-bit MLX: needs 32 GB or more"},
    {"mistral:7b", "mlx-community/Mistral-7B-Instruct-v0.3-4bit", "mlx", 7.25, 4.08, 32, 8, 128, 32768,
     "Mistral 7B Instruct v0.3, 4-bit MLX: fast 7B, function calling"},
    {"llama3.1:8b", "mlx-community/Meta-Llama-3.1-8B-Instruct-4bit", "mlx", 8.03, 4.52, 32, 8, 128, 131072,
     "Meta Llama 3.1 8B Instruct, 4-bit MLX: solid 8B on 16 GB"},
    {"llama3.1:70b", "mlx-community/Meta-Llama-3.1-70B-Instruct-4bit", "mlx", 70.6, 39.7, 80, 8, 128, 131072,
     "Meta Llama 3.1 70B Instruct, 4-bit MLX: needs 64 GB or more"},

    {"llama3.2:1b-gguf", "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "gguf", 1.24, 0.81, 16, 8, 64, 131072,
     "Meta Llama 3.2 1B Instruct, GGUF Q4_K_M"},
    {"llama3.2:3b-gguf", "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M", "gguf", 3.21, 2.02, 28, 8, 128, 131072,
     "Meta Llama 3.2 3B Instruct, GGUF Q4_K_M"},
    {"phi3:mini-gguf", "microsoft/Phi-3-mini-4k-instruct-gguf:q4", "gguf", 3.82, 2.39, 32, 32, 96, 4096,
     "Microsoft Phi-3 mini 4k Instruct, GGUF 4-bit (Microsoft's own file)"},
    {"qwen2.5:3b-gguf", "bartowski/Qwen2.5-3B-Instruct-GGUF:Q4_K_M", "gguf", 3.09, 1.93, 36, 2, 128, 32768,
     "Qwen 2.5 3B Instruct, GGUF Q4_K_M"},
    {"qwen2.5:7b-gguf", "bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M", "gguf", 7.62, 4.68, 28, 4, 128, 32768,
     "Qwen 2.5 7B Instruct, GGUF Q4_K_M"},
    {"qwen2.5:14b-gguf", "bartowski/Qwen2.5-14B-Instruct-GGUF:Q4_K_M", "gguf", 14.7, 8.99, 48, 8, 128, 32768,
     "Qwen 2.5 14B Instruct, GGUF Q4_K_M"},
    {"qwen2.5:32b-gguf", "bartowski/Qwen2.5-32B-Instruct-GGUF:Q4_K_M", "gguf", 32.8, 19.9, 64, 8, 128, 32768,
     "Qwen 2.5 32B Instruct, GGUF Q4_K_M"},
    {"mistral:7b-gguf", "bartowski/Mistral-7B-Instruct-v0.3-GGUF:Q4_K_M", "gguf", 7.25, 4.37, 32, 8, 128, 32768,
     "Mistral 7B Instruct v0.3, GGUF Q4_K_M"},
    {"llama3.1:8b-gguf", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M", "gguf", 8.03, 4.92, 32, 8, 128, 131072,
     "Meta Llama 3.1 8B Instruct, GGUF Q4_K_M"},
    {"llama3.1:70b-gguf", "bartowski/Meta-Llama-3.1-70B-Instruct-GGUF:Q4_K_M", "gguf", 70.6, 42.5, 80, 8, 128, 131072,
     "Meta Llama 3.1 70B Instruct, GGUF Q4_K_M"},
};

/* A family name without a tag picks its default size, as `ollama run llama3.2` does: the guide's
 * default for Llama 3.2, and the size Ollama's library tags "latest" for the others. */
static const struct {
    const char *family, *name;
} DEFAULTS[] = {
    {"llama3.2", "llama3.2:3b"}, {"llama3.1", "llama3.1:8b"}, {"qwen2.5", "qwen2.5:7b"},
    {"phi3", "phi3:mini"},       {"mistral", "mistral:7b"},
};

const char *hub_catalog_default(const char *family) {
    if (!family) return NULL;
    for (size_t i = 0; i < LM_ARRAY_LEN(DEFAULTS); i++)
        if (strcmp(DEFAULTS[i].family, family) == 0) return DEFAULTS[i].name;
    return NULL;
}

const hub_model_entry *hub_catalog(size_t *n) {
    if (n) *n = LM_ARRAY_LEN(CATALOG);
    return CATALOG;
}

const hub_model_entry *hub_catalog_find(const char *name) {
    if (!name) return NULL;
    const char *full = hub_catalog_default(name);
    if (full) name = full;
    for (size_t i = 0; i < LM_ARRAY_LEN(CATALOG); i++)
        if (strcmp(CATALOG[i].name, name) == 0) return &CATALOG[i];
    return NULL;
}

/* "family:tag" with lower-case letters, digits, '.', '-' and one ':'; never a path or an org/name
 * id (those have a '/'). */
bool hub_is_short_name(const char *ref) {
    if (!ref || !*ref || strchr(ref, '/')) return false;
    const char *colon = strchr(ref, ':');
    if (!colon || colon == ref || !colon[1] || strchr(colon + 1, ':')) return false;
    for (const char *p = ref; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':'))
            return false;
    return true;
}

lm_status hub_expand_ref(const char *ref, char *out, size_t cap, lm_error *err) {
    if (!ref || !out) return lm_fail(err, LM_ERR_MISUSE, "hub_expand_ref: ref and out must not be NULL");
    const hub_model_entry *e = hub_catalog_find(ref);
    if (!e && hub_is_short_name(ref))
        return lm_fail(err, LM_ERR_IO,
                       "%s: unknown model name; known names include llama3.2:3b, qwen2.5:7b, phi3:mini, "
                       "mistral:7b, llama3.1:8b (add -gguf for GGUF; llama3.2 alone is llama3.2:3b); "
                       "'locallm ls --available' lists them all",
                       ref);
    const char *s = e ? e->repo : ref;
    size_t n = strlen(s);
    if (n >= cap) return lm_fail(err, LM_ERR_TOO_SMALL, "%s: %zu bytes do not fit in %zu", ref, n, cap);
    memcpy(out, s, n + 1);
    return LM_OK;
}
