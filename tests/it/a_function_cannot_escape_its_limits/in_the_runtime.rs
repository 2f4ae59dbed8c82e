//! A function cannot escape its limits: runaway loops, memory bombs, traps,
//! forbidden publishes, giant and non-UTF-8 output, and malformed modules
//! each fail only their own invocation (or their own load), with a clear
//! error. These run real wasm modules through the library's runtime.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common;
use ledge::config;
use ledge::event::{Event, EventSource};
use ledge::runtime::{Instance, Invocation, InvokeError, LoadedFunction, Runtime};
use ledge::sinks::capture::CaptureSink;

struct Setup {
    _dir: tempfile::TempDir,
    function: Result<LoadedFunction, String>,
    sink: Arc<CaptureSink>,
}

/// Loads fixture `name` as function `f` with extra config lines.
fn load(name: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), name);
    load_module(dir, &module, extra)
}

fn load_module(dir: tempfile::TempDir, module: &Path, extra: &str) -> Setup {
    let text = common::function_toml("f", module, extra);
    let path = common::write_config(dir.path(), &text);
    let plan = config::load(&path).unwrap();
    let runtime = Runtime::new(plan.broker.max_payload).unwrap();
    let function = runtime
        .load(plan.functions[0].clone())
        .map_err(|e| e.to_string());
    Setup {
        _dir: dir,
        function,
        sink: Arc::new(CaptureSink::default()),
    }
}

impl Setup {
    fn instance(&self) -> Instance {
        let function = self.function.as_ref().expect("module loads");
        Instance::new(function, self.sink.clone(), true, true).expect("instance starts")
    }
}

fn invocation(payload: &[u8]) -> Invocation {
    Invocation {
        request_id: "0123456789abcdef".to_owned(),
        event: Arc::new(Event::new(
            EventSource::Mqtt,
            "sensors/t1/reading",
            payload.to_vec(),
        )),
        attempt: 1,
    }
}

#[test]
fn a_runaway_loop_ends_as_a_timeout_soon_after_the_deadline() {
    let setup = load("loop", "timeout = \"100ms\"");
    let mut instance = setup.instance();
    let outcome = instance.invoke(&invocation(b""));
    assert_eq!(
        outcome.result,
        Err(InvokeError::Timeout(Duration::from_millis(100)))
    );
    assert!(
        outcome.duration >= Duration::from_millis(100),
        "{:?}",
        outcome.duration
    );
    // Slices are well under a millisecond here; 250 ms of slack absorbs a
    // loaded CI machine without hiding a timeout that does not fire.
    assert!(
        outcome.duration < Duration::from_millis(350),
        "{:?}",
        outcome.duration
    );
    assert!(outcome.result.as_ref().unwrap_err().poisons_instance());
}

#[test]
fn a_fuel_budget_stops_a_loop_before_the_timeout() {
    let setup = load("loop", "timeout = \"30s\"\nmax_fuel = 5000000");
    let outcome = setup.instance().invoke(&invocation(b""));
    assert_eq!(outcome.result, Err(InvokeError::FuelExhausted(5_000_000)));
    assert!(outcome.fuel_used <= 5_000_000 && outcome.fuel_used > 4_000_000);
}

#[test]
fn a_memory_bomb_fails_with_the_memory_limit() {
    let setup = load("bomb", "memory = \"1MiB\"");
    let outcome = setup.instance().invoke(&invocation(b""));
    assert_eq!(outcome.result, Err(InvokeError::MemoryLimit(1 << 20)));
    assert_eq!(
        outcome.result.unwrap_err().to_string(),
        "memory limit of 1048576 bytes exceeded"
    );
}

