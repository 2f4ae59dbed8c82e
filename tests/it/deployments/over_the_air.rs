//! Over-the-air deployments through the upstream: only a signed, whole
//! and loadable module goes live; chunks may come out of order, twice or
//! cut; every refusal (signature, key, size, hash, not wasm, not newer, a
//! full disk) is reported with its reason while v1 keeps serving; an upload
//! resumes after a kill -9, and a store left by a crash loads; documents
//! built to flood the log or the memory are refused in a few bytes.

use super::*;
use crate::common::gateway::Module;
use crate::common::process::{self, Ledge};

#[test]
fn a_signed_chunked_deployment_arrives_over_the_upstream_out_of_order_and_goes_live() {
    let (gateway, seed) = ota_gateway("");
    let config = gateway.config();
    let mut ledge = gateway.start();
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = gateway.client("ota-client", &["out/#", "ledge/gw/deploy/status"]);
    assert_eq!(serving(&client, 1), "v1");

    let module = std::fs::read(tagged(gateway.dir(), "v7", false)).unwrap();
    let d = deployment(7, &module, 64);
    let chunks: Vec<&[u8]> = module.chunks(64).collect();
    assert!(chunks.len() >= 3, "a few chunks, not {}", chunks.len());
    publish_document(&client, &d, "ops", &seed);
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
        !gateway.dir().join("data/functions/uploads/tag-7").exists(),
        "upload files left behind"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn bad_deployments_are_rejected_with_their_reason_and_v1_keeps_serving() {
    let (gateway, seed) = ota_gateway("max_module_size = \"2KiB\"\n");
    let config = gateway.config();
    let mut ledge = gateway.start();
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = gateway.client("bad-client", &["out/#", "ledge/gw/deploy/status"]);
    let module = std::fs::read(tagged(gateway.dir(), "v2", false)).unwrap();
    let rejected = |what: &str, needle: &str| {
        let r = try_report(&client, "rejected")
            .unwrap_or_else(|| panic!("{what}: no report; log:\n{}", ledge.log_text()));
        let reason = r["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains(needle), "{what}: reason {reason:?}");
    };

    // A tampered signature.
    let mut envelope = document::seal(&deployment(2, &module, 64), "ops", &seed).unwrap();
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
    publish_document(&client, &big, "ops", &seed);
    rejected("oversized", "max_module_size");

    // Not JSON at all.
    client.publish("ledge/gw/deploy", b"\x00garbage".to_vec());
    rejected("garbage", "not a deployment document");

    // A hash that does not match what arrives.
    let mut wrong_hash = deployment(2, &module, 1024);
    wrong_hash.sha256 = store::sha256_hex(b"something else");
    publish_document(&client, &wrong_hash, "ops", &seed);
    publish_chunk(&client, &wrong_hash, 0, &module);
    rejected("hash", "hash mismatch");
    assert!(!gateway.dir().join("data/functions/uploads/tag-2").exists());

    // Bytes that are not WebAssembly.
    let junk = vec![0x42u8; 300];
    let d = deployment(2, &junk, 1024);
    publish_document(&client, &d, "ops", &seed);
    publish_chunk(&client, &d, 0, &junk);
    rejected("junk", "does not load");

    // A version that is not newer (1 is published).
    publish_document(&client, &deployment(1, &module, 1024), "ops", &seed);
    rejected("version 1", "not newer");

    assert_eq!(serving(&client, 1), "v1", "{}", ledge.log_text());

    // A good v3, then a replay of an older (but validly signed) v2.
    let d3 = deployment(3, &module, 1024);
    publish_document(&client, &d3, "ops", &seed);
    publish_chunk(&client, &d3, 0, &module);
    assert_eq!(report(&client, "deployed")["version"], 3);
    publish_document(&client, &deployment(2, &module, 1024), "ops", &seed);
    rejected("replay", "not newer than 3");
    let state = cli(&config, &["versions", "tag", "--json"]);
    let state: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let versions: Vec<&String> = state["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["1", "3"]);
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_disk_full_during_an_upload_rejects_it_cleans_up_and_v1_keeps_serving() {
    let (gateway, seed) = ota_gateway("");
    let config = gateway.config();
    // Uploads land on a 64 KiB file system; the module is 200 KB.
    let uploads = gateway.dir().join("data/functions/uploads");
    let _disk = common::disk::SmallDisk::mount(&uploads, "64k");
    let mut ledge = gateway.start();
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = gateway.client("full-client", &["out/#", "ledge/gw/deploy/status"]);
    let big = wat::parse_str(format!(
        r#"(module (memory (export "memory") 4)
  (data (i32.const 2048) "{}")
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param i32 i32) (result i32) (i32.const 0)))"#,
        "x".repeat(200_000)
    ))
    .unwrap();
    let d = deployment(2, &big, 32 << 10);
    publish_document(&client, &d, "ops", &seed);
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
fn an_upload_resumes_after_a_kill_9_and_the_store_survives_crash_leftovers() {
    let (gateway, seed) = ota_gateway("");
    let mut ledge = gateway.start();
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = gateway.client("resume-client", &["out/#", "ledge/gw/deploy/status"]);
    let module = std::fs::read(tagged(gateway.dir(), "v2", false)).unwrap();
    let d = deployment(2, &module, 32);
    let chunks: Vec<&[u8]> = module.chunks(32).collect();
    publish_document(&client, &d, "ops", &seed);
    report(&client, "receiving");
    let half = chunks.len() / 2;
    for (index, chunk) in chunks.iter().enumerate().take(half) {
        publish_chunk(&client, &d, index, chunk);
    }
    let upload = gateway.dir().join("data/functions/uploads/tag-2");
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
    process::signal(ledge.pid(), "KILL");
    ledge.wait(Duration::from_secs(10));

    // What a crash in the middle of a store write can leave: a temp file
    // and a module no state refers to.
    let functions = gateway.dir().join("data/functions");
    std::fs::write(functions.join("tag.tmp"), b"{\"torn").unwrap();
    let orphan = functions.join(format!("modules/{}.wasm", "0".repeat(64)));
    std::fs::write(&orphan, b"orphan").unwrap();

    let mut ledge = gateway.start();
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

/// A gateway whose upstream is its mosquitto, trusting a fresh key and
/// modules up to 8 MiB, with function `tag` and no trigger; and the key's
/// seed.
fn trusting_gateway() -> (Gateway, [u8; 32]) {
    let gateway = Gateway::new("gw").with_mosquitto().upstream_on_local();
    let (seed, public) = keygen(gateway.dir());
    let gateway = gateway
        .append(&format!(
            "[deploy]\ntrusted_keys = [\"{public}\"]\nmax_module_size = \"8MiB\""
        ))
        .function("tag", Module::Fixture("ok"), "");
    (gateway, seed)
}

fn log_bytes(ledge: &Ledge) -> usize {
    ledge.log.lock().unwrap().iter().map(|l| l.len() + 1).sum()
}

#[test]
fn ota_documents_built_to_flood_are_bounded_in_log_and_report() {
    let (gateway, seed) = trusting_gateway();
    let mut ledge = gateway.start();
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = gateway.client("ota-client", &["ledge/gw/deploy/status"]);

    // An unsigned document whose key id is a megabyte.
    let before = log_bytes(&ledge);
    let envelope = document::Envelope {
        deployment: "{}".to_owned(),
        key_id: "k".repeat(1 << 20),
        signature: "00".repeat(64),
    };
    client.publish("ledge/gw/deploy", serde_json::to_vec(&envelope).unwrap());
    let report = client.next(WAIT).expect("rejection report");
    assert!(
        report.payload.len() < 1024,
        "report of {} bytes",
        report.payload.len()
    );
    assert!(report.text().contains("unknown key"), "{}", report.text());
    ledge.wait_for_log("unknown key", WAIT);
    assert!(
        log_bytes(&ledge) - before < 8 << 10,
        "log grew by {}",
        log_bytes(&ledge) - before
    );

    // A signed document declaring four million one-byte chunks.
    let before = log_bytes(&ledge);
    let module = vec![0u8; 4 << 20];
    let deployment = Deployment {
        format: document::FORMAT.to_owned(),
        function: "tag".to_owned(),
        version: 1,
        alias: None,
        sha256: store::sha256_hex(&module),
        size: module.len() as u64,
        chunk_size: 1,
        settings: Settings::default(),
        created_at_ms: 0,
    };
    let envelope = document::seal(&deployment, "ops", &seed).unwrap();
    client.publish("ledge/gw/deploy", serde_json::to_vec(&envelope).unwrap());
    let report = client.next(WAIT).expect("a report on the document");
    assert!(
        report.payload.len() < 4096,
        "report of {} bytes",
        report.payload.len()
    );
    assert_eq!(report.json()["event"], "rejected", "{}", report.text());
    assert!(report.text().contains("chunk"), "{}", report.text());
    ledge.wait_for_log("chunk", WAIT);
    assert!(
        log_bytes(&ledge) - before < 8 << 10,
        "log grew by {}",
        log_bytes(&ledge) - before
    );
}
