//! Bad input is named: a config error says file:line:col, a bad file its
//! path, a bad name the name, and ledge exits 2 without blocking, crashing
//! or echoing a secret.

mod config;
mod files;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::ledge_bin;

/// Runs `ledge <args>`; fails the test if it has not exited within 20 s
/// (a blocked read of a FIFO, a read of /dev/zero).
fn ledge_bounded(args: &[&str]) -> (Option<i32>, String) {
    const WAIT: Duration = Duration::from_secs(20);
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
