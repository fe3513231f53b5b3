/* tests/fuzz/fuzz_ollama_request.c: the Ollama request mapping (server/ollama.c) over arbitrary
 * bytes. The first byte picks the endpoint (odd: /api/chat, even: /api/generate); the rest is the
 * body. Checks the invariants the server relies on after a parse, and that a refusal is a 400 or
 * (another model) a 404 with a message. */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    bool chat = data[0] & 1;
    srv_request rq;
    srv_reqerr e;
    if (srv_ollama_parse((const char *)data + 1, size - 1, chat, 2048, "tinychat", &rq, &e)) {
        if (!rq.root || rq.api != SRV_API_OLLAMA || rq.ollama_generate == chat) abort();
        if (!rq.ollama_load) {
            if (!rq.key) abort();
            if (rq.chat && rq.n_msgs == 0) abort();
            if (!rq.chat && (!rq.prompt || !rq.prompt[0])) abort();
        }
        for (size_t i = 0; i < rq.n_msgs; i++)
            if (!rq.msgs[i].role || !rq.msgs[i].content) abort();
        if (rq.gp.stop[LM_MAX_STOP - 1]) abort();
        if (rq.gp.max_tokens == 0 || rq.gp.max_tokens > 2048) abort();
        if (rq.logprobs != (rq.gp.top_logprobs >= 0)) abort();
        srv_request_free(&rq);
    } else if ((e.status != 400 && e.status != 404) || !e.msg[0]) {
        abort();
    }
    return 0;
}
