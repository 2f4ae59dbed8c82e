//! `ledge deploy --wait`: returns after the running ledge has judged the
//! new alias target's probation, with its verdict as output and exit code.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::broker::{Mosquitto, TestClient};
use common::process::{ledge, Ledge};

/// A function publishing each payload on `out/<tag>`; with `fail`, it then
/// returns an error.
fn tagged(dir: &Path, tag: &str, fail: bool) -> PathBuf {
    let end = if fail {
        "(i32.const 1)"
    } else {
        "(i32.const 0)"
    };
    let wat = format!(
        r#"(module
  (import "ledge_v1" "publish" (func $publish (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "out/{tag}")
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param $ptr i32) (param $len i32) (result i32)
    (drop (call $publish (i32.const 0) (i32.const {len}) (local.get $ptr) (local.get $len) (i32.const 0)))
    {end}))"#,
        len = 4 + tag.len()
    );
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
    path
}

fn config(dir: &Path, port: u16) -> PathBuf {
    let v0 = tagged(dir, "v0", false);
    let text = format!(
        "[device]\nid = \"gw\"\ndata_dir = \"data\"\n\
         [broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive = \"5s\"\n\
         [deploy]\nwatch_invocations = 5\nmax_error_rate = 0.2\n\
         [[function]]\nname = \"tag\"\nmodule = \"{}\"\nallow_publish = [\"out/#\"]\n\
         retries = 0\non_failure = \"drop\"\n\
         [[trigger]]\nsource = \"mqtt\"\ntopic = \"in/#\"\nfunction = \"tag:live\"\n",
        v0.display()
    );
    common::write_config(dir, &text)
}

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
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port);
    let mut ledge = Ledge::start(&config);
    let _traffic = Traffic::start(mosquitto.port);

    let good = deploy(
        &config,
        &tagged(dir.path(), "v1", false),
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
        &tagged(dir.path(), "v2", true),
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
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port);
    let v1 = tagged(dir.path(), "v1", false);

    let alone = deploy(&config, &v1, &["--wait"]);
    assert_eq!(alone.status.code(), Some(1));
    assert!(
        text(&alone).contains("--wait: no ledge is running with"),
        "{}",
        text(&alone)
    );

    // Running, but no events arrive: the wait ends at its timeout, saying so.
    let mut ledge = Ledge::start(&config);
    let quiet = deploy(
        &config,
        &tagged(dir.path(), "v2", false),
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
