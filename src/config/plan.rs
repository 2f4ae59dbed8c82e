//! Stage two of configuration: the validated, resolved plan the runtime
//! trusts. Defaults are applied here and nowhere else.
//!
//! `resolve` walks the raw config once, collecting every problem with its
//! location instead of stopping at the first, so `ledge check` can list all of
//! them. Module files are *not* opened here: a module that fails to load
//! disables only its function at run time (see `runtime::load`), while
//! `ledge check` reports it as an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::gpio::{GpioInputSpec, GpioPlan};
use super::raw::{
    RawBroker, RawBus, RawConfig, RawDeploy, RawDevice, RawForward, RawFunction, RawSensor,
    RawSpool, RawTrigger, RawUpstream,
};
use super::{ConfigError, ConfigErrors, Location, SourceMap};
use crate::hw::bme280::Quantity;
use crate::spool::{FsyncPolicy, OnFull, SpoolOptions};
use crate::time::cron::Cron;
use crate::time::tz::TimeZone;
use crate::topic::{validate_topic_name, TopicFilter};
use crate::units::{parse_duration, parse_size};

/// Default linear-memory cap of a function.
pub const DEFAULT_MEMORY: u64 = 16 << 20;
/// Default per-invocation timeout. Lambda and Greengrass use 3 s; gateway
/// logic that takes longer than a second is usually waiting on something it
/// should not be.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bound of a function's event queue, in events. Measured (see
/// BENCHMARKS.md): with 128, bursts above ~5,000 readings a second filled
/// it and ledge's sustained rate fell to what its overflow path (the
/// function's spool stream) can feed; 4,096 absorbs a second of a busy
/// sensor hub in memory. Bounded in bytes too, by `QUEUE_BYTES`.
pub const DEFAULT_QUEUE_SIZE: usize = 4096;
/// Bytes of events (payloads and subjects) one function's queue holds at
/// most, whatever `queue_size` says: 16 of 256 KiB payloads fill it before
/// 4,096 readings would.
pub const QUEUE_BYTES: usize = 4 << 20;
/// Default largest event payload, publish or response.
pub const DEFAULT_MAX_PAYLOAD: u64 = 256 << 10;
/// The local MQTT listener of the embedded broker.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";
/// Default cap on the embedded broker's client connections. A gateway has a
/// handful of local clients; 128 leaves room for reconnect storms while
/// bounding memory (tens of KiB per idle connection).
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Default time a new client connection has to send CONNECT: idle sockets
/// cannot hold connection slots for longer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A users file larger than this is refused (it is a few lines per client).
const USERS_FILE_LIMIT: u64 = 1 << 20;

/// Default bound on the sum of `max_concurrency`: 8 per CPU core (wasm is
/// CPU-bound while it runs, but functions spend most of their time idle).
pub fn default_max_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 8
}

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

/// A value that must never be printed: Debug and Display redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret itself, for the one place that needs it (the MQTT CONNECT).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
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

/// Builds a [`Plan`] from the raw config, or every error found on the way.
/// `board_flag` is `--board`, which wins over `[device] board`.
pub fn resolve(
    map: &SourceMap<'_>,
    raw: RawConfig,
    board_flag: Option<&str>,
) -> Result<Plan, ConfigErrors> {
    let mut resolver = Resolver {
        map,
        base: map_base(map),
        errors: Vec::new(),
        board: None,
    };
    resolver.board = resolver.board(&raw.device, board_flag);
    let gpio_backend = resolver.gpio_backend(&raw.device);
    let device = resolver.device(RawDevice {
        id: raw.device.id.clone(),
        data_dir: raw.device.data_dir.clone(),
        max_concurrency: None,
        board: None,
        gpio_fake: None,
    });
    let broker = resolver.broker(raw.broker, &device.id);
    let spool = resolver.spool(&raw.spool);
    let upstream = raw.upstream.map(|u| resolver.upstream(u, &device.id));
    let forwards = resolver.forwards(raw.forwards, upstream.is_some());
    let metrics_interval = resolver.duration(&raw.metrics.interval, Duration::from_secs(60));
    let metrics_listen = raw.metrics.listen.as_ref().and_then(|listen| match listen
        .get_ref()
        .parse::<std::net::SocketAddr>(
    ) {
        Ok(address) => Some(address),
        Err(e) => {
            resolver.fail(
                listen.span(),
                format!("metrics listen must be an address like \"127.0.0.1:9464\": {e}"),
            );
            None
        }
    });
    let gpio_grants: Vec<Vec<Spanned<String>>> = raw
        .functions
        .iter()
        .map(|f| f.get_ref().allow_gpio.clone())
        .collect();
    let sensor_spans: HashMap<String, Range<usize>> = raw
        .sensors
        .iter()
        .map(|s| (s.get_ref().name.get_ref().clone(), s.get_ref().name.span()))
        .collect();
    let functions = resolver.functions(raw.functions);
    resolver.check_concurrency(&raw.device.max_concurrency, &functions);
    let sensors = resolver.sensors(raw.sensors);
    let gpio_outputs = resolver.gpio_outputs(raw.gpio_outputs);
    resolver.check_gpio(&gpio_grants, &gpio_outputs, &sensors, &sensor_spans);
    let routes = resolver.routes(raw.triggers, &functions, &sensors);
    let deploy = resolver.deploy(&raw.deploy);
    let log_json = match raw
        .log
        .format
        .as_ref()
        .map(|f| (f.get_ref().as_str(), f.span()))
    {
        None | Some(("text", _)) => false,
        Some(("json", _)) => true,
        Some((other, span)) => {
            resolver.fail(span, format!("log format `{other}` is not text or json"));
            false
        }
    };
    if !resolver.errors.is_empty() {
        resolver.errors.sort_by_key(|e| {
            e.location
                .as_ref()
                .map(|l| (l.line, l.column))
                .unwrap_or_default()
        });
        return Err(ConfigErrors(resolver.errors));
    }
    Ok(Plan {
        source: map_file(map),
        device,
        broker,
        functions,
        routes,
        sensors,
        log_level: raw.log.level,
        log_json,
        spool,
        upstream,
        forwards,
        metrics_interval,
        metrics_listen,
        aliases: BTreeMap::new(),
        deploy,
        board: resolver.board,
        board_flag: board_flag.map(str::to_owned),
        gpio: GpioPlan {
            backend: gpio_backend,
            outputs: gpio_outputs,
        },
    })
}

fn map_base(map: &SourceMap<'_>) -> PathBuf {
    map_file(map)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn map_file(map: &SourceMap<'_>) -> PathBuf {
    map.locate(0..0).file
}

pub(super) struct Resolver<'a> {
    map: &'a SourceMap<'a>,
    /// Folder of the config file; relative paths in it start here.
    base: PathBuf,
    errors: Vec<ConfigError>,
    /// The board profile, whose defaults apply where the file says nothing.
    board: Option<crate::board::Board>,
}

