//! Bad input from the operator's side (issue 13), against the real `ledge`
//! binary: files that are not regular files or are huge, names that try to
//! leave the store, GPIO lines used twice, non-UTF-8 configs, and OTA
//! documents built to blow up the log or the memory.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::{Mosquitto, TestClient};
use common::process::{ledge, ledge_bin, Ledge};
use ledge::deploy::document::{self, Deployment};
use ledge::deploy::store::{self, Settings};
use ledge::signing;

const WAIT: Duration = Duration::from_secs(20);

/// Runs `ledge <args>`; fails the test if it has not exited within 20 s
/// (a blocked read of a FIFO, a read of /dev/zero).
fn ledge_bounded(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(ledge_bin())
        .args(args)
        .env_remove("LEDGE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ledge");
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let output = child.wait_with_output().expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            return (output.status.code(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ledge {args:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

#[test]
fn a_module_or_deploy_file_that_is_a_fifo_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("module.wasm");
    mkfifo(&fifo);
    let text = "[device]\nid = \"gw\"\ndata_dir = \"data\"\n".to_owned()
        + &common::function_toml("f", &fifo, "");
    let config = common::write_config(dir.path(), &text);
    let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains(&fifo.display().to_string()) && output.contains("not a regular file"),
        "{output}"
    );

    let ok = common::fixture(dir.path(), "ok");
    let text = "[device]\nid = \"gw\"\ndata_dir = \"data\"\n".to_owned()
        + &common::function_toml("f", &ok, "");
    let config = common::write_config(dir.path(), &text);
    let (code, output) = ledge_bounded(&[
        "deploy",
        "f",
        fifo.to_str().unwrap(),
        "--no-watch",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_ne!(code, Some(0), "{output}");
    assert!(
        output.contains(&fifo.display().to_string()) && output.contains("not a regular file"),
        "{output}"
    );
}

#[test]
fn secret_and_module_files_that_never_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ok = common::fixture(dir.path(), "ok");
    for (what, extra_broker, extra_function) in [
        (
            "password_file",
            "username = \"u\"\npassword_file = \"/dev/zero\"\n",
            "",
        ),
        ("env_file", "", "env_file = \"/dev/zero\""),
    ] {
        let text = format!(
            "[device]\nid = \"gw\"\ndata_dir = \"data\"\n[broker]\nurl = \"mqtt://127.0.0.1:1\"\n{extra_broker}"
        ) + &common::function_toml("f", &ok, extra_function);
        let config = common::write_config(dir.path(), &text);
        let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{what}: {output}");
        assert!(output.contains("/dev/zero"), "{what}: {output}");
    }
    // A secret file larger than any secret.
    let big = dir.path().join("big.env");
    std::fs::write(&big, format!("K={}\n", "v".repeat(2 << 20))).unwrap();
    let text = common::function_toml("f", &ok, "env_file = \"big.env\"");
    let config = common::write_config(dir.path(), &text);
    let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("big.env") && output.contains("larger than"),
        "{output}"
    );
    // A module that never ends.
    let text = common::function_toml("f", Path::new("/dev/zero"), "");
    let config = common::write_config(dir.path(), &text);
    let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("/dev/zero"), "{output}");
}

#[test]
fn a_non_utf8_config_names_the_line_and_column_of_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ledge.toml");
    std::fs::write(&config, b"[device]\nid = \"g\xffw\"\n").unwrap();
    let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains(&format!("{}:2:8:", config.display())) && output.contains("UTF-8"),
        "{output}"
    );
}

#[test]
fn names_that_leave_the_store_are_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let ok = common::fixture(dir.path(), "ok");
    let text = "[device]\nid = \"gw\"\ndata_dir = \"data\"\n".to_owned()
        + &common::function_toml("f", &ok, "");
    let config = common::write_config(dir.path(), &text);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    // What `../x` would reach from the store's folders.
    std::fs::write(dir.path().join("data/x.json"), "{}").unwrap();
    let c = config.to_str().unwrap();
    let ok_path = ok.to_str().unwrap();
    let commands: [&[&str]; 6] = [
        &["versions", "../x", "--config", c],
        &["versions", "../x", "--delete", "1", "--config", c],
        &["deploy", "../x", ok_path, "--no-watch", "--config", c],
        &[
            "alias",
            "set",
            "../x",
            "live",
            "1",
            "--no-watch",
            "--config",
            c,
        ],
        &[
            "alias",
            "set",
            "f",
            "../live",
            "1",
            "--no-watch",
            "--config",
            c,
        ],
        &["rollback", "../x", "live", "--config", c],
    ];
    for args in commands {
        let (code, output) = ledge_bounded(args);
        assert_eq!(code, Some(2), "ledge {args:?}: {output}");
        assert!(output.contains("`../"), "ledge {args:?}: {output}");
    }
}

#[test]
fn two_gpio_outputs_on_one_line_are_refused_with_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[device]\nid = \"gw\"\nboard = \"rpi4\"\n\
                [[gpio_output]]\nname = \"pump\"\npin = \"GPIO17\"\n\
                [[gpio_output]]\nname = \"fan\"\npin = \"PIN11\"\n";
    let config = common::write_config(dir.path(), text);
    let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{output}");
    let file = config.display().to_string();
    assert!(
        output.contains(&format!("{file}:9:")) && output.contains(&format!("{file}:6:")),
        "{output}"
    );
    assert!(
        output.contains("pump") && output.contains("fan"),
        "{output}"
    );
}

/// A gateway whose upstream is `port`, trusting a fresh key; returns the
/// key's seed and the config.
fn ota_gateway(dir: &Path, port: u16) -> ([u8; 32], std::path::PathBuf) {
    let key = dir.join("ops.key");
    let output = ledge(&["keygen", "--id", "ops", "--out", key.to_str().unwrap()]);
    assert!(output.status.success());
    let public = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let seed = signing::parse_secret_key(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let text = format!(
        "[device]\nid = \"gw\"\ndata_dir = \"data\"\n\
         [broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         [deploy]\ntrusted_keys = [\"{public}\"]\nmax_module_size = \"8MiB\"\n"
    ) + &common::function_toml("tag", &common::fixture(dir, "ok"), "");
    (seed, common::write_config(dir, &text))
}

fn log_bytes(ledge: &Ledge) -> usize {
    ledge.log.lock().unwrap().iter().map(|l| l.len() + 1).sum()
}

#[test]
fn ota_documents_built_to_flood_are_bounded_in_log_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let (seed, config) = ota_gateway(dir.path(), mosquitto.port);
    let mut ledge = Ledge::start(&config);
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = TestClient::connect(mosquitto.port, "ota-client", &["ledge/gw/deploy/status"]);

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

#[test]
fn keep_alives_the_mqtt_client_would_refuse_are_config_errors_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let local = common::free_port();
    let upstream = Mosquitto::start(dir.path());
    let text = format!(
        "[device]\nid = \"gw\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{local}\"\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"2s\"\n",
        upstream.port
    );
    let config = common::write_config(dir.path(), &text);
    let (code, out) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("ledge.toml:8:14") && out.contains("keep_alive must be between 5s and 65535s"),
        "{out}"
    );
    let (code, out) = ledge_bounded(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    let external = text.replace(
        &format!("listen = \"127.0.0.1:{local}\""),
        &format!(
            "url = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"1s\"",
            upstream.port
        ),
    );
    let config = common::write_config(dir.path(), &external.replace("keep_alive = \"2s\"\n", ""));
    let (code, out) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("keep_alive must be between 5s and 65535s"),
        "{out}"
    );
}
