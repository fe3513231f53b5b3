/* tests/fuzz/fuzz_server_request.c: the server's request-body → params mapping over arbitrary
 * bytes. The first byte picks the endpoint (odd: chat, even: completions);
 * the rest is the body. Checks the invariants the server relies on after a parse. */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    bool chat = data[0] & 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    srv_request rq;
    srv_reqerr e;
    if (srv_request_parse(body, len, chat, 2048, 64, &rq, &e)) {
        if (!rq.root) abort();
        if (chat) {
            if (rq.n_msgs == 0 || rq.n_msgs > 64) abort();
            for (size_t i = 0; i < rq.n_msgs; i++) {
                if (!rq.msgs[i].role) abort();
                if (!rq.msgs[i].content && !rq.msgs[i].tool_calls_json) abort();
            }
        } else if (!rq.prompt || !rq.prompt[0]) {
            abort();
        }
        if (rq.gp.stop[LM_MAX_STOP - 1]) abort();
        if (rq.gp.max_tokens == 0 || rq.gp.max_tokens > 2048) abort();
        srv_request_free(&rq);
    } else if (e.status != 400 || !e.msg[0]) {
        abort();
    }
    return 0;
}
