//! ledge cross-builds as a static aarch64-musl binary (what a 64-bit
//! Raspberry Pi runs), the build is reproducible, and that binary works:
//! under qemu-aarch64-static it invokes a function, serves MQTT-triggered
//! functions against mosquitto, and its spool survives a kill -9.
//!
//! The tests build a snapshot of the checkout (target/cross-src, so edits
//! made while they run do not mix into it) into target/cross, which does not
//! wait on the lock of the `cargo test` that runs this file; the
//! reproducibility check builds a copy of the snapshot from another folder
//! into target/cross-repro.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::broker::{DurableSubscriber, Message, Mosquitto, TestClient};
use common::process::Ledge;

const TARGET: &str = "aarch64-unknown-linux-musl";
const QEMU: &str = "qemu-aarch64-static";
/// Start-up under qemu on a busy 2-core machine (a cross build may be
/// running beside it) takes seconds, not milliseconds.
const QEMU_START: Duration = Duration::from_secs(60);

/// One run of cross/build.sh.
struct Build {
    binary: PathBuf,
    sha256: String,
}

/// The aarch64 build every test here uses, made once per test process.
struct CheckoutBuild {
    build: Build,
    /// The snapshot of the checkout it was built from (the tree may be
    /// edited while the tests run; the snapshot is not).
    snapshot: PathBuf,
    /// The snapshot's files, relative to it.
    files: Vec<PathBuf>,
    /// Held for the life of the test process, so a second `cargo test` of
    /// this file waits instead of rewriting the snapshot under this one.
    _lock: std::fs::File,
}

fn checkout_build() -> &'static CheckoutBuild {
    static BUILD: OnceLock<CheckoutBuild> = OnceLock::new();
    BUILD.get_or_init(|| {
        let target = common::repo().join("target");
        std::fs::create_dir_all(&target).unwrap();
        let lock = std::fs::File::create(target.join("cross.lock")).unwrap();
        lock.lock().expect("lock target/cross.lock");
        let files = source_files(&common::repo());
        let snapshot = target.join("cross-src/ledge");
        mirror(&common::repo(), &files, &snapshot);
        CheckoutBuild {
            build: cross_build(&snapshot, &target.join("cross")),
            snapshot,
            files,
            _lock: lock,
        }
    })
}

fn aarch64_binary() -> &'static Path {
    &checkout_build().build.binary
}

/// Runs `<checkout>/cross/build.sh` for aarch64 into `target_dir`.
fn cross_build(checkout: &Path, target_dir: &Path) -> Build {
    let output = Command::new(checkout.join("cross/build.sh"))
        .arg(TARGET)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("run cross/build.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cross/build.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{stdout}"))
            .trim()
            .to_owned()
    };
    Build {
        binary: PathBuf::from(field("binary")),
        sha256: field("sha256"),
    }
}

/// The checkout's files as a build sees them: tracked (with any local
/// edits) and untracked-but-not-ignored, relative to the root.
fn source_files(repo: &Path) -> Vec<PathBuf> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo)
        .output()
        .expect("run git ls-files (these tests build a snapshot of a git checkout)");
    assert!(output.status.success(), "git ls-files failed");
    let mut files: Vec<PathBuf> = output
        .stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .filter(|name| repo.join(name).is_file()) // tracked but deleted
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Makes `to` hold exactly `files` of `from`. Only files whose contents
/// differ are copied, so cargo sees the others unchanged and a rerun with
/// nothing edited builds nothing.
fn mirror(from: &Path, files: &[PathBuf], to: &Path) {
    for file in files {
        let (source, copy) = (from.join(file), to.join(file));
        if std::fs::read(&source).ok() != std::fs::read(&copy).ok() {
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::copy(&source, &copy)
                .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
    }
    let keep: HashSet<&Path> = files.iter().map(PathBuf::as_path).collect();
    for stale in files_under(to, Path::new("")) {
        if !keep.contains(stale.as_path()) {
            std::fs::remove_file(to.join(&stale)).unwrap();
        }
    }
}

/// Every file under `root/relative`, relative to `root`.
fn files_under(root: &Path, relative: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join(relative)).unwrap() {
        let entry = entry.unwrap();
        let path = relative.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            files.extend(files_under(root, &path));
        } else {
            files.push(path);
        }
    }
    files
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
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let (entry_size, count) = (u16_at(&bytes, 0x3a) as usize, u16_at(&bytes, 0x3c) as usize);
    let has_symbols = (0..count)
        .map(|i| u32::from_le_bytes(bytes[shoff + i * entry_size + 4..][..4].try_into().unwrap()))
        .any(|kind| kind == 2);
    assert!(
        !has_symbols,
        "SHT_SYMTAB present: the binary is not stripped"
    );
}

