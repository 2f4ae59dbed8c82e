//! The config file exactly as the user wrote it: serde structs that mirror the
//! TOML keys one to one (stage one of two; `resolve/` is stage two).
//!
//! Nothing here is trusted or defaulted beyond "absent". Fields whose value is
//! checked later carry their source span (`Spanned`) so a later error can say
//! `ledge.toml:14:10` instead of just "bad value". Unknown keys are rejected
//! by serde (`deny_unknown_fields`), which also gives their location.
//!
//! Triggers and sensors are flat structs rather than tagged enums on purpose:
//! serde buffers tagged enums before deserializing them, which loses spans.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub device: RawDevice,
    #[serde(default)]
    pub broker: RawBroker,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub spool: RawSpool,
    pub upstream: Option<RawUpstream>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub deploy: RawDeploy,
    /// The HTTP server (docs/http.md).
    pub http: Option<RawHttp>,
    #[serde(default, rename = "forward")]
    pub forwards: Vec<Spanned<RawForward>>,
    #[serde(default, rename = "function")]
    pub functions: Vec<Spanned<RawFunction>>,
    #[serde(default, rename = "trigger")]
    pub triggers: Vec<Spanned<RawTrigger>>,
    #[serde(default, rename = "sensor")]
    pub sensors: Vec<Spanned<RawSensor>>,
    /// Named GPIO outputs (actuators) functions may switch.
    #[serde(default, rename = "gpio_output")]
    pub gpio_outputs: Vec<Spanned<RawGpioOutput>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub id: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    /// Upper bound on the sum of the functions' `max_concurrency`.
    pub max_concurrency: Option<Spanned<i64>>,
    /// A board profile (boards/*.toml): pin names and defaults.
    pub board: Option<Spanned<String>>,
    /// Serve GPIO from files under this folder instead of /dev/gpiochip*
    /// (tests and development only).
    pub gpio_fake: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub fsync: Option<Spanned<String>>,
    pub max_bytes: Option<Spanned<String>>,
    pub segment_size: Option<Spanned<String>>,
    pub on_full: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Spanned<String>,
    pub client_id: Option<Spanned<String>>,
    pub topic_prefix: Option<Spanned<String>>,
    pub keep_alive: Option<Spanned<String>>,
    pub username: Option<String>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub max_inflight: Option<Spanned<i64>>,
    /// Lowest level of log lines shipped upstream, or "off".
    pub logs: Option<Spanned<String>>,
    /// How long the uplink may be down before a warning is logged.
    pub outage_warning: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub interval: Option<Spanned<String>>,
    /// Serve Prometheus text on this address (e.g. "127.0.0.1:9464").
    pub listen: Option<Spanned<String>>,
}

/// Deployments: who may sign them, how big they may be, how a new alias
/// target is watched before it is trusted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeploy {
    /// `"<key id>:<64 hex digits of an ed25519 public key>"`.
    #[serde(default)]
    pub trusted_keys: Vec<Spanned<String>>,
    pub max_module_size: Option<Spanned<String>>,
    /// Invocations a new alias target must get through before it is trusted.
    pub watch_invocations: Option<Spanned<i64>>,
    /// ...or how long it is watched, whichever comes first.
    pub watch_period: Option<Spanned<String>>,
    /// Error rate (0..1) above which a watched target is rolled back.
    pub max_error_rate: Option<Spanned<f64>>,
}

/// A store-and-forward rule: local messages matching `topic` go upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub topic: Spanned<String>,
    /// Upstream topic; default `<prefix>/events/<local topic>`.
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A log filter such as `"info"` or `"info,ledge::invoke=debug"`.
    pub level: Option<String>,
    /// `"text"` (default) or `"json"`.
    pub format: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBroker {
    pub embedded: Option<Spanned<bool>>,
    pub listen: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub keep_alive: Option<Spanned<String>>,
    pub username: Option<String>,
    pub password_file: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub max_payload: Option<Spanned<String>>,
    /// Embedded broker: simultaneous client connections.
    pub max_connections: Option<Spanned<i64>>,
    /// Embedded broker: how long a new connection may take to send CONNECT.
    pub connect_timeout: Option<Spanned<String>>,
    /// Embedded broker: who may connect (`ledge passwd` makes the lines).
    pub users_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub name: Spanned<String>,
    pub module: Spanned<String>,
    pub memory: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_fuel: Option<Spanned<u64>>,
    pub max_concurrency: Option<Spanned<i64>>,
    pub queue_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_publish: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_forward: Vec<Spanned<String>>,
    /// GPIO lines (outputs and gpio sensors, by name) the function may
    /// write or read.
    #[serde(default)]
    pub allow_gpio: Vec<Spanned<String>>,
    /// KEY=VALUE lines whose values are secrets: readable by the function,
    /// never printed, and redacted from its log lines and errors.
    pub env_file: Option<Spanned<String>>,
    /// Asynchronous events: attempts after the first (default 2).
    pub retries: Option<Spanned<i64>>,
    /// Delay before the first retry; doubles for each next one.
    pub retry_backoff: Option<Spanned<String>>,
    /// Events older than this are not retried.
    pub max_event_age: Option<Spanned<String>>,
    /// Where an event goes after its last failed attempt: "dlq", "drop" or
    /// "topic:<local topic>".
    pub on_failure: Option<Spanned<String>>,
    /// The alias a bare function name routes to (default: `$LATEST`).
    pub default_alias: Option<Spanned<String>>,
    /// Most publishes per period over all instances ("2000/s"); default
    /// unlimited.
    pub publish_rate: Option<Spanned<String>>,
    /// Publishes allowed at once (default: one second's worth of
    /// `publish_rate`, at least 1).
    pub publish_burst: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub source: Spanned<String>,
    pub function: Spanned<String>,
    /// `source = "mqtt"`: the topic filter.
    pub topic: Option<Spanned<String>>,
    /// `source = "schedule"`: the period.
    pub every: Option<Spanned<String>>,
    /// `source = "schedule"`: a cron expression instead of `every`.
    pub cron: Option<Spanned<String>>,
    /// `source = "schedule"` with `cron`: "UTC" (default), "+02:00" or an
    /// IANA name.
    pub timezone: Option<Spanned<String>>,
    /// `source = "schedule"`: a random delay in [0, jitter) for each run.
    pub jitter: Option<Spanned<String>>,
    /// `source = "schedule"` with `cron`: "skip" (default) or "once".
    pub catch_up: Option<Spanned<String>>,
    /// `source = "schedule"`: the event payload (default: a small JSON object).
    pub payload: Option<String>,
    /// `source = "sensor"`: the sensor's name.
    pub sensor: Option<Spanned<String>>,
    /// Pass events through the spool before invoking (at-least-once).
    pub durable: Option<bool>,
    /// Poll-based: deliver the function's durable stream in batches of up
    /// to this many events (implies `durable`).
    pub batch_size: Option<Spanned<i64>>,
    /// Poll-based: how long to gather a batch before sending a smaller one.
    pub batch_window: Option<Spanned<String>>,
    /// `source = "http"`: the method (or "ANY"), path, auth and throttle.
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub auth: Option<Spanned<String>>,
    pub rate: Option<Spanned<f64>>,
    pub burst: Option<Spanned<i64>>,
}

