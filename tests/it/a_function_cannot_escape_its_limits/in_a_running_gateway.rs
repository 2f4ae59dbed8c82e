//! Misbehaving and hostile functions against the real `ledge` binary: a
//! runaway times out while another function keeps serving; memory bombs,
//! traps and forbidden publishes fail only their own invocation; a function
//! gets the memory it was configured with, cannot outrun its timeout with
//! slow host calls, cannot flood ledge's log, cannot make ledge publish
//! where it may not; and a module that cannot start disables exactly its
//! own function.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::broker::{Message, TestClient};
use crate::common::gateway::{Gateway, Module};
use crate::common::process::invoke_report;

const WAIT: Duration = Duration::from_secs(20);

/// Round trips one echo message and returns its latency.
fn echo_round_trip(client: &TestClient, payload: &str) -> Duration {
    let sent = Instant::now();
    client.publish("echo/in", payload);
    let reply = client.next(WAIT).expect("echo reply");
    assert_eq!(reply.topic, "echo/out");
    assert_eq!(reply.text(), payload);
    reply.received - sent
}

#[test]
fn a_runaway_function_times_out_while_another_keeps_serving() {
    let gateway = Gateway::new("e2e")
        .function(
            "spin",
            Module::Fixture("loop"),
            "timeout = \"100ms\"\nqueue_size = 100",
        )
        .mqtt_trigger("spin", "spin")
        .echo("echo", "echo/in", "echo/out");
    let mut ledge = gateway.start();
    let client = gateway.client("e2e-client", &["echo/out"]);
    let baseline: Vec<Duration> = (0..10)
        .map(|i| echo_round_trip(&client, &format!("b{i}")))
        .collect();
    // 20 runaway invocations queue up: 2 s of timeouts for the spin worker.
    for _ in 0..20 {
        client.publish("spin", "x");
    }
    ledge.wait_for_line("spin", WAIT);
    let during: Vec<Duration> = (0..30)
        .map(|i| echo_round_trip(&client, &format!("d{i}")))
        .collect();
    ledge.wait_for_line("failed (timeout) after", WAIT);
    let worst = *during.iter().max().unwrap();
    // Not a speed target: a starved echo would wait behind ~2 s of runaway
    // invocations; a served one answers in milliseconds.
    assert!(
        worst < Duration::from_millis(500),
        "echo took {worst:?} while spin ran (baseline worst {:?})",
        baseline.iter().max().unwrap()
    );
}

#[test]
fn memory_bombs_traps_and_forbidden_publishes_fail_only_their_own_invocation() {
    let gateway = Gateway::new("e2e")
        .function("bomb", Module::Fixture("bomb"), "memory = \"1MiB\"")
        .mqtt_trigger("bad/bomb", "bomb")
        .function("trap", Module::Fixture("trap"), "")
        .mqtt_trigger("bad/trap", "trap")
        .function(
            "snoop",
            Module::Fixture("forbidden_publish"),
            "allow_publish = [\"alerts/#\"]",
        )
        .mqtt_trigger("bad/snoop", "snoop")
        .echo("echo", "echo/in", "echo/out");
    let mut ledge = gateway.start();
    let watcher = gateway.client("e2e-watch", &["secret/#", "alerts/#"]);
    let client = gateway.client("e2e-client", &["echo/out"]);
    for topic in ["bad/bomb", "bad/trap", "bad/snoop", "bad/bomb", "bad/trap"] {
        client.publish(topic, "x");
        echo_round_trip(&client, topic);
    }
    ledge.wait_for_line("failed (memory_limit)", WAIT);
    ledge.wait_for_line("failed (trap)", WAIT);
    let seen = watcher.drain(Duration::from_millis(500));
    let topics: Vec<&str> = seen.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        vec!["alerts/ok"],
        "only the allowed publish goes out"
    );
    let log = ledge.log_text();
    assert!(
        log.contains("publish to `secret/x` denied: not in allow_publish"),
        "{log}"
    );
    assert!(
        log.contains("memory limit of 1048576 bytes exceeded"),
        "{log}"
    );
}

#[test]
fn a_module_that_fails_to_load_disables_only_its_function() {
    let gateway = Gateway::new("e2e")
        .function("ghost", Path::new("missing.wasm"), "")
        .mqtt_trigger("ghost", "ghost")
        .echo("echo", "echo/in", "echo/out");
    let ledge = gateway.start();
    let client = gateway.client("e2e-client", &["echo/out"]);
    client.publish("ghost", "x");
    echo_round_trip(&client, "still here");
    let log = ledge.log_text();
    assert!(
        log.contains("ledge.toml:8:10: function `ghost`: module")
            && log.contains("missing.wasm does not exist; function `ghost` is disabled"),
        "{log}"
    );
    assert!(
        log.contains("3 of 4 functions enabled") || log.contains("1 of 2 functions enabled"),
        "{log}"
    );
}

