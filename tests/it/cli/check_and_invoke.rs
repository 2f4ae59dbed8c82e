//! `check` and `invoke` as a user meets them: their output and exit codes
//! (0 ok, 1 the work failed, 2 the input was wrong); the quickstart copied
//! elsewhere and the README's echo commands work as written.

use crate::common;
use crate::common::process::ledge;

fn quickstart() -> String {
    common::repo()
        .join("examples/quickstart/ledge.toml")
        .to_string_lossy()
        .into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_the_resolved_functions_and_routing_table() {
    let output = ledge(&["check", "--config", &quickstart()]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("threshold-alert")
            && stdout.contains("quickstart/functions/threshold-alert.wasm"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mqtt sensors/+/reading") && stdout.contains("-> threshold-alert"),
        "{stdout}"
    );
    assert!(
        stdout.contains("schedule every 10s") && stdout.contains("-> counter"),
        "{stdout}"
    );
    assert!(stdout.contains("config ok"), "{stdout}");
}

#[test]
fn invoke_runs_a_function_once_and_prints_response_logs_publishes_and_duration() {
    let output = ledge(&[
        "invoke",
        "threshold-alert",
        "--config",
        &quickstart(),
        "--event",
        r#"{"value":31.5}"#,
        "--topic",
        "sensors/t7/reading",
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("status    ok"), "{stdout}");
    assert!(
        stdout.contains(r#"response  {"alert":true,"sensor":"t7","value":31.5}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "publish   alerts/t7 qos1 {\"sensor\":\"t7\",\"value\":31.5,\"threshold\":30.0"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("log       INFO  alert sent to alerts/t7"),
        "{stdout}"
    );
    assert!(stdout.contains("duration  "), "{stdout}");
}

#[test]
fn invoke_json_output_is_one_machine_readable_object() {
    let output = ledge(&[
        "invoke",
        "threshold-alert",
        "--config",
        &quickstart(),
        "--event",
        r#"{"value":12,"sensor":"cellar"}"#,
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["status"], "ok");
    assert_eq!(report["function"], "threshold-alert");
    assert_eq!(
        report["response"],
        r#"{"alert":false,"sensor":"cellar","value":12.0}"#
    );
    assert_eq!(report["publishes"].as_array().unwrap().len(), 0);
    assert_eq!(report["request_id"].as_str().unwrap().len(), 16);
    assert!(report["fuel"].as_u64().unwrap() > 0);
}

#[test]
fn invoke_exits_1_when_the_function_fails_and_names_the_version_and_request() {
    let output = ledge(&[
        "invoke",
        "threshold-alert",
        "--config",
        &quickstart(),
        "--event",
        "not json at all",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("status    error (handler_error)"),
        "{stdout}"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("function threshold-alert version $LATEST request ")
            && stderr.contains("failed (handler_error)"),
        "{stderr}"
    );
}

#[test]
fn invoke_of_an_unknown_function_lists_the_known_ones() {
    let output = ledge(&["invoke", "nope", "--config", &quickstart(), "--event", "{}"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("no function `nope`")
            && stderr.contains("threshold-alert, moving-average, echo, counter"),
        "{stderr}"
    );
}

#[test]
fn invoke_reports_a_timeout_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "loop");
    let config = common::write_config(
        dir.path(),
        &common::function_toml("spin", &module, "timeout = \"50ms\""),
    );
    let output = ledge(&["invoke", "spin", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("error     timed out after 50ms"));
}

#[test]
fn the_quickstart_copied_elsewhere_with_its_modules_checks_and_runs_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("demo");
    // As the README says: `cp -rL` copies the folder and, through its
    // `functions` link, the modules themselves.
    let status = std::process::Command::new("cp")
        .arg("-rL")
        .arg(common::repo().join("examples/quickstart"))
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(status.success());
    assert!(
        !copy.join("functions").is_symlink(),
        "the copy should hold the modules, not a link"
    );
    let config = copy.join("ledge.toml");
    let config = config.to_str().unwrap();
    // From an unrelated working directory: paths are relative to the config.
    let run = |args: &[&str]| {
        std::process::Command::new(common::process::ledge_bin())
            .args(args)
            .current_dir("/")
            .env_remove("LEDGE_LOG")
            .output()
            .expect("run ledge")
    };
    let output = run(&["check", "--config", config]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{}/functions/threshold-alert.wasm",
            copy.display()
        )) && stdout.contains("config ok"),
        "{stdout}"
    );
    let output = run(&["invoke", "echo", "--event", "hello", "--config", config]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("publish   echo/out qos0 hello"),
        "{stdout}{}",
        text(&output.stderr)
    );
}

#[test]
fn the_readme_echo_commands_print_the_reply() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("mosquitto_rr ") && l.contains("-t echo/in"))
        .expect("the README shows the echo request with mosquitto_rr");
    // The sub/pub variant must subscribe before it publishes (its pause
    // is for the reader; this test does not time it).
    let pair = readme
        .lines()
        .find(|l| l.contains("mosquitto_pub -t echo/in"))
        .expect("the README shows the echo commands with sub and pub");
    assert!(
        pair.find("mosquitto_sub -t echo/out") < pair.find("mosquitto_pub")
            && pair.contains("mosquitto_sub -t echo/out -C 1 &"),
        "subscribe (in the background) before publishing: `{pair}`"
    );
    // The quickstart on a free port, so the test does not need 1883.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("demo");
    let status = std::process::Command::new("cp")
        .arg("-rL")
        .arg(common::repo().join("examples/quickstart"))
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(status.success());
    let port = common::free_port();
    let config = copy.join("ledge.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    assert!(toml.contains("127.0.0.1:1883"), "{toml}");
    std::fs::write(
        &config,
        toml.replace("127.0.0.1:1883", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let mut running = common::process::Ledge::start(&config);
    let line = line.replace("mosquitto_rr ", &format!("mosquitto_rr -p {port} "));
    // Bounded: a request whose reply is missed waits for ever.
    let output = std::process::Command::new("timeout")
        .args(["20", "sh", "-c", &line])
        .output()
        .expect("run the README's commands");
    assert!(
        output.status.success() && text(&output.stdout).trim() == "hello",
        "`{line}` should print hello and exit: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        running.terminate().code(),
        Some(0),
        "{}",
        running.log_text()
    );
}
