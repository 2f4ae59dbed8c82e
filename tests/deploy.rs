//! Deployments: versions and aliases through the CLI against a running
//! ledge, weighted canaries, automatic rollback, and signed over-the-air
//! deployments through a real mosquitto upstream, with every bad input the
//! issue lists, kill -9 in the middle of an upload, and a store left by a
//! crash.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::broker::{Message, Mosquitto, TestClient};
use common::process::{ledge, Ledge};
use ledge::deploy::document::{self, Deployment};
use ledge::deploy::store::{self, Settings};
use ledge::signing;

const WAIT: Duration = Duration::from_secs(30);

/// A function that publishes each event's payload to `out/<tag>`; with
/// `fail`, it then reports an error.
fn tagged(dir: &Path, tag: &str, fail: bool) -> PathBuf {
    let topic = format!("out/{tag}");
    let end = if fail {
        "(drop (call $respond (i32.const 64) (i32.const 18))) (i32.const 1)"
    } else {
        "(i32.const 0)"
    };
    let wat = format!(
        r#"(module
  (import "ledge_v1" "publish" (func $publish (param i32 i32 i32 i32 i32) (result i32)))
  (import "ledge_v1" "respond" (func $respond (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{topic}")
  (data (i32.const 64) "failing on purpose")
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param $ptr i32) (param $len i32) (result i32)
    (drop (call $publish (i32.const 0) (i32.const {len}) (local.get $ptr) (local.get $len) (i32.const 1)))
    {end}))"#,
        len = topic.len()
    );
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
    path
}

/// A config for function `tag` (its $LATEST runs `out/v0`), triggered on
/// `in/#` through `target`; with `upstream`, the same mosquitto is the
/// upstream too.
fn config(dir: &Path, port: u16, target: &str, extra: &str) -> PathBuf {
    let v0 = tagged(dir, "v0", false);
    let text = format!(
        "[device]\nid = \"gw\"\ndata_dir = \"data\"\n\
         [broker]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive = \"5s\"\n\
         {extra}\n\
         [[function]]\nname = \"tag\"\nmodule = \"{}\"\nallow_publish = [\"out/#\"]\n\
         retries = 0\non_failure = \"drop\"\nqueue_size = 4096\n\
         [[trigger]]\nsource = \"mqtt\"\ntopic = \"in/#\"\nfunction = \"{target}\"\n",
        v0.display()
    );
    common::write_config(dir, &text)
}

fn cli(config: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let output = ledge(&all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "ledge {args:?} failed:\n{text}");
    text
}

