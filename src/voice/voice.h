/* voice/voice.h: the internal header of src/voice.
 * The sentence chunker (lm_sentences_*) is public API, declared in locallm.h ("voice: sentence
 * chunking"); its exact rules are at the top of voice/sentences.c. */
#ifndef LM_VOICE_H
#define LM_VOICE_H

#include "locallm.h"

#endif