#[test]
fn a_function_can_grow_its_memory_up_to_its_limit_in_big_and_small_steps() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "grow_big");
    // 800 grows take ~0.5 s in a debug build and twice that on a loaded
    // machine: the timeout is not what this test is about.
    let text = common::function_toml("grow", &module, "memory = \"64MiB\"\ntimeout = \"30s\"");
    let config = common::write_config(dir.path(), &text);
    let (report, output) = invoke_report(&config, "grow", "");
    assert_eq!(report["status"], "ok", "{output}");
    assert_eq!(report["response"], "grew", "{output}");

    // A fuel budget still pays for grows: 8 MiB of growth costs more than a
    // budget of 1000 fuel, and the error says the budget, not memory.
    let text = common::function_toml("grow", &module, "memory = \"64MiB\"\nmax_fuel = 1000");
    let config = common::write_config(dir.path(), &text);
    let (report, output) = invoke_report(&config, "grow", "");
    assert_eq!(report["error_kind"], "fuel_exhausted", "{output}");

    // Past the limit, the error is the memory limit.
    let text = common::function_toml("grow", &module, "memory = \"4MiB\"");
    let config = common::write_config(dir.path(), &text);
    let (report, output) = invoke_report(&config, "grow", "");
    assert_eq!(report["error_kind"], "memory_limit", "{output}");
    assert!(
        report["error"].as_str().unwrap().contains("4194304"),
        "{output}"
    );
}

#[test]
fn slow_host_calls_cannot_outrun_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "host_flood");
    let text = common::function_toml("flood", &module, "timeout = \"50ms\"");
    let config = common::write_config(dir.path(), &text);
    let (report, output) = invoke_report(&config, "flood", "");
    assert_eq!(report["error_kind"], "timeout", "{output}");
    let took = Duration::from_micros(report["duration_us"].as_u64().unwrap());
    eprintln!("a 50ms timeout with slow host calls ended after {took:?}");
    // One host call is the most the deadline can be late by; each of these
    // is bounded work (a refusal of a cut topic), far under this slack.
    assert!(
        took < Duration::from_millis(50 + 250),
        "a 50ms timeout took {took:?}"
    );
}

#[test]
fn one_hostile_invocation_cannot_flood_the_log() {
    let gateway = Gateway::new("gw7")
        .function(
            "flood",
            Module::Fixture("host_flood"),
            "timeout = \"1s\"\nallow_publish = [\"out/#\"]\nretries = 0",
        )
        .mqtt_trigger("in/flood", "flood");
    let mut ledge = gateway.start();
    let before: usize = ledge.log.lock().unwrap().iter().map(|l| l.len() + 1).sum();
    let client = gateway.client("flood-client", &[]);
    client.publish("in/flood", "go");
    ledge.wait_for_line("timed out after 1000ms", WAIT);
    ledge.terminate();
    let log = ledge.log.lock().unwrap().clone();
    let bytes: usize = log.iter().map(|l| l.len() + 1).sum::<usize>() - before;
    eprintln!("one hostile invocation wrote {bytes} bytes of log");
    // One second of a guest doing nothing but provoking log lines: at most
    // a page of ledge's log, and what was left out is counted.
    assert!(
        bytes < 64 << 10,
        "one invocation wrote {bytes} bytes of log; the last lines:\n{}",
        log.iter()
            .rev()
            .take(20)
            .map(|l| &l[..l.len().min(300)])
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        log.iter()
            .any(|l| l.contains("log lines") && (l.contains("dropped") || l.contains("suppressed"))),
        "nothing says how many lines were left out"
    );
    // Echoed guest strings are cut: a refusal quotes a short prefix of the
    // 1 MiB topic or line name, and a guest line is cut at 8 KiB.
    for line in &log {
        let refusal = line.contains("denied") || line.contains("refused");
        let max = if refusal { 1024 } else { (8 << 10) + 512 };
        assert!(
            line.len() < max,
            "a line of {} bytes: {}",
            line.len(),
            &line[..300]
        );
    }
}