impl Resolver<'_> {
    pub(super) fn fail(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(self.map.error(span, message));
    }

    pub(super) fn locate(&self, span: Range<usize>) -> Location {
        self.map.locate(span)
    }

    /// A problem that has no place in the file (a command-line flag).
    pub(super) fn fail_unlocated(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: None,
            file: map_file(self.map),
            message: message.into(),
        });
    }

    pub(super) fn board_profile(&self) -> Option<&crate::board::Board> {
        self.board.as_ref()
    }

    /// A board default parsed as a size (profiles are checked by tests).
    fn board_size(&self, pick: impl Fn(&crate::board::BoardDefaults) -> &str) -> Option<u64> {
        self.board
            .as_ref()
            .and_then(|b| parse_size(pick(&b.defaults)).ok())
    }

    pub(super) fn path(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            normalize(path)
        } else {
            normalize(&self.base.join(path))
        }
    }

    fn size(&mut self, value: &Option<Spanned<String>>, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) => parse_size(v.get_ref()).unwrap_or_else(|e| {
                self.fail(v.span(), e);
                default
            }),
        }
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => match parse_duration(v.get_ref()) {
                Ok(d) if d.is_zero() => {
                    self.fail(v.span(), "must be longer than zero");
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    self.fail(v.span(), e);
                    default
                }
            },
        }
    }

    fn positive(&mut self, value: &Option<Spanned<i64>>, default: usize, max: usize) -> usize {
        match value {
            None => default,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    self.fail(v.span(), format!("must be between 1 and {max}"));
                    default
                }
            },
        }
    }

    /// Each function's `max_concurrency` is reserved: its own worker
    /// threads, so no function can starve another. The device's limit
    /// bounds their sum, so a config cannot overcommit a small board.
    fn check_concurrency(&mut self, limit: &Option<Spanned<i64>>, functions: &[FunctionSpec]) {
        let default = self
            .board
            .as_ref()
            .map_or_else(default_max_concurrency, |b| b.defaults.max_concurrency);
        let allowed = self.positive(limit, default, 4096);
        let total: usize = functions.iter().map(|f| f.max_concurrency).sum();
        if total <= allowed {
            return;
        }
        let why = match (limit, &self.board) {
            (Some(_), _) => "[device] max_concurrency".to_owned(),
            (None, Some(board)) => format!("the default of board {}", board.name),
            (None, None) => format!(
                "the default [device] max_concurrency: 8 per CPU core, {} cores here",
                default / 8
            ),
        };
        let message = format!(
            "the functions reserve {total} concurrent executions in all (sum of max_concurrency), more than {allowed} ({why}); lower some max_concurrency or raise [device] max_concurrency"
        );
        match limit {
            Some(limit) => self.fail(limit.span(), message),
            None => {
                let span = functions
                    .iter()
                    .max_by_key(|f| f.max_concurrency)
                    .map(|f| f.module_location.clone());
                self.errors.push(ConfigError {
                    location: span,
                    file: map_file(self.map),
                    message,
                })
            }
        }
    }

    fn device(&mut self, raw: RawDevice) -> DevicePlan {
        let id = match raw.id {
            Some(id) => {
                if !is_identifier(id.get_ref(), ".") {
                    self.fail(
                        id.span(),
                        "device id must be 1-64 letters, digits, `-`, `_` or `.` (it is used in MQTT topics)",
                    );
                }
                id.into_inner()
            }
            None => default_device_id(),
        };
        let data_dir = match raw.data_dir {
            Some(dir) => self.path(dir.get_ref()),
            None => self.board.as_ref().map_or_else(
                || PathBuf::from("/var/lib/ledge"),
                |b| b.defaults.data_dir.clone(),
            ),
        };
        DevicePlan { id, data_dir }
    }

    fn broker(&mut self, raw: RawBroker, device_id: &str) -> BrokerPlan {
        let mode = self.broker_mode(&raw);
        let client_id = match &raw.client_id {
            Some(id) if id.get_ref().is_empty() || id.get_ref().len() > 128 => {
                self.fail(id.span(), "client_id must be 1-128 characters");
                String::new()
            }
            Some(id) => id.get_ref().clone(),
            None => format!("ledge-{device_id}"),
        };
        let keep_alive = self.keep_alive(&raw.keep_alive);
        let password = self.password(&raw.password_file, &raw.password_env);
        let local = self.local_broker(&raw, &mode);
        let max_payload = self.size(&raw.max_payload, DEFAULT_MAX_PAYLOAD);
        if let Some(mp) = &raw.max_payload {
            if !(1..=(256 << 20)).contains(&max_payload) {
                self.fail(mp.span(), "max_payload must be between 1B and 256MiB");
            }
        }
        BrokerPlan {
            mode,
            local,
            client_id,
            keep_alive,
            username: raw.username,
            password,
            max_payload: max_payload as usize,
        }
    }

    /// The embedded broker's client settings. Listening beyond loopback
    /// without a users file is refused: anything reachable from the network
    /// must ask for a login.
    fn local_broker(&mut self, raw: &RawBroker, mode: &BrokerMode) -> LocalBrokerPlan {
        let max_connections = self.positive(&raw.max_connections, DEFAULT_MAX_CONNECTIONS, 100_000);
        let connect_timeout = self.duration(&raw.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        if let Some(timeout) = &raw.connect_timeout {
            if connect_timeout.is_zero() {
                self.fail(timeout.span(), "connect_timeout must be longer than zero");
            }
        }
        let users = raw.users_file.as_ref().and_then(|file| {
            let path = self.path(file.get_ref());
            match super::files::read_capped(&path, USERS_FILE_LIMIT) {
                Ok(bytes) => match crate::users::Users::parse(&String::from_utf8_lossy(&bytes)) {
                    Ok(users) => Some(std::sync::Arc::new(users)),
                    Err(e) => {
                        self.fail(file.span(), format!("users file {}: {e}", file.get_ref()));
                        None
                    }
                },
                Err(e) => {
                    self.fail(
                        file.span(),
                        format!("cannot read users file {}: {e}", file.get_ref()),
                    );
                    None
                }
            }
        });
        let embedded = matches!(mode, BrokerMode::Embedded { .. });
        for (key, span) in [
            (
                "max_connections",
                raw.max_connections.as_ref().map(Spanned::span),
            ),
            (
                "connect_timeout",
                raw.connect_timeout.as_ref().map(Spanned::span),
            ),
            ("users_file", raw.users_file.as_ref().map(Spanned::span)),
        ] {
            if let (false, Some(span)) = (embedded, span) {
                self.fail(span, format!("{key} applies to the embedded broker only; this config uses an external one (`url`)"));
            }
        }
        if let (BrokerMode::Embedded { listen }, None) = (mode, &users) {
            if !listen.ip().is_loopback() {
                let span = raw.listen.as_ref().map(Spanned::span).unwrap_or(0..0);
                self.fail(span, format!("the embedded broker listens on {listen}, beyond this machine, without a users_file: set users_file (make its lines with `ledge passwd NAME`) or listen on 127.0.0.1"));
            }
        }
        LocalBrokerPlan {
            max_connections,
            connect_timeout,
            users,
        }
    }

    fn broker_mode(&mut self, raw: &RawBroker) -> BrokerMode {
        let embedded = raw.embedded.as_ref().map(|e| *e.get_ref());
        match (&raw.url, embedded) {
            (Some(url), Some(true)) => {
                self.fail(
                    url.span(),
                    "set either `url` (an external broker) or `embedded = true`, not both",
                );
                BrokerMode::External {
                    host: String::new(),
                    port: 0,
                }
            }
            (Some(url), _) => match parse_broker_url(url.get_ref(), false) {
                Ok((_, host, port)) => BrokerMode::External { host, port },
                Err(e) => {
                    self.fail(url.span(), e);
                    BrokerMode::External {
                        host: String::new(),
                        port: 0,
                    }
                }
            },
            (None, Some(false)) => {
                let span = raw.embedded.as_ref().map(Spanned::span).unwrap_or(0..0);
                self.fail(
                    span,
                    "`embedded = false` needs a `url` for the external broker",
                );
                BrokerMode::External {
                    host: String::new(),
                    port: 0,
                }
            }
            (None, _) => {
                let listen = raw
                    .listen
                    .as_ref()
                    .map(|l| (l.get_ref().as_str(), l.span()))
                    .unwrap_or((DEFAULT_LISTEN, 0..0));
                if !cfg!(feature = "local-broker") {
                    self.fail(
                        listen.1.clone(),
                        "this ledge was built without the embedded broker (feature `local-broker`); set `url` to an external broker",
                    );
                }
                match listen.0.parse::<SocketAddr>() {
                    Ok(addr) => BrokerMode::Embedded { listen: addr },
                    Err(_) => {
                        self.fail(
                            listen.1,
                            format!("`{}` is not an address like 127.0.0.1:1883", listen.0),
                        );
                        BrokerMode::Embedded {
                            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
                        }
                    }
                }
            }
        }
    }

    /// Reads the broker password from its file or environment variable.
    /// The value goes into a [`Secret`] and is never echoed, even in errors.
    fn password(
        &mut self,
        file: &Option<Spanned<String>>,
        env: &Option<Spanned<String>>,
    ) -> Option<Secret> {
        match (file, env) {
            (Some(file), Some(_)) => {
                self.fail(file.span(), "set password_file or password_env, not both");
                None
            }
            (Some(file), None) => match read_secret_file(&self.path(file.get_ref())) {
                Ok(text) => Some(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned())),
                Err(e) => {
                    self.fail(file.span(), format!("cannot read password file: {e}"));
                    None
                }
            },
            (None, Some(var)) => match std::env::var(var.get_ref()) {
                Ok(value) => Some(Secret::new(value)),
                Err(_) => {
                    self.fail(
                        var.span(),
                        format!("environment variable {} is not set", var.get_ref()),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    fn functions(&mut self, raw: Vec<Spanned<RawFunction>>) -> Vec<FunctionSpec> {
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut functions = Vec::with_capacity(raw.len());
        for entry in raw {
            let f = entry.into_inner();
            let name = f.name.get_ref().clone();
            if !is_identifier(&name, "") {
                self.fail(
                    f.name.span(),
                    "function name must be 1-64 letters, digits, `-` or `_`",
                );
            }
            if seen.insert(name.clone(), ()).is_some() {
                self.fail(f.name.span(), format!("duplicate function name `{name}`"));
            }
            functions.push(self.function(name, f));
        }
        functions
    }

    fn function(&mut self, name: String, f: RawFunction) -> FunctionSpec {
        let default_memory = self
            .board_size(|d| &d.function_memory)
            .unwrap_or(DEFAULT_MEMORY);
        let memory_limit = self.size(&f.memory, default_memory);
        if let Some(m) = &f.memory {
            if !(64 << 10..=4 << 30).contains(&memory_limit) {
                self.fail(m.span(), "memory must be between 64KiB and 4GiB");
            }
        }
        let allow_publish = f
            .allow_publish
            .iter()
            .filter_map(|filter| match TopicFilter::new(filter.get_ref()) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    self.fail(filter.span(), format!("invalid topic filter: {e}"));
                    None
                }
            })
            .collect();
        let allow_forward = self.filters(&f.allow_forward);
        let max_fuel = f.max_fuel.as_ref().map(|fuel| {
            if *fuel.get_ref() == 0 {
                self.fail(fuel.span(), "max_fuel must be greater than zero");
            }
            *fuel.get_ref()
        });
        let failure = self.failure_policy(&f);
        let secret_env = match &f.env_file {
            Some(file) => self.env_file(file, &f.env),
            None => BTreeMap::new(),
        };
        FunctionSpec {
            secret_env,
            failure,
            version: "$LATEST".to_owned(),
            module_path: self.path(f.module.get_ref()),
            module_location: self.map.locate(f.module.span()),
            memory_limit: memory_limit as usize,
            timeout: self.duration(&f.timeout, DEFAULT_TIMEOUT),
            max_fuel,
            max_concurrency: self.positive(&f.max_concurrency, 1, 256),
            queue_size: self.positive(&f.queue_size, DEFAULT_QUEUE_SIZE, 1_000_000),
            env: f.env,
            allow_publish,
            allow_forward,
            default_alias: f.default_alias.as_ref().and_then(|alias| {
                match Qualifier::split(&format!("{name}:{}", alias.get_ref())) {
                    Ok((_, Qualifier::Alias(alias))) => Some(alias),
                    _ => {
                        self.fail(alias.span(), "default_alias must be an alias name (letters, digits, `-`, `_`; not a number)");
                        None
                    }
                }
            }),
            allow_gpio: f.allow_gpio.iter().map(|g| g.get_ref().clone()).collect(),
            name,
        }
    }

    /// Reads `env_file`: `KEY=VALUE` lines, blank lines and `#` comments.
    /// Problems inside it are reported at its own file:line.
    fn env_file(
        &mut self,
        file: &Spanned<String>,
        inline: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Secret> {
        let path = self.path(file.get_ref());
        let text = match read_secret_file(&path) {
            Ok(text) => text,
            Err(e) => {
                self.fail(file.span(), format!("cannot read env_file: {e}"));
                return BTreeMap::new();
            }
        };
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o004 != 0 {
                log::warn!(target: "ledge::config", "env_file {} is readable by every user; it holds secrets (chmod 640)", path.display());
            }
        }
        let mut values = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let location = Location {
                file: path.clone(),
                line: number + 1,
                column: 1,
            };
            let problem = match line.split_once('=') {
                Some((key, _)) if !is_identifier(key.trim(), "") => {
                    Some(format!("`{}` is not a valid env key", key.trim()))
                }
                Some((key, _)) if inline.contains_key(key.trim()) => Some(format!(
                    "`{}` is also set in the function's env; set it in one place",
                    key.trim()
                )),
                Some((key, value)) => {
                    let value = value.trim();
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(value);
                    values.insert(key.trim().to_owned(), Secret::new(value.to_owned()));
                    None
                }
                // The line is not shown: it may be a secret missing its key.
                None => Some("expected KEY=VALUE".to_owned()),
            };
            if let Some(message) = problem {
                self.errors.push(ConfigError {
                    location: Some(location),
                    file: path.clone(),
                    message,
                });
            }
        }
        values
    }

    fn failure_policy(&mut self, f: &RawFunction) -> FailurePolicy {
        let defaults = FailurePolicy::default();
        let retries = match &f.retries {
            None => defaults.retries,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if n <= 10 => n,
                _ => {
                    self.fail(v.span(), "retries must be between 0 and 10");
                    defaults.retries
                }
            },
        };
        let on_failure = match &f.on_failure {
            None => defaults.on_failure.clone(),
            Some(v) => match v.get_ref().as_str() {
                "dlq" => OnFailure::DeadLetter,
                "drop" => OnFailure::Drop,
                other => match other.strip_prefix("topic:") {
                    Some(topic) if TopicFilter::new(topic).is_ok_and(|t| !t.has_wildcards()) => {
                        OnFailure::Topic(topic.to_owned())
                    }
                    _ => {
                        self.fail(
                            v.span(),
                            "on_failure must be \"dlq\", \"drop\" or \"topic:<local topic without wildcards>\"",
                        );
                        defaults.on_failure.clone()
                    }
                },
            },
        };
        FailurePolicy {
            retries,
            retry_backoff: self.duration(&f.retry_backoff, defaults.retry_backoff),
            max_event_age: self.duration(&f.max_event_age, defaults.max_event_age),
            on_failure,
        }
    }

    fn filters(&mut self, raw: &[Spanned<String>]) -> Vec<TopicFilter> {
        raw.iter()
            .filter_map(|filter| match TopicFilter::new(filter.get_ref()) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    self.fail(filter.span(), format!("invalid topic filter: {e}"));
                    None
                }
            })
            .collect()
    }

    fn spool(&mut self, raw: &RawSpool) -> SpoolOptions {
        let defaults = SpoolOptions::default();
        let fsync = match &raw.fsync {
            None => defaults.fsync,
            Some(text) => FsyncPolicy::parse(text.get_ref()).unwrap_or_else(|e| {
                self.fail(text.span(), e);
                defaults.fsync
            }),
        };
        let on_full = match &raw.on_full {
            None => defaults.on_full,
            Some(text) => OnFull::parse(text.get_ref()).unwrap_or_else(|e| {
                self.fail(text.span(), e);
                defaults.on_full
            }),
        };
        // A board's smaller spool gets smaller segments, so 4 of them fit.
        let board_max = self.board_size(|d| &d.spool_max_bytes);
        let default_segment = match board_max {
            Some(max) if raw.max_bytes.is_none() => {
                (max / 8).clamp(64 << 10, defaults.segment_size)
            }
            _ => defaults.segment_size,
        };
        let segment_size = self.size(&raw.segment_size, default_segment);
        if let Some(v) = &raw.segment_size {
            if !(64 << 10..=1 << 30).contains(&segment_size) {
                self.fail(v.span(), "segment_size must be between 64KiB and 1GiB");
            }
        }
        let max_bytes = self.size(&raw.max_bytes, board_max.unwrap_or(defaults.max_bytes));
        if max_bytes < segment_size.saturating_mul(4) {
            let span = raw
                .max_bytes
                .as_ref()
                .or(raw.segment_size.as_ref())
                .map_or(0..0, Spanned::span);
            self.fail(span, format!(
                "max_bytes ({}) must be at least 4 × segment_size ({}) so old segments can be dropped or reclaimed while the newest fills",
                crate::units::format_size(max_bytes),
                crate::units::format_size(segment_size)
            ));
        }
        SpoolOptions {
            segment_size,
            max_bytes,
            on_full,
            fsync,
            ..defaults
        }
    }

    /// An MQTT keep-alive: 30 s unless set, 5 s to 65535 s (the MQTT 5
    /// client refuses less than 5 s, and the field has 16 bits).
    fn keep_alive(&mut self, raw: &Option<Spanned<String>>) -> Duration {
        let keep_alive = self.duration(raw, Duration::from_secs(30));
        if let Some(ka) = raw {
            if keep_alive < Duration::from_secs(5) || keep_alive > Duration::from_secs(65_535) {
                self.fail(ka.span(), "keep_alive must be between 5s and 65535s");
            }
        }
        keep_alive
    }

    fn upstream(&mut self, raw: RawUpstream, device_id: &str) -> UpstreamPlan {
        let (tls, host, port) = parse_broker_url(raw.url.get_ref(), true).unwrap_or_else(|e| {
            self.fail(raw.url.span(), e);
            (false, String::new(), 0)
        });
        let file = |r: &mut Self, f: &Option<Spanned<String>>| {
            f.as_ref().map(|f| {
                let path = r.path(f.get_ref());
                if !path.is_file() {
                    r.fail(f.span(), format!("{} does not exist", path.display()));
                }
                path
            })
        };
        let tls_files = TlsFiles {
            ca_file: file(self, &raw.ca_file),
            cert_file: file(self, &raw.cert_file),
            key_file: file(self, &raw.key_file),
        };
        if tls_files.cert_file.is_some() != tls_files.key_file.is_some() {
            let span = raw
                .cert_file
                .as_ref()
                .or(raw.key_file.as_ref())
                .map_or(0..0, Spanned::span);
            self.fail(
                span,
                "a client certificate needs both cert_file and key_file",
            );
        }
        if !tls && (raw.ca_file.is_some() || raw.cert_file.is_some()) {
            self.fail(
                raw.url.span(),
                "ca_file/cert_file/key_file need an mqtts:// url",
            );
        }
        let topic_prefix = match &raw.topic_prefix {
            Some(prefix) => {
                let text = prefix.get_ref().trim_end_matches('/').to_owned();
                if let Err(e) = validate_topic_name(&text) {
                    self.fail(prefix.span(), format!("invalid topic prefix: {e}"));
                }
                text
            }
            None => format!("ledge/{device_id}"),
        };
        let ship_logs = match raw.logs.as_ref().map(|l| (l.get_ref().as_str(), l.span())) {
            None => Some(log::Level::Info),
            Some(("off", _)) => None,
            Some((text, span)) => text.parse::<log::Level>().map(Some).unwrap_or_else(|_| {
                self.fail(
                    span,
                    format!("`{text}` is not a level (off, error, warn, info, debug)"),
                );
                None
            }),
        };
        let keep_alive = self.keep_alive(&raw.keep_alive);
        let outage_warning = self.duration(&raw.outage_warning, Duration::from_secs(60));
        if let Some(warning) = &raw.outage_warning {
            if outage_warning < Duration::from_secs(1) {
                self.fail(warning.span(), "outage_warning must be at least 1s");
            }
        }
        UpstreamPlan {
            host,
            port,
            tls: tls.then_some(tls_files),
            client_id: raw
                .client_id
                .map(Spanned::into_inner)
                .unwrap_or_else(|| format!("ledge-{device_id}-uplink")),
            keep_alive,
            username: raw.username,
            password: self.password(&raw.password_file, &raw.password_env),
            topic_prefix,
            max_inflight: self.positive(&raw.max_inflight, 32, 1000),
            ship_logs,
            outage_warning,
        }
    }

    fn forwards(&mut self, raw: Vec<Spanned<RawForward>>, has_upstream: bool) -> Vec<ForwardRule> {
        let mut rules = Vec::new();
        for entry in raw {
            let span = entry.span();
            let f = entry.into_inner();
            if !has_upstream {
                self.fail(
                    span.clone(),
                    "[[forward]] needs an [upstream] to forward to",
                );
            }
            let filter = match TopicFilter::new(f.topic.get_ref()) {
                Ok(filter) => filter,
                Err(e) => {
                    self.fail(f.topic.span(), format!("invalid topic filter: {e}"));
                    continue;
                }
            };
            if let Some(to) = &f.to {
                if let Err(e) = validate_topic_name(to.get_ref()) {
                    self.fail(to.span(), format!("invalid upstream topic: {e}"));
                }
            }
            rules.push(ForwardRule {
                filter,
                to: f.to.map(Spanned::into_inner),
            });
        }
        rules
    }

    fn sensors(&mut self, raw: Vec<Spanned<RawSensor>>) -> Vec<SensorSpec> {
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut sensors = Vec::with_capacity(raw.len());
        for entry in raw {
            let s = entry.into_inner();
            let name = s.name.get_ref().clone();
            if !is_identifier(&name, "") {
                self.fail(
                    s.name.span(),
                    "sensor name must be 1-64 letters, digits, `-` or `_`",
                );
            }
            if seen.insert(name.clone(), ()).is_some() {
                self.fail(s.name.span(), format!("duplicate sensor name `{name}`"));
            }
            self.check_sensor_keys(&s);
            if let Some(kind) = self.sensor_kind(&s) {
                let publish_topic = self.sensor_topic(&s, &name);
                let report = self.report(&s);
                let unit = match &kind {
                    SensorKind::Bme280 { measure, .. } if s.unit.is_none() => {
                        Some(measure.unit().to_owned())
                    }
                    _ => s.unit,
                };
                sensors.push(SensorSpec {
                    report,
                    interval: self.duration(&s.interval, Duration::from_secs(1)),
                    unit,
                    publish_topic,
                    kind,
                    name,
                });
            }
        }
        sensors
    }

    fn report(&mut self, s: &RawSensor) -> Report {
        let Some(report) = &s.report else {
            return Report::Every;
        };
        match report.get_ref().as_str() {
            "every" => Report::Every,
            "change" => Report::Change {
                deadband: s.deadband.unwrap_or(0.0).abs(),
            },
            "threshold" => match s.threshold {
                Some(threshold) => Report::Threshold {
                    threshold,
                    hysteresis: s.hysteresis.unwrap_or(0.0).abs(),
                },
                None => {
                    self.fail(report.span(), "report = \"threshold\" needs `threshold`");
                    Report::Every
                }
            },
            other => {
                self.fail(
                    report.span(),
                    format!("unknown report `{other}` (known: every, change, threshold)"),
                );
                Report::Every
            }
        }
    }

    fn sysfs_root(&self, s: &RawSensor) -> PathBuf {
        s.sysfs_root
            .as_ref()
            .map_or_else(|| PathBuf::from("/sys"), |root| self.path(root.get_ref()))
    }

    fn required<'s>(
        &mut self,
        s: &'s RawSensor,
        value: &'s Option<Spanned<String>>,
        key: &str,
    ) -> Option<&'s str> {
        match value {
            Some(v) => Some(v.get_ref().as_str()),
            None => {
                self.fail(
                    s.kind.span(),
                    format!("a {} sensor needs `{key}`", s.kind.get_ref()),
                );
                None
            }
        }
    }

    fn sensor_kind(&mut self, s: &RawSensor) -> Option<SensorKind> {
        match s.kind.get_ref().as_str() {
            "w1" | "ds18b20" => {
                let device = self.required(s, &s.device, "device")?;
                if !device.starts_with("28-") || device.contains('/') {
                    if let Some(d) = &s.device {
                        self.fail(
                            d.span(),
                            "a DS18B20's id starts with `28-` (see /sys/bus/w1/devices)",
                        );
                    }
                }
                // A board's 1-wire folder, unless sysfs_root moves /sys.
                let devices = match (&s.sysfs_root, &self.board) {
                    (None, Some(board)) => board.paths.w1.clone(),
                    _ => self.sysfs_root(s).join("bus/w1/devices"),
                };
                let path = devices.join(device).join("w1_slave");
                Some(SensorKind::OneWire { path })
            }
            "iio" => {
                let device = self.required(s, &s.device, "device")?.to_owned();
                let channel = self.required(s, &s.channel, "channel")?.to_owned();
                let dir = self.sysfs_root(s).join("bus/iio/devices").join(device);
                Some(SensorKind::Iio { dir, channel })
            }
            "thermal" => {
                let zone = s.zone.as_ref().map_or(0, |z| *z.get_ref());
                // The board's SoC zone, unless a zone or sysfs_root is given.
                let path = match (&s.zone, &s.sysfs_root, &self.board) {
                    (None, None, Some(board)) => board.paths.thermal.clone(),
                    _ => self
                        .sysfs_root(s)
                        .join(format!("class/thermal/thermal_zone{zone}/temp")),
                };
                Some(SensorKind::Sysfs {
                    path,
                    scale: 0.001,
                    offset: 0.0,
                })
            }
            "simulated" => {
                let waveform = match s.waveform.as_ref().map(|w| w.get_ref().as_str()) {
                    None | Some("sine") => Waveform::Sine,
                    Some("square") => Waveform::Square,
                    Some("sawtooth") => Waveform::Sawtooth,
                    Some("random_walk") => Waveform::RandomWalk,
                    Some(other) => {
                        if let Some(w) = &s.waveform {
                            self.fail(w.span(), format!("unknown waveform `{other}` (known: sine, square, sawtooth, random_walk)"));
                        }
                        Waveform::Sine
                    }
                };
                let (min, max) = (s.min.unwrap_or(0.0), s.max.unwrap_or(1.0));
                if max < min {
                    self.fail(s.kind.span(), "a simulated sensor needs min <= max");
                }
                Some(SensorKind::Simulated {
                    waveform,
                    min,
                    max,
                    period: self.duration(&s.period, Duration::from_secs(60)),
                    noise: s.noise.unwrap_or(0.0).abs(),
                })
            }
            "bme280" | "bmp280" => self.bme280(s),
            "replay" => {
                let Some(file) = &s.file else {
                    self.fail(s.kind.span(), "a replay sensor needs `file` (CSV or JSONL)");
                    return None;
                };
                let path = self.path(file.get_ref());
                if !path.is_file() {
                    self.fail(
                        file.span(),
                        format!("replay file {} does not exist", path.display()),
                    );
                }
                Some(SensorKind::Replay {
                    file: path,
                    looped: s.looped.unwrap_or(true),
                })
            }
            "sysfs" => {
                let Some(path) = &s.path else {
                    self.fail(s.kind.span(), "a sysfs sensor needs `path`");
                    return None;
                };
                Some(SensorKind::Sysfs {
                    path: self.path(path.get_ref()),
                    scale: s.scale.unwrap_or(1.0),
                    offset: s.offset.unwrap_or(0.0),
                })
            }
            "gpio" => self.gpio_input(s),
            other => {
                self.fail(
                    s.kind.span(),
                    format!("unknown sensor kind `{other}` (known: replay, sysfs, w1, iio, thermal, simulated, gpio, bme280)"),
                );
                None
            }
        }
    }

    fn bme280(&mut self, s: &RawSensor) -> Option<SensorKind> {
        let bus = match s.bus.as_ref().map(|b| (b.get_ref(), b.span())) {
            None => PathBuf::from("/dev/i2c-1"),
            Some((RawBus::Number(n), span)) => {
                if !(0..=255).contains(n) {
                    self.fail(span, "an I2C bus number is 0-255 (/dev/i2c-N)");
                }
                PathBuf::from(format!("/dev/i2c-{n}"))
            }
            Some((RawBus::Path(path), _)) => self.path(path),
        };
        let address = match &s.address {
            None => 0x76,
            Some(a) if (0x03..=0x77).contains(a.get_ref()) => *a.get_ref() as u8,
            Some(a) => {
                self.fail(
                    a.span(),
                    "an I2C address is 0x03-0x77 (a BME280 is at 0x76 or 0x77)",
                );
                0x76
            }
        };
        let measure = match s.measure.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("temperature") => Quantity::Temperature,
            Some("pressure") => Quantity::Pressure,
            Some("humidity") => Quantity::Humidity,
            Some(other) => {
                if let Some(m) = &s.measure {
                    self.fail(
                        m.span(),
                        format!(
                            "unknown measure `{other}` (known: temperature, pressure, humidity)"
                        ),
                    );
                }
                Quantity::Temperature
            }
        };
        Some(SensorKind::Bme280 {
            bus,
            address,
            measure,
        })
    }

    fn sensor_topic(&mut self, s: &RawSensor, name: &str) -> Option<String> {
        match (&s.topic, s.publish) {
            (_, Some(false)) => None,
            (Some(topic), _) => {
                if let Err(e) = validate_topic_name(topic.get_ref()) {
                    self.fail(topic.span(), format!("invalid topic: {e}"));
                }
                Some(topic.get_ref().clone())
            }
            (None, Some(true)) => Some(format!("sensors/{name}/reading")),
            (None, None) => None,
        }
    }

    fn routes(
        &mut self,
        raw: Vec<Spanned<RawTrigger>>,
        functions: &[FunctionSpec],
        sensors: &[SensorSpec],
    ) -> Vec<Route> {
        let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
        let by_name: HashMap<&str, usize> = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        // The first durable route of each function: its batch is the stream's.
        let mut durable_route: HashMap<usize, usize> = HashMap::new();
        for entry in raw {
            let location = self.map.locate(entry.span());
            let t = entry.into_inner();
            let (name, qualifier) = match Qualifier::split(t.function.get_ref()) {
                Ok(split) => split,
                Err(e) => {
                    self.fail(t.function.span(), e);
                    (t.function.get_ref().as_str(), Qualifier::Default)
                }
            };
            let function = by_name.get(name).copied();
            if function.is_none() {
                self.fail(
                    t.function.span(),
                    format!(
                        "trigger names unknown function `{name}` (defined: {})",
                        names(functions.iter().map(|f| f.name.as_str()))
                    ),
                );
            }
            let source = self.trigger_source(&t, sensors);
            let batch = self.batch(&t);
            if let (Some(function), Some(source)) = (function, source) {
                let durable = t.durable.unwrap_or(false) || batch.is_some();
                if let Some(other) = durable_route
                    .get(&function)
                    .map(|&i| &routes[i])
                    .filter(|r| r.batch != batch)
                    .filter(|_| batch.is_some() || t.durable == Some(true))
                {
                    self.fail(
                        t.function.span(),
                        format!(
                            "the durable triggers of `{}` share one stream: give them all the same batch_size and batch_window (see {})",
                            t.function.get_ref(),
                            other.location
                        ),
                    );
                }
                if durable {
                    durable_route.entry(function).or_insert(routes.len());
                }
                routes.push(Route {
                    source,
                    function,
                    location,
                    durable,
                    batch,
                    qualifier,
                    canary: None,
                });
            }
        }
        routes
    }

    fn deploy(&mut self, raw: &RawDeploy) -> DeployPlan {
        let defaults = DeployPlan::default();
        let mut trusted_keys = Vec::new();
        for key in &raw.trusted_keys {
            match crate::signing::parse_public_key(key.get_ref()) {
                Ok(parsed) => trusted_keys.push(parsed),
                Err(e) => self.fail(key.span(), e),
            }
        }
        let max_error_rate = match &raw.max_error_rate {
            Some(rate) if !(0.0..=1.0).contains(rate.get_ref()) => {
                self.fail(rate.span(), "max_error_rate is a fraction from 0 to 1");
                defaults.max_error_rate
            }
            Some(rate) => *rate.get_ref(),
            None => defaults.max_error_rate,
        };
        DeployPlan {
            trusted_keys,
            max_module_size: self.size(&raw.max_module_size, defaults.max_module_size as u64)
                as usize,
            watch_invocations: self.positive(&raw.watch_invocations, 20, 1_000_000) as u64,
            watch_period: self.duration(&raw.watch_period, defaults.watch_period),
            max_error_rate,
        }
    }

    fn batch(&mut self, t: &RawTrigger) -> Option<BatchSpec> {
        if t.batch_size.is_none() && t.batch_window.is_none() {
            return None;
        }
        if t.durable == Some(false) {
            if let Some(size) = &t.batch_size {
                self.fail(
                    size.span(),
                    "a batched trigger is always durable; remove `durable = false`",
                );
            }
        }
        Some(BatchSpec {
            size: self.positive(&t.batch_size, 10, 10_000),
            window: self.duration(&t.batch_window, Duration::from_secs(1)),
        })
    }

    /// `every`, or `cron` with its `timezone` and `catch_up`.
    fn timing(&mut self, t: &RawTrigger) -> Option<Timing> {
        let cron = match (&t.every, &t.cron) {
            (Some(_), Some(cron)) => {
                self.fail(cron.span(), "a schedule has `every` or `cron`, not both");
                return None;
            }
            (Some(_), None) => {
                for (key, value) in [("timezone", &t.timezone), ("catch_up", &t.catch_up)] {
                    if let Some(value) = value {
                        self.fail(
                            value.span(),
                            format!("`{key}` applies to `cron` schedules, not `every`"),
                        );
                    }
                }
                return Some(Timing::Every(
                    self.duration(&t.every, Duration::from_secs(60)),
                ));
            }
            (None, Some(cron)) => cron,
            (None, None) => {
                self.fail(
                    t.source.span(),
                    "a schedule trigger needs `every` (e.g. \"5m\") or `cron` (e.g. \"*/5 * * * *\")",
                );
                return None;
            }
        };
        let parsed = Cron::parse(cron.get_ref())
            .map_err(|e| self.fail(cron.span(), format!("bad cron expression: {e}")))
            .ok();
        let timezone = t
            .timezone
            .as_ref()
            .map_or("UTC", |tz| tz.get_ref().as_str())
            .to_owned();
        let zoneinfo = std::env::var_os("TZDIR")
            .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
        let tz = TimeZone::resolve(&timezone, &zoneinfo)
            .map_err(|e| {
                if let Some(value) = &t.timezone {
                    self.fail(value.span(), e);
                }
            })
            .ok();
        let catch_up = match t.catch_up.as_ref().map(|c| c.get_ref().as_str()) {
            None | Some("skip") => CatchUp::Skip,
            Some("once") => CatchUp::Once,
            Some(other) => {
                if let Some(value) = &t.catch_up {
                    self.fail(
                        value.span(),
                        format!("unknown catch_up `{other}` (known: skip, once)"),
                    );
                }
                CatchUp::Skip
            }
        };
        Some(Timing::Cron(Box::new(CronTiming {
            expression: cron.get_ref().trim().to_owned(),
            cron: parsed?,
            timezone,
            tz: tz?,
            catch_up,
        })))
    }

    fn trigger_source(&mut self, t: &RawTrigger, sensors: &[SensorSpec]) -> Option<TriggerSource> {
        let kind = t.source.get_ref().as_str();
        let extra = |field: &Option<Spanned<String>>, name: &str| {
            field.as_ref().map(|f| (f.span(), name.to_owned()))
        };
        let schedule_keys = || {
            extra(&t.every, "every")
                .or(extra(&t.cron, "cron"))
                .or(extra(&t.timezone, "timezone"))
                .or(extra(&t.jitter, "jitter"))
                .or(extra(&t.catch_up, "catch_up"))
        };
        let stray = match kind {
            "mqtt" => schedule_keys().or(extra(&t.sensor, "sensor")),
            "schedule" => extra(&t.topic, "topic").or(extra(&t.sensor, "sensor")),
            "sensor" => extra(&t.topic, "topic").or(schedule_keys()),
            _ => None,
        };
        if let Some((span, key)) = stray {
            self.fail(
                span,
                format!("`{key}` does not apply to a `{kind}` trigger"),
            );
        }
        match kind {
            "mqtt" => {
                let Some(topic) = &t.topic else {
                    self.fail(t.source.span(), "an mqtt trigger needs `topic`");
                    return None;
                };
                match TopicFilter::new(topic.get_ref()) {
                    Ok(filter) => Some(TriggerSource::Mqtt { filter }),
                    Err(e) => {
                        self.fail(topic.span(), format!("invalid topic filter: {e}"));
                        None
                    }
                }
            }
            "schedule" => {
                let timing = self.timing(t)?;
                Some(TriggerSource::Schedule {
                    timing,
                    payload: t.payload.clone(),
                    jitter: self.duration(&t.jitter, Duration::ZERO),
                })
            }
            "sensor" => {
                let Some(sensor) = &t.sensor else {
                    self.fail(t.source.span(), "a sensor trigger needs `sensor`");
                    return None;
                };
                if !sensors.iter().any(|s| s.name == *sensor.get_ref()) {
                    self.fail(
                        sensor.span(),
                        format!(
                            "trigger names unknown sensor `{}` (defined: {})",
                            sensor.get_ref(),
                            names(sensors.iter().map(|s| s.name.as_str()))
                        ),
                    );
                    return None;
                }
                Some(TriggerSource::Sensor {
                    sensor: sensor.get_ref().clone(),
                })
            }
            other => {
                self.fail(
                    t.source.span(),
                    format!("unknown trigger source `{other}` (known: mqtt, schedule, sensor)"),
                );
                None
            }
        }
    }
}

