//! Running the real `ledge` binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn ledge_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ledge")
}

/// Runs `ledge <args>` to completion.
pub fn ledge(args: &[&str]) -> Output {
    Command::new(ledge_bin())
        .args(args)
        .env_remove("LEDGE_LOG")
        .output()
        .expect("run ledge")
}

/// Runs `ledge <args>` to completion with `input` on its stdin.
pub fn ledge_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(ledge_bin())
        .args(args)
        .env_remove("LEDGE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ledge");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait for ledge")
}

/// `ledge invoke <function> --json --event <event>` with `config`: the
/// invocation's report and everything ledge printed.
pub fn invoke_report(config: &Path, function: &str, event: &str) -> (serde_json::Value, String) {
    let output = ledge(&[
        "invoke",
        function,
        "--config",
        config.to_str().expect("UTF-8 path"),
        "--json",
        "--event",
        event,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = stdout
        .lines()
        .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .unwrap_or_else(|| panic!("no JSON report from ledge invoke:\n{stdout}\n{stderr}"));
    (report, format!("{stdout}{stderr}"))
}

/// `ledge <args> --json --config <config>` of a running ledge, parsed;
/// fails the test if the command fails.
fn json_of(args: &[&str], config: &Path) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--json", "--config", config.to_str().expect("UTF-8 path")]);
    let output = ledge(&all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ledge {args:?} failed (is ledge running?): {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("ledge {args:?}: {e}: {stdout}"))
}

/// `ledge status --json` of the ledge running with `config`.
pub fn status_json(config: &Path) -> serde_json::Value {
    json_of(&["status"], config)
}

/// `ledge metrics --json` of the ledge running with `config`.
pub fn metrics_json(config: &Path) -> serde_json::Value {
    json_of(&["metrics"], config)
}

/// A `ledge run` in the background, with its stderr captured line by line.
pub struct Ledge {
    child: Child,
    lines: Receiver<String>,
    /// Every line seen so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Ledge {
    /// Starts `ledge run --config <config>` and waits until it has
    /// subscribed to its triggers (or fails the test after 20 s).
    pub fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut ledge = Self::spawn(config, env);
        ledge.wait_for_line("trigger filters", Duration::from_secs(20));
        // Subscribed is not yet serving: the control socket (`ledge status`)
        // is bound after the link starts, just before this line. Waiting
        // for the subscription alone let a test's first `ledge status`
        // race the bind (seen once as "ledge [\"status\"] failed").
        ledge.wait_for_log(" running as `", Duration::from_secs(20));
        ledge
    }

    /// Starts `ledge run` without waiting for anything.
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn_command(Command::new(ledge_bin()), config, env)
    }

    /// Starts `<command> run --config <config>`: `command` is the ledge
    /// binary, or an emulator with the binary as its first argument.
    pub fn spawn_command(mut command: Command, config: &Path, env: &[(&str, &str)]) -> Self {
        command
            .args(["run", "--config"])
            .arg(config)
            .env("LEDGE_LOG", "info,ledge::invoke=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn ledge run");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                let _ = sender.send(line);
            }
        });
        Self { child, lines, log }
    }

    /// Waits for a log line containing `needle`; panics with the log so far
    /// if it does not come within `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// Like `wait_for_line`, but a line logged before this call counts too.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let seen = self
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned();
        match seen {
            Some(line) => line,
            None => self.wait_for_line(needle, timeout),
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status (panics after 20 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.wait(Duration::from_secs(20))
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "ledge did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ledge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -<name> <pid>`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}
