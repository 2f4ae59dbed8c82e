/* ledge.h: the ledge_v1 guest ABI for C (docs/abi.md).
 *
 * GENERATED from src/runtime/contract.rs by tests/it/the_guest_abi/bindings.rs: do not edit; after changing the table run `LEDGE_BLESS=1 cargo test --test it the_guest_abi::bindings`.
 *
 * Build: clang --target=wasm32 -nostdlib -O2 -mbulk-memory -Ifunctions/include \
 *   -Wl,--no-entry -Wl,-z,stack-size=65536 -o f.wasm f.c
 */
#ifndef LEDGE_H
#define LEDGE_H

/* No libc needed: the compiler's own fixed-width types. */
typedef __INT32_TYPE__ ledge_i32;
typedef __INT64_TYPE__ ledge_i64;
typedef __SIZE_TYPE__ ledge_size;

/* Return codes of the host calls */
#define LEDGE_OK (0) /* done */
#define LEDGE_ERR_DENIED (-1) /* the function's config does not allow this */
#define LEDGE_ERR_INVALID (-2) /* an argument is malformed */
#define LEDGE_ERR_TOO_LARGE (-3) /* over max_payload (or MAX_RANDOM) */
#define LEDGE_ERR_UNAVAILABLE (-4) /* not possible now (queue full, no upstream, no GPIO) */
#define LEDGE_ERR_LIMIT (-5) /* the per-invocation budget for this call is spent */
#define LEDGE_ERR_NOT_FOUND (-6) /* no such key, field or GPIO line */
#define LEDGE_ERR_THROTTLED (-7) /* over the function's publish_rate; nothing was sent */

/* context string fields */
#define LEDGE_FIELD_REQUEST_ID (0) /* unique id of this invocation (16 hex digits) */
#define LEDGE_FIELD_FUNCTION_NAME (1) /* the function's name */
#define LEDGE_FIELD_FUNCTION_VERSION (2) /* $LATEST, or the published version's number */
#define LEDGE_FIELD_EVENT_SOURCE (3) /* mqtt, sensor, schedule or invoke */
#define LEDGE_FIELD_EVENT_SUBJECT (4) /* the MQTT topic, sensor name or schedule */
#define LEDGE_FIELD_DEVICE_ID (5) /* the gateway's [device] id */

/* context_int fields */
#define LEDGE_INT_FIELD_REMAINING_MS (0) /* milliseconds left before the timeout */
#define LEDGE_INT_FIELD_MEMORY_LIMIT (1) /* the linear-memory cap in bytes */
#define LEDGE_INT_FIELD_RECEIVED_AT_MS (2) /* when ledge received the event, UNIX ms */
#define LEDGE_INT_FIELD_ATTEMPT (3) /* 1 for the first attempt */
#define LEDGE_INT_FIELD_DEADLINE_MS (4) /* the invocation's deadline, UNIX ms */

/* ledge_handle statuses */
#define LEDGE_STATUS_OK (0) /* success: the response is what respond last set */
#define LEDGE_STATUS_FAILED (1) /* failure, retried per the function's policy (any other non-zero value too) */
#define LEDGE_STATUS_PERMANENT (2) /* failure that no retry can fix: goes straight to on_failure */

/* Flags, levels and limits */
#define LEDGE_PUBLISH_RETAIN (1) /* publish_flags: the broker keeps the message for new subscribers */
#define LEDGE_QOS_AT_MOST_ONCE (0) /* publish: QoS 0 */
#define LEDGE_QOS_AT_LEAST_ONCE (1) /* publish: QoS 1 */
#define LEDGE_QOS_EXACTLY_ONCE (2) /* publish: QoS 2 */
#define LEDGE_LOG_ERROR (1) /* log level */
#define LEDGE_LOG_WARN (2) /* log level */
#define LEDGE_LOG_INFO (3) /* log level */
#define LEDGE_LOG_DEBUG (4) /* log level */
#define LEDGE_LOG_TRACE (5) /* log level */
#define LEDGE_MAX_RANDOM (65536) /* most bytes one random call fills */

#define LEDGE_IMPORT(name) __attribute__((import_module("ledge_v1"), import_name(name)))
#define LEDGE_EXPORT(name) __attribute__((export_name(name)))

/* Host functions. Pointers are into this module's memory; a length is in bytes. */
/* One log line (levels: 1 error, 2 warn, 3 info, 4 debug, 5 trace). */
LEDGE_IMPORT("log") void ledge_log(ledge_i32 level, const void *ptr, ledge_size len);
/* Best-effort publish to the local broker (QoS 0, 1 or 2); OK once queued. */
LEDGE_IMPORT("publish") ledge_i32 ledge_publish(const void *topic_ptr, ledge_size topic_len, const void *payload_ptr, ledge_size payload_len, ledge_i32 qos);
/* publish with flags (PUBLISH_RETAIN); an unknown flag is ERR_INVALID. */
LEDGE_IMPORT("publish_flags") ledge_i32 ledge_publish_flags(const void *topic_ptr, ledge_size topic_len, const void *payload_ptr, ledge_size payload_len, ledge_i32 qos, ledge_i32 flags);
/* Durable delivery upstream through the on-flash spool; OK once stored. */
LEDGE_IMPORT("forward") ledge_i32 ledge_forward(const void *topic_ptr, ledge_size topic_len, const void *payload_ptr, ledge_size payload_len);
/* The function's env entry: returns its full length, copies what fits. */
LEDGE_IMPORT("env") ledge_i32 ledge_env(const void *key_ptr, ledge_size key_len, void *buf_ptr, ledge_size buf_len);
/* A string field (FIELD_*): returns its full length, copies what fits. */
LEDGE_IMPORT("context") ledge_i32 ledge_context(ledge_i32 field, void *buf_ptr, ledge_size buf_len);
/* An integer field (INT_FIELD_*); ERR_NOT_FOUND for an unknown one. */
LEDGE_IMPORT("context_int") ledge_i64 ledge_context_int(ledge_i32 field);
/* Wall-clock time in milliseconds since the UNIX epoch. */
LEDGE_IMPORT("now_ms") ledge_i64 ledge_now_ms(void);
/* Fills the buffer with random bytes from the OS; ERR_TOO_LARGE above MAX_RANDOM. */
LEDGE_IMPORT("random") ledge_i32 ledge_random(void *buf_ptr, ledge_size buf_len);
/* Sets the response (or, with a failed status, the error message). */
LEDGE_IMPORT("respond") ledge_i32 ledge_respond(const void *ptr, ledge_size len);
/* Sets a GPIO output in allow_gpio to 0 or 1 (logical). */
LEDGE_IMPORT("gpio_write") ledge_i32 ledge_gpio_write(const void *name_ptr, ledge_size name_len, ledge_i32 value);
/* The logical value (0 or 1) of a GPIO line in allow_gpio. */
LEDGE_IMPORT("gpio_read") ledge_i32 ledge_gpio_read(const void *name_ptr, ledge_size name_len);

/* What the module defines (ledge_init is optional). */
LEDGE_EXPORT("ledge_alloc") void *ledge_alloc(ledge_size len);
LEDGE_EXPORT("ledge_handle") ledge_i32 ledge_handle(void *ptr, ledge_size len);
LEDGE_EXPORT("ledge_init") ledge_i32 ledge_init(void);

#endif /* LEDGE_H */
