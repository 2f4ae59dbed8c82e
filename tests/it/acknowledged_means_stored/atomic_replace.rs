//! Crash-safe replacement (`src/fs.rs`): a real `kill -9` of `ledge run`
//! between the rename that commits a file and the directory fsync that
//! makes the rename durable, for an OTA chunk and a schedule's catch-up
//! marker, then a reopen that finds the new content.
//!
//! How the process is stopped at exactly that point: `ledge` started with
//! `LEDGE_TEST_PAUSE_AFTER_RENAME=<path suffix>` parks the thread that has
//! just renamed a matching file, before `write_atomic` syncs the directory,
//! and says so on stderr; the test waits for that line and sends SIGKILL.
//! The hook lives only in `fs::write_atomic`, so on a build where a site
//! still writes its own temp file and renames it (today's main: neither
//! site syncs the directory) the line never comes and the test fails.
//!
//! What the kill proves on a real disk: each site goes through the one
//! `write_atomic`, whose last step is the directory fsync; the rename is the
//! commit point (the file is whole, because its bytes were fsynced before
//! it got its name, and no temp file is left to confuse a restart); and a
//! restart after a crash at that instant uses the new content (the upload
//! resumes without that chunk, the marker holds the run it recorded).
//!
//! What it cannot prove: that the directory fsync makes the rename survive
//! a power cut. A killed process leaves the kernel's page cache and dentry
//! cache intact, so after `kill -9` the rename is visible whether or not the
//! directory was ever synced; only losing the page cache (a power cut, a VM
//! reset, dm-flakey or dm-log-writes dropping unsynced writes) tells the two
//! apart. That part rests on the order in `write_atomic` (fsync the file,
//! rename, fsync the directory), which every caller now shares.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::broker::{Mosquitto, TestClient};
use common::process::{ledge, signal, Ledge};
use ledge::deploy::document::{self, Deployment};
use ledge::deploy::store::{self, Settings};
use ledge::signing;

const WAIT: Duration = Duration::from_secs(30);
const PAUSE: &str = "LEDGE_TEST_PAUSE_AFTER_RENAME";
/// What `fs::write_atomic` prints when the hook stops it.
const PAUSED: &str = "paused before the directory fsync";

/// Kills `ledge` once it has paused after renaming a file ending in
/// `suffix` (and fails the test if it never does).
fn kill_at_the_pause(ledge: &mut Ledge, suffix: &str) {
    let line = ledge.wait_for_log(PAUSED, WAIT);
    assert!(
        line.contains(suffix),
        "paused after renaming another file: {line}"
    );
    signal(ledge.pid(), "KILL");
    let status = ledge.wait(Duration::from_secs(10));
    assert!(!status.success(), "ledge exited by itself: {status:?}");
}

fn no_temp_files(dir: &Path) {
    let temps: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}

/// A module that publishes each event to `out/<tag>`.
fn tagged(dir: &Path, tag: &str) -> PathBuf {
    let topic = format!("out/{tag}");
    let wat = format!(
        r#"(module
  (import "ledge_v1" "publish" (func $publish (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{topic}")
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param $ptr i32) (param $len i32) (result i32)
    (drop (call $publish (i32.const 0) (i32.const {len}) (local.get $ptr) (local.get $len) (i32.const 1)))
    (i32.const 0)))"#,
        len = topic.len()
    );
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
    path
}

/// Which version ran an event published now on `in/x`.
fn serving(client: &TestClient, id: u32) -> String {
    let _ = client.drain(Duration::from_millis(100));
    client.publish("in/x", format!("e{id}"));
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = client.next(Duration::from_millis(200)) {
            if let Some(tag) = m.topic.strip_prefix("out/") {
                return tag.to_owned();
            }
        }
    }
    panic!("event e{id} produced nothing");
}

fn deploy_report(client: &TestClient, event: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = client.next(Duration::from_millis(200)) {
            if m.topic == "ledge/gw/deploy/status" && m.json()["event"] == event {
                return m.json();
            }
        }
    }
    panic!("no `{event}` report on ledge/gw/deploy/status");
}

