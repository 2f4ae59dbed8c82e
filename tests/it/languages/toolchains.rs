//! Functions in C and AssemblyScript, built from source with their real
//! toolchains and run through `ledge invoke`; and `ledge new` projects in
//! Rust, C and AssemblyScript, which build and pass `ledge invoke` as made.
//!
//! Toolchains: clang and lld from Debian, assemblyscript from npm in
//! target/npm (tests/run.sh installs all three). Each module is built once
//! per run of the test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common;

use crate::common::process::ledge;
use serde_json::Value;

/// The pinned assemblyscript release (tests/run.sh installs the same).
const ASSEMBLYSCRIPT: &str = "assemblyscript@0.28.20";

/// Where this binary's builds go (kept between runs: target/ is a cache).
fn build_dir() -> PathBuf {
    let dir = common::repo().join("target/languages");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn asc() -> PathBuf {
    let asc = common::repo().join("target/npm/node_modules/.bin/asc");
    assert!(
        asc.is_file(),
        "{} is missing: run tests/run.sh, or `npm install --no-save --prefix target/npm {ASSEMBLYSCRIPT}`",
        asc.display()
    );
    asc
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {command:?}: {e} (tests/run.sh installs the toolchains)")
    });
    assert!(
        output.status.success(),
        "{what} failed: {command:?}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// functions/shout-c built by its build.sh, once.
fn shout_c() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = build_dir().join("shout-c.wasm");
        let script = common::repo().join("functions/shout-c/build.sh");
        run(Command::new(script).arg(&out), "building functions/shout-c");
        out
    })
}

/// functions/running-mean-as built by its build.sh, once.
fn running_mean_as() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = build_dir().join("running-mean-as.wasm");
        let script = common::repo().join("functions/running-mean-as/build.sh");
        run(
            Command::new(script).arg(&out).env("ASC", asc()),
            "building functions/running-mean-as",
        );
        out
    })
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `ledge invoke <args> --json`: exit code and the JSON reports.
fn invoke_json(args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let mut all = vec!["invoke", "--json"];
    all.extend_from_slice(args);
    let output = ledge(&all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let reports = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON report ({e}): {line}\n{stderr}"))
        })
        .collect();
    (output.status.code(), reports, stderr)
}

