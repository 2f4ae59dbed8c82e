//! Warm invocation and instantiation cost of the wasm host, measured through
//! ledge's own library exactly as a dispatcher worker drives it.
//!
//! Run with `cargo bench --bench invoke` (or `benches/run.sh` for every
//! benchmark). It prints a human-readable line per case and a tab-separated
//! `result` line that `benches/run.sh` turns into the results table:
//!
//! ```text
//! result  <key>  <median>  <min>  <max>  <unit>  <note>
//! ```
//!
//! Every case runs `BATCHES` timed batches after a warm-up; a batch stops at
//! `MAX_CALLS` calls or `BATCH_TIME`, whichever comes first, so the whole
//! bench is bounded in count and in time. The median of the batches is the
//! figure; min and max show the spread on this shared, noisy machine.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledge::event::{Event, EventSource};
use ledge::runtime::{Instance, Invocation, LoadedFunction, Runtime};
use ledge::sinks::capture::CaptureSink;

/// Timed batches per case (an odd number, so the median is one batch).
const BATCHES: usize = 7;
/// Upper bound on calls in one batch.
const MAX_CALLS: u64 = 500_000;
/// Upper bound on the time of one batch.
const BATCH_TIME: Duration = Duration::from_millis(300);
/// Upper bound on the warm-up of one case.
const WARMUP_TIME: Duration = Duration::from_millis(100);
/// The clock is read once per this many calls, so reading it costs little.
const CHECK_EVERY: u64 = 32;

/// 30-byte readings: one above threshold-alert's threshold (30), one below.
const READING_ALERT: &[u8] = br#"{"value":31.25,"sensor":"t01"}"#;
const READING_QUIET: &[u8] = br#"{"value":21.25,"sensor":"t01"}"#;

/// The capturing sink is emptied this often, so it never grows large.
const DRAIN_SINK_EVERY: u64 = 1024;

/// Nanoseconds per call of each timed batch.
struct Stats {
    per_call_ns: Vec<f64>,
    calls: u64,
}

impl Stats {
    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.per_call_ns.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }
    fn median(&self) -> f64 {
        let sorted = self.sorted();
        sorted[sorted.len() / 2]
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no other arguments.
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let ok = load_function(dir.path(), "ok", &assemble(&repo, dir.path(), "ok"), "");
    let threshold = load_function(
        dir.path(),
        "threshold-alert",
        &repo.join("functions/dist/threshold-alert.wasm"),
        "env = { THRESHOLD = \"30\" }\nallow_publish = [\"alerts/#\"]",
    );

    println!(
        "warm invocation (Instance::invoke, one warm instance, capturing sink, logs not captured)"
    );
    let trivial = bench_invoke(&ok, b"x");
    report("invoke_trivial_us", "ok.wat, 1-byte payload", &trivial);
    let alert = bench_invoke(&threshold, READING_ALERT);
    report(
        "invoke_threshold_alert_us",
        "threshold-alert, 30-byte reading over the threshold (publishes an alert)",
        &alert,
    );
    let quiet = bench_invoke(&threshold, READING_QUIET);
    report(
        "invoke_threshold_quiet_us",
        "threshold-alert, 30-byte reading under the threshold (no alert)",
        &quiet,
    );

    let relay = load_function(
        dir.path(),
        "reading-relay",
        &repo.join("functions/dist/reading-relay.wasm"),
        "env = { THRESHOLD = \"30\" }\nallow_publish = [\"alerts/#\"]",
    );
    let relayed = bench_invoke(&relay, READING_ALERT);
    report(
        "invoke_reading_relay_us",
        "reading-relay (the MQTT benchmarks' job), 30-byte reading over the threshold (republishes)",
        &relayed,
    );

    println!("fresh instance (Instance::new with ledge_init, as after a trap)");
    let fresh_ok = bench_instantiate(&ok);
    report("instantiate_trivial_us", "ok.wat", &fresh_ok);
    let fresh_threshold = bench_instantiate(&threshold);
    report(
        "instantiate_threshold_alert_us",
        "threshold-alert",
        &fresh_threshold,
    );

    println!("per-event host work outside Instance::invoke");
    let ids = bench_loop(|| {
        black_box(ledge::dispatch::request_id::next());
    });
    report("request_id_us", "dispatch::request_id::next()", &ids);
}

/// Assembles `tests/fixtures/wat/<name>.wat` into the temporary directory.
fn assemble(repo: &Path, dir: &Path, name: &str) -> PathBuf {
    let source = repo.join(format!("tests/fixtures/wat/{name}.wat"));
    let wasm = wat::parse_file(&source).expect("the fixture assembles");
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).expect("write the assembled fixture");
    path
}