/// Removes `.` and `name/..` pairs without touching the file system, so
/// paths print the way a user would write them.
/// A secret file's text. Its content is never shown, not even in errors.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = super::files::read_capped(path, super::files::MAX_SECRET_FILE)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let popped = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if popped {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The names an error lists as defined: the first few and how many more, so
/// thousands of bad references to thousands of names stay linear.
fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 20;
    let mut list = list.peekable();
    if list.peek().is_none() {
        return "none".to_owned();
    }
    let shown: Vec<&str> = list.by_ref().take(SHOWN).collect();
    let more = list.count();
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{}, and {more} more", shown.join(", "))
    }
}

/// Letters, digits, `-`, `_` and any of `extra`; 1 to 64 characters.
pub(super) fn is_identifier(text: &str, extra: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(c))
}

fn default_device_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| is_identifier(h, "."))
        .unwrap_or_else(|| "ledge".to_owned())
}

/// Parses `mqtt://host[:port]`; IPv6 hosts in brackets.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    parse_broker_url(url, false).map(|(_, host, port)| (host, port))
}

/// Parses `mqtt://host[:port]` or, where `tls_allowed`, `mqtts://host[:port]`;
/// returns (tls, host, port) with default ports 1883 and 8883.
pub fn parse_broker_url(url: &str, tls_allowed: bool) -> Result<(bool, String, u16), String> {
    let (tls, rest) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) if tls_allowed => (true, rest),
        (None, Some(_)) => {
            return Err(format!(
                "`{url}`: TLS to the local broker is not supported; use mqtt:// on loopback"
            ))
        }
        (None, None) => {
            return Err(format!(
                "`{url}` is not an mqtt:// URL (for example mqtt://127.0.0.1:1883)"
            ))
        }
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[` in IPv6 address"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("`{url}` has no valid host"));
    }
    let port = match port {
        None if tls => 8883,
        None => 1883,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{url}`: `{p}` is not a port number"))?,
    };
    Ok((tls, host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn plan(text: &str) -> Result<Plan, String> {
        parse(Path::new("/cfg/ledge.toml"), text).map_err(|e| e.to_string())
    }

    const FUNCTION: &str = "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\n";

    #[test]
    fn reserved_concurrency_may_not_exceed_the_device_limit() {
        let two = "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nmax_concurrency = 3\n\
                   [[function]]\nname = \"b\"\nmodule = \"b.wasm\"\nmax_concurrency = 2\n";
        assert!(plan(&format!("[device]\nmax_concurrency = 5\n{two}")).is_ok());
        let err = plan(&format!("[device]\nmax_concurrency = 4\n{two}")).unwrap_err();
        assert!(err.starts_with("/cfg/ledge.toml:2:19:"), "{err}");
        assert!(err.contains("reserve 5 concurrent executions"), "{err}");
    }

    #[test]
    fn an_empty_config_means_the_embedded_broker_and_nothing_to_run() {
        let plan = plan("").unwrap();
        assert_eq!(
            plan.broker.mode,
            BrokerMode::Embedded {
                listen: "127.0.0.1:1883".parse().unwrap()
            }
        );
        assert!(plan.functions.is_empty());
        assert_eq!(plan.broker.max_payload, 256 << 10);
    }

    #[test]
    fn function_defaults_and_relative_paths_are_resolved() {
        let plan = plan(FUNCTION).unwrap();
        let f = &plan.functions[0];
        assert_eq!(f.module_path, PathBuf::from("/cfg/f.wasm"));
        assert_eq!(f.memory_limit, 16 << 20);
        assert_eq!(f.timeout, Duration::from_secs(1));
        assert_eq!(f.max_concurrency, 1);
        assert_eq!(f.module_location.to_string(), "/cfg/ledge.toml:3:10");
    }

    #[test]
    fn human_units_are_parsed_and_bad_ones_located() {
        let text = format!("{FUNCTION}memory = \"4MiB\"\ntimeout = \"250ms\"\n");
        let f = plan(&text).unwrap().functions.remove(0);
        assert_eq!(
            (f.memory_limit, f.timeout),
            (4 << 20, Duration::from_millis(250))
        );

        let err = plan(&format!("{FUNCTION}timeout = \"250\"\n")).unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:4:11: `250` has no unit"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_function_names_are_rejected_at_the_second() {
        let err = plan(&format!("{FUNCTION}{FUNCTION}")).unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:5:8: duplicate function name `f`"),
            "{err}"
        );
    }

    #[test]
    fn a_trigger_naming_an_unknown_function_lists_the_known_ones() {
        let text = format!(
            "{FUNCTION}[[trigger]]\nsource = \"mqtt\"\ntopic = \"a/#\"\nfunction = \"g\"\n"
        );
        let err = plan(&text).unwrap_err();
        assert!(err.starts_with("/cfg/ledge.toml:7:12:"), "{err}");
        assert!(err.contains("unknown function `g` (defined: f)"), "{err}");
    }

    #[test]
    fn every_error_in_the_file_is_reported_in_order() {
        let text = format!(
            "{FUNCTION}memory = \"lots\"\n[[trigger]]\nsource = \"mqtt\"\ntopic = \"a/#/b\"\nfunction = \"f\"\n"
        );
        let err = plan(&text).unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(lines[0].starts_with("/cfg/ledge.toml:4:"), "{err}");
        assert!(
            lines[1].starts_with("/cfg/ledge.toml:7:") && lines[1].contains("`#`"),
            "{err}"
        );
    }

    #[test]
    fn one_message_may_trigger_several_functions() {
        let text = format!(
            "{FUNCTION}[[function]]\nname = \"g\"\nmodule = \"g.wasm\"\n\
             [[trigger]]\nsource = \"mqtt\"\ntopic = \"a/+\"\nfunction = \"f\"\n\
             [[trigger]]\nsource = \"mqtt\"\ntopic = \"a/#\"\nfunction = \"g\"\n"
        );
        let plan = plan(&text).unwrap();
        assert_eq!(plan.routes.len(), 2);
        assert_eq!(plan.routes[1].function, 1);
    }

    #[test]
    fn trigger_fields_must_fit_the_source() {
        let text = format!("{FUNCTION}[[trigger]]\nsource = \"schedule\"\ntopic = \"x\"\nevery = \"5m\"\nfunction = \"f\"\n");
        let err = plan(&text).unwrap_err();
        assert!(
            err.contains("`topic` does not apply to a `schedule` trigger"),
            "{err}"
        );
    }

    #[test]
    fn a_schedule_has_every_or_cron_and_cron_only_keys_stay_with_cron() {
        let trigger = |keys: &str| {
            format!("{FUNCTION}[[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\n{keys}\n")
        };
        let err = plan(&trigger("every = \"5m\"\ncron = \"@hourly\"")).unwrap_err();
        assert!(
            err.contains(":8:8: a schedule has `every` or `cron`, not both"),
            "{err}"
        );
        let err = plan(&trigger("every = \"5m\"\ncatch_up = \"once\"")).unwrap_err();
        assert!(
            err.contains("`catch_up` applies to `cron` schedules"),
            "{err}"
        );
        let err = plan(&trigger("")).unwrap_err();
        assert!(err.contains("needs `every`"), "{err}");
        let err = plan(&trigger("cron = \"* * * * *\"\ntimezone = \"+2\"")).unwrap_err();
        assert!(err.contains(":8:12: bad UTC offset `+2`"), "{err}");
        let ok = plan(&trigger(
            "cron = \"*/5 * * * *\"\ntimezone = \"-03:30\"\njitter = \"2s\"\ncatch_up = \"once\"",
        ))
        .unwrap();
        match &ok.routes[0].source {
            TriggerSource::Schedule {
                timing: Timing::Cron(c),
                jitter,
                ..
            } => {
                assert_eq!((c.tz.offset_at(0), c.catch_up), (-12_600, CatchUp::Once));
                assert_eq!(*jitter, Duration::from_secs(2));
                assert_eq!(
                    ok.routes[0].source.to_string(),
                    "schedule cron */5 * * * * (-03:30)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broker_url_and_embedded_are_exclusive() {
        let err = plan("[broker]\nembedded = true\nurl = \"mqtt://127.0.0.1:1883\"\n").unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let ext = plan("[broker]\nurl = \"mqtt://[::1]:18830\"\n").unwrap();
        assert_eq!(
            ext.broker.mode,
            BrokerMode::External {
                host: "::1".into(),
                port: 18830
            }
        );
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("a/b/../../c/./d")),
            PathBuf::from("c/d")
        );
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(
            normalize(Path::new("/etc/ledge/../x")),
            PathBuf::from("/etc/x")
        );
    }

    #[test]
    fn mqtt_urls_are_parsed_with_default_port() {
        assert_eq!(
            parse_mqtt_url("mqtt://gw.local"),
            Ok(("gw.local".into(), 1883))
        );
        assert_eq!(
            parse_mqtt_url("mqtt://10.0.0.2:1884/"),
            Ok(("10.0.0.2".into(), 1884))
        );
        assert!(parse_mqtt_url("http://x").is_err());
        assert!(parse_mqtt_url("mqtt://x:99999").is_err());
        assert!(parse_mqtt_url("mqtts://x").unwrap_err().contains("TLS"));
    }

    #[test]
    fn the_password_is_read_from_the_environment_and_never_shown() {
        std::env::set_var("LEDGE_TEST_PW_7731", "hunter2");
        let plan =
            plan("[broker]\nusername = \"u\"\npassword_env = \"LEDGE_TEST_PW_7731\"\n").unwrap();
        let password = plan.broker.password.clone().unwrap();
        assert_eq!(password.expose(), "hunter2");
        assert!(!format!("{:?}", plan.broker).contains("hunter2"));
        assert_eq!(password.to_string(), "***");
    }

    #[test]
    fn a_missing_password_variable_is_located() {
        let err = plan("[broker]\npassword_env = \"LEDGE_TEST_UNSET_91\"\n").unwrap_err();
        assert!(
            err.starts_with("/cfg/ledge.toml:2:16:") && err.contains("not set"),
            "{err}"
        );
    }

    #[test]
    fn sensors_need_their_kind_specific_keys() {
        let err = plan("[[sensor]]\nname = \"s\"\nkind = \"sysfs\"\n").unwrap_err();
        assert!(err.contains("needs `path`"), "{err}");
        let err = plan("[[sensor]]\nname = \"s\"\nkind = \"spi\"\n").unwrap_err();
        assert!(err.contains("unknown sensor kind `spi`"), "{err}");
        let err = plan("[[sensor]]\nname = \"s\"\nkind = \"gpio\"\n").unwrap_err();
        assert!(err.contains("needs `pin`"), "{err}");
    }
}
