//! The host side of guest ABI v1 (docs/abi.md): the `ledge_v1` imports and
//! the per-store state they read and write.
//!
//! Host calls never trap for a *policy* problem (a denied topic, an oversized
//! payload): those are negative return codes the guest can handle, plus a
//! warning in the log. They trap only for a guest *bug*: a pointer/length
//! pair outside the guest's memory.
//!
//! - `host_state`: what a store knows (the function's settings, its sinks,
//!   the invocation in progress) and what each import does with it.
//! - `host_call`: what every host call shares: reading guest memory,
//!   charging work to fuel, the deadline.
//! - `toolchain`: imports compilers emit on their own (AssemblyScript).
//!
//! This file registers the `ledge_v1` imports on the linker.

use wasmi::{Caller, Linker};

use super::contract;

mod host_call;
mod host_state;
mod toolchain;

pub use super::log_budget::{MAX_LOG_LINE, MAX_LOG_LINES};
use host_call::{
    check_deadline, copy_out, fill_random, guest_slice, guest_slice_mut, memory_of, settle,
    HostResult,
};
pub use host_state::{CallState, HostState, LogLine};

use crate::event::unix_ms;

/// Name of the import module; the ABI version lives in it.
pub const IMPORT_MODULE: &str = contract::IMPORT_MODULE;

pub const OK: i32 = contract::constant("OK");
pub const ERR_DENIED: i32 = contract::constant("ERR_DENIED");
pub const ERR_INVALID: i32 = contract::constant("ERR_INVALID");
pub const ERR_TOO_LARGE: i32 = contract::constant("ERR_TOO_LARGE");
pub const ERR_UNAVAILABLE: i32 = contract::constant("ERR_UNAVAILABLE");
pub const ERR_LIMIT: i32 = contract::constant("ERR_LIMIT");
pub const ERR_NOT_FOUND: i32 = contract::constant("ERR_NOT_FOUND");
pub const ERR_THROTTLED: i32 = contract::constant("ERR_THROTTLED");

/// `context` string fields.
pub const FIELD_REQUEST_ID: i32 = contract::constant("FIELD_REQUEST_ID");
pub const FIELD_FUNCTION_NAME: i32 = contract::constant("FIELD_FUNCTION_NAME");
pub const FIELD_FUNCTION_VERSION: i32 = contract::constant("FIELD_FUNCTION_VERSION");
pub const FIELD_EVENT_SOURCE: i32 = contract::constant("FIELD_EVENT_SOURCE");
pub const FIELD_EVENT_SUBJECT: i32 = contract::constant("FIELD_EVENT_SUBJECT");
pub const FIELD_DEVICE_ID: i32 = contract::constant("FIELD_DEVICE_ID");

/// `context_int` fields.
pub const FIELD_REMAINING_MS: i32 = contract::constant("INT_FIELD_REMAINING_MS");
pub const FIELD_MEMORY_LIMIT: i32 = contract::constant("INT_FIELD_MEMORY_LIMIT");
pub const FIELD_RECEIVED_AT_MS: i32 = contract::constant("INT_FIELD_RECEIVED_AT_MS");
pub const FIELD_ATTEMPT: i32 = contract::constant("INT_FIELD_ATTEMPT");
pub const FIELD_DEADLINE_MS: i32 = contract::constant("INT_FIELD_DEADLINE_MS");

/// `publish_flags` flags.
pub const PUBLISH_RETAIN: i32 = contract::constant("PUBLISH_RETAIN");
/// Most bytes one `random` call fills.
pub const MAX_RANDOM: usize = contract::constant("MAX_RANDOM") as usize;

/// Publishes accepted per invocation.
pub const MAX_PUBLISHES: u32 = 1000;
/// GPIO writes accepted per invocation: a relay is not a PWM channel, and a
/// function toggling a line in a loop is a bug.
pub const MAX_GPIO_WRITES: u32 = 1000;

/// The host error that stops a guest whose deadline passed during a host
/// call; the invocation loop turns it into a timeout.
#[derive(Debug)]
pub struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the invocation's deadline passed during a host call")
    }
}

impl wasmi::errors::HostError for DeadlinePassed {}

/// Work of matching `topic` against a function's filters, in bytes.
fn matching_work(topic_len: usize, filters: usize) -> usize {
    topic_len.saturating_mul(filters.max(1))
}

