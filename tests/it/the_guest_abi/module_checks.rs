//! What a module may contain: the wasm features accepted, the imports ledge
//! provides (its own and the ones toolchains emit), and what start code may
//! do. Each check fails at load with a message that says what to change.

use std::sync::Arc;

use crate::common;

use ledge::config;
use ledge::event::{Event, EventSource};
use ledge::runtime::{Instance, Invocation, InvokeError, LoadedFunction, Runtime};
use ledge::sinks::capture::CaptureSink;

/// Loads fixture `name`; the load error as text if it fails.
fn load(name: &str) -> (tempfile::TempDir, Result<LoadedFunction, String>) {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), name);
    let text = common::function_toml("f", &module, "");
    let plan = config::load(&common::write_config(dir.path(), &text)).unwrap();
    let runtime = Runtime::new(plan.broker.max_payload).unwrap();
    let loaded = runtime
        .load(plan.functions[0].clone())
        .map_err(|e| e.to_string());
    (dir, loaded)
}

fn load_error(name: &str) -> String {
    match load(name).1 {
        Ok(_) => panic!("{name} loaded, but it must be rejected"),
        Err(e) => e,
    }
}

fn invoke(function: &LoadedFunction, payload: &[u8]) -> Result<Vec<u8>, InvokeError> {
    let mut instance =
        Instance::new(function, Arc::new(CaptureSink::default()), true, true).unwrap();
    let invocation = Invocation {
        request_id: "0123456789abcdef".to_owned(),
        event: Arc::new(Event::new(EventSource::Invoke, "", payload.to_vec())),
        attempt: 1,
    };
    instance.invoke(&invocation).result
}

#[test]
fn simd_multi_memory_and_memory64_are_rejected_at_load() {
    for (fixture, wanted) in [
        ("feature_simd", "SIMD"),
        ("feature_multi_memory", "multiple memories"),
        ("feature_memory64", "memory64"),
    ] {
        let err = load_error(fixture);
        assert!(
            err.contains("is not valid WebAssembly") && err.contains(wanted),
            "{fixture}: {err}"
        );
    }
}

#[test]
fn tail_calls_and_reference_types_load_and_run() {
    let (_dir, loaded) = load("feature_tail_call");
    let function = loaded.expect("tail calls and reference types are accepted");
    assert_eq!(invoke(&function, b"").unwrap(), b"7");
}

#[test]
fn assemblyscript_abort_traps_with_the_decoded_message_and_location() {
    let (_dir, loaded) = load("as_toolchain");
    let function = loaded.expect("env.abort and env.seed are provided");
    match invoke(&function, b"a") {
        Err(InvokeError::Trap(message)) => assert!(
            message.contains("abort: value too big: ✗ at assembly/index.ts:7:3"),
            "{message}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    match invoke(&function, b"n") {
        Err(InvokeError::Trap(message)) => {
            assert!(message.contains("abort: (no message)"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn assemblyscript_seed_is_random() {
    let (_dir, loaded) = load("as_toolchain");
    let function = loaded.unwrap();
    let seed = |_| {
        let bytes: [u8; 8] = invoke(&function, b"s").unwrap().try_into().unwrap();
        f64::from_le_bytes(bytes)
    };
    let seeds: Vec<f64> = (0..3).map(seed).collect();
    assert!(
        seeds.iter().all(|s| s.is_finite() && *s >= 1.0),
        "{seeds:?}"
    );
    assert!(seeds[0] != seeds[1] || seeds[1] != seeds[2], "{seeds:?}");
}

#[test]
fn a_wasi_module_is_rejected_naming_every_wasi_import() {
    let err = load_error("wasi_many");
    for wanted in [
        "`wasi_snapshot_preview1.fd_write`",
        "`wasi_snapshot_preview1.proc_exit`",
        "which ledge does not provide",
        "WASI",
        "wasm32-unknown-unknown",
    ] {
        assert!(err.contains(wanted), "{wanted}: {err}");
    }
}

#[test]
fn an_import_with_the_wrong_signature_names_both_signatures() {
    let err = load_error("wrong_import_signature");
    assert!(
        err.contains(
            "imports `ledge_v1.log` as (i32, i32) -> (), but ledge provides (i32, i32, i32) -> ()"
        ),
        "{err}"
    );
}

#[test]
fn start_code_calling_ledge_fails_the_load_saying_so() {
    let err = load_error("start_calls_ledge");
    assert!(
        err.contains("ledge_v1.now_ms") && err.contains("start function, which cannot call ledge"),
        "{err}"
    );
}

#[test]
fn a_trap_names_the_function_it_happened_in_when_the_module_has_names() {
    let (_dir, loaded) = load("trap_named");
    let function = loaded.unwrap();
    let trap = |payload: &[u8]| match invoke(&function, payload) {
        Err(InvokeError::Trap(message)) => message,
        other => panic!("expected a trap, got {other:?}"),
    };
    let parse = trap(b"u");
    assert!(
        parse.contains("unreachable") && parse.ends_with("(in function `parse`)"),
        "{parse}"
    );
    let divide = trap(b"z");
    assert!(
        divide.contains("divi") && divide.ends_with("(in function `divide`)"),
        "{divide}"
    );
    let host = trap(b"p");
    assert!(
        host.contains("ledge_v1.log") && host.ends_with("(in function `log_it`)"),
        "{host}"
    );
    // The rewrite changes nothing else.
    assert_eq!(invoke(&function, b"o").unwrap(), b"ok");
}

#[test]
fn a_trap_in_a_module_without_names_says_only_what_happened() {
    let (_dir, loaded) = load("trap");
    match invoke(&loaded.unwrap(), b"") {
        Err(InvokeError::Trap(message)) => {
            assert!(
                message.contains("unreachable") && !message.contains("in function"),
                "{message}"
            )
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}
