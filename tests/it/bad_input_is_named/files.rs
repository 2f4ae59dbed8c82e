//! Files that are not regular files or never end, and names that try to
//! leave the store, are refused with their path or name: no command blocks
//! on a FIFO, reads /dev/zero for ever or writes outside `data_dir`.

use std::path::Path;
use std::process::Command;

use super::ledge_bounded;
use crate::common;

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
