/* {{name}}: a ledge function in C, with no libc.
 *
 * Publishes each event's payload on OUT_TOPIC (default "{{name}}/out"),
 * logs its size, and responds with it. An empty payload is a permanent
 * failure: retrying the same event cannot fix it.
 */
#include "ledge.h"

/* Where the linker put the end of static data; payloads go after it. */
extern unsigned char __heap_base;

#define PAGE 65536u

/* One event at a time: every payload reuses the region after the static
 * data, growing memory when one is bigger than any before. */
void *ledge_alloc(ledge_size len) {
    ledge_size end = (ledge_size)&__heap_base + len;
    ledge_size have = __builtin_wasm_memory_size(0) * PAGE;
    if (end > have) {
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

ledge_i32 ledge_handle(void *payload, ledge_size len) {
    if (len == 0) {
        static const char why[] = "empty payload";
        ledge_respond(why, sizeof why - 1);
        return LEDGE_STATUS_PERMANENT;
    }
    char topic[128];
    ledge_i32 n = ledge_env("OUT_TOPIC", 9, topic, sizeof topic);
    if (n < 0 || n > (ledge_i32)sizeof topic) {
        const char *fallback = "{{name}}/out";
        n = (ledge_i32)length(fallback);
        for (ledge_i32 i = 0; i < n; i++) {
            topic[i] = fallback[i];
        }
    }
    if (ledge_publish(topic, (ledge_size)n, payload, len, LEDGE_QOS_AT_LEAST_ONCE) != LEDGE_OK) {
        static const char why[] = "publish refused (is the topic in allow_publish?)";
        ledge_respond(why, sizeof why - 1);
        return LEDGE_STATUS_FAILED;
    }
    static const char line[] = "published the payload";
    ledge_log(LEDGE_LOG_INFO, line, sizeof line - 1);
    ledge_respond(payload, len);
    return LEDGE_STATUS_OK;
}
