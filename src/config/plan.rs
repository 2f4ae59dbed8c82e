//! The resolved plan: the types the rest of ledge trusts, one per config
//! section, with every default applied and every value checked.
//!
//! Types only. They are built by `config::resolve`, one resolver per
//! section, from the serde mirror in [`super::raw`]; nothing here reads a
//! file or reports a config error.

pub use super::names::is_identifier;
pub use super::secret::Secret;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Location;
use crate::hw::bme280::Quantity;
pub use crate::hw::gpio::{Backend, GpioOutputSpec, InputConfig, LineAddress};
use crate::spool::SpoolOptions;
use crate::time::cron::Cron;
use crate::time::tz::TimeZone;
use crate::topic::TopicFilter;

/// Bytes of events (payloads and subjects) one function's queue holds at
/// most, whatever `queue_size` says: 16 of 256 KiB payloads fill it before
/// 4,096 readings would.
pub const QUEUE_BYTES: usize = 4 << 20;

/// Index of a function in [`Plan::functions`].
pub type FunctionId = usize;

/// Everything ledge needs to run, resolved and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config file this plan came from.
    pub source: PathBuf,
    pub device: DevicePlan,
    pub broker: BrokerPlan,
    pub functions: Vec<FunctionSpec>,
    /// The routing table: which events go to which function.
    pub routes: Vec<Route>,
    pub sensors: Vec<SensorSpec>,
    /// Log filter from `[log] level`; `LEDGE_LOG` overrides it.
    pub log_level: Option<String>,
    /// `[log] format = "json"`: one JSON object per log line.
    pub log_json: bool,
    pub spool: SpoolOptions,
    pub upstream: Option<UpstreamPlan>,
    /// Local messages copied upstream through the spool.
    pub forwards: Vec<ForwardRule>,
    /// How often a metrics snapshot is spooled for upstream.
    pub metrics_interval: Duration,
    /// Where Prometheus text is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Qualified names (`f:live`, and `f` for a function with a
    /// `default_alias`) and where they send events; filled from the
    /// function store by `deploy::effective`.
    pub aliases: BTreeMap<String, Target>,
    pub deploy: DeployPlan,
    /// The board profile in force (`--board` or `[device] board`).
    pub board: Option<crate::board::Board>,
    /// `--board`, if given: a reload resolves the new file with it too.
    pub board_flag: Option<String>,
    /// GPIO outputs and which driver serves the lines.
    pub gpio: GpioPlan,
    /// The HTTP server (`[http]`, or `[metrics] listen` alone), if any.
    pub http: Option<super::http::HttpPlan>,
}

/// Which version of a function a trigger or invoke names: `f`,
/// `f:$LATEST`, `f:7` or `f:live`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualifier {
    /// A bare name: the function's `default_alias`, else `$LATEST`.
    Default,
    Latest,
    Version(u32),
    Alias(String),
}

impl Qualifier {
    /// Splits `name[:qualifier]`.
    pub fn split(text: &str) -> Result<(&str, Qualifier), String> {
        let Some((name, qualifier)) = text.split_once(':') else {
            return Ok((text, Qualifier::Default));
        };
        let qualifier = match qualifier {
            "$LATEST" => Qualifier::Latest,
            q if q.bytes().all(|b| b.is_ascii_digit()) && !q.is_empty() => match q.parse::<u32>() {
                Ok(n) if n > 0 => Qualifier::Version(n),
                _ => return Err(format!("`{text}`: versions are numbered from 1")),
            },
            q if is_identifier(q, "") => Qualifier::Alias(q.to_owned()),
            _ => {
                return Err(format!(
                    "`{text}`: after `:` comes $LATEST, a version number or an alias name"
                ))
            }
        };
        Ok((name, qualifier))
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => Ok(()),
            Self::Latest => f.write_str(":$LATEST"),
            Self::Version(n) => write!(f, ":{n}"),
            Self::Alias(a) => write!(f, ":{a}"),
        }
    }
}

/// Where events for a name go: one function (version), or two with the
/// second taking `percent` of them (a canary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub function: FunctionId,
    pub canary: Option<(FunctionId, u8)>,
}

/// `[deploy]`: signed deployments and automatic rollback.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    /// (key id, ed25519 public key).
    pub trusted_keys: Vec<(String, [u8; 32])>,
    pub max_module_size: usize,
    pub watch_invocations: u64,
    pub watch_period: Duration,
    pub max_error_rate: f64,
}

impl Default for DeployPlan {
    fn default() -> Self {
        Self {
            trusted_keys: Vec::new(),
            max_module_size: 4 << 20,
            watch_invocations: 20,
            watch_period: Duration::from_secs(600),
            max_error_rate: 0.2,
        }
    }
}

