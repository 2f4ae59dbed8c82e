//! Secrets never reach ledge's output. A function can read the secrets of
//! its `env_file`; they never appear in log lines or errors, not even cut
//! by the log line limit, and a bad env file is reported at its own
//! file:line without echoing the line.

use crate::common;
use crate::common::process::invoke_report;

#[test]
fn a_secret_a_function_logs_or_fails_with_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("leak.env");
    std::fs::write(&secrets, "# credentials\nAPI_KEY=\"tok-93f1c2a7\"\n").unwrap();
    let module = common::fixture(dir.path(), "leak_secret");
    let text = common::function_toml(
        "leak",
        &module,
        "env_file = \"leak.env\"\nenv = { MODE = \"x\" }",
    );
    let config = common::write_config(dir.path(), &text);
    let output = common::process::ledge(&["invoke", "leak", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("key=[secret API_KEY]"), "{stdout}");
    assert!(stdout.contains("error     [secret API_KEY]"), "{stdout}");
    assert!(
        !stdout.contains("tok-93f1c2a7") && !stderr.contains("tok-93f1c2a7"),
        "{stdout}{stderr}"
    );
    // The function did read the real value: the redaction is of output only.
    assert!(!stdout.contains("status 2"), "{stdout}");

    let check = common::process::ledge(&["check", "--config", config.to_str().unwrap()]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{all}");
    assert!(!all.contains("tok-93f1c2a7"), "{all}");
}

#[test]
fn a_bad_env_file_is_reported_at_its_own_line_without_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "ok");
    std::fs::write(
        dir.path().join("bad.env"),
        "GOOD=1\nhunter2-no-key\nMODE=dup\n",
    )
    .unwrap();
    let text = common::function_toml(
        "f",
        &module,
        "env_file = \"bad.env\"\nenv = { MODE = \"x\" }",
    );
    let config = common::write_config(dir.path(), &text);
    let output = common::process::ledge(&["check", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let env = dir.path().join("bad.env");
    assert!(
        stderr.contains(&format!("{}:2:1: expected KEY=VALUE", env.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:3:1:", env.display())) && stderr.contains("MODE"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    std::fs::remove_file(&env).unwrap();
    let output = common::process::ledge(&["check", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:4:", config.display()))
            && stderr.contains("cannot read env_file"),
        "{stderr}"
    );
}

#[test]
fn a_secret_cut_by_the_log_line_limit_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Zq8mX1pL7vR2wK5n";
    std::fs::write(dir.path().join("s.env"), format!("TOKEN={secret}\n")).unwrap();
    let module = common::fixture(dir.path(), "log_payload");
    let text = common::function_toml("say", &module, "env_file = \"s.env\"");
    let config = common::write_config(dir.path(), &text);
    // Every offset that puts the secret across the 8 KiB cut, and a few on
    // either side.
    for offset in (8192 - secret.len() - 2)..=(8192 + 2) {
        let event = format!("{}{secret}{}", "x".repeat(offset), "y".repeat(100));
        let (report, output) = invoke_report(&config, "say", &event);
        assert_eq!(report["status"], "ok", "{output}");
        let logged = report["logs"][0]["message"].as_str().unwrap();
        for piece in secret.as_bytes().windows(4) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(
                !logged.contains(piece),
                "offset {offset}: `{piece}` of the secret is in the log line ...{}",
                &logged[logged.len().saturating_sub(80)..]
            );
        }
    }
}
