//! The `ledge_v1` guest contract as data: the imports with their
//! parameters, the return codes, the context fields, the handler statuses
//! and the toolchain imports ledge also accepts.
//!
//! This table is the one source for everything that states the contract:
//! the loader checks modules against it (names and signatures), and the
//! bindings in `functions/include/ledge.h`, `functions/assemblyscript/ledge.ts`
//! and `docs/abi-table.md` are rendered from it by `tests/it/the_guest_abi/bindings.rs`, which
//! fails when a committed file differs from what the table renders. No one
//! copies a signature by hand. The host functions themselves live in `abi`;
//! a unit test there instantiates a module importing every entry here with
//! the signature given here.

/// A wasm value type in an import's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmType {
    I32,
    I64,
    F64,
}

/// What a parameter means, which decides its type in C and AssemblyScript
/// (all of them are an `i32` or `i64` in wasm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A pointer to bytes the host reads.
    In,
    /// A pointer to a buffer the host writes.
    Out,
    /// A byte count.
    Len,
    /// A plain 32-bit integer.
    Int,
}

impl ParamKind {
    pub fn wasm(self) -> WasmType {
        WasmType::I32
    }
}

/// One parameter of an import.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamKind,
}

const fn p(name: &'static str, kind: ParamKind) -> Param {
    Param { name, kind }
}

use ParamKind::{In, Int, Len, Out};

/// One host function.
#[derive(Debug, Clone, Copy)]
pub struct Import {
    /// Its name in the import module.
    pub name: &'static str,
    pub params: &'static [Param],
    pub result: Option<WasmType>,
    /// One sentence for the bindings' comments.
    pub summary: &'static str,
}

impl Import {
    /// The wasm parameter types.
    pub fn param_types(&self) -> Vec<WasmType> {
        self.params.iter().map(|p| p.kind.wasm()).collect()
    }
}

/// The import module every host function lives in; the ABI version is in it.
pub const IMPORT_MODULE: &str = "ledge_v1";

/// The `ledge_v1` imports.
pub const IMPORTS: &[Import] = &[
    Import {
        name: "log",
        params: &[p("level", Int), p("ptr", In), p("len", Len)],
        result: None,
        summary: "One log line (levels: 1 error, 2 warn, 3 info, 4 debug, 5 trace).",
    },
    Import {
        name: "publish",
        params: &[
            p("topic_ptr", In),
            p("topic_len", Len),
            p("payload_ptr", In),
            p("payload_len", Len),
            p("qos", Int),
        ],
        result: Some(WasmType::I32),
        summary: "Best-effort publish to the local broker (QoS 0, 1 or 2); OK once queued.",
    },
    Import {
        name: "publish_flags",
        params: &[
            p("topic_ptr", In),
            p("topic_len", Len),
            p("payload_ptr", In),
            p("payload_len", Len),
            p("qos", Int),
            p("flags", Int),
        ],
        result: Some(WasmType::I32),
        summary: "publish with flags (PUBLISH_RETAIN); an unknown flag is ERR_INVALID.",
    },
    Import {
        name: "forward",
        params: &[
            p("topic_ptr", In),
            p("topic_len", Len),
            p("payload_ptr", In),
            p("payload_len", Len),
        ],
        result: Some(WasmType::I32),
        summary: "Durable delivery upstream through the on-flash spool; OK once stored.",
    },
    Import {
        name: "env",
        params: &[
            p("key_ptr", In),
            p("key_len", Len),
            p("buf_ptr", Out),
            p("buf_len", Len),
        ],
        result: Some(WasmType::I32),
        summary: "The function's env entry: returns its full length, copies what fits.",
    },
    Import {
        name: "context",
        params: &[p("field", Int), p("buf_ptr", Out), p("buf_len", Len)],
        result: Some(WasmType::I32),
        summary: "A string field (FIELD_*): returns its full length, copies what fits.",
    },
    Import {
        name: "context_int",
        params: &[p("field", Int)],
        result: Some(WasmType::I64),
        summary: "An integer field (INT_FIELD_*); ERR_NOT_FOUND for an unknown one.",
    },
    Import {
        name: "now_ms",
        params: &[],
        result: Some(WasmType::I64),
        summary: "Wall-clock time in milliseconds since the UNIX epoch.",
    },
    Import {
        name: "random",
        params: &[p("buf_ptr", Out), p("buf_len", Len)],
        result: Some(WasmType::I32),
        summary: "Fills the buffer with random bytes from the OS; ERR_TOO_LARGE above MAX_RANDOM.",
    },
    Import {
        name: "respond",
        params: &[p("ptr", In), p("len", Len)],
        result: Some(WasmType::I32),
        summary: "Sets the response (or, with a failed status, the error message).",
    },
    Import {
        name: "gpio_write",
        params: &[p("name_ptr", In), p("name_len", Len), p("value", Int)],
        result: Some(WasmType::I32),
        summary: "Sets a GPIO output in allow_gpio to 0 or 1 (logical).",
    },
    Import {
        name: "gpio_read",
        params: &[p("name_ptr", In), p("name_len", Len)],
        result: Some(WasmType::I32),
        summary: "The logical value (0 or 1) of a GPIO line in allow_gpio.",
    },
];

