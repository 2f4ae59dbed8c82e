//! The processes under test: mosquitto, `ledge run`, the relay. Each is a
//! child of the bench, on a free loopback port, killed when dropped, so a
//! failing bench leaves nothing running.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to start listening or to stop.
const START_LIMIT: Duration = Duration::from_secs(20);
const STOP_LIMIT: Duration = Duration::from_secs(12);

/// A child process, killed (if still running) on drop.
pub struct Proc {
    name: String,
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut command: Command, log: PathBuf) -> Result<Self, String> {
        let stderr = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (ledge drains and logs its summary), waits, then kills.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        drop(self);
        log
    }

    /// Fails if the process already exited (it could not start).
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            _ => Err(format!(
                "{} exited; its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )),
        }
    }

    /// Resident and peak resident memory in KiB, from /proc/PID/status.
    pub fn memory_kib(&self) -> Result<(u64, u64), String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map_err(|e| format!("{} status: {e}", self.name))?;
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .ok_or_else(|| format!("{} status has no {key}", self.name))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time and context switches of one thread, from /proc.
#[derive(Clone, Debug)]
pub struct ThreadCpu {
    pub name: String,
    /// Time on a CPU in nanoseconds (/proc/PID/task/TID/schedstat).
    pub cpu_ns: u64,
    /// Voluntary plus involuntary context switches.
    pub switches: u64,
}

impl Proc {
    /// Every thread of the process.
    pub fn threads(&self) -> Vec<ThreadCpu> {
        threads_of(&format!("/proc/{}/task", self.pid()))
    }
}

/// Every thread of this process (the load generator).
pub fn own_threads() -> Vec<ThreadCpu> {
    threads_of("/proc/self/task")
}

/// Threads that end while being read are skipped.
fn threads_of(task: &str) -> Vec<ThreadCpu> {
    let Ok(entries) = std::fs::read_dir(task) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| thread_cpu(&entry.path()))
        .collect()
}

fn thread_cpu(dir: &Path) -> Option<ThreadCpu> {
    let name = std::fs::read_to_string(dir.join("comm")).ok()?;
    let schedstat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let switches = status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Some(ThreadCpu {
        name: name.trim().to_owned(),
        cpu_ns: schedstat.split_whitespace().next()?.parse().ok()?,
        switches,
    })
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(process: &mut Proc, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_LIMIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        process.check_running()?;
        if Instant::now() > deadline {
            return Err(format!(
                "nothing listens on port {port} after {START_LIMIT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Debian's mosquitto on a free loopback port with its stock settings
/// (max_inflight_messages 20, max_queued_messages 1000), as a gateway runs
/// it when nobody tuned it.
pub fn stock_mosquitto(dir: &Path) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let config = dir.join(format!("mosquitto-stock-{port}.conf"));
    let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type error\nlog_type warning\n");
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto");
    let mut command = Command::new(binary);
    command.arg("-c").arg(&config);
    let mut process = Proc::spawn(
        "mosquitto",
        command,
        dir.join(format!("mosquitto-stock-{port}.log")),
    )?;
    wait_for_port(&mut process, port)?;
    Ok((process, port))
}

/// Debian's mosquitto on a free loopback port.
///
/// Defaults except: no persistence, and `max_queued_messages` raised from
/// 1000 so that a backlog in a slow subscriber shows up as lag in the
/// measurement rather than as mosquitto dropping messages (a run that falls
/// behind fails the search on lag either way). With `nodelay`, also
/// `set_tcp_nodelay true`: mosquitto leaves Nagle's algorithm on by default,
/// which adds milliseconds to any client that both receives and publishes
/// on one connection.
pub fn mosquitto(dir: &Path, nodelay: bool) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let config = dir.join(format!("mosquitto-{port}.conf"));
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
         max_queued_messages 1000000\nset_tcp_nodelay {nodelay}\n\
         log_dest stderr\nlog_type error\nlog_type warning\n"
    );
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto");
    let mut command = Command::new(binary);
    command.arg("-c").arg(&config);
    let mut process = Proc::spawn(
        "mosquitto",
        command,
        dir.join(format!("mosquitto-{port}.log")),
    )?;
    wait_for_port(&mut process, port)?;
    Ok((process, port))
}

/// Renders `benches/configs/<template>` into `dir` and starts `ledge run`
/// on it. Placeholders: `@PORT@` (the broker port), `@REPO@` (this
/// checkout), `@DATA@` (a fresh data_dir), `@DIR@` (the bench's temporary
/// directory), `@UPSTREAM@` (an upstream port).
pub fn ledge(binary: &Path, dir: &Path, template: &str, port: u16) -> Result<Proc, String> {
    ledge_with_upstream(binary, dir, template, port, 0)
}

/// [`ledge`], with `@UPSTREAM@` rendered as `upstream`.
pub fn ledge_with_upstream(
    binary: &Path,
    dir: &Path,
    template: &str,
    port: u16,
    upstream: u16,
) -> Result<Proc, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = repo.join("benches/configs").join(template);
    let text =
        std::fs::read_to_string(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let stem = template.trim_end_matches(".toml");
    let data = dir.join(format!("data-{stem}-{port}"));
    let text = text
        .replace("@PORT@", &port.to_string())
        .replace("@UPSTREAM@", &upstream.to_string())
        .replace("@DIR@", &dir.display().to_string())
        .replace("@REPO@", &repo.display().to_string())
        .replace("@DATA@", &data.display().to_string());
    let config = dir.join(format!("{stem}-{port}.toml"));
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut command = Command::new(binary);
    command.arg("run").arg("--config").arg(&config);
    // The config's [log] level is what is measured, not the caller's shell.
    command.env_remove("LEDGE_LOG");
    Proc::spawn("ledge", command, dir.join(format!("{stem}-{port}.log")))
}

/// This bench binary's own `relay` subcommand, as a separate process.
pub fn relay(
    dir: &Path,
    port: u16,
    input: &str,
    output: &str,
    nodelay: bool,
) -> Result<Proc, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut command = Command::new(exe);
    let port_text = port.to_string();
    command.args([
        "relay", "--port", &port_text, "--input", input, "--output", output,
    ]);
    if nodelay {
        command.arg("--nodelay");
    }
    Proc::spawn("relay", command, dir.join(format!("relay-{port}.log")))
}