#[test]
fn a_trap_fails_the_invocation_and_names_the_trap() {
    let setup = load("trap", "");
    let outcome = setup.instance().invoke(&invocation(b""));
    match outcome.result {
        Err(InvokeError::Trap(message)) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_pointer_outside_guest_memory_traps_naming_the_host_call() {
    let setup = load("bad_pointer", "");
    let outcome = setup.instance().invoke(&invocation(b""));
    match outcome.result {
        Err(InvokeError::Trap(message)) => {
            assert!(
                message.contains("ledge_v1.log") && message.contains("65530..65630"),
                "{message}"
            )
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_fresh_instance_works_after_one_timed_out() {
    let setup = load("loop", "timeout = \"50ms\"");
    assert!(setup.instance().invoke(&invocation(b"")).result.is_err());
    let ok = load("ok", "");
    assert_eq!(
        ok.instance().invoke(&invocation(b"x")).result,
        Ok(Vec::new())
    );
}

#[test]
fn a_forbidden_publish_is_an_error_value_not_a_trap() {
    let setup = load("forbidden_publish", "allow_publish = [\"alerts/#\"]");
    let outcome = setup.instance().invoke(&invocation(b""));
    assert_eq!(outcome.result.as_deref(), Ok(&b"-1, 0"[..]));
    let published = setup.sink.take();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].topic, "alerts/ok");
}

#[test]
fn by_default_a_function_may_publish_nowhere() {
    let setup = load("forbidden_publish", "");
    let outcome = setup.instance().invoke(&invocation(b""));
    assert_eq!(outcome.result.as_deref(), Ok(&b"-1,-1"[..]));
    assert!(setup.sink.take().is_empty());
}

#[test]
fn a_giant_log_line_is_cut_and_excess_lines_are_dropped() {
    let setup = load("giant_log", "");
    let outcome = setup.instance().invoke(&invocation(b""));
    assert_eq!(outcome.result, Ok(Vec::new()));
    assert_eq!(outcome.logs.len(), 256);
    assert_eq!(outcome.logs_dropped, 301 - 256);
    let first = &outcome.logs[0].message;
    assert!(first.starts_with("AAAA"), "{}", &first[..16]);
    assert!(first.ends_with(&format!("…[truncated {} bytes]", (1 << 20) - (8 << 10))));
    assert_eq!(outcome.logs[1].message, "line");
}

#[test]
fn non_utf8_output_is_refused_as_a_topic_and_replaced_in_logs() {
    let setup = load("non_utf8", "allow_publish = [\"#\"]");
    let outcome = setup.instance().invoke(&invocation(b""));
    assert_eq!(outcome.result.as_deref(), Ok(&[0xff, 0xfe][..]));
    assert_eq!(outcome.logs[0].message, "\u{fffd}\u{fffd}");
    assert!(setup.sink.take().is_empty());
}

#[test]
fn a_module_without_the_handler_export_is_rejected_at_load_with_its_location() {
    let setup = load("missing_export", "");
    let err = setup.function.err().unwrap();
    assert!(err.contains("ledge.toml:3:10: function `f`"), "{err}");
    assert!(
        err.contains("missing export `ledge_handle` (expected a function (i32, i32) -> (i32))"),
        "{err}"
    );
}

#[test]
fn a_handler_with_the_wrong_signature_is_rejected_at_load() {
    let err = load("wrong_signature", "").function.err().unwrap();
    assert!(
        err.contains(
            "export `ledge_handle` has signature (i32) -> (i32), expected (i32, i32) -> (i32)"
        ),
        "{err}"
    );
}

#[test]
fn a_module_importing_wasi_is_rejected_naming_the_import() {
    let err = load("wasi_import", "").function.err().unwrap();
    assert!(
        err.contains("imports `wasi_snapshot_preview1.fd_write`, which ledge does not provide"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_wasm_is_rejected_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("garbage.wasm");
    std::fs::write(&module, b"\0asm but not really").unwrap();
    let err = load_module(dir, &module, "").function.err().unwrap();
    assert!(err.contains("is not valid WebAssembly"), "{err}");
}

#[test]
fn a_missing_module_is_rejected_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("nowhere.wasm");
    let err = load_module(dir, &module, "").function.err().unwrap();
    assert!(err.contains("nowhere.wasm does not exist"), "{err}");
}

#[test]
fn a_module_whose_initial_memory_exceeds_the_limit_fails_at_load() {
    // giant_log declares 17 pages (1.06 MiB) of initial memory.
    let err = load("giant_log", "memory = \"1MiB\"")
        .function
        .err()
        .unwrap();
    assert!(err.contains("instance failed to start"), "{err}");
}