/// A named integer constant of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Constant {
    pub name: &'static str,
    pub value: i32,
    pub meaning: &'static str,
}

const fn c(name: &'static str, value: i32, meaning: &'static str) -> Constant {
    Constant {
        name,
        value,
        meaning,
    }
}

/// Return codes of the host calls.
pub const CODES: &[Constant] = &[
    c("OK", 0, "done"),
    c(
        "ERR_DENIED",
        -1,
        "the function's config does not allow this",
    ),
    c("ERR_INVALID", -2, "an argument is malformed"),
    c("ERR_TOO_LARGE", -3, "over max_payload (or MAX_RANDOM)"),
    c(
        "ERR_UNAVAILABLE",
        -4,
        "not possible now (queue full, no upstream, no GPIO)",
    ),
    c(
        "ERR_LIMIT",
        -5,
        "the per-invocation budget for this call is spent",
    ),
    c("ERR_NOT_FOUND", -6, "no such key, field or GPIO line"),
    c(
        "ERR_THROTTLED",
        -7,
        "over the function's publish_rate; nothing was sent",
    ),
];

/// `context` string fields.
pub const STRING_FIELDS: &[Constant] = &[
    c(
        "FIELD_REQUEST_ID",
        0,
        "unique id of this invocation (16 hex digits)",
    ),
    c("FIELD_FUNCTION_NAME", 1, "the function's name"),
    c(
        "FIELD_FUNCTION_VERSION",
        2,
        "$LATEST, or the published version's number",
    ),
    c("FIELD_EVENT_SOURCE", 3, "mqtt, sensor, schedule or invoke"),
    c(
        "FIELD_EVENT_SUBJECT",
        4,
        "the MQTT topic, sensor name or schedule",
    ),
    c("FIELD_DEVICE_ID", 5, "the gateway's [device] id"),
];

/// `context_int` fields.
pub const INT_FIELDS: &[Constant] = &[
    c(
        "INT_FIELD_REMAINING_MS",
        0,
        "milliseconds left before the timeout",
    ),
    c(
        "INT_FIELD_MEMORY_LIMIT",
        1,
        "the linear-memory cap in bytes",
    ),
    c(
        "INT_FIELD_RECEIVED_AT_MS",
        2,
        "when ledge received the event, UNIX ms",
    ),
    c("INT_FIELD_ATTEMPT", 3, "1 for the first attempt"),
    c(
        "INT_FIELD_DEADLINE_MS",
        4,
        "the invocation's deadline, UNIX ms",
    ),
];

/// What `ledge_handle` (and `ledge_init`) return.
pub const STATUSES: &[Constant] = &[
    c(
        "STATUS_OK",
        0,
        "success: the response is what respond last set",
    ),
    c(
        "STATUS_FAILED",
        1,
        "failure, retried per the function's policy (any other non-zero value too)",
    ),
    c(
        "STATUS_PERMANENT",
        2,
        "failure that no retry can fix: goes straight to on_failure",
    ),
];

