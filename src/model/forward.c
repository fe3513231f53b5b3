/* model/forward.c: the one forward pass of every architecture in the table, for a batch of tokens
 * of several sequences, written against the backend's operations (compute/backend.h).
 * A layer is: Q/K/V (with biases, q/k norms, RoPE and the cache write), attention of each
 * sequence over its own cache, the output projection added to the residual stream and the FFN
 * norm taken, gate/up with SwiGLU, and the down projection added with the next norm taken (the
 * next layer's attention norm, or the output norm). The last layer goes past its cache write only
 * for the rows whose logits are wanted. */
#include "model/model.h"

void lm_forward(const lm_model *m, cm_ctx *c, const cm_batch *b) {
    const cm_backend_ops *ops = m->be->ops;
    const cm_net *net = &m->net;
    if (b->n_tok == 0) return;
    ops->begin(c, b);
    for (int32_t l = 0; l < net->n_layer; l++) {
        const cm_layer *L = &net->layers[l];
        bool last = l + 1 == net->n_layer;
        ops->qkv(c, l, b);
        if (last && b->n_logits == 0) break;
        bool compact = last && b->n_logits < b->n_tok;
        ops->attention(c, l, b, compact);
        size_t n = compact ? b->n_logits : b->n_tok;
        ops->project_add(c, &L->wo, CM_BUF_ATT, n, L->ffn_norm);
        ops->gate_up(c, L, n);
        ops->project_add(c, &L->w_down, CM_BUF_H, n, last ? net->output_norm : net->layers[l + 1].attn_norm);
    }
    ops->end(c, b);
}