/// Registers every `ledge_v1` import on `linker`.
pub fn define_imports(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        IMPORT_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> HostResult<()> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "log")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let text = guest_slice(data, ptr, len, "log")?;
            state.log(level, text);
            settle(&mut caller, text_work(len, MAX_LOG_LINE))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "publish",
        |caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32,
         qos: i32|
         -> HostResult<i32> {
            let message = (topic_ptr, topic_len, payload_ptr, payload_len);
            publish_call(caller, "publish", message, qos, 0)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "publish_flags",
        |caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32,
         qos: i32,
         flags: i32|
         -> HostResult<i32> {
            let message = (topic_ptr, topic_len, payload_ptr, payload_len);
            publish_call(caller, "publish_flags", message, qos, flags)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "forward",
        |mut caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         payload_ptr: i32,
         payload_len: i32|
         -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "forward")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let topic = guest_slice(data, topic_ptr, topic_len, "forward")?;
            let payload = guest_slice(data, payload_ptr, payload_len, "forward")?;
            let work = matching_work(topic.len(), state.spec.allow_forward.len()) + payload.len();
            let code = state.forward(topic, payload);
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "env",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         buf_ptr: i32,
         buf_len: i32|
         -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "env")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let key = String::from_utf8_lossy(guest_slice(data, key_ptr, key_len, "env")?);
            let work = key.len();
            let code = match state.spec.env_value(key.as_ref()) {
                None => ERR_NOT_FOUND,
                Some(value) => {
                    let buffer = guest_slice_mut(data, buf_ptr, buf_len, "env")?;
                    copy_out(buffer, value.as_bytes())
                }
            };
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "context",
        |mut caller: Caller<'_, HostState>,
         field: i32,
         buf_ptr: i32,
         buf_len: i32|
         -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "context")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let code = match state.string_field(field) {
                None => ERR_NOT_FOUND,
                Some(value) => {
                    let buffer = guest_slice_mut(data, buf_ptr, buf_len, "context")?;
                    copy_out(buffer, value.as_bytes())
                }
            };
            settle(&mut caller, 0)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "context_int",
        |mut caller: Caller<'_, HostState>, field: i32| -> HostResult<i64> {
            memory_of(&caller, "context_int")?;
            let value = caller.data().int_field(field);
            settle(&mut caller, 0)?;
            Ok(value)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "gpio_write",
        |mut caller: Caller<'_, HostState>,
         name_ptr: i32,
         name_len: i32,
         value: i32|
         -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "gpio_write")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let name = guest_slice(data, name_ptr, name_len, "gpio_write")?;
            let work = matching_work(name.len(), state.spec.allow_gpio.len());
            let code = state.gpio_write(name, value);
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "gpio_read",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32| -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "gpio_read")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let name = guest_slice(data, name_ptr, name_len, "gpio_read")?;
            let work = matching_work(name.len(), state.spec.allow_gpio.len());
            let code = state.gpio_read(name);
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "now_ms",
        |mut caller: Caller<'_, HostState>| -> HostResult<i64> {
            memory_of(&caller, "now_ms")?;
            settle(&mut caller, 0)?;
            Ok(unix_ms() as i64)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "random",
        |mut caller: Caller<'_, HostState>, buf_ptr: i32, buf_len: i32| -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "random")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let buffer = guest_slice_mut(data, buf_ptr, buf_len, "random")?;
            let work = buffer.len().min(MAX_RANDOM);
            let code = if buffer.len() > MAX_RANDOM {
                let reason = format!(
                    "random({} bytes) refused: at most {MAX_RANDOM} bytes a call",
                    buffer.len()
                );
                state.refuse(ERR_TOO_LARGE, &reason)
            } else {
                match fill_random(buffer) {
                    Ok(()) => OK,
                    Err(()) => state.refuse(ERR_UNAVAILABLE, "random: the OS gave no random bytes"),
                }
            };
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "respond",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> HostResult<i32> {
            check_deadline(caller.data())?;
            let memory = memory_of(&caller, "respond")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let bytes = guest_slice(data, ptr, len, "respond")?;
            let work = bytes.len();
            let code = if bytes.len() > state.max_payload {
                state.refuse(ERR_TOO_LARGE, "response is over max_payload")
            } else {
                state.call.response.clear();
                state.call.response.extend_from_slice(bytes);
                OK
            };
            settle(&mut caller, work)?;
            Ok(code)
        },
    )?;
    toolchain::define_imports(linker)
}

/// The `publish` and `publish_flags` imports: `message` is (topic ptr,
/// topic len, payload ptr, payload len).
fn publish_call(
    mut caller: Caller<'_, HostState>,
    call: &str,
    (topic_ptr, topic_len, payload_ptr, payload_len): (i32, i32, i32, i32),
    qos: i32,
    flags: i32,
) -> HostResult<i32> {
    check_deadline(caller.data())?;
    let memory = memory_of(&caller, call)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let topic = guest_slice(data, topic_ptr, topic_len, call)?;
    let payload = guest_slice(data, payload_ptr, payload_len, call)?;
    let work = matching_work(topic.len(), state.spec.allow_publish.len()) + payload.len();
    let code = state.publish(topic, payload, qos, flags);
    settle(&mut caller, work)?;
    Ok(code)
}

