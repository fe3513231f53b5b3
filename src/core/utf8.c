/* core/utf8.c: UTF-8 sequences: their length from the lead byte, decoding (overlongs and surrogates
 * are U+FFFD), encoding, and where a buffer stops holding only whole characters. */
#include "core.h"

int lm_utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    if (c < 0xF5) return 4;
    return 0;
}

int lm_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) {
        *cp = 0xFFFD;
        return 0;
    }
    int len = lm_utf8_seq_len(u[0]);
    if (len == 1) {
        *cp = u[0];
        return 1;
    }
    if (len == 0 || (size_t)len > n) {
        *cp = 0xFFFD;
        return 1;
    }
    uint32_t c = u[0] & (0xFF >> (len + 1));
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        c = (c << 6) | (u[i] & 0x3F);
    }
    /* reject overlongs and surrogates */
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)) || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return len;
}

int lm_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

size_t lm_utf8_complete_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    /* Look back at most 3 bytes for the start of a sequence that runs past the end. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = u[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: keep looking */
        int len = lm_utf8_seq_len(c);
        if (len > (int)back) {
            /* check the bytes present are continuations; if not it is invalid, pass through */
            for (size_t i = 1; i < back; i++)
                if ((u[n - back + i] & 0xC0) != 0x80) return n;
            return n - back;
        }
        return n;
    }
    return n;
}
