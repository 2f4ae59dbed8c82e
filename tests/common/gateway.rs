//! One gateway under test: a temporary folder, its `ledge.toml` (device,
//! local broker, upstream, sections, functions and triggers), the
//! mosquitto brokers it talks to, and ways to start `ledge run` on it and
//! reach it (a client on its local broker, its CLI, its status).
//!
//! ```ignore
//! let gateway = Gateway::new("gw1")
//!     .with_mosquitto()
//!     .function("flaky", Module::Fixture("flaky"), "retry_backoff = \"50ms\"")
//!     .mqtt_trigger("flaky/in", "flaky");
//! let ledge = gateway.start();
//! let client = gateway.client("retry-client", &["flaky/ok"]);
//! ```
//!
//! The builder writes only what a test asks for, in a fixed order:
//! `[device]`, `[broker]`, `[upstream]`, then everything appended
//! (sections and tables) in the order it was added. A test that asserts a
//! config error's line number counts lines in that order.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::broker::{Mosquitto, TestClient};
use super::process::{self, Ledge};

/// Where a function's module comes from.
pub enum Module {
    /// `tests/fixtures/wat/<name>.wat`, assembled into the gateway's folder.
    Fixture(&'static str),
    /// `functions/dist/<name>.wasm`.
    Example(&'static str),
    /// A file the test made.
    Path(PathBuf),
}

impl From<&Path> for Module {
    fn from(path: &Path) -> Self {
        Module::Path(path.to_path_buf())
    }
}

impl From<PathBuf> for Module {
    fn from(path: PathBuf) -> Self {
        Module::Path(path)
    }
}

/// The local broker's `[broker]` section.
enum LocalBroker {
    /// ledge's embedded broker listening on the port.
    Embedded,
    /// An external broker (mosquitto) on the port.
    External,
}

/// A gateway's folder, config and brokers. Built by value
/// (`Gateway::new(..).with_mosquitto().function(..)`), then used by
/// reference: `start`, `client`, `cli`, `status` as often as a test likes.
pub struct Gateway {
    dir: tempfile::TempDir,
    id: String,
    /// The local broker's port (embedded or external).
    pub port: u16,
    /// The local mosquitto, when the test made one (`with_mosquitto`).
    pub local: Option<Mosquitto>,
    /// The upstream mosquitto, when the test made one (`with_upstream`).
    pub upstream: Option<Mosquitto>,
    broker: LocalBroker,
    data_dir: String,
    device_keys: String,
    broker_keys: String,
    upstream_port: Option<u16>,
    upstream_keys: String,
    rest: String,
}

impl Gateway {
    /// Device `id` in a fresh folder, on the embedded broker on a free port.
    pub fn new(id: &str) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary folder"),
            id: id.to_owned(),
            port: super::free_port(),
            local: None,
            upstream: None,
            broker: LocalBroker::Embedded,
            data_dir: "data".to_owned(),
            device_keys: String::new(),
            broker_keys: String::new(),
            upstream_port: None,
            upstream_keys: String::new(),
            rest: String::new(),
        }
    }

    /// The embedded broker listens on `port` (one the test holds, say).
    pub fn embedded_broker_on(mut self, port: u16) -> Self {
        self.port = port;
        self.broker = LocalBroker::Embedded;
        self
    }

    /// The local broker is a fresh mosquitto (stock settings).
    pub fn with_mosquitto(mut self) -> Self {
        let mosquitto = Mosquitto::start(self.dir.path());
        self.port = mosquitto.port;
        self.local = Some(mosquitto);
        self.broker = LocalBroker::External;
        self
    }

    /// The local broker is a fresh mosquitto that keeps sessions and
    /// queued messages across restarts, with no queue limit: ledge's
    /// session outlives ledge.
    pub fn with_persistent_mosquitto(mut self) -> Self {
        let mosquitto = Mosquitto::start_persistent(self.dir.path(), super::free_port());
        self.port = mosquitto.port;
        self.local = Some(mosquitto);
        self.broker = LocalBroker::External;
        self
    }

    /// The local broker is an external one on `port` that the test runs
    /// (or leaves down).
    pub fn broker_at(mut self, port: u16) -> Self {
        self.port = port;
        self.broker = LocalBroker::External;
        self
    }

    /// The upstream is a fresh mosquitto.
    pub fn with_upstream(mut self) -> Self {
        let mosquitto = Mosquitto::start(self.dir.path());
        self.upstream_port = Some(mosquitto.port);
        self.upstream = Some(mosquitto);
        self
    }

    /// The upstream is whatever listens on `port` (a broker the test runs,
    /// the local mosquitto, or nothing).
    pub fn upstream_at(mut self, port: u16) -> Self {
        self.upstream_port = Some(port);
        self
    }