/// The bytes of a text the host reads at most `max` of (plus a margin for
/// redaction), of `len` the guest passed.
fn text_work(len: i32, max: usize) -> usize {
    (len as u32 as usize).min(max.saturating_mul(2))
}

#[cfg(test)]
mod tests {
    use super::host_state::is_invoke_topic;
    use super::toolchain::as_string;
    use super::*;

    #[test]
    fn guest_slices_outside_memory_trap_with_the_call_name() {
        let memory = [0u8; 16];
        assert_eq!(guest_slice(&memory, 4, 4, "log").unwrap(), &[0; 4]);
        let err = guest_slice(&memory, 10, 10, "publish")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ledge_v1.publish") && err.contains("10..20"),
            "{err}"
        );
        // Negative i32s are huge unsigned offsets, never wrap-around reads.
        assert!(guest_slice(&memory, -1, 2, "log").is_err());
    }

    #[test]
    fn copy_out_reports_the_full_length_and_copies_what_fits() {
        let mut buffer = [0u8; 3];
        assert_eq!(copy_out(&mut buffer, b"hello"), 5);
        assert_eq!(&buffer, b"hel");
        assert_eq!(copy_out(&mut [], b"hello"), 5);
    }

    /// The linker provides every import of the contract table with the
    /// table's signature (the loader and the bindings trust the table).
    #[test]
    fn the_linker_matches_the_contract_table() {
        use super::super::contract::{self, WasmType};
        let ty = |t: &WasmType| match t {
            WasmType::I32 => "i32",
            WasmType::I64 => "i64",
            WasmType::F64 => "f64",
        };
        let mut imports = String::new();
        let mut all: Vec<(&str, &str, Vec<WasmType>, Option<WasmType>)> = contract::IMPORTS
            .iter()
            .map(|i| (contract::IMPORT_MODULE, i.name, i.param_types(), i.result))
            .collect();
        all.extend(
            contract::TOOLCHAIN_IMPORTS
                .iter()
                .map(|i| (i.module, i.name, i.params.to_vec(), i.result)),
        );
        for (module, name, params, result) in &all {
            let params: Vec<&str> = params.iter().map(ty).collect();
            let result = result.as_ref().map(|r| format!("(result {})", ty(r)));
            imports.push_str(&format!(
                "(import \"{module}\" \"{name}\" (func (param {}) {}))\n",
                params.join(" "),
                result.unwrap_or_default()
            ));
        }
        let text = format!(
            "(module {imports} (memory (export \"memory\") 1)
               (func (export \"ledge_alloc\") (param i32) (result i32) (i32.const 0))
               (func (export \"ledge_handle\") (param i32 i32) (result i32) (i32.const 0)))"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.wasm");
        std::fs::write(&path, wat::parse_str(&text).unwrap()).unwrap();
        let config = dir.path().join("ledge.toml");
        std::fs::write(
            &config,
            format!(
                "[[function]]\nname = \"all\"\nmodule = \"{}\"\n",
                path.display()
            ),
        )
        .unwrap();
        let plan = crate::config::load(&config).unwrap();
        let runtime = crate::runtime::Runtime::new(plan.broker.max_payload).unwrap();
        if let Err(e) = runtime.load(plan.functions[0].clone()) {
            panic!("a module importing the whole contract does not load: {e}");
        }
    }

    #[test]
    fn assemblyscript_strings_decode_from_utf16_with_their_length_header() {
        let mut memory = vec![0u8; 64];
        memory[8..12].copy_from_slice(&6u32.to_le_bytes());
        for (i, unit) in "hé!".encode_utf16().enumerate() {
            memory[12 + 2 * i..14 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(as_string(&memory, 12).as_deref(), Some("hé!"));
        assert_eq!(as_string(&memory, 0), None, "null");
        assert_eq!(as_string(&memory, 2), None, "no room for the header");
        memory[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(
            as_string(&memory, 12),
            None,
            "length past the end of memory"
        );
    }

    #[test]
    fn requests_are_recognised_on_any_device_and_nowhere_else() {
        assert!(is_invoke_topic("ledge/gw7/invoke/echo"));
        assert!(is_invoke_topic("ledge/other/invoke/x"));
        assert!(!is_invoke_topic("ledge/gw7/invoke"));
        assert!(!is_invoke_topic("ledge/gw7/invoke/echo/more"));
        assert!(!is_invoke_topic("ledgex/gw7/invoke/echo"));
    }
}
