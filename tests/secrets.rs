//! Secrets from a function's `env_file`: the function can read them; they
//! never reach ledge's output (log lines, errors), and a bad env file is
//! reported at its own file:line without echoing the line.

mod common;

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
