//! Every command piped into a reader that goes away (`ledge status | head
//! -1`) ends quietly, as `cat` would: exit 0, or killed by SIGPIPE (141 in
//! a shell), never a panic message on stderr.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

use crate::common;

use crate::common::gateway::Gateway;
use crate::common::process::{ledge, ledge_bin};

/// How often each command runs against a reader that closes after one byte:
/// whether the reader is gone by the next write is a race, so try it often.
const EARLY_CLOSES: usize = 15;

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(ledge_bin());
    command.args(args).env_remove("LEDGE_LOG");
    command
}

fn assert_quiet(args: &[&str], how: &str, status: ExitStatus, stderr: &[u8]) {
    let stderr = String::from_utf8_lossy(stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "ledge {args:?} ({how}) complained about the closed pipe: {status}\n{stderr}"
    );
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "ledge {args:?} ({how}) should exit 0 or die of SIGPIPE, not {status}\n{stderr}"
    );
}

/// Runs `ledge <args>` normally (it must succeed and print something),
/// then into a pipe whose reader closed before it started, then into
/// readers that close after the first byte.
fn assert_quiet_on_closed_pipes(args: &[&str]) {
    let normal = ledge(args);
    assert!(
        normal.status.success() && normal.stdout.len() > 1,
        "ledge {args:?} should succeed and print: {}\n{}{}",
        normal.status,
        String::from_utf8_lossy(&normal.stdout),
        String::from_utf8_lossy(&normal.stderr)
    );

    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = command(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run ledge");
    assert_quiet(args, "reader closed first", output.status, &output.stderr);

    for _ in 0..EARLY_CLOSES {
        let mut child = command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ledge");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 1];
        let read = stdout.read(&mut first).expect("read the first byte");
        assert_eq!(read, 1, "ledge {args:?} printed nothing");
        drop(stdout);
        let output = child.wait_with_output().expect("wait for ledge");
        assert_quiet(args, "reader closed early", output.status, &output.stderr);
    }
}

/// Gateway `pipes` with `echo` on a durable trigger: the function has a
/// spool stream for `ledge spool`.
fn gateway() -> Gateway {
    Gateway::new("pipes")
        .echo("echo", "echo/in", "echo/out")
        .append("durable = true")
}

#[test]
fn commands_without_a_running_ledge_end_quietly_on_a_closed_pipe() {
    let gateway = gateway();
    let config = gateway.write().to_string_lossy().into_owned();
    let module = common::example("echo");
    let module = module.to_str().unwrap();
    assert_quiet_on_closed_pipes(&["--help"]);
    assert_quiet_on_closed_pipes(&["check", "--config", &config]);
    assert_quiet_on_closed_pipes(&["boards"]);
    assert_quiet_on_closed_pipes(&["boards", "rpi4"]);
    assert_quiet_on_closed_pipes(&["invoke", "echo", "--event", "hi", "--config", &config]);
    assert_quiet_on_closed_pipes(&["invoke", "echo", "--json", "--config", &config]);
    assert_quiet_on_closed_pipes(&["deploy", "echo", module, "--publish", "--config", &config]);
    assert_quiet_on_closed_pipes(&["versions", "echo", "--config", &config]);
    assert_quiet_on_closed_pipes(&["versions", "echo", "--json", "--config", &config]);
    assert_quiet_on_closed_pipes(&["functions", "--config", &config]);
}

#[test]
fn commands_that_ask_a_running_ledge_end_quietly_on_a_closed_pipe() {
    let gateway = gateway();
    let config = gateway.write().to_string_lossy().into_owned();
    let mut running = gateway.start();
    assert_quiet_on_closed_pipes(&["status", "--config", &config]);
    assert_quiet_on_closed_pipes(&["status", "--json", "--config", &config]);
    assert_quiet_on_closed_pipes(&["metrics", "--config", &config]);
    assert_quiet_on_closed_pipes(&["metrics", "--prometheus", "--config", &config]);
    assert_quiet_on_closed_pipes(&["invoke", "echo", "--remote", "--config", &config]);
    assert_quiet_on_closed_pipes(&["spool", "stat", "--stream", "fn-echo", "--config", &config]);
    assert_eq!(
        running.terminate().code(),
        Some(0),
        "{}",
        running.log_text()
    );
}