#[test]
fn the_c_example_runs_with_the_device_id_and_a_retained_publish() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        &format!(
            "[device]\nid = \"gw-7\"\n{}",
            common::function_toml("shout", shout_c(), "allow_publish = [\"shouts/#\"]")
        ),
    );
    let config = text(&config);
    let (code, reports, stderr) =
        invoke_json(&["shout", "--config", &config, "--event", "hello there"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = &reports[0];
    assert_eq!(report["response"], "HELLO THERE");
    let publish = &report["publishes"][0];
    assert_eq!(publish["topic"], "shouts/gw-7", "{report}");
    assert_eq!(publish["retain"], true);
    assert_eq!(report["logs"][0]["message"], "shouted 11 bytes");

    let (code, reports, _) = invoke_json(&["shout", "--config", &config, "--event", ""]);
    assert_eq!(code, Some(1));
    assert_eq!(reports[0]["error_kind"], "permanent_error");
    assert_eq!(reports[0]["error"], "empty payload: nothing to shout");
}

#[test]
fn the_assemblyscript_example_keeps_its_state_across_events() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("readings.jsonl");
    std::fs::write(&events, "10\n20\n{\"sensor\":\"t1\",\"value\":30}\n").unwrap();
    let (code, reports, stderr) = invoke_json(&[
        "--module",
        &text(running_mean_as()),
        "--source",
        "sensor",
        "--subject",
        "t1",
        "--events",
        &text(&events),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let responses: Vec<&str> = reports
        .iter()
        .map(|r| r["response"].as_str().unwrap())
        .collect();
    assert_eq!(
        responses,
        [
            r#"{"count":1,"mean":10.0}"#,
            r#"{"count":2,"mean":15.0}"#,
            r#"{"count":3,"mean":20.0}"#
        ]
    );
    assert_eq!(reports[2]["publishes"][0]["topic"], "means/t1");

    let (code, reports, _) =
        invoke_json(&["--module", &text(running_mean_as()), "--event", "warm"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        reports[0]["error_kind"], "permanent_error",
        "{}",
        reports[0]
    );
}

#[test]
fn an_assemblyscript_throw_names_its_message_and_line_and_math_random_works() {
    let out = build_dir().join("crash.wasm");
    let source = common::repo().join("tests/fixtures/assemblyscript/crash.ts");
    run(
        Command::new(asc())
            .arg(&source)
            // --debug keeps the name section, so traps name the function.
            .args([
                "--runtime",
                "incremental",
                "-O3s",
                "--debug",
                "--noColors",
                "--outFile",
            ])
            .arg(&out)
            .current_dir(common::repo()),
        "building tests/fixtures/assemblyscript/crash.ts",
    );
    let wasm = std::fs::read(&out).unwrap();
    let imports_seed = wasm.windows(9).any(|w| w == b"\x03env\x04seed");
    assert!(imports_seed, "Math.random should make asc import env.seed");

    let (code, reports, _) = invoke_json(&["--module", &text(&out), "--event", "go"]);
    assert_eq!(code, Some(0));
    assert_eq!(reports[0]["response"], "rolled");
    let (code, reports, _) = invoke_json(&["--module", &text(&out)]);
    assert_eq!(code, Some(1));
    // The message and location from AssemblyScript's strings, and the
    // function from the module's name section.
    let error = reports[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("trapped: abort: nothing to do at tests/fixtures/assemblyscript/crash.ts:14:5 (in function `")
            && error.ends_with("ledge_handle`)"),
        "{error}"
    );
}

/// `ledge new NAME --lang LANG` in a fresh directory, built with its
/// build.sh (plus `env`), then invoked with its own config and event.
fn scaffold_builds_and_invokes(lang: &str, env: &[(&str, PathBuf)]) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hello-{lang}");
    let project = dir.path().join(&name);
    let output = ledge(&["new", &name, "--lang", lang, "--dir", &text(&project)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut build = Command::new(project.join("build.sh"));
    for (key, value) in env {
        build.env(key, value);
    }
    run(&mut build, &format!("building the {lang} scaffold"));
    let config = text(&project.join("ledge.toml"));
    let event = text(&project.join("event.json"));
    let (code, reports, stderr) =
        invoke_json(&[&name, "--config", &config, "--event-file", &event]);
    assert_eq!(code, Some(0), "{stderr}");
    let expected = std::fs::read_to_string(project.join("event.json")).unwrap();
    assert_eq!(reports[0]["response"], expected.as_str());
    assert_eq!(reports[0]["publishes"][0]["topic"], format!("{name}/out"));

    // The same module alone: an empty event is a permanent failure.
    let module = text(&project.join(format!("{name}.wasm")));
    let (code, reports, _) = invoke_json(&["--module", &module]);
    assert_eq!(code, Some(1));
    assert_eq!(
        reports[0]["error_kind"], "permanent_error",
        "{}",
        reports[0]
    );
}

#[test]
fn a_new_c_function_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("c", &[]);
}

#[test]
fn a_new_assemblyscript_function_builds_and_passes_invoke() {
    scaffold_builds_and_invokes("assemblyscript", &[("ASC", asc())]);
}

#[test]
fn a_new_rust_function_builds_offline_and_passes_invoke() {
    // Offline: the project depends only on its copy of the SDK. Its build
    // cache is kept under target/ so a rerun does not rebuild it.
    scaffold_builds_and_invokes(
        "rust",
        &[
            ("CARGO_NET_OFFLINE", PathBuf::from("true")),
            ("CARGO_TARGET_DIR", build_dir().join("rust-scaffold")),
        ],
    );
}

#[test]
fn ledge_new_refuses_an_existing_directory_and_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    let output = ledge(&["new", "x", "--lang", "c", "--dir", &text(dir.path())]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exists"));
    let output = ledge(&[
        "new",
        "2fast",
        "--lang",
        "c",
        "--dir",
        &text(&dir.path().join("n")),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot name a function"));
}