/// Other constants: flags, levels and limits.
pub const OTHER: &[Constant] = &[
    c(
        "PUBLISH_RETAIN",
        1,
        "publish_flags: the broker keeps the message for new subscribers",
    ),
    c("QOS_AT_MOST_ONCE", 0, "publish: QoS 0"),
    c("QOS_AT_LEAST_ONCE", 1, "publish: QoS 1"),
    c("QOS_EXACTLY_ONCE", 2, "publish: QoS 2"),
    c("LOG_ERROR", 1, "log level"),
    c("LOG_WARN", 2, "log level"),
    c("LOG_INFO", 3, "log level"),
    c("LOG_DEBUG", 4, "log level"),
    c("LOG_TRACE", 5, "log level"),
    c("MAX_RANDOM", 65536, "most bytes one random call fills"),
];

/// Looks a constant up by name in every table; for the host's own use, so
/// the host and the bindings cannot disagree on a number.
pub const fn constant(name: &str) -> i32 {
    let tables: [&[Constant]; 5] = [CODES, STRING_FIELDS, INT_FIELDS, STATUSES, OTHER];
    let mut t = 0;
    while t < tables.len() {
        let table = tables[t];
        let mut i = 0;
        while i < table.len() {
            if str_eq(table[i].name, name) {
                return table[i].value;
            }
            i += 1;
        }
        t += 1;
    }
    panic!("no such constant in the ledge_v1 contract")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// An import from outside `ledge_v1` that a common toolchain emits on its
/// own, which ledge provides so such modules load unchanged.
#[derive(Debug, Clone, Copy)]
pub struct ToolchainImport {
    pub module: &'static str,
    pub name: &'static str,
    pub params: &'static [WasmType],
    pub result: Option<WasmType>,
    pub summary: &'static str,
}

pub const TOOLCHAIN_IMPORTS: &[ToolchainImport] = &[
    ToolchainImport {
        module: "env",
        name: "abort",
        params: &[WasmType::I32, WasmType::I32, WasmType::I32, WasmType::I32],
        result: None,
        summary: "AssemblyScript's abort(message, file, line, column): traps the invocation with the decoded message and location",
    },
    ToolchainImport {
        module: "env",
        name: "seed",
        params: &[],
        result: Some(WasmType::F64),
        summary: "AssemblyScript's seed for Math.random: random bits from the OS",
    },
];

/// Import modules of WASI, which ledge does not provide.
pub const WASI_MODULES: &[&str] = &["wasi_snapshot_preview1", "wasi_unstable", "wasi"];

/// The exports the host calls: (name, params, results, required).
pub const EXPORTS: &[(&str, &[WasmType], &[WasmType], bool)] = &[
    ("ledge_alloc", &[WasmType::I32], &[WasmType::I32], true),
    (
        "ledge_handle",
        &[WasmType::I32, WasmType::I32],
        &[WasmType::I32],
        true,
    ),
    ("ledge_init", &[], &[WasmType::I32], false),
];

/// The wasm proposals a module may use beyond the MVP. Set explicitly on
/// the engine, so a wasmi upgrade cannot change what loads; docs/abi.md
/// lists the same.
pub const WASM_FEATURES: &[&str] = &[
    "mutable-global",
    "multi-value",
    "sign-extension",
    "saturating-float-to-int",
    "bulk-memory",
    "reference-types",
    "tail-call",
    "extended-const",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_unique_within_their_table() {
        for table in [CODES, STRING_FIELDS, INT_FIELDS, STATUSES] {
            for (i, a) in table.iter().enumerate() {
                for b in &table[i + 1..] {
                    assert_ne!(a.value, b.value, "{} and {}", a.name, b.name);
                    assert_ne!(a.name, b.name);
                }
            }
        }
        assert_eq!(constant("ERR_NOT_FOUND"), -6);
        assert_eq!(constant("FIELD_DEVICE_ID"), 5);
    }

    #[test]
    fn import_names_are_unique() {
        for (i, a) in IMPORTS.iter().enumerate() {
            assert!(
                IMPORTS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
    }
}
