/* shout: a ledge function in C, with no libc.
 *
 * Upper-cases the payload, publishes it retained on `<TOPIC>/<device id>`
 * (TOPIC from env, default "shouts"), logs what it did and responds with
 * it. An empty payload is a permanent failure: retrying cannot fix it.
 *
 * Build: ./build.sh [OUT.wasm]   (clang and wasm-ld from LLVM)
 */
#include "ledge.h"

/* Where the linker put the end of static data; the payload goes after it. */
extern unsigned char __heap_base;

#define PAGE 65536u

/* One event at a time: every payload reuses the same region after the
 * static data, growing memory when a payload is bigger than any before. */
void *ledge_alloc(ledge_size len) {
    ledge_size end = (ledge_size)&__heap_base + len;
    ledge_size have = __builtin_wasm_memory_size(0) * PAGE;
    if (end > have) {
        /* Past the function's `memory` limit this traps the invocation. */
        __builtin_wasm_memory_grow(0, (end - have + PAGE - 1) / PAGE);
    }
    return &__heap_base;
}

static ledge_size length(const char *text) {
    ledge_size n = 0;
    while (text[n]) {
        n++;
    }
    return n;
}

static void say(ledge_i32 level, const char *text) {
    ledge_log(level, text, length(text));
}

/* Writes `value` in decimal at `out`; returns the digits written. */
static ledge_size decimal(ledge_size value, char *out) {
    char digits[10];
    ledge_size n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    for (ledge_size i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    return n;
}

/* Copies a string field or env value into `out` (at most `cap` bytes), or
 * `fallback` when the host has none or it does not fit. */
static ledge_size value_or(ledge_i32 found, char *out, ledge_size cap, const char *fallback) {
    if (found >= 0 && (ledge_size)found <= cap) {
        return (ledge_size)found;
    }
    ledge_size n = length(fallback);
    for (ledge_size i = 0; i < n; i++) {
        out[i] = fallback[i];
    }
    return n;
}

ledge_i32 ledge_handle(void *ptr, ledge_size len) {
    unsigned char *text = ptr;
    if (len == 0) {
        static const char why[] = "empty payload: nothing to shout";
        ledge_respond(why, sizeof why - 1);
        return LEDGE_STATUS_PERMANENT;
    }
    for (ledge_size i = 0; i < len; i++) {
        if (text[i] >= 'a' && text[i] <= 'z') {
            text[i] = (unsigned char)(text[i] - 'a' + 'A');
        }
    }

    char topic[200];
    ledge_size at = value_or(ledge_env("TOPIC", 5, topic, 64), topic, 64, "shouts");
    topic[at++] = '/';
    at += value_or(ledge_context(LEDGE_FIELD_DEVICE_ID, topic + at, 64), topic + at, 64, "unknown");
    ledge_i32 code = ledge_publish_flags(topic, at, text, len, LEDGE_QOS_AT_LEAST_ONCE,
                                         LEDGE_PUBLISH_RETAIN);
    if (code != LEDGE_OK) {
        say(LEDGE_LOG_WARN, "publish refused (is the topic in allow_publish?)");
    }

    char line[64] = "shouted ";
    ledge_size n = 8;
    n += decimal(len, line + n);
    const char *unit = " bytes";
    for (ledge_size i = 0; unit[i]; i++) {
        line[n++] = unit[i];
    }
    ledge_log(LEDGE_LOG_INFO, line, n);
    ledge_respond(text, len);
    return LEDGE_STATUS_OK;
}
