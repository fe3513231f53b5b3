/* model/vocab.c: a model of vocabulary and chat template alone (lm_model_params.vocab_only), for
 * tokenizing and rendering templates without reading weights: from a GGUF file's metadata, from
 * a tokenizer.json file, or from a folder holding tokenizer.json (with tokenizer_config.json and
 * chat_template.jinja when they are there) and no weights at all.
 * Does not own: the tokenizer (tokenizer/), the full loaders (load.c), or what lm_model_load does
 * for every model after this (end-of-generation ids, template override and fallback). */
#include "model/model.h"

#include <stdio.h>

/* True when the file starts with GGUF's magic. */
static bool is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = {0};
    bool yes = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return yes;
}

/* A folder's tokenizer; chat_template.jinja wins over tokenizer_config.json's template, as the
 * full loader (load.c) and transformers have it. */
static lm_status load_dir(lm_model *m, const char *dir, lm_error *err) {
    char *tj = lm_path_join(dir, "tokenizer.json");
    char *cj = lm_path_join(dir, "chat_template.jinja");
    lm_status st = LM_OK;
    if (!tj || !cj) st = lm_fail_nomem(err, "path");
    else if (!lm_path_exists(tj))
        st = lm_fail(err, LM_ERR_IO, "%s: no tokenizer.json in the folder (a tokenizer folder holds tokenizer.json, and may hold tokenizer_config.json and chat_template.jinja)", dir);
    if (!st) st = tok_load_dir(dir, &m->tok, err);
    if (!st && lm_path_exists(cj)) {
        size_t len;
        st = lm_read_text(cj, &m->chat_template, &len, err);
    }
    lm_free(tj);
    lm_free(cj);
    return st;
}

static lm_status load_gguf(lm_model *m, const char *path, const lm_model_params *p, lm_error *err) {
    lm_status st = gguf_open(path, p->use_mmap, &m->gguf, err);
    if (st) return st;
    m->format = "gguf";
    gguf_str a;
    if (gguf_get_str(m->gguf, "general.architecture", &a))
        snprintf(m->arch_name, sizeof m->arch_name, "%.*s", (int)LM_MIN(a.len, 31), a.ptr);
    if ((st = tok_load_gguf(m->gguf, &m->tok, err))) return st;
    gguf_str tmpl;
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl)) {
        m->chat_template = lm_strndup(tmpl.ptr, (size_t)tmpl.len);
        if (!m->chat_template) return lm_fail_nomem(err, "chat template");
    }
    return LM_OK;
}

bool lm_model_is_tokenizer_only(const char *dir) {
    char *tj = lm_path_join(dir, "tokenizer.json"), *cj = lm_path_join(dir, "config.json");
    bool yes = tj && cj && lm_path_exists(tj) && !lm_path_exists(cj);
    lm_free(tj);
    lm_free(cj);
    return yes;
}

lm_status lm_model_load_vocab(lm_model *m, const char *path, const lm_model_params *p, lm_error *err) {
    lm_status st;
    m->format = "tokenizer";
    if (lm_is_dir(path)) {
        st = load_dir(m, path, err);
    } else if (!lm_path_exists(path)) {
        st = lm_fail(err, LM_ERR_IO, "%s: no such file or folder", path);
    } else if (is_gguf(path)) {
        st = load_gguf(m, path, p, err);
    } else {
        /* a file named tokenizer.json stands for its folder's tokenizer files; any other name is
           read alone */
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        if (strcmp(base, "tokenizer.json") == 0) {
            char *dir = slash ? lm_strndup(path, (size_t)(slash - path) + (slash == path)) : lm_strdup(".");
            st = dir ? load_dir(m, dir, err) : lm_fail_nomem(err, "path");
            lm_free(dir);
        } else {
            st = tok_load_json(path, NULL, &m->tok, err);
        }
    }
    if (st) return st;
    if (!m->chat_template) {
        const char *t = tok_chat_template(m->tok, NULL);
        if (t && !(m->chat_template = lm_strdup(t))) return lm_fail_nomem(err, "chat template");
    }
    m->hp.n_vocab = tok_n_vocab(m->tok);
    return LM_OK;
}