#[test]
fn a_synchronous_request_cannot_make_ledge_reply_outside_allow_publish() {
    let gateway = Gateway::new("gw7")
        .function("echo", Module::Example("echo"), "")
        .function(
            "deputy",
            Module::Fixture("deputy"),
            "allow_publish = [\"ledge/gw7/invoke/echo\", \"deputy/replies/#\"]",
        );
    let _ledge = gateway.start();
    let client = gateway.client("deputy-client", &["replies/#", "relay/#", "deputy/#"]);
    let ask = |correlation: &str, inner: serde_json::Value| {
        client.publish(
            "ledge/gw7/invoke/deputy",
            serde_json::json!({"reply_to": "replies/d", "correlation_id": correlation, "payload": inner.to_string()})
                .to_string(),
        );
    };
    // The forged request: echo's reply would go to a relay the deputy may
    // not publish to.
    ask(
        "forged",
        serde_json::json!({"reply_to": "relay/1/set", "payload": "on"}),
    );
    let reply = client.next(WAIT).expect("deputy reply").json();
    assert_eq!(reply["correlation_id"], "forged", "{reply}");
    assert_eq!(reply["response"], "denied", "{reply}");
    // A request whose reply goes where the deputy may publish goes through.
    ask(
        "allowed",
        serde_json::json!({"reply_to": "deputy/replies/1", "payload": "hi"}),
    );
    // Two replies race (the deputy's own, and echo's to the deputy): wait
    // for both, in whatever order they come.
    let mut got: Vec<Message> = Vec::new();
    while !(got.iter().any(|m| m.topic == "deputy/replies/1")
        && got.iter().any(|m| m.topic == "replies/d"))
    {
        got.push(
            client
                .next(WAIT)
                .expect("both replies of the allowed request"),
        );
    }
    assert!(
        got.iter().all(|m| !m.topic.starts_with("relay/")),
        "ledge published on the deputy's behalf: {got:?}"
    );
    let deputy = got
        .iter()
        .find(|m| m.topic == "replies/d")
        .expect("deputy reply");
    assert_eq!(deputy.json()["response"], "ok", "{}", deputy.text());
}

/// Broken modules: (function name, fixture, or `-kind` for a file the test
/// writes, what the error must say).
const BROKEN: [(&str, &str, &str); 14] = [
    ("not_wasm", "-text", "not valid WebAssembly"),
    ("truncated", "-truncated", "not valid WebAssembly"),
    ("empty", "-empty", "not valid WebAssembly"),
    ("no_handle", "missing_export", "ledge_handle"),
    ("wrong_sig", "wrong_signature", "signature"),
    ("wasi", "wasi_import", "wasi_snapshot_preview1"),
    ("big_memory", "broken_big_memory", "memory"),
    ("start_loops", "broken_start_loops", "start function"),
    ("start_traps", "broken_start_traps", "unreachable"),
    ("init_fails", "broken_init_fails", "ledge_init returned 1"),
    ("init_loops", "broken_init_loops", "ledge_init: timed out"),
    ("init_traps", "broken_init_traps", "ledge_init"),
    ("no_memory", "broken_no_memory", "`memory`"),
    (
        "init_grows",
        "broken_init_grows",
        "memory limit of 1048576 bytes",
    ),
];

fn broken_module(dir: &Path, fixture: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{}.wasm", fixture.trim_start_matches('-')));
    match fixture {
        "-text" => std::fs::write(&path, "hello, not a module\n").unwrap(),
        "-empty" => std::fs::write(&path, "").unwrap(),
        "-truncated" => {
            let ok = std::fs::read(common::example("echo")).unwrap();
            std::fs::write(&path, &ok[..ok.len() / 2]).unwrap();
        }
        name => return common::fixture(dir, name),
    }
    path
}

/// `good` beside one function per broken module.
fn broken_gateway() -> Gateway {
    let mut gateway = Gateway::new("gw7")
        .function("good", Module::Fixture("ok"), "")
        .mqtt_trigger("in/good", "good");
    for (name, fixture, _) in BROKEN {
        let module = broken_module(gateway.dir(), fixture);
        gateway = gateway.function(name, module, "memory = \"1MiB\"\ntimeout = \"200ms\"");
    }
    gateway
}

#[test]
fn check_names_every_module_that_cannot_start_and_why() {
    let gateway = broken_gateway();
    gateway.write();
    let output = gateway.cli(&["check"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for (name, _, reason) in BROKEN {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("function `{name}`")))
            .unwrap_or_else(|| panic!("`ledge check` does not name `{name}`:\n{stderr}"));
        assert!(
            line.contains(reason),
            "`{name}`: expected `{reason}` in: {line}"
        );
    }
    assert!(!stderr.contains("function `good`"), "{stderr}");
}

#[test]
fn run_disables_exactly_the_functions_whose_modules_cannot_start() {
    let gateway = broken_gateway();
    let ledge = gateway.start();
    let log = ledge.log_text();
    for (name, _, reason) in BROKEN {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("function `{name}` is disabled")))
            .unwrap_or_else(|| panic!("`ledge run` did not disable `{name}`:\n{log}"));
        assert!(
            line.contains(reason),
            "`{name}`: expected `{reason}` in: {line}"
        );
    }
    assert!(!log.contains("function `good` is disabled"), "{log}");
}