/// Loads one function through the config loader and the runtime, as
/// `ledge run` does.
fn load_function(dir: &Path, name: &str, module: &Path, extra: &str) -> LoadedFunction {
    let config = dir.join(format!("{name}.toml"));
    let text = format!(
        "[[function]]\nname = \"{name}\"\nmodule = \"{}\"\n{extra}\n",
        module.display()
    );
    std::fs::write(&config, text).expect("write the bench config");
    let plan = ledge::config::load(&config).unwrap_or_else(|e| panic!("bench config: {e}"));
    let runtime = Runtime::new(plan.broker.max_payload).expect("wasm runtime starts");
    let spec = plan.functions.into_iter().next().expect("one function");
    runtime
        .load(spec)
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

/// An instance publishing into `sink`. The library's own capturing sink
/// (one mutex and one push per publish, tens of nanoseconds) keeps this
/// bench independent of how sinks are wired into `Instance::new`.
fn new_instance(function: &LoadedFunction, sink: &Arc<CaptureSink>) -> Instance {
    Instance::new(function, Arc::clone(sink), false, true).expect("instance starts")
}

/// Warm calls on one instance with one payload.
fn bench_invoke(function: &LoadedFunction, payload: &[u8]) -> Stats {
    let sink = Arc::new(CaptureSink::default());
    let mut instance = new_instance(function, &sink);
    let invocation = Invocation {
        request_id: "0123456789abcdef".to_owned(),
        event: Arc::new(Event::new(
            EventSource::Mqtt,
            "sensors/t01/reading",
            payload.to_vec(),
        )),
        attempt: 1,
    };
    let first = instance.invoke(&invocation);
    if let Err(e) = &first.result {
        panic!("{} fails on the bench payload: {e}", function.spec.name);
    }
    println!(
        "  {}: {} fuel per call",
        function.spec.name, first.fuel_used
    );
    let (mut failures, mut calls) = (0u64, 0u64);
    let stats = bench_loop(|| {
        let outcome = instance.invoke(&invocation);
        failures += u64::from(outcome.result.is_err());
        black_box(outcome);
        calls += 1;
        if calls % DRAIN_SINK_EVERY == 0 {
            black_box(sink.take());
        }
    });
    assert_eq!(failures, 0, "{}: invocations failed", function.spec.name);
    stats
}

/// Fresh instances of one function, each dropped after creation.
fn bench_instantiate(function: &LoadedFunction) -> Stats {
    let sink = Arc::new(CaptureSink::default());
    bench_loop(|| {
        black_box(new_instance(function, &sink));
    })
}

/// Runs `call` for a warm-up, then `BATCHES` batches, each bounded by
/// `MAX_CALLS` and `BATCH_TIME`.
fn bench_loop(mut call: impl FnMut()) -> Stats {
    run_batch(&mut call, MAX_CALLS, WARMUP_TIME);
    let mut per_call_ns = Vec::with_capacity(BATCHES);
    let mut total = 0;
    for _ in 0..BATCHES {
        let (calls, elapsed) = run_batch(&mut call, MAX_CALLS, BATCH_TIME);
        per_call_ns.push(elapsed.as_nanos() as f64 / calls as f64);
        total += calls;
    }
    Stats {
        per_call_ns,
        calls: total,
    }
}

/// Calls `call` until `max_calls` or `max_time`; returns calls and time.
fn run_batch(call: &mut impl FnMut(), max_calls: u64, max_time: Duration) -> (u64, Duration) {
    let started = Instant::now();
    let mut calls = 0;
    while calls < max_calls {
        for _ in 0..CHECK_EVERY {
            call();
        }
        calls += CHECK_EVERY;
        if started.elapsed() >= max_time {
            break;
        }
    }
    (calls, started.elapsed())
}

/// One human line and one machine line (microseconds).
fn report(key: &str, what: &str, stats: &Stats) {
    let sorted = stats.sorted();
    let (median, min, max) = (
        stats.median() / 1e3,
        sorted[0] / 1e3,
        sorted[sorted.len() - 1] / 1e3,
    );
    println!(
        "  {what}: {median:.2} µs/call (min {min:.2}, max {max:.2} over {BATCHES} batches, {} calls)",
        stats.calls
    );
    println!("result\t{key}\t{median:.3}\t{min:.3}\t{max:.3}\tµs\t{what}");
}
