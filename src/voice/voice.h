/* voice/voice.h: the internal header of src/voice.
 * Owns: the sentence chunker, which cuts a streamed LLM reply into chunks a TTS engine can speak
 * as soon as each is complete. Self-contained (only locallm.h for lm_status) so that it can move
 * into the public header as it is.
 *
 * Where a chunk ends:
 *  - at a newline (always; empty lines give no chunk);
 *  - after . ! ? … (and runs of them, "?!", "...") plus any closing quotes or brackets right after
 *    them (" ' ” ’ “ ‘ ) ] } » « › 」 』 ） 】 》 * _), once the next character is known to be
 *    white space and the first character after that white space is not a lowercase letter. So
 *    "Wait... what?" stays one chunk and "Wait... Then" is two: an ellipsis follows the same rule
 *    as a full stop. French « Bonjour ! » keeps its spaced » when a « is open in the chunk;
 *  - right after CJK 。！？｡ and Arabic/Urdu/Hindi/Amharic ؟ ۔ । ॥ ። (no following space needed),
 *    with the closers after them;
 *  - the first chunk of a reply may end early at a clause mark (, ; : ، ؛ followed by white
 *    space, ' – ', —, 、，；：) once it holds first_chunk_min_chars characters;
 *  - past max_chunk_chars characters a chunk is cut at the next white space or clause mark.
 * A full stop is not a boundary after: titles and fixed abbreviations (Mr Mrs Ms Dr Prof St Mt Rev
 * Gen Sen Gov Capt Col Lt Sgt Sr Sra Srta Dra Mme Mlle Hr Fr Frl vs cf viz approx ca e.g. i.e.
 * z.B. d.h. u.a. bzw, any case); No Nr Nos Fig Vol pp p Art Sec Ch Eq Ref Tab Abb S before a
 * digit; a single capital letter ("J. R. R. Tolkien", so "Plan B. Then" is not cut either); an
 * upper-case dotted initialism (U.S., U.K.; lower-case ones like a.m./p.m. end a sentence before
 * a capital); a number at the start of a line ("1. item", a list marker). Decimals (3.14), times
 * (10:30), versions (v1.2.3), URLs and e-mail addresses never contain "terminator + white space".
 * Known misses: German ordinals before a noun ("am 3. Oktober") are cut.
 *
 * List markers: a chunk that starts a line and begins with "- ", "* ", "+ ", "• " or a number
 * followed by ". " or ") " has the marker removed (TTS should not read "dash" or "one"), unless
 * keep_list_markers is set.
 *
 * Chunks are trimmed of white space (ASCII, NBSP, the Unicode spaces, U+3000), never empty, and
 * byte-for-byte copies of the input otherwise (invalid UTF-8 passes through). The chunks do not
 * depend on how the text was split into pieces: a piece may end inside a UTF-8 sequence. */
#ifndef LM_VOICE_H
#define LM_VOICE_H

#include <stdbool.h>
#include <stddef.h>

#include "locallm.h"

typedef struct lm_sentences lm_sentences;

typedef struct lm_sentences_params {
    /* 0: the first chunk ends at a sentence end like the others. N: it may end at a clause mark
     * once it holds at least N characters (code points, counted from its first non-space), so
     * speech starts sooner. Counts again from the first chunk after lm_sentences_flush/reset. */
    size_t first_chunk_min_chars;
    /* 0: no limit. N: a chunk holding N characters is cut at the next white space or clause mark
     * (one long word is never cut). */
    size_t max_chunk_chars;
    /* false: list markers at the start of a line are removed from the chunk. */
    bool keep_list_markers;
} lm_sentences_params;

/* All zero: sentence ends only, no limit, markers removed. A voice loop might use 20 and 300. */
lm_sentences_params lm_sentences_default_params(void);

/* Receives each chunk: trimmed, non-empty, len bytes at text (also NUL-terminated at text[len]),
 * valid only during the call. Return non-zero to stop: the push or flush that called it returns
 * LM_ERR_CANCELLED and no chunk is emitted until lm_sentences_flush/reset. Must not call the
 * chunker it came from. */
typedef int (*lm_sentence_fn)(const char *text, size_t len, void *user);

/* p may be NULL (defaults); p is copied. Returns NULL when fn is NULL or on NOMEM. Free with
 * lm_sentences_free(). */
lm_sentences *lm_sentences_new(const lm_sentences_params *p, lm_sentence_fn fn, void *user);

/* Appends a piece of the reply (any bytes, len may be 0) and emits every chunk now known to be
 * complete. Returns LM_OK, LM_ERR_NOMEM (the piece was not taken; the chunker is unchanged),
 * LM_ERR_CANCELLED (the callback asked to stop, now or earlier; the piece is dropped) or
 * LM_ERR_MISUSE (NULL s, or NULL piece with len > 0). Keeps one growable buffer holding the text
 * not yet emitted; it allocates only when that text outgrows it. */
lm_status lm_sentences_push(lm_sentences *s, const char *piece, size_t len);

/* End of the reply: emits what is left (also an unterminated last sentence), then makes the
 * chunker ready for the next reply as lm_sentences_reset() does. Returns LM_OK, LM_ERR_CANCELLED
 * (stopped, now or earlier) or LM_ERR_MISUSE (NULL s). */
lm_status lm_sentences_flush(lm_sentences *s);

/* Drops the pending text and the stop, keeps the buffer's memory. Accepts NULL. */
void lm_sentences_reset(lm_sentences *s);

/* The text pushed but not emitted yet (untrimmed); owned by s, valid until the next call on s.
 * *len may be 0. */
const char *lm_sentences_pending(const lm_sentences *s, size_t *len);

/* Message of the last error on s ("" when none); owned by s. */
const char *lm_sentences_errmsg(const lm_sentences *s);

/* Accepts NULL. */
void lm_sentences_free(lm_sentences *s);

#endif