/// The upstream broker ledge syncs the spool to.
#[derive(Debug, Clone)]
pub struct UpstreamPlan {
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsFiles>,
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Every upstream topic starts with this (`ledge/<device.id>`).
    pub topic_prefix: String,
    /// Upstream messages published but not yet acknowledged, at most.
    pub max_inflight: usize,
    /// Lowest level of log lines shipped upstream; `None` ships none.
    pub ship_logs: Option<log::Level>,
    /// How long the uplink may be down before the log says so (then again
    /// every ten times as long).
    pub outage_warning: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// `[[forward]]`: local messages matching `filter` go upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardRule {
    pub filter: TopicFilter,
    /// Upstream topic; `None` means `<prefix>/events/<local topic>`.
    pub to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub id: String,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BrokerPlan {
    pub mode: BrokerMode,
    /// Settings of the embedded broker (unused with an external one).
    pub local: LocalBrokerPlan,
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Largest MQTT payload ledge accepts as an event or sends as a publish.
    pub max_payload: usize,
}

/// How the embedded broker treats its local clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBrokerPlan {
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// With users, every client must log in.
    pub users: Option<std::sync::Arc<crate::users::Users>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMode {
    /// Run the built-in broker on this address and connect to it.
    Embedded { listen: SocketAddr },
    /// Connect to a broker someone else runs (mosquitto).
    External { host: String, port: u16 },
}

impl BrokerMode {
    /// Host and port ledge's own client connects to.
    pub fn client_address(&self) -> (String, u16) {
        match self {
            Self::Embedded { listen } => {
                let ip = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    listen.ip().to_string()
                };
                (ip, listen.port())
            }
            Self::External { host, port } => (host.clone(), *port),
        }
    }
}

impl fmt::Display for BrokerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded { listen } => write!(f, "embedded, listening on {listen}"),
            Self::External { host, port } => write!(f, "external, mqtt://{host}:{port}"),
        }
    }
}

/// One function, with every setting resolved.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    /// `$LATEST` for functions loaded from config.
    pub version: String,
    pub module_path: PathBuf,
    /// Where `module = ...` stands, for load errors.
    pub module_location: Location,
    pub memory_limit: usize,
    pub timeout: Duration,
    pub max_fuel: Option<u64>,
    pub max_concurrency: usize,
    pub queue_size: usize,
    pub env: BTreeMap<String, String>,
    /// Values from `env_file`: secrets.
    pub secret_env: BTreeMap<String, Secret>,
    pub allow_publish: Vec<TopicFilter>,
    /// Topics the function may `forward` upstream through the spool.
    pub allow_forward: Vec<TopicFilter>,
    /// GPIO lines (by name) the function may write or read.
    pub allow_gpio: Vec<String>,
    /// How failed asynchronous events are retried and where they end up.
    pub failure: FailurePolicy,
    /// The alias a bare name routes to; `None`: `$LATEST`.
    pub default_alias: Option<String>,
    /// `publish_rate` / `publish_burst`; `None`: unlimited.
    pub publish_limit: Option<PublishLimit>,
}

/// A token bucket on a function's publishes, over all its instances:
/// `burst` publishes at once, refilled at `per_second`.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishLimit {
    /// `publish_rate` as written (`"2000/s"`), for log lines.
    pub rate: String,
    pub per_second: f64,
    /// Publishes a full bucket holds.
    pub burst: u32,
}

/// Lambda's asynchronous-invocation contract: a failed event is retried
/// `retries` times, `retry_backoff` after the first failure and doubling,
/// unless it is older than `max_event_age`; then it goes to `on_failure`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailurePolicy {
    pub retries: u32,
    pub retry_backoff: Duration,
    pub max_event_age: Duration,
    pub on_failure: OnFailure,
}

impl FunctionSpec {
    /// `name` for `$LATEST`, `name:7` for a published version: how metrics,
    /// logs and invokes tell versions apart.
    pub fn qualified_name(&self) -> String {
        if self.version == "$LATEST" {
            self.name.clone()
        } else {
            format!("{}:{}", self.name, self.version)
        }
    }

    /// The value of env `key`, secret or not.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .or_else(|| self.secret_env.get(key).map(Secret::expose))
    }

    /// The secret env values as (key, value) pairs, for [`super::redact`].
    pub fn secrets(&self) -> Vec<super::redact::Secret<'_>> {
        self.secret_env
            .iter()
            .map(|(key, value)| (key.as_str(), value.expose()))
            .collect()
    }

    /// `text` with every secret env value replaced by `[secret KEY]`, for
    /// anything a function says that ledge writes down (log lines, errors,
    /// dead letters, replies). Values under 4 bytes are left alone: they
    /// would redact ordinary words.
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        super::redact::redact(text, &self.secrets())
    }

    /// Guest bytes as text of at most `max` bytes, secrets redacted before
    /// the cut (see [`super::redact::redact_and_cut`]).
    pub fn redact_and_cut(&self, bytes: &[u8], max: usize) -> String {
        super::redact::redact_and_cut(bytes, max, &self.secrets())
    }
}

