//! A bad version is rolled back: one that fails its probation, or cannot
//! even start, goes back to the previous target by itself and says so; each
//! `ledge rollback` goes one step further back, even on a store written
//! before aliases kept a history; `ledge deploy --wait` returns once the
//! running ledge has judged the probation, with its verdict as output and
//! exit code.

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::*;

#[test]
fn a_version_that_fails_every_call_is_rolled_back_automatically_and_reported() {
    let gateway = gateway("tag:live")
        .upstream_on_local()
        .append("[deploy]\nwatch_invocations = 10\nmax_error_rate = 0.2");
    let config = gateway.write();
    let v1 = tagged(gateway.dir(), "v1", false);
    let v3 = tagged(gateway.dir(), "v3", true);
    cli(
        &config,
        &[
            "deploy",
            "tag",
            v1.to_str().unwrap(),
            "--publish",
            "--alias",
            "live",
        ],
    );
    let mut ledge = gateway.start();
    let client = gateway.client("rollback-client", &["out/#", "ledge/gw/deploy/status"]);
    // v1's own probation ends once it has proven itself.
    for id in 0..12 {
        client.publish("in/x", format!("e{id}"));
    }
    assert_eq!(report(&client, "healthy")["versions"][0], "tag:1");
    let out = cli(
        &config,
        &[
            "deploy",
            "tag",
            v3.to_str().unwrap(),
            "--publish",
            "--alias",
            "live",
        ],
    );
    assert!(out.contains("published tag:2"), "{out}");
    let mut id = 100;
    let deadline = Instant::now() + WAIT;
    let rolled_back = loop {
        assert!(Instant::now() < deadline, "{}", ledge.log_text());
        client.publish("in/x", format!("e{id}"));
        id += 1;
        if let Some(m) = client.next(Duration::from_millis(100)) {
            if m.topic == "ledge/gw/deploy/status" && m.json()["event"] == "rolled_back" {
                break m.json();
            }
        }
    };
    assert_eq!(rolled_back["alias"], "live");
    assert_eq!(rolled_back["from"], "2");
    assert_eq!(rolled_back["to"], "1");
    assert!(
        rolled_back["reason"]
            .as_str()
            .unwrap()
            .contains("invocations failed"),
        "{rolled_back}"
    );
    assert_eq!(alias_target(&config, "live")["version"], 1);
    let _ = client.drain(Duration::from_millis(500));
    client.publish("in/x", "e9999");
    let after = client.collect(1, WAIT);
    assert_eq!(after[0].topic, "out/v1", "{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_version_that_cannot_start_is_rolled_back_before_it_runs() {
    let gateway = gateway("tag:live").upstream_on_local();
    let config = gateway.write();
    let v1 = tagged(gateway.dir(), "v1", false);
    cli(
        &config,
        &[
            "deploy",
            "tag",
            v1.to_str().unwrap(),
            "--publish",
            "--alias",
            "live",
            "--no-watch",
        ],
    );
    // A module whose start function traps: `ledge deploy` would refuse it,
    // so it goes into the store the way a damaged or hand-made store would
    // hold it.
    let trap = wat::parse_str(
        r#"(module
  (memory (export "memory") 1)
  (func $boom unreachable)
  (start $boom)
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param i32 i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let store = store::Store::under(&gateway.dir().join("data"));
    let lock = store.lock().unwrap();
    let sha256 = store.put_module(&lock, &trap).unwrap();
    let version = store::Version {
        sha256,
        size: trap.len() as u64,
        settings: Settings::default(),
        published_at_ms: 0,
        origin: "test".to_owned(),
    };
    assert_eq!(store.publish(&lock, "tag", None, version).unwrap(), 2);
    let probation = store::Probation {
        since_ms: store::now_ms(),
        origin: "test".to_owned(),
    };
    store
        .set_alias(
            &lock,
            "tag",
            "live",
            store::AliasTarget::single(2),
            Some(probation),
        )
        .unwrap();
    drop(lock);

    let client = gateway.client("nostart-client", &["out/#", "ledge/gw/deploy/status"]);
    let mut ledge = gateway.start();
    let rolled_back = report(&client, "rolled_back");
    assert!(
        rolled_back["reason"]
            .as_str()
            .unwrap()
            .contains("version 2 fails to load"),
        "{rolled_back}"
    );
    assert_eq!(serving(&client, 1), "v1", "{}", ledge.log_text());
    assert_eq!(alias_target(&config, "live")["version"], 1);
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn each_rollback_goes_one_step_further_back_and_refuses_at_the_first_target() {
    let gateway = offline("tag:live");
    let config = gateway.write();
    for tag in ["v1", "v2", "v3"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &[
                "deploy",
                "tag",
                module.to_str().unwrap(),
                "--publish",
                "--alias",
                "live",
                "--no-watch",
            ],
        );
    }
    assert_eq!(alias_target(&config, "live")["version"], 3);
    let out = cli(&config, &["rollback", "tag", "live"]);
    assert!(out.contains("tag:live -> 2 (rolled back from 3)"), "{out}");
    assert_eq!(alias_target(&config, "live")["version"], 2);
    // Again: further back, not forward to 3.
    let out = cli(&config, &["rollback", "tag", "live"]);
    assert!(out.contains("tag:live -> 1 (rolled back from 2)"), "{out}");
    assert_eq!(alias_target(&config, "live")["version"], 1);
    let err = cli_fails(&config, &["rollback", "tag", "live"]);
    assert!(
        err.contains("alias `live` of `tag` has no earlier target to roll back to"),
        "{err}"
    );
    assert_eq!(alias_target(&config, "live")["version"], 1);
    // Pointing it forward starts a new history: back goes to 1.
    cli(&config, &["alias", "set", "tag", "live", "3", "--no-watch"]);
    let out = cli(&config, &["rollback", "tag", "live"]);
    assert!(out.contains("tag:live -> 1 (rolled back from 3)"), "{out}");
    let help = ledge(&["rollback", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("one step back"), "{help}");
}

#[test]
fn a_store_written_before_alias_history_loads_and_rolls_back_once() {
    let gateway = offline("tag:live");
    let config = gateway.write();
    for tag in ["v1", "v2"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    // The state file as ledge wrote it before aliases kept a history: one
    // `previous` target.
    let path = gateway.dir().join("data/functions/tag.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["aliases"] = serde_json::json!({
        "live": {"target": {"version": 2}, "previous": {"version": 1}, "updated_at_ms": 1}
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let out = cli(&config, &["rollback", "tag", "live"]);
    assert!(out.contains("tag:live -> 1 (rolled back from 2)"), "{out}");
    let err = cli_fails(&config, &["rollback", "tag", "live"]);
    assert!(err.contains("no earlier target"), "{err}");
}

/// Gateway `gw` judging a new alias target's probation after 5
/// invocations (at most 20% failing), `tag:live` on `in/#`.
fn judging_gateway() -> Gateway {
    let gateway = Gateway::new("gw")
        .with_mosquitto()
        .broker("keep_alive = \"5s\"")
        .append("[deploy]\nwatch_invocations = 5\nmax_error_rate = 0.2");
    let v0 = tagged(gateway.dir(), "v0", false);
    gateway
        .function(
            "tag",
            v0,
            "allow_publish = [\"out/#\"]\nretries = 0\non_failure = \"drop\"",
        )
        .mqtt_trigger("in/#", "tag:live")
}

/// `ledge deploy tag <module> --publish --alias live <extra>`.
fn deploy(config: &Path, module: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "deploy",
        "tag",
        module.to_str().unwrap(),
        "--publish",
        "--alias",
        "live",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ledge(&args)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Publishes an event on `in/x` every 20 ms until dropped (at most 60 s):
/// the traffic probation needs to reach a verdict.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let client = TestClient::connect(port, "traffic", &[]);
            let end = Instant::now() + Duration::from_secs(60);
            let mut id = 0u32;
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                client.publish("in/x", format!("e{id}"));
                id += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn wait_reports_a_healthy_verdict_and_a_rollback_with_exit_codes() {
    let gateway = judging_gateway();
    let config = gateway.write();
    let mut ledge = gateway.start();
    let _traffic = Traffic::start(gateway.port);

    let good = deploy(
        &config,
        &tagged(gateway.dir(), "v1", false),
        &["--wait", "--wait-timeout", "50s"],
    );
    let out = text(&good);
    assert_eq!(good.status.code(), Some(0), "{out}\n{}", ledge.log_text());
    assert!(
        out.contains("healthy: tag:live -> 1 passed probation (0 of "),
        "{out}"
    );

    let bad = deploy(
        &config,
        &tagged(gateway.dir(), "v2", true),
        &["--wait", "--wait-timeout", "50s"],
    );
    let out = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{out}\n{}", ledge.log_text());
    assert!(
        out.contains("rolled back: tag:live -> 1 again; 2 failed probation"),
        "{out}"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn wait_without_a_running_ledge_or_enough_events_says_why() {
    let gateway = judging_gateway();
    let config = gateway.write();
    let v1 = tagged(gateway.dir(), "v1", false);

    let alone = deploy(&config, &v1, &["--wait"]);
    assert_eq!(alone.status.code(), Some(1));
    assert!(
        text(&alone).contains("--wait: no ledge is running with"),
        "{}",
        text(&alone)
    );

    // Running, but no events arrive: the wait ends at its timeout, saying so.
    let mut ledge = gateway.start();
    let quiet = deploy(
        &config,
        &tagged(gateway.dir(), "v2", false),
        &["--wait", "--wait-timeout", "1s"],
    );
    let out = text(&quiet);
    assert_eq!(quiet.status.code(), Some(1), "{out}");
    assert!(
        out.contains("tag:live -> 2 is still on probation after 1s (0 invocations so far"),
        "{out}"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}
