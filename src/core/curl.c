/* core/curl.c: libcurl's process-wide start (curl_global_init), done once for the whole library.
 * libcurl asks for it before any other call and it is not thread-safe, so it sits behind
 * pthread_once; hub/ (downloads) and provider/ (OpenAI-compatible HTTP) both call lm_curl_init
 * before their first handle. */
#include "core.h"

#include <curl/curl.h>
#include <pthread.h>

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_start(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void lm_curl_init(void) { pthread_once(&g_curl_once, curl_start); }