fn cli_fails(config: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    let output = ledge(&all);
    assert!(!output.status.success(), "ledge {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Which tag ran each event id (`e<id>` payloads on `out/<tag>`).
fn runs(messages: &[Message]) -> HashMap<u32, Vec<String>> {
    let mut runs: HashMap<u32, Vec<String>> = HashMap::new();
    for m in messages {
        let Some(tag) = m.topic.strip_prefix("out/") else {
            continue;
        };
        let id: u32 = m.text().trim_start_matches('e').parse().unwrap();
        runs.entry(id).or_default().push(tag.to_owned());
    }
    runs
}

fn alias_target(config: &Path, alias: &str) -> serde_json::Value {
    let text = cli(config, &["versions", "tag", "--json"]);
    let state: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    state["aliases"][alias]["target"].clone()
}

#[test]
fn deploying_v2_while_events_stream_through_v1_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port, "tag:live", "");
    let v1 = tagged(dir.path(), "v1", false);
    let v2 = tagged(dir.path(), "v2", false);
    // Offline, before ledge starts.
    let out = cli(
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
    assert!(out.contains("published tag:1"), "{out}");
    assert!(out.contains("takes effect when it starts"), "{out}");

    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(mosquitto.port, "deploy-client", &["out/#"]);
    const EVENTS: u32 = 600;
    let mut switched = false;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
        std::thread::sleep(Duration::from_millis(2));
        if id == EVENTS / 2 {
            let out = cli(
                &config,
                &[
                    "deploy",
                    "tag",
                    v2.to_str().unwrap(),
                    "--publish",
                    "--alias",
                    "live",
                    "--no-watch",
                ],
            );
            assert!(out.contains("applied by the running ledge"), "{out}");
            switched = true;
        }
    }
    assert!(switched);
    let got = client.collect(EVENTS as usize, WAIT);
    let extra = client.drain(Duration::from_millis(500));
    let runs = runs(&got.iter().chain(&extra).cloned().collect::<Vec<_>>());
    let lost: Vec<u32> = (0..EVENTS).filter(|id| !runs.contains_key(id)).collect();
    assert!(lost.is_empty(), "lost {lost:?}\n{}", ledge.log_text());
    let twice: Vec<(&u32, &Vec<String>)> = runs.iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(twice.is_empty(), "run twice: {twice:?}");
    let tag_of = |id: u32| runs[&id][0].clone();
    assert_eq!(tag_of(0), "v1");
    assert_eq!(tag_of(EVENTS - 1), "v2");
    // One switch: every event before the last v1 ran on v1.
    let last_v1 = (0..EVENTS).filter(|id| tag_of(*id) == "v1").max().unwrap();
    let first_v2 = (0..EVENTS).filter(|id| tag_of(*id) == "v2").min().unwrap();
    assert!(
        last_v1 < first_v2 + 50,
        "versions interleave: last v1 {last_v1}, first v2 {first_v2}"
    );
    assert!(!runs.values().any(|r| r[0] == "v0"), "$LATEST ran");
    assert_eq!(ledge.terminate().code(), Some(0));

    // The store says so too, and after a restart it still routes to v2.
    let out = cli(&config, &["functions"]);
    assert!(out.contains("live=2"), "{out}");
    let mut ledge = Ledge::start(&config);
    client.publish("in/x", format!("e{EVENTS}"));
    let after = client.collect(1, WAIT);
    assert_eq!(after.first().map(|m| m.topic.as_str()), Some("out/v2"));
    let out = cli(&config, &["rollback", "tag", "live"]);
    assert!(out.contains("-> 1 (rolled back from 2)"), "{out}");
    client.publish("in/x", format!("e{}", EVENTS + 1));
    let after = client.collect(1, WAIT);
    assert_eq!(
        after.first().map(|m| m.topic.as_str()),
        Some("out/v1"),
        "{}",
        ledge.log_text()
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_weighted_alias_splits_events_within_statistical_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port, "tag:live", "");
    for tag in ["v1", "v2"] {
        let module = tagged(dir.path(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    let out = cli(
        &config,
        &["alias", "set", "tag", "live", "1", "--weight", "2=20"],
    );
    assert!(out.contains("live -> 1 (80%), 2 (20%)"), "{out}");
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(mosquitto.port, "split-client", &["out/#"]);
    const EVENTS: usize = 1000;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
        if id % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let got = client.collect(EVENTS, WAIT);
    assert_eq!(got.len(), EVENTS, "{}", ledge.log_text());
    let canary = got.iter().filter(|m| m.topic == "out/v2").count();
    // Binomial(1000, 0.2): mean 200, sd 12.6; ±5 sd.
    assert!(
        (137..=263).contains(&canary),
        "{canary} of {EVENTS} went to the 20% canary"
    );
    assert_eq!(
        got.iter().filter(|m| m.topic == "out/v1").count() + canary,
        EVENTS
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

/// Waits for a deployment report matching `event` on the upstream.
fn report(client: &TestClient, event: &str) -> serde_json::Value {
    try_report(client, event)
        .unwrap_or_else(|| panic!("no `{event}` report on ledge/gw/deploy/status"))
}

fn try_report(client: &TestClient, event: &str) -> Option<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = client.next(Duration::from_millis(200)) {
            if m.topic == "ledge/gw/deploy/status" && m.json()["event"] == event {
                return Some(m.json());
            }
        }
    }
    None
}

#[test]
fn a_version_that_fails_every_call_is_rolled_back_automatically_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let upstream = format!(
        "[upstream]\nurl = \"mqtt://127.0.0.1:{}\"\n[deploy]\nwatch_invocations = 10\nmax_error_rate = 0.2\n",
        mosquitto.port
    );
    let config = config(dir.path(), mosquitto.port, "tag:live", &upstream);
    let v1 = tagged(dir.path(), "v1", false);
    let v3 = tagged(dir.path(), "v3", true);
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
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(
        mosquitto.port,
        "rollback-client",
        &["out/#", "ledge/gw/deploy/status"],
    );
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

/// A signing key and the `[deploy]` section trusting it.
struct Keys {
    seed: [u8; 32],
    section: String,
}

fn keys(dir: &Path, port: u16, extra: &str) -> Keys {
    let key = dir.join("ops.key");
    let output = ledge(&["keygen", "--id", "ops", "--out", key.to_str().unwrap()]);
    assert!(output.status.success());
    let public = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let seed = signing::parse_secret_key(&std::fs::read_to_string(&key).unwrap()).unwrap();
    Keys {
        seed,
        section: format!(
            "[upstream]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             [deploy]\ntrusted_keys = [\"{public}\"]\n{extra}"
        ),
    }
}

/// Publishes a `v1` module as version 1 and points `live` at it (on
/// probation, like any switch).
fn v1_live(dir: &Path, config: &Path) {
    let v1 = tagged(dir, "v1", false);
    let out = cli(
        config,
        &[
            "deploy",
            "tag",
            v1.to_str().unwrap(),
            "--publish",
            "--alias",
            "live",
        ],
    );
    assert!(out.contains("tag:live -> 1"), "{out}");
}

/// A gateway whose upstream is the test's mosquitto, trusting a fresh key
/// (with `deploy_extra` in its `[deploy]`), running v1 on `tag:live`.
fn ota_gateway(dir: &Path, port: u16, deploy_extra: &str) -> (Keys, PathBuf) {
    let keys = keys(dir, port, deploy_extra);
    let config = config(dir, port, "tag:live", &keys.section);
    v1_live(dir, &config);
    (keys, config)
}

fn deployment(version: u32, module: &[u8], chunk_size: u64) -> Deployment {
    Deployment {
        format: document::FORMAT.to_owned(),
        function: "tag".to_owned(),
        version,
        alias: Some("live".to_owned()),
        sha256: store::sha256_hex(module),
        size: module.len() as u64,
        chunk_size,
        settings: Settings::default(),
        created_at_ms: 0,
    }
}

fn publish_document(client: &TestClient, d: &Deployment, key_id: &str, seed: &[u8; 32]) {
    let envelope = document::seal(d, key_id, seed).unwrap();
    client.publish("ledge/gw/deploy", serde_json::to_vec(&envelope).unwrap());
}

fn publish_chunk(client: &TestClient, d: &Deployment, index: usize, bytes: &[u8]) {
    client.publish(
        &format!("ledge/gw/deploy/chunk/tag/{}/{index}", d.version),
        bytes.to_vec(),
    );
}

/// Publishes one event and returns the tag of the version that ran it.
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

#[test]
fn a_signed_chunked_deployment_arrives_over_the_upstream_out_of_order_and_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let (keys, config) = ota_gateway(dir.path(), mosquitto.port, "");
    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = TestClient::connect(
        mosquitto.port,
        "ota-client",
        &["out/#", "ledge/gw/deploy/status"],
    );
    assert_eq!(serving(&client, 1), "v1");

    let module = std::fs::read(tagged(dir.path(), "v7", false)).unwrap();
    let d = deployment(7, &module, 64);
    let chunks: Vec<&[u8]> = module.chunks(64).collect();
    assert!(chunks.len() >= 3, "a few chunks, not {}", chunks.len());
    publish_document(&client, &d, "ops", &keys.seed);
    let receiving = report(&client, "receiving");
    assert_eq!(receiving["missing"].as_array().unwrap().len(), chunks.len());
    // Out of order, with a duplicate and a truncated copy on the way.
    for index in (0..chunks.len()).rev() {
        if index == 1 {
            publish_chunk(&client, &d, index, &chunks[index][..10]);
        }
        publish_chunk(&client, &d, index, chunks[index]);
        if index == chunks.len() - 1 {
            publish_chunk(&client, &d, index, chunks[index]);
        }
    }
    let deployed = report(&client, "deployed");
    assert_eq!(deployed["version"], 7);
    assert_eq!(deployed["previous"], "1");
    let deadline = Instant::now() + WAIT;
    let mut id = 2;
    while serving(&client, id) != "v7" {
        assert!(Instant::now() < deadline, "{}", ledge.log_text());
        id += 1;
    }
    let out = cli(&config, &["versions", "tag"]);
    assert!(out.contains("ota"), "{out}");
    assert!(
        !dir.path().join("data/functions/uploads/tag-7").exists(),
        "upload files left behind"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn bad_deployments_are_rejected_with_their_reason_and_v1_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let (keys, config) = ota_gateway(dir.path(), mosquitto.port, "max_module_size = \"2KiB\"\n");
    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = TestClient::connect(
        mosquitto.port,
        "bad-client",
        &["out/#", "ledge/gw/deploy/status"],
    );
    let module = std::fs::read(tagged(dir.path(), "v2", false)).unwrap();
    let rejected = |what: &str, needle: &str| {
        let r = try_report(&client, "rejected")
            .unwrap_or_else(|| panic!("{what}: no report; log:\n{}", ledge.log_text()));
        let reason = r["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains(needle), "{what}: reason {reason:?}");
    };

    // A tampered signature.
    let mut envelope = document::seal(&deployment(2, &module, 64), "ops", &keys.seed).unwrap();
    envelope.deployment = envelope
        .deployment
        .replace("\"version\":2", "\"version\":3");
    client.publish("ledge/gw/deploy", serde_json::to_vec(&envelope).unwrap());
    rejected("tampered", "bad signature");

    // An unknown key.
    let (stranger, _) = signing::generate().unwrap();
    publish_document(&client, &deployment(2, &module, 64), "intruder", &stranger);
    rejected("unknown key", "unknown key `intruder`");

    // A trusted id, the wrong key.
    publish_document(&client, &deployment(2, &module, 64), "ops", &stranger);
    rejected("wrong key", "bad signature");

    // Over max_module_size.
    let mut big = deployment(2, &module, 64);
    big.size = 4096;
    publish_document(&client, &big, "ops", &keys.seed);
    rejected("oversized", "max_module_size");

    // Not JSON at all.
    client.publish("ledge/gw/deploy", b"\x00garbage".to_vec());
    rejected("garbage", "not a deployment document");

    // A hash that does not match what arrives.
    let mut wrong_hash = deployment(2, &module, 1024);
    wrong_hash.sha256 = store::sha256_hex(b"something else");
    publish_document(&client, &wrong_hash, "ops", &keys.seed);
    publish_chunk(&client, &wrong_hash, 0, &module);
    rejected("hash", "hash mismatch");
    assert!(!dir.path().join("data/functions/uploads/tag-2").exists());

    // Bytes that are not WebAssembly.
    let junk = vec![0x42u8; 300];
    let d = deployment(2, &junk, 1024);
    publish_document(&client, &d, "ops", &keys.seed);
    publish_chunk(&client, &d, 0, &junk);
    rejected("junk", "does not load");

    // A version that is not newer (1 is published).
    publish_document(&client, &deployment(1, &module, 1024), "ops", &keys.seed);
    rejected("version 1", "not newer");

    assert_eq!(serving(&client, 1), "v1", "{}", ledge.log_text());

    // A good v3, then a replay of an older (but validly signed) v2.
    let d3 = deployment(3, &module, 1024);
    publish_document(&client, &d3, "ops", &keys.seed);
    publish_chunk(&client, &d3, 0, &module);
    assert_eq!(report(&client, "deployed")["version"], 3);
    publish_document(&client, &deployment(2, &module, 1024), "ops", &keys.seed);
    rejected("replay", "not newer than 3");
    let state = cli(&config, &["versions", "tag", "--json"]);
    let state: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let versions: Vec<&String> = state["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["1", "3"]);
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn an_upload_resumes_after_a_kill_9_and_the_store_survives_crash_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let (keys, config) = ota_gateway(dir.path(), mosquitto.port, "");
    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = TestClient::connect(
        mosquitto.port,
        "resume-client",
        &["out/#", "ledge/gw/deploy/status"],
    );
    let module = std::fs::read(tagged(dir.path(), "v2", false)).unwrap();
    let d = deployment(2, &module, 32);
    let chunks: Vec<&[u8]> = module.chunks(32).collect();
    publish_document(&client, &d, "ops", &keys.seed);
    report(&client, "receiving");
    let half = chunks.len() / 2;
    for (index, chunk) in chunks.iter().enumerate().take(half) {
        publish_chunk(&client, &d, index, chunk);
    }
    let upload = dir.path().join("data/functions/uploads/tag-2");
    let deadline = Instant::now() + WAIT;
    while std::fs::read_dir(&upload)
        .map(|e| {
            e.filter(|f| f.as_ref().unwrap().path().extension() == Some("chunk".as_ref()))
                .count()
        })
        .unwrap_or(0)
        < half
    {
        assert!(Instant::now() < deadline, "chunks never reached flash");
        std::thread::sleep(Duration::from_millis(50));
    }
    common::process::signal(ledge.pid(), "KILL");
    ledge.wait(Duration::from_secs(10));

    // What a crash in the middle of a store write can leave: a temp file
    // and a module no state refers to.
    let functions = dir.path().join("data/functions");
    std::fs::write(functions.join("tag.tmp"), b"{\"torn").unwrap();
    let orphan = functions.join(format!("modules/{}.wasm", "0".repeat(64)));
    std::fs::write(&orphan, b"orphan").unwrap();

    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("resuming the upload of tag:2", WAIT);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    assert!(!orphan.exists(), "the orphan module was not collected");
    assert_eq!(serving(&client, 1), "v1");
    // Only the missing half is sent again.
    for (index, chunk) in chunks.iter().enumerate().skip(half) {
        publish_chunk(&client, &d, index, chunk);
    }
    assert_eq!(
        report(&client, "deployed")["version"],
        2,
        "{}",
        ledge.log_text()
    );
    let deadline = Instant::now() + WAIT;
    let mut id = 2;
    while serving(&client, id) != "v2" {
        assert!(Instant::now() < deadline);
        id += 1;
    }
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_kill_9_during_an_alias_switch_leaves_one_target_or_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port, "tag:live", "");
    for tag in ["v1", "v2"] {
        let module = tagged(dir.path(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "1", "--no-watch"]);
    let client = TestClient::connect(mosquitto.port, "switch-client", &["out/#"]);
    for round in 0..3u32 {
        let mut ledge = Ledge::start(&config);
        let target = if round % 2 == 0 { "2" } else { "1" };
        let switch = std::thread::spawn({
            let config = config.clone();
            move || {
                let mut all = vec![
                    "alias",
                    "set",
                    "tag",
                    "live",
                    target,
                    "--no-watch",
                    "--config",
                ];
                all.push(config.to_str().unwrap());
                common::process::ledge(&all)
            }
        });
        std::thread::sleep(Duration::from_millis(5 + u64::from(round) * 7));
        common::process::signal(ledge.pid(), "KILL");
        ledge.wait(Duration::from_secs(10));
        let _ = switch.join();
        let now = alias_target(&config, "live")["version"].as_u64().unwrap();
        assert!(now == 1 || now == 2);
        let mut ledge = Ledge::start(&config);
        let expected = format!("v{now}");
        assert_eq!(serving(&client, round), expected, "{}", ledge.log_text());
        assert_eq!(ledge.terminate().code(), Some(0));
    }
}

#[test]
fn cli_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), common::free_port(), "tag", "");
    let err = cli_fails(&config, &["deploy", "nope", "x.wasm"]);
    assert!(err.contains("no function `nope`"), "{err}");
    let not_wasm = dir.path().join("ledge.toml");
    let err = cli_fails(&config, &["deploy", "tag", not_wasm.to_str().unwrap()]);
    assert!(err.contains("not valid WebAssembly"), "{err}");
    let err = cli_fails(&config, &["alias", "set", "tag", "live", "4"]);
    assert!(err.contains("no published version 4"), "{err}");
    let err = cli_fails(&config, &["rollback", "tag", "live"]);
    assert!(err.contains("no alias `live`"), "{err}");
    let v1 = tagged(dir.path(), "v1", false);
    cli(
        &config,
        &["deploy", "tag", v1.to_str().unwrap(), "--publish"],
    );
    let err = cli_fails(
        &config,
        &["alias", "set", "tag", "live", "1", "--weight", "1=x"],
    );
    assert!(err.contains("VERSION=PERCENT"), "{err}");
    // A malformed qualifier is a config error with its place.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("function = \"tag\"", "function = \"tag:0\""),
    )
    .unwrap();
    let output = ledge(&["check", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("bad.toml:") && err.contains("numbered from 1"),
        "{err}"
    );
}

#[test]
fn deploying_over_the_air_while_events_stream_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let (keys, config) = ota_gateway(dir.path(), mosquitto.port, "");
    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = TestClient::connect(mosquitto.port, "stream-client", &["out/#"]);
    let module = std::fs::read(tagged(dir.path(), "v2", false)).unwrap();
    let d = deployment(2, &module, 100);
    const EVENTS: u32 = 600;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
        std::thread::sleep(Duration::from_millis(2));
        if id == 100 {
            publish_document(&client, &d, "ops", &keys.seed);
            for (index, chunk) in module.chunks(100).enumerate() {
                publish_chunk(&client, &d, index, chunk);
            }
        }
    }
    let got = client.collect(EVENTS as usize, WAIT);
    let extra = client.drain(Duration::from_millis(500));
    let runs = runs(&got.iter().chain(&extra).cloned().collect::<Vec<_>>());
    let lost: Vec<u32> = (0..EVENTS).filter(|id| !runs.contains_key(id)).collect();
    assert!(lost.is_empty(), "lost {lost:?}\n{}", ledge.log_text());
    assert!(
        runs.values().all(|r| r.len() == 1),
        "an event ran twice: {:?}",
        runs.iter().filter(|(_, r)| r.len() > 1).collect::<Vec<_>>()
    );
    assert_eq!(runs[&0][0], "v1");
    assert_eq!(runs[&(EVENTS - 1)][0], "v2", "{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_version_that_cannot_start_is_rolled_back_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let upstream = format!(
        "[upstream]\nurl = \"mqtt://127.0.0.1:{}\"\n",
        mosquitto.port
    );
    let config = config(dir.path(), mosquitto.port, "tag:live", &upstream);
    let v1 = tagged(dir.path(), "v1", false);
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
    let store = store::Store::under(&dir.path().join("data"));
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

    let client = TestClient::connect(
        mosquitto.port,
        "nostart-client",
        &["out/#", "ledge/gw/deploy/status"],
    );
    let mut ledge = Ledge::start(&config);
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
fn a_replaced_draft_module_is_collected_once_nothing_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port, "tag", "");
    let modules = dir.path().join("data/functions/modules");
    let count = || std::fs::read_dir(&modules).unwrap().count();
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(mosquitto.port, "gc-client", &["out/#"]);
    assert_eq!(serving(&client, 1), "v0");
    let a = tagged(dir.path(), "va", false);
    let b = tagged(dir.path(), "vb", false);
    cli(&config, &["deploy", "tag", a.to_str().unwrap()]);
    assert_eq!(serving(&client, 2), "va");
    assert_eq!(count(), 1);
    cli(
        &config,
        &["deploy", "tag", b.to_str().unwrap(), "--publish"],
    );
    assert_eq!(serving(&client, 3), "vb");
    assert_eq!(count(), 1, "the replaced draft's module is still there");
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_disk_full_during_an_upload_rejects_it_cleans_up_and_v1_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let (keys, config) = ota_gateway(dir.path(), mosquitto.port, "");
    // Uploads land on a 64 KiB file system; the module is 200 KB.
    let uploads = dir.path().join("data/functions/uploads");
    let _disk = common::disk::SmallDisk::mount(&uploads, "64k");
    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = TestClient::connect(
        mosquitto.port,
        "full-client",
        &["out/#", "ledge/gw/deploy/status"],
    );
    let big = wat::parse_str(format!(
        r#"(module (memory (export "memory") 4)
  (data (i32.const 2048) "{}")
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param i32 i32) (result i32) (i32.const 0)))"#,
        "x".repeat(200_000)
    ))
    .unwrap();
    let d = deployment(2, &big, 32 << 10);
    publish_document(&client, &d, "ops", &keys.seed);
    for (index, chunk) in big.chunks(32 << 10).enumerate() {
        publish_chunk(&client, &d, index, chunk);
    }
    let rejected = report(&client, "rejected");
    let reason = rejected["reason"].as_str().unwrap();
    assert!(reason.contains("cannot store chunk"), "{reason}");
    assert!(reason.contains("partial files removed"), "{reason}");
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        0,
        "partial upload left on the full disk"
    );
    assert_eq!(serving(&client, 1), "v1", "{}", ledge.log_text());
    let state = cli(&config, &["versions", "tag", "--json"]);
    assert!(!state.contains("\"2\""), "{state}");
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn synchronous_invokes_reach_the_alias_or_version_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port, "tag:live", "");
    for tag in ["v1", "v2"] {
        let module = tagged(dir.path(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "1", "--no-watch"]);
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(mosquitto.port, "sync-client", &["out/#"]);
    let invoke = |name: &str, payload: &str| -> String {
        let out = cli(&config, &["invoke", name, "--remote", "--event", payload]);
        assert!(out.contains("status    ok"), "{out}");
        client.collect(1, WAIT)[0].topic.clone()
    };
    assert_eq!(invoke("tag:live", "e1"), "out/v1");
    assert_eq!(invoke("tag:1", "e2"), "out/v1");
    // A bare name is $LATEST: the last module deployed.
    assert_eq!(invoke("tag", "e3"), "out/v2");
    cli(&config, &["alias", "set", "tag", "live", "2", "--no-watch"]);
    assert_eq!(invoke("tag:live", "e4"), "out/v2", "{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn an_unused_version_is_deleted_and_its_module_collected_a_needed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port, "tag:live", "");
    for tag in ["v1", "v2", "v3"] {
        let module = tagged(dir.path(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "1", "--no-watch"]);
    cli(&config, &["alias", "set", "tag", "live", "2", "--no-watch"]);
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(mosquitto.port, "delete-client", &["out/#"]);
    let err = cli_fails(&config, &["versions", "tag", "--delete", "1"]);
    assert!(err.contains("in use by alias `live`"), "{err}");
    let modules = dir.path().join("data/functions/modules");
    let count = || std::fs::read_dir(&modules).unwrap().count();
    assert_eq!(count(), 3);
    // v3 is also $LATEST (the last deployed): its module stays.
    cli(
        &config,
        &[
            "deploy",
            "tag",
            tagged(dir.path(), "v1", false).to_str().unwrap(),
        ],
    );
    let out = cli(&config, &["versions", "tag", "--delete", "3"]);
    assert!(out.contains("deleted tag:3"), "{out}");
    assert!(out.contains("applied by the running ledge"), "{out}");
    assert_eq!(
        count(),
        2,
        "v3's module should be gone (v1 is $LATEST and 1, v2 is 2)"
    );
    let state = cli(&config, &["versions", "tag", "--json"]);
    let state: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let versions: Vec<&String> = state["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["1", "2"]);
    assert_eq!(state["highest"], 3);
    assert_eq!(serving(&client, 1), "v2", "{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_durable_trigger_splits_its_stream_between_an_alias_and_its_canary() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let config = config(dir.path(), mosquitto.port, "tag:live", "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "function = \"tag:live\"\n",
            "function = \"tag:live\"\ndurable = true\n",
        ),
    )
    .unwrap();
    for tag in ["v1", "v2"] {
        let module = tagged(dir.path(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(
        &config,
        &[
            "alias",
            "set",
            "tag",
            "live",
            "1",
            "--weight",
            "2=30",
            "--no-watch",
        ],
    );
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(mosquitto.port, "durable-split", &["out/#"]);
    const EVENTS: u32 = 300;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
    }
    let got = client.collect(EVENTS as usize, WAIT);
    let runs = runs(&got);
    assert_eq!(runs.len(), EVENTS as usize, "{}", ledge.log_text());
    assert!(runs.values().all(|r| r.len() == 1), "an event ran twice");
    let canary = runs.values().filter(|r| r[0] == "v2").count();
    // Binomial(300, 0.3): mean 90, sd 7.9; ±5 sd.
    assert!(
        (50..=130).contains(&canary),
        "{canary} of {EVENTS} on the canary"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn each_rollback_goes_one_step_further_back_and_refuses_at_the_first_target() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), common::free_port(), "tag:live", "");
    for tag in ["v1", "v2", "v3"] {
        let module = tagged(dir.path(), tag, false);
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
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), common::free_port(), "tag:live", "");
    for tag in ["v1", "v2"] {
        let module = tagged(dir.path(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    // The state file as ledge wrote it before aliases kept a history: one
    // `previous` target.
    let path = dir.path().join("data/functions/tag.json");
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

/// `ledge invoke --json` of `name`: its exit code and report.
fn invoke_json(config: &Path, name: &str) -> (Option<i32>, serde_json::Value) {
    let output = ledge(&[
        "invoke",
        name,
        "--json",
        "--event",
        "e1",
        "--config",
        config.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "ledge invoke {name}: not one JSON object ({e}):\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

fn published_topics(report: &serde_json::Value) -> Vec<String> {
    report["publishes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["topic"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn invoking_latest_runs_the_draft_even_with_a_default_alias() {
    let dir = tempfile::tempdir().unwrap();
    let v0 = tagged(dir.path(), "v0", false);
    let config = common::write_config(
        dir.path(),
        &format!(
            "[device]\nid = \"gw\"\ndata_dir = \"data\"\n\
             [[function]]\nname = \"tag\"\nmodule = \"{}\"\nallow_publish = [\"out/#\"]\n\
             default_alias = \"live\"\n",
            v0.display()
        ),
    );
    let good = tagged(dir.path(), "v1", false);
    cli(
        &config,
        &[
            "deploy",
            "tag",
            good.to_str().unwrap(),
            "--publish",
            "--alias",
            "live",
            "--no-watch",
        ],
    );
    // A broken draft: deployed as $LATEST, not published.
    let broken = tagged(dir.path(), "draft", true);
    cli(&config, &["deploy", "tag", broken.to_str().unwrap()]);

    let (code, report) = invoke_json(&config, "tag:$LATEST");
    assert_eq!(code, Some(1), "the broken draft must fail: {report}");
    assert_eq!(report["version"], "$LATEST", "{report}");
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(published_topics(&report), ["out/draft"], "{report}");
    // The bare name follows default_alias, and says where it went.
    let (code, report) = invoke_json(&config, "tag");
    assert_eq!(
        (code, &report["version"]),
        (Some(0), &"1".into()),
        "{report}"
    );
    assert_eq!(published_topics(&report), ["out/v1"], "{report}");
    let (code, report) = invoke_json(&config, "tag:live");
    assert_eq!(
        (code, &report["version"]),
        (Some(0), &"1".into()),
        "{report}"
    );
    // The text output names the version too, and so does the failure.
    let output = ledge(&[
        "invoke",
        "tag:$LATEST",
        "--config",
        config.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("function  tag ($LATEST)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("function tag version $LATEST request "),
        "{stderr}"
    );
}

#[test]
fn every_published_version_is_invocable_not_only_those_an_alias_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), common::free_port(), "tag:live", "");
    for tag in ["v1", "v2", "v3"] {
        let module = tagged(dir.path(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "3", "--no-watch"]);
    for version in ["1", "2", "3"] {
        let (code, report) = invoke_json(&config, &format!("tag:{version}"));
        assert_eq!(code, Some(0), "tag:{version}: {report}");
        assert_eq!(report["version"], version, "{report}");
        assert_eq!(
            published_topics(&report),
            [format!("out/v{version}")],
            "{report}"
        );
    }
    let err = cli_fails(&config, &["invoke", "tag:9"]);
    assert!(
        err.contains("function `tag` has no published version 9"),
        "{err}"
    );
}