/// An I2C bus: its number or a path.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawBus {
    Number(i64),
    Path(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSensor {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub unit: Option<String>,
    /// Also publish each reading to the local broker (on `topic`, default
    /// `sensors/<name>/reading`).
    pub publish: Option<bool>,
    pub topic: Option<Spanned<String>>,
    /// `kind = "replay"`: CSV or JSONL file of readings.
    pub file: Option<Spanned<String>>,
    /// `kind = "replay"`: start again at the first reading after the last.
    #[serde(rename = "loop")]
    pub looped: Option<bool>,
    /// `kind = "sysfs"`: the file to read.
    pub path: Option<Spanned<String>>,
    /// `kind = "sysfs"`: value = raw × scale + offset.
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    /// `kind = "w1"`: the DS18B20's id (`28-...`); `kind = "iio"`: the IIO
    /// device (`iio:device0`).
    pub device: Option<Spanned<String>>,
    /// `kind = "iio"`: the channel, e.g. `in_temp` or `in_voltage0`.
    pub channel: Option<Spanned<String>>,
    /// `kind = "thermal"`: the thermal zone number.
    pub zone: Option<Spanned<i64>>,
    /// `kind = "bme280"`: the I2C bus, a number N (`/dev/i2c-N`) or a path
    /// (a directory is a register-map fake).
    pub bus: Option<Spanned<RawBus>>,
    /// `kind = "bme280"`: the chip's 7-bit address (0x76 or 0x77).
    pub address: Option<Spanned<i64>>,
    /// `kind = "bme280"`: temperature, pressure or humidity.
    pub measure: Option<Spanned<String>>,
    /// `kind = "simulated"`: sine, square, sawtooth or random_walk.
    pub waveform: Option<Spanned<String>>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub period: Option<Spanned<String>>,
    pub noise: Option<f64>,
    /// Where /sys is (tests point it at a fake tree). Default "/sys".
    pub sysfs_root: Option<Spanned<String>>,
    /// Which samples become events: "every" (default), "change" (beyond
    /// `deadband`), or "threshold" (crossing `threshold` with `hysteresis`).
    pub report: Option<Spanned<String>>,
    pub deadband: Option<f64>,
    pub threshold: Option<f64>,
    pub hysteresis: Option<f64>,
    /// `kind = "gpio"`: the line, by board pin name or by chip and offset.
    pub pin: Option<Spanned<String>>,
    pub chip: Option<Spanned<String>>,
    pub line: Option<Spanned<i64>>,
    /// `kind = "gpio"`: rising, falling or both.
    pub edge: Option<Spanned<String>>,
    /// `kind = "gpio"`: how long a new level must hold to count.
    pub debounce: Option<Spanned<String>>,
    /// `kind = "gpio"`: pull-up, pull-down or disabled.
    pub bias: Option<Spanned<String>>,
    pub active_low: Option<bool>,
}

/// `[[gpio_output]]`: a named output line and its safe state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGpioOutput {
    pub name: Spanned<String>,
    pub pin: Option<Spanned<String>>,
    pub chip: Option<Spanned<String>>,
    pub line: Option<Spanned<i64>>,
    /// The safe state: set at start, at stop, and after a crash.
    pub default: Option<Spanned<i64>>,
    pub active_low: Option<bool>,
    pub restore_on_crash: Option<bool>,
}

/// `[http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Spanned<String>>,
    /// HTTPS: the server's certificate chain and private key (PEM).
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    /// `name:key` lines; routes with `auth = "api_key"` take `x-api-key`.
    pub api_keys_file: Option<Spanned<String>>,
    /// `access_key_id:secret_access_key` lines; routes with
    /// `auth = "aws_iam"` take SigV4-signed requests.
    pub credentials_file: Option<Spanned<String>>,
    pub cors: Option<RawCors>,
}

/// `[http.cors]` as written (API Gateway HTTP API's CORS settings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    #[serde(default)]
    pub allow_origins: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub expose_headers: Vec<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
    pub allow_credentials: Option<Spanned<bool>>,
}
