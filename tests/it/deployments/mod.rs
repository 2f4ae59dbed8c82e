//! Deployments: switching versions loses and repeats nothing; only signed,
//! whole, loadable deployments go live over the air, and every refusal
//! says why; a version that fails is rolled back automatically and every
//! rollback goes one step back; versions and their modules are kept while
//! something needs them and collected after; a crash in the middle of any
//! of it leaves one state or the other.
//!
//! Every test runs function `tag` (modules from `common::tagged`: each
//! publishes its events on `out/<version tag>`) through the CLI against a
//! real ledge and a real mosquitto, which is also the upstream for
//! over-the-air deployments.

mod over_the_air;
mod rollback;
mod switching;
mod versions;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::broker::{Message, TestClient};
use crate::common::gateway::Gateway;
use crate::common::process::ledge;
use crate::common::{self, tagged};
use ledge::deploy::document::{self, Deployment};
use ledge::deploy::store::{self, Settings};
use ledge::signing;

const WAIT: Duration = Duration::from_secs(30);

/// Gateway `gw` on a fresh mosquitto running function `tag` (its $LATEST
/// publishes on `out/v0`), triggered on `in/#` through `target`.
fn gateway(target: &str) -> Gateway {
    with_tag(Gateway::new("gw").with_mosquitto(), target)
}

/// The same gateway with no broker running: for commands that need no
/// running ledge.
fn offline(target: &str) -> Gateway {
    with_tag(Gateway::new("gw").broker_at(common::free_port()), target)
}

fn with_tag(gateway: Gateway, target: &str) -> Gateway {
    let v0 = tagged(gateway.dir(), "v0", false);
    gateway
        .broker("keep_alive = \"5s\"")
        .function(
            "tag",
            v0,
            "allow_publish = [\"out/#\"]\nretries = 0\non_failure = \"drop\"\nqueue_size = 4096",
        )
        .mqtt_trigger("in/#", target)
}

/// `ledge <args> --config <config>`, which must succeed: its stdout and
/// stderr.
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

/// `ledge <args> --config <config>`, which must fail: its stderr.
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

/// A signing key's secret seed, made with `ledge keygen --id ops` in
/// `dir`; and its public line, for `trusted_keys`.
fn keygen(dir: &Path) -> ([u8; 32], String) {
    let key = dir.join("ops.key");
    let output = ledge(&["keygen", "--id", "ops", "--out", key.to_str().unwrap()]);
    assert!(output.status.success());
    let public = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let seed = signing::parse_secret_key(&std::fs::read_to_string(&key).unwrap()).unwrap();
    (seed, public)
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

/// A gateway whose upstream is its mosquitto, trusting a fresh key (with
/// `deploy_extra` in its `[deploy]`), running v1 on `tag:live`; and the
/// key's seed.
fn ota_gateway(deploy_extra: &str) -> (Gateway, [u8; 32]) {
    let gateway = gateway("tag:live");
    let (seed, public) = keygen(gateway.dir());
    let gateway = gateway.upstream_on_local().append(&format!(
        "[deploy]\ntrusted_keys = [\"{public}\"]\n{deploy_extra}"
    ));
    v1_live(gateway.dir(), &gateway.write());
    (gateway, seed)
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
