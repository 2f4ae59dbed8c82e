//! ledge cross-builds as a static aarch64-musl binary (what a 64-bit
//! Raspberry Pi runs) and that binary works: under qemu-aarch64-static it
//! invokes a function and serves MQTT-triggered functions against mosquitto.
//!
//! The build goes to target/cross so it does not wait on the lock of the
//! `cargo test` that runs this file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::broker::{Mosquitto, TestClient};
use common::process::Ledge;

const TARGET: &str = "aarch64-unknown-linux-musl";
const QEMU: &str = "qemu-aarch64-static";

/// Builds once per test process and returns the binary's path.
fn aarch64_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let repo = common::repo();
        let output = Command::new(repo.join("cross/build.sh"))
            .arg(TARGET)
            .env("CARGO_TARGET_DIR", repo.join("target/cross"))
            .output()
            .expect("run cross/build.sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cross/build.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("binary"))
            .expect("binary line");
        PathBuf::from(line.trim_start_matches("binary").trim())
    })
}

fn qemu() -> Command {
    let available = Command::new(QEMU).arg("--version").output().is_ok();
    assert!(
        available,
        "{QEMU} is missing: apt-get install qemu-user-static"
    );
    let mut command = Command::new(QEMU);
    command.arg(aarch64_binary());
    command
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

#[test]
fn the_cross_build_is_a_static_aarch64_elf() {
    let bytes = std::fs::read(aarch64_binary()).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(bytes[4], 2, "64-bit");
    assert_eq!(u16_at(&bytes, 18), 183, "e_machine is EM_AARCH64");
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, count) = (u16_at(&bytes, 0x36) as usize, u16_at(&bytes, 0x38) as usize);
    let has_interpreter = (0..count)
        .map(|i| u32::from_le_bytes(bytes[phoff + i * entry_size..][..4].try_into().unwrap()))
        .any(|kind| kind == 3);
    assert!(
        !has_interpreter,
        "PT_INTERP present: the binary is not static"
    );
}

#[test]
fn the_aarch64_binary_invokes_a_function_under_qemu() {
    let config = common::repo().join("examples/quickstart/ledge.toml");
    let output = qemu()
        .args(["invoke", "threshold-alert", "--config"])
        .arg(&config)
        .args(["--event", r#"{"value":33.25,"sensor":"barn"}"#])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(r#"response  {"alert":true,"sensor":"barn","value":33.25}"#),
        "{stdout}"
    );
    assert!(stdout.contains("publish   alerts/barn qos1"), "{stdout}");
}

#[test]
fn the_aarch64_binary_serves_mqtt_triggers_under_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path());
    let text = format!(
        "[device]\nid = \"arm\"\ndata_dir = \"data\"\n[broker]\nurl = \"mqtt://127.0.0.1:{}\"\n{}{}",
        mosquitto.port,
        common::function_toml(
            "threshold-alert",
            &common::example("threshold-alert"),
            "allow_publish = [\"alerts/#\"]"
        ),
        common::mqtt_trigger("sensors/+/reading", "threshold-alert")
    );
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::spawn_command(qemu(), &config, &[]);
    ledge.wait_for_line("trigger filters", Duration::from_secs(60));
    let client = TestClient::connect(mosquitto.port, "arm-client", &["alerts/#"]);
    for i in 0..20 {
        client.publish(
            &format!("sensors/p{i}/reading"),
            format!("{{\"value\":{}}}", 40 + i),
        );
    }
    let alerts = client.collect(20, Duration::from_secs(30));
    assert_eq!(alerts.len(), 20, "log:\n{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}