    /// `[device] data_dir` (default `data`, in the gateway's folder).
    pub fn data_dir(mut self, path: &Path) -> Self {
        self.data_dir = path.display().to_string();
        self
    }

    /// The upstream is the local broker itself (a mosquitto test playing
    /// both sides).
    pub fn upstream_on_local(mut self) -> Self {
        self.upstream_port = Some(self.port);
        self
    }

    /// More `[device]` keys.
    pub fn device(mut self, keys: &str) -> Self {
        push_lines(&mut self.device_keys, keys);
        self
    }

    /// More `[broker]` keys.
    pub fn broker(mut self, keys: &str) -> Self {
        push_lines(&mut self.broker_keys, keys);
        self
    }

    /// More `[upstream]` keys.
    pub fn upstream(mut self, keys: &str) -> Self {
        push_lines(&mut self.upstream_keys, keys);
        self
    }

    /// Config text appended as it is: sections (`[metrics]`, `[spool]`),
    /// tables (`[[forward]]`, `[[sensor]]`), or keys of the table before.
    pub fn append(mut self, toml: &str) -> Self {
        push_lines(&mut self.rest, toml);
        self
    }

    /// A `[[function]]` table.
    pub fn function(self, name: &str, module: impl Into<Module>, extra: &str) -> Self {
        let module = self.module(module.into());
        let table = super::function_toml(name, &module, extra);
        self.append(&table)
    }

    /// An `mqtt` `[[trigger]]` table.
    pub fn mqtt_trigger(self, topic: &str, function: &str) -> Self {
        self.append(&super::mqtt_trigger(topic, function))
    }

    /// The example `echo` as function `name`: triggered on `from`, it
    /// publishes each payload to `to`.
    pub fn echo(self, name: &str, from: &str, to: &str) -> Self {
        let keys = format!("env = {{ ECHO_TOPIC = \"{to}\" }}\nallow_publish = [\"{to}\"]");
        self.function(name, Module::Example("echo"), &keys)
            .mqtt_trigger(from, name)
    }

    /// The gateway's folder (ledge's working files are in `data/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where `write` puts the config.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ledge.toml")
    }

    /// Assembles a fixture into the folder (for a test that needs its path).
    pub fn fixture(&self, name: &str) -> PathBuf {
        super::fixture(self.dir.path(), name)
    }

    /// The config text.
    pub fn text(&self) -> String {
        let mut text = format!(
            "[device]\nid = \"{}\"\ndata_dir = \"{}\"\n{}",
            self.id, self.data_dir, self.device_keys
        );
        text += &match self.broker {
            LocalBroker::Embedded => format!("[broker]\nlisten = \"127.0.0.1:{}\"\n", self.port),
            LocalBroker::External => {
                format!("[broker]\nurl = \"mqtt://127.0.0.1:{}\"\n", self.port)
            }
        };
        text += &self.broker_keys;
        if let Some(port) = self.upstream_port {
            text += &format!("[upstream]\nurl = \"mqtt://127.0.0.1:{port}\"\n");
            text += &self.upstream_keys;
        }
        text + &self.rest
    }

    /// Writes `ledge.toml` and returns its path.
    pub fn write(&self) -> PathBuf {
        super::write_config(self.dir.path(), &self.text())
    }

    /// Writes the config and starts `ledge run`, waiting until it has
    /// subscribed to its triggers.
    pub fn start(&self) -> Ledge {
        Ledge::start(&self.write())
    }

    /// A client of the local broker, subscribed to `filters`.
    pub fn client(&self, id: &str, filters: &[&str]) -> TestClient {
        TestClient::connect(self.port, id, filters)
    }

    /// A client of the upstream broker, subscribed to `filters`.
    pub fn upstream_client(&self, id: &str, filters: &[&str]) -> TestClient {
        let port = self.upstream_port.expect("the gateway has an upstream");
        TestClient::connect(port, id, filters)
    }

    /// `ledge <args> --config <config>` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().expect("UTF-8 path")]);
        process::ledge(&all)
    }

    /// `ledge status --json` of the running ledge.
    pub fn status(&self) -> serde_json::Value {
        process::status_json(&self.config())
    }

    /// `ledge metrics --json` of the running ledge.
    pub fn metrics(&self) -> serde_json::Value {
        process::metrics_json(&self.config())
    }
}

/// Appends `lines` to `text`, ending with a newline.
fn push_lines(text: &mut String, lines: &str) {
    text.push_str(lines);
    if !lines.is_empty() && !lines.ends_with('\n') {
        text.push('\n');
    }
}

impl Gateway {
    fn module(&self, module: Module) -> PathBuf {
        match module {
            Module::Fixture(name) => self.fixture(name),
            Module::Example(name) => super::example(name),
            Module::Path(path) => path,
        }
    }
}
