// ledge.ts: the ledge_v1 guest ABI for AssemblyScript (docs/abi.md).
//
// GENERATED from src/runtime/contract.rs by tests/it/the_guest_abi/bindings.rs: do not edit; after changing the table run `LEDGE_BLESS=1 cargo test --test it the_guest_abi::bindings`.
//
// Build: asc assembly/index.ts --runtime incremental --exportRuntime=false -O3 \
//   --outFile f.wasm (env.abort and env.seed are provided by ledge).

// Return codes of the host calls
export const OK: i32 = 0; // done
export const ERR_DENIED: i32 = -1; // the function's config does not allow this
export const ERR_INVALID: i32 = -2; // an argument is malformed
export const ERR_TOO_LARGE: i32 = -3; // over max_payload (or MAX_RANDOM)
export const ERR_UNAVAILABLE: i32 = -4; // not possible now (queue full, no upstream, no GPIO)
export const ERR_LIMIT: i32 = -5; // the per-invocation budget for this call is spent
export const ERR_NOT_FOUND: i32 = -6; // no such key, field or GPIO line
export const ERR_THROTTLED: i32 = -7; // over the function's publish_rate; nothing was sent

// context string fields
export const FIELD_REQUEST_ID: i32 = 0; // unique id of this invocation (16 hex digits)
export const FIELD_FUNCTION_NAME: i32 = 1; // the function's name
export const FIELD_FUNCTION_VERSION: i32 = 2; // $LATEST, or the published version's number
export const FIELD_EVENT_SOURCE: i32 = 3; // mqtt, sensor, schedule or invoke
export const FIELD_EVENT_SUBJECT: i32 = 4; // the MQTT topic, sensor name or schedule
export const FIELD_DEVICE_ID: i32 = 5; // the gateway's [device] id

// context_int fields
export const INT_FIELD_REMAINING_MS: i32 = 0; // milliseconds left before the timeout
export const INT_FIELD_MEMORY_LIMIT: i32 = 1; // the linear-memory cap in bytes
export const INT_FIELD_RECEIVED_AT_MS: i32 = 2; // when ledge received the event, UNIX ms
export const INT_FIELD_ATTEMPT: i32 = 3; // 1 for the first attempt
export const INT_FIELD_DEADLINE_MS: i32 = 4; // the invocation's deadline, UNIX ms

// ledge_handle statuses
export const STATUS_OK: i32 = 0; // success: the response is what respond last set
export const STATUS_FAILED: i32 = 1; // failure, retried per the function's policy (any other non-zero value too)
export const STATUS_PERMANENT: i32 = 2; // failure that no retry can fix: goes straight to on_failure

// Flags, levels and limits
export const PUBLISH_RETAIN: i32 = 1; // publish_flags: the broker keeps the message for new subscribers
export const QOS_AT_MOST_ONCE: i32 = 0; // publish: QoS 0
export const QOS_AT_LEAST_ONCE: i32 = 1; // publish: QoS 1
export const QOS_EXACTLY_ONCE: i32 = 2; // publish: QoS 2
export const LOG_ERROR: i32 = 1; // log level
export const LOG_WARN: i32 = 2; // log level
export const LOG_INFO: i32 = 3; // log level
export const LOG_DEBUG: i32 = 4; // log level
export const LOG_TRACE: i32 = 5; // log level
export const MAX_RANDOM: i32 = 65536; // most bytes one random call fills

// Host functions. Pointers are into this module's memory; a length is in bytes.

// One log line (levels: 1 error, 2 warn, 3 info, 4 debug, 5 trace).
// @ts-ignore: decorator
@external("ledge_v1", "log")
export declare function log(level: i32, ptr: usize, len: usize): void;

// Best-effort publish to the local broker (QoS 0, 1 or 2); OK once queued.
// @ts-ignore: decorator
@external("ledge_v1", "publish")
export declare function publish(topic_ptr: usize, topic_len: usize, payload_ptr: usize, payload_len: usize, qos: i32): i32;

// publish with flags (PUBLISH_RETAIN); an unknown flag is ERR_INVALID.
// @ts-ignore: decorator
@external("ledge_v1", "publish_flags")
export declare function publish_flags(topic_ptr: usize, topic_len: usize, payload_ptr: usize, payload_len: usize, qos: i32, flags: i32): i32;

// Durable delivery upstream through the on-flash spool; OK once stored.
// @ts-ignore: decorator
@external("ledge_v1", "forward")
export declare function forward(topic_ptr: usize, topic_len: usize, payload_ptr: usize, payload_len: usize): i32;

// The function's env entry: returns its full length, copies what fits.
// @ts-ignore: decorator
@external("ledge_v1", "env")
export declare function env(key_ptr: usize, key_len: usize, buf_ptr: usize, buf_len: usize): i32;

// A string field (FIELD_*): returns its full length, copies what fits.
// @ts-ignore: decorator
@external("ledge_v1", "context")
export declare function context(field: i32, buf_ptr: usize, buf_len: usize): i32;

// An integer field (INT_FIELD_*); ERR_NOT_FOUND for an unknown one.
// @ts-ignore: decorator
@external("ledge_v1", "context_int")
export declare function context_int(field: i32): i64;

// Wall-clock time in milliseconds since the UNIX epoch.
// @ts-ignore: decorator
@external("ledge_v1", "now_ms")
export declare function now_ms(): i64;

// Fills the buffer with random bytes from the OS; ERR_TOO_LARGE above MAX_RANDOM.
// @ts-ignore: decorator
@external("ledge_v1", "random")
export declare function random(buf_ptr: usize, buf_len: usize): i32;

// Sets the response (or, with a failed status, the error message).
// @ts-ignore: decorator
@external("ledge_v1", "respond")
export declare function respond(ptr: usize, len: usize): i32;

// Sets a GPIO output in allow_gpio to 0 or 1 (logical).
// @ts-ignore: decorator
@external("ledge_v1", "gpio_write")
export declare function gpio_write(name_ptr: usize, name_len: usize, value: i32): i32;

// The logical value (0 or 1) of a GPIO line in allow_gpio.
// @ts-ignore: decorator
@external("ledge_v1", "gpio_read")
export declare function gpio_read(name_ptr: usize, name_len: usize): i32;