/// A gateway running `v1` on `tag:live`, whose upstream (the same
/// mosquitto) may deploy modules signed by the returned key.
fn ota_gateway(dir: &Path, port: u16) -> (PathBuf, [u8; 32]) {
    let key = dir.join("ops.key");
    let output = ledge(&["keygen", "--id", "ops", "--out", key.to_str().unwrap()]);
    assert!(output.status.success());
    let public = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let seed = signing::parse_secret_key(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let v0 = tagged(dir, "v0");
    let text = format!(
        "[device]\nid = \"gw\"\ndata_dir = \"data\"\n\
         [broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive = \"5s\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         [deploy]\ntrusted_keys = [\"{public}\"]\n\
         [[function]]\nname = \"tag\"\nmodule = \"{}\"\nallow_publish = [\"out/#\"]\n\
         [[trigger]]\nsource = \"mqtt\"\ntopic = \"in/#\"\nfunction = \"tag:live\"\n",
        v0.display()
    );
    let config = common::write_config(dir, &text);
    let v1 = tagged(dir, "v1");
    let output = ledge(&[
        "deploy",
        "tag",
        v1.to_str().unwrap(),
        "--publish",
        "--alias",
        "live",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    (config, seed)
}

#[test]
fn an_ota_chunk_killed_between_rename_and_directory_fsync_is_on_flash_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let (config, seed) = ota_gateway(dir.path(), mosquitto.port);
    let chunk_suffix = "/uploads/tag-2/1.chunk";
    let mut ledge = Ledge::start_with_env(&config, &[(PAUSE, chunk_suffix)]);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = TestClient::connect(
        mosquitto.port,
        "atomic-ota",
        &["out/#", "ledge/gw/deploy/status"],
    );
    let module = std::fs::read(tagged(dir.path(), "v2")).unwrap();
    let deployment = Deployment {
        format: document::FORMAT.to_owned(),
        function: "tag".to_owned(),
        version: 2,
        alias: Some("live".to_owned()),
        sha256: store::sha256_hex(&module),
        size: module.len() as u64,
        chunk_size: 32,
        settings: Settings::default(),
        created_at_ms: 0,
    };
    let chunks: Vec<&[u8]> = module.chunks(32).collect();
    assert!(chunks.len() >= 3, "a few chunks, not {}", chunks.len());
    let envelope = document::seal(&deployment, "ops", &seed).unwrap();
    client.publish("ledge/gw/deploy", serde_json::to_vec(&envelope).unwrap());
    deploy_report(&client, "receiving");
    let publish_chunk = |index: usize| {
        client.publish(
            &format!("ledge/gw/deploy/chunk/tag/2/{index}"),
            chunks[index].to_vec(),
        )
    };
    publish_chunk(1);
    kill_at_the_pause(&mut ledge, chunk_suffix);

    // Reopened by another process: the chunk whole under its name.
    let upload = dir.path().join("data/functions/uploads/tag-2");
    assert_eq!(std::fs::read(upload.join("1.chunk")).unwrap(), chunks[1]);
    no_temp_files(&upload);

    // And ledge itself, restarted, counts it and never needs it again.
    let mut ledge = Ledge::start(&config);
    let resumed = ledge.wait_for_log("resuming the upload of tag:2", WAIT);
    assert!(
        resumed.contains(&format!("(1 of {} chunks on flash)", chunks.len())),
        "{resumed}"
    );
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    for index in (0..chunks.len()).filter(|i| *i != 1) {
        publish_chunk(index);
    }
    let deployed = deploy_report(&client, "deployed");
    assert_eq!(deployed["version"], 2, "{}", ledge.log_text());
    let deadline = Instant::now() + WAIT;
    let mut id = 1;
    while serving(&client, id) != "v2" {
        assert!(Instant::now() < deadline, "{}", ledge.log_text());
        id += 1;
    }
    assert_eq!(ledge.terminate().code(), Some(0));
}

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The one schedule state file under `<dir>/data/schedules/`, once it
/// exists.
fn wait_for_state_file(dir: &Path) -> PathBuf {
    let schedules = dir.join("data/schedules");
    let deadline = Instant::now() + WAIT;
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(&schedules)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "last"))
                    .collect()
            })
            .unwrap_or_default();
        match files.as_slice() {
            [file] => return file.clone(),
            [] => assert!(Instant::now() < deadline, "no state file in {schedules:?}"),
            more => panic!("one state file expected: {more:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn recorded(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{file:?} holds {text:?}"))
}

#[test]
fn a_catch_up_marker_killed_between_rename_and_directory_fsync_holds_the_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let echo = common::example("echo");
    // Daily at midnight UTC, so the only run a restart can owe during the
    // test is the catch-up the test sets up.
    let text = format!(
        "[device]\nid = \"atomic\"\ndata_dir = \"data\"\n\
         [broker]\nembedded = true\nlisten = \"127.0.0.1:{port}\"\n\
         [[function]]\nname = \"echo\"\nmodule = \"{}\"\nenv = {{ ECHO_TOPIC = \"tick\" }}\nallow_publish = [\"tick\"]\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"echo\"\n\
         cron = \"0 0 0 * * *\"\ntimezone = \"UTC\"\ncatch_up = \"once\"\n",
        echo.display()
    );
    let config = common::write_config(dir.path(), &text);

    // A first start records "nothing owed before now".
    let mut ledge = Ledge::spawn(&config, &[]);
    ledge.wait_for_line("running as", WAIT);
    let file = wait_for_state_file(dir.path());
    assert!(ledge.terminate().success());

    // "Down" for two days: the last midnight is owed.
    let midnight = now_ms() / DAY_MS * DAY_MS;
    let before = midnight - 2 * DAY_MS;
    std::fs::write(&file, format!("{before}\n")).unwrap();
    let mut ledge = Ledge::spawn(&config, &[(PAUSE, ".last")]);
    kill_at_the_pause(&mut ledge, ".last");
    assert!(
        ledge.log_text().contains("catching up the run of"),
        "{}",
        ledge.log_text()
    );

    // Reopened: the run the killed ledge recorded, not the one before.
    let midnight_now = now_ms() / DAY_MS * DAY_MS;
    let after = recorded(&file);
    assert!(
        after == midnight || after == midnight_now,
        "the marker holds {after}, expected the last midnight {midnight} (was {before})"
    );
    no_temp_files(file.parent().unwrap());
}