#[test]
fn the_aarch64_binary_with_default_features_fits_in_5_mib() {
    let size = std::fs::metadata(aarch64_binary()).unwrap().len();
    assert!(size <= 5 << 20, "{size} bytes: over the 5 MiB budget");
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

#[test]
fn two_aarch64_builds_of_the_same_sources_in_different_folders_are_identical() {
    let first = checkout_build();
    // Another folder (of another length) and a target directory of its
    // own. Both are kept between runs like target/cross: their
    // dependencies were compiled independently of target/cross's when
    // they were created (delete them to compare two cold builds), and
    // ledge itself is rebuilt in both whenever its sources change.
    let target = common::repo().join("target");
    let elsewhere = target.join("cross-repro-src/another-folder");
    mirror(&first.snapshot, &first.files, &elsewhere);
    let second = cross_build(&elsewhere, &target.join("cross-repro"));
    assert_eq!(
        second.sha256,
        first.build.sha256,
        "{} and {} differ: a path or a timestamp leaks into the binary",
        first.build.binary.display(),
        second.binary.display()
    );
}

/// `payload(id)`: the id and some padding, so a torn record shows.
fn payload(id: u64) -> String {
    format!("id:{id}:{}", "p".repeat((id % 40) as usize))
}

/// The id of a forwarded record, checking its payload arrived intact.
fn id_of(message: &Message) -> u64 {
    let text = message.text();
    let id = text
        .split(':')
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("corrupt payload {text:?}"));
    assert_eq!(text, payload(id), "payload intact");
    id
}

#[test]
fn the_aarch64_binary_under_qemu_forwards_every_record_across_a_kill_9() {
    const RECORDS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    // An external local broker keeps ledge's session while ledge is dead:
    // what ledge had not acknowledged, and what is published meanwhile, is
    // delivered when it comes back.
    let local = Mosquitto::start_persistent(dir.path(), common::free_port());
    let upstream = Mosquitto::start_persistent(dir.path(), common::free_port());
    let backend = DurableSubscriber::connect(upstream.port, "backend", "ledge/+/events/#");
    let config = common::write_config(
        dir.path(),
        &format!(
            "[device]\nid = \"arm-gw\"\ndata_dir = \"data\"\n\
             [broker]\nurl = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"5s\"\n\
             [upstream]\nurl = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"5s\"\n\
             [[forward]]\ntopic = \"data/#\"\n",
            local.port, upstream.port
        ),
    );
    let mut ledge = Ledge::spawn_command(qemu(), &config, &[]);
    ledge.wait_for_line("trigger filters", QEMU_START);
    ledge.wait_for_log("connected to upstream", QEMU_START);

    let producer = TestClient::connect(local.port, "producer", &[]);
    for id in 0..RECORDS / 2 {
        producer.publish("data/arm", payload(id));
        std::thread::sleep(Duration::from_millis(2));
    }
    // Forwarding is under way: kill -9 the emulated process (qemu-user runs
    // the guest in its own pid) in the middle of a burst.
    let mut got = backend.collect_until(QEMU_START, |_| true);
    assert!(
        !got.is_empty(),
        "nothing forwarded; log:\n{}",
        ledge.log_text()
    );
    for id in RECORDS / 2..RECORDS * 2 / 3 {
        producer.publish("data/arm", payload(id));
    }
    common::process::signal(ledge.pid(), "KILL");
    ledge.wait(Duration::from_secs(10));
    let before_kill = got.len();
    for id in RECORDS * 2 / 3..RECORDS {
        producer.publish("data/arm", payload(id));
    }

    let mut ledge = Ledge::spawn_command(qemu(), &config, &[]);
    ledge.wait_for_line("trigger filters", QEMU_START);
    let mut seen: HashSet<u64> = got.iter().map(id_of).collect();
    got.extend(backend.collect_until(Duration::from_secs(120), |m| {
        seen.insert(id_of(m));
        seen.len() as u64 >= RECORDS
    }));
    let ids: Vec<u64> = got.iter().map(id_of).collect();
    let missing: Vec<u64> = (0..RECORDS).filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "lost across the kill -9 ({before_kill} had arrived before it): {missing:?}; log:\n{}",
        ledge.log_text()
    );
    let mut first_seen = HashSet::new();
    let firsts: Vec<u64> = ids
        .into_iter()
        .filter(|id| first_seen.insert(*id))
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "first arrivals out of order: {firsts:?}"
    );
    assert!(got
        .iter()
        .all(|m| m.topic == "ledge/arm-gw/events/data/arm"));
    assert_eq!(ledge.terminate().code(), Some(0));

    let verify = qemu()
        .args(["spool", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    drop(producer);
}
