/* cli/voice.c: `locallm voice` (placeholder until the loop lands). */
#include "cli/cli.h"

int cli_voice(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_error("voice: not implemented yet");
}