impl FailurePolicy {
    /// The delay before attempt `next` (2 for the first retry).
    pub fn backoff(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(16);
        self.retry_backoff.saturating_mul(1 << doublings)
    }
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            retry_backoff: Duration::from_secs(1),
            max_event_age: Duration::from_secs(6 * 3600),
            on_failure: OnFailure::DeadLetter,
        }
    }
}

/// The failure destination of a function's asynchronous events.
#[derive(Debug, Clone, PartialEq)]
pub enum OnFailure {
    /// A dead-letter record in the spool, synced to `<prefix>/dlq/<function>`.
    DeadLetter,
    /// The dead-letter document published to a local topic.
    Topic(String),
    /// Counted and logged, nothing kept.
    Drop,
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(every) => write!(f, "every {}", crate::units::format_duration(*every)),
            Self::Cron(c) => write!(f, "cron {} ({})", c.expression, c.timezone),
        }
    }
}

/// One row of the routing table.
#[derive(Debug, Clone)]
pub struct Route {
    pub source: TriggerSource,
    pub function: FunctionId,
    pub location: Location,
    /// Events pass through the spool before the function runs.
    pub durable: bool,
    /// Poll-based: the function's stream is delivered in batches.
    pub batch: Option<BatchSpec>,
    /// The version the trigger names; `function` and `canary` are where it
    /// resolved to.
    pub qualifier: Qualifier,
    pub canary: Option<(FunctionId, u8)>,
}

/// How a function's durable stream is delivered in batches, like an SQS or
/// Kinesis event source mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub size: usize,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSource {
    Mqtt {
        filter: TopicFilter,
    },
    Schedule {
        timing: Timing,
        payload: Option<String>,
        /// Each run waits a random delay in [0, jitter) first.
        jitter: Duration,
    },
    Sensor {
        sensor: String,
    },
    Http(Box<super::http::HttpRoute>),
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Timing {
    /// A rate: one period after start, then every period.
    Every(Duration),
    /// Wall-clock times.
    Cron(Box<CronTiming>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CronTiming {
    /// The expression as written, for labels and payloads.
    pub expression: String,
    pub cron: Cron,
    /// The `timezone` value as written ("UTC" by default).
    pub timezone: String,
    pub tz: TimeZone,
    pub catch_up: CatchUp,
}

/// What a cron schedule does about runs missed while ledge was stopped or
/// the gateway asleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing: the next run is the next scheduled time.
    Skip,
    /// One run, for the most recent missed time, marked `catch_up`.
    Once,
}

impl fmt::Display for TriggerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mqtt { filter } => write!(f, "mqtt {filter}"),
            Self::Schedule { timing, .. } => write!(f, "schedule {timing}"),
            Self::Sensor { sensor } => write!(f, "sensor {sensor}"),
            Self::Http(route) => write!(f, "http {route}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SensorSpec {
    pub name: String,
    pub kind: SensorKind,
    pub interval: Duration,
    pub unit: Option<String>,
    /// Publish each reading to the local broker on this topic.
    pub publish_topic: Option<String>,
    /// Which samples become events.
    pub report: Report,
}

/// Which samples of a sensor become events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Report {
    /// Every sample.
    Every,
    /// A sample that differs from the last reported one by more than this.
    Change { deadband: f64 },
    /// A crossing of `threshold` upwards, and back below `threshold -
    /// hysteresis`, so a value hovering at the threshold does not chatter.
    Threshold { threshold: f64, hysteresis: f64 },
}

/// Shapes of the simulated sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waveform {
    Sine,
    Square,
    Sawtooth,
    RandomWalk,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SensorKind {
    Replay {
        file: PathBuf,
        looped: bool,
    },
    Sysfs {
        path: PathBuf,
        scale: f64,
        offset: f64,
    },
    /// A DS18B20 on the 1-wire bus: `<root>/bus/w1/devices/<device>/w1_slave`.
    OneWire {
        path: PathBuf,
    },
    /// An IIO channel: `<root>/bus/iio/devices/<device>/<channel>_raw`,
    /// `_scale`, `_offset`.
    Iio {
        dir: PathBuf,
        channel: String,
    },
    Simulated {
        waveform: Waveform,
        min: f64,
        max: f64,
        period: Duration,
        noise: f64,
    },
    /// A GPIO input: one event per (debounced) edge, not sampled.
    Gpio(GpioInputSpec),
    /// A BME280/BMP280 on I2C: `bus` is `/dev/i2c-N` (or a fake's
    /// directory).
    Bme280 {
        bus: PathBuf,
        address: u8,
        measure: Quantity,
    },
}

/// GPIO for the whole node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioPlan {
    pub backend: Backend,
    pub outputs: Vec<GpioOutputSpec>,
}

/// A `kind = "gpio"` sensor, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GpioInputSpec {
    pub address: LineAddress,
    pub config: InputConfig,
}
