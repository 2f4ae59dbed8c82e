//! `ledge invoke`: run a function locally, with no broker.
//!
//! Publishes are captured and printed instead of sent, so a function can be
//! tried on a laptop exactly as it would run on the gateway. It runs exactly
//! the version named (`f:$LATEST` is the draft, `f:7` version 7, loaded
//! from the function store if nothing routes to it), and every result names
//! the version that ran. `--module` runs a module file with no config;
//! `--source` shapes the event as a sensor, schedule or MQTT message would;
//! `--events` runs a file of events through one warm instance, so a
//! stateful function can be tested the way it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::anyhow;

use super::{load_config, CliError};
use crate::config::{FunctionSpec, Plan, Qualifier};
use crate::deploy::effective;
use crate::deploy::store::Store;
use crate::event::{Event, EventSource};
use crate::runtime::{Instance, Invocation, LoadedFunction, Outcome, Runtime};
use crate::sinks::capture::CaptureSink;
use crate::sinks::OutgoingMessage;

/// Which source `ledge invoke` presents the event as (`--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// A direct invoke: the payload as given, no subject.
    Invoke,
    /// An MQTT message: the payload unchanged, the subject its topic.
    Mqtt,
    /// A sensor reading: the value becomes the reading JSON a sensor sends.
    Sensor,
    /// A schedule tick: no payload becomes the tick JSON a schedule sends.
    Schedule,
}

/// `ledge invoke`'s arguments (`--config` is the command line's global one).
#[derive(Debug, clap::Args)]
pub struct Request {
    /// The function's name in the config (optional with --module); `f:7`
    /// or `f:alias` names a version.
    #[arg(required_unless_present = "module")]
    pub function: Option<String>,
    /// Filled from the global `--config`; `None`: `$LEDGE_CONFIG` or
    /// /etc/ledge/ledge.toml, unless `--module` alone needs no config.
    #[arg(skip)]
    pub config: Option<PathBuf>,
    /// Run this .wasm file: alone, as a function named after the file with
    /// default limits that may publish anywhere (nothing is sent); with a
    /// function name, in that function's config.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// The event payload (any bytes; JSON is the function's business).
    #[arg(long, conflicts_with_all = ["event_file", "events"])]
    pub event: Option<String>,
    /// Read the event payload from a file.
    #[arg(long, conflicts_with = "events")]
    pub event_file: Option<PathBuf>,
    /// Run each line of this file as one event, in order, through one
    /// warm instance (state carries over, as on the gateway).
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Present the event as this source would send it: mqtt (payload
    /// unchanged, subject the topic), sensor (a number becomes the
    /// reading JSON), schedule (no payload becomes the tick JSON).
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// The event's subject: the topic, the sensor name [default:
    /// test-sensor] or the schedule [default: "every 1m"].
    #[arg(long)]
    pub subject: Option<String>,
    /// Present the event as an MQTT message on this topic.
    #[arg(long, conflicts_with = "subject")]
    pub topic: Option<String>,
    /// Add KEY=VALUE to the function's env (repeatable; wins over the config).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Print the result as one JSON object (one per line with --events).
    #[arg(long)]
    pub json: bool,
    /// Invoke the function in the running ledge, synchronously, over its
    /// local broker (instead of loading it here).
    #[arg(long, conflicts_with_all = ["topic", "module", "events", "source", "env"])]
    pub remote: bool,
}

/// The config used when none is named.
use super::DEFAULT_CONFIG;

pub fn invoke(request: &Request) -> Result<(), CliError> {
    crate::logging::init(Some("warn"));
    let (plan, spec) = match (&request.module, &request.function) {
        (Some(module), None) => standalone(module)?,
        (module, Some(function)) => {
            let config = request
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
            let plan = load_config(&config)?;
            if request.remote {
                let payload = read_payload(request)?;
                return super::remote::invoke(&plan, function, &payload, request.json);
            }
            // The store's drafts, versions and aliases, as the running
            // ledge sees them: `NAME`, `NAME:$LATEST`, `NAME:7`, `NAME:live`.
            let mut plan = plan;
            let store = crate::deploy::store::Store::under(&plan.device.data_dir);
            crate::deploy::effective::apply(&mut plan, &store)
                .map_err(|e| CliError::Failed(anyhow!("{e}")))?;
            let mut spec = resolve(&plan, &store, function)?;
            if let Some(module) = module {
                spec.module_path = module.clone();
            }
            (plan, spec)
        }
        (None, None) => {
            return Err(CliError::Usage(anyhow!(
                "name a function (ledge invoke NAME --config FILE) or a module (ledge invoke --module FILE.wasm)"
            )))
        }
    };
    let mut spec = spec;
    for pair in &request.env {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(anyhow!("--env `{pair}`: write KEY=VALUE")))?;
        spec.secret_env.remove(key);
        spec.env.insert(key.to_owned(), value.to_owned());
    }
    let shape = Shape::new(request)?;
    let events = match &request.events {
        Some(path) => read_events(path)?,
        None => vec![read_payload(request)?],
    };
    let events: Vec<Event> = events
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            shape.event(payload).map_err(|e| match &request.events {
                Some(path) => CliError::Usage(anyhow!("{}:{}: {e}", path.display(), i + 1)),
                None => CliError::Usage(anyhow!("{e}")),
            })
        })
        .collect::<Result<_, _>>()?;
    let runtime = Runtime::new(plan.broker.max_payload)
        .map_err(|e| CliError::Failed(anyhow!("cannot start the wasm runtime: {e}")))?
        .with_device_id(&plan.device.id);
    let function = runtime
        .load(spec.clone())
        .map_err(|e| CliError::Usage(anyhow!("{e}")))?;
    let sink = Arc::new(CaptureSink::default());
    let mut instance = None;
    let mut failures = Vec::new();
    let many = request.events.is_some();
    for (index, event) in events.into_iter().enumerate() {
        let invocation = Invocation {
            request_id: crate::dispatch::request_id::next(),
            event: Arc::new(event),
            attempt: 1,
        };
        let outcome = run_one(&function, &sink, &mut instance, &invocation);
        let report = Report {
            name: &spec.name,
            version: &spec.version,
            invocation: &invocation,
            outcome: &outcome,
            published: &sink.take(),
            forwarded: &sink.take_forwards(),
        };
        match (request.json, many) {
            (true, _) => report.print_json(),
            (false, true) => {
                println!("event     {}", index + 1);
                report.print_text();
                println!();
            }
            (false, false) => report.print_text(),
        }
        if let Err(e) = &outcome.result {
            failures.push(format!(
                "function {} version {} request {} failed ({}): {e}",
                spec.name,
                spec.version,
                invocation.request_id,
                e.kind()
            ));
        }
    }
    match failures.as_slice() {
        [] => Ok(()),
        [one] => Err(CliError::Failed(anyhow!("{one}"))),
        many => Err(CliError::Failed(anyhow!(
            "{} invocations failed; the first: {}",
            many.len(),
            many[0]
        ))),
    }
}

/// Runs one invocation on the warm instance, starting one first if there
/// is none (the first event, or after a crash discarded the last one, as
/// the dispatcher does).
fn run_one(
    function: &LoadedFunction,
    sink: &Arc<CaptureSink>,
    instance: &mut Option<Instance>,
    invocation: &Invocation,
) -> Outcome {
    let warm = match instance.take() {
        Some(warm) => Ok(warm),
        None => Instance::new(function, sink.clone(), true, true),
    };
    match warm {
        Ok(mut warm) => {
            let outcome = warm.invoke(invocation);
            let crashed = matches!(&outcome.result, Err(e) if e.poisons_instance());
            if !crashed {
                *instance = Some(warm);
            }
            outcome
        }
        Err(e) => Outcome {
            result: Err(e),
            duration: Default::default(),
            fuel_used: 0,
            logs: Vec::new(),
            logs_dropped: 0,
            forward_seq: None,
            memory_bytes: 0,
            publishes_throttled: 0,
        },
    }
}

/// `--module FILE` with no config: the module as a function named after
/// the file, with default limits, allowed to publish and forward anywhere
/// (nothing leaves `ledge invoke`: it prints what would be sent).
fn standalone(module: &Path) -> Result<(Plan, FunctionSpec), CliError> {
    let stem = module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let name = if !stem.is_empty() && stem.len() <= 64 && stem.chars().all(valid) {
        stem
    } else {
        "function".to_owned()
    };
    let module = std::path::absolute(module)
        .map_err(|e| CliError::Usage(anyhow!("--module {}: {e}", module.display())))?;
    let quoted = serde_json::Value::String(module.to_string_lossy().into_owned()).to_string();
    let text = format!(
        "[[function]]\nname = \"{name}\"\nmodule = {quoted}\nallow_publish = [\"#\"]\nallow_forward = [\"#\"]\n"
    );
    let origin = PathBuf::from(format!("(--module {})", module.display()));
    let plan = crate::config::parse(&origin, &text)
        .map_err(|errors| CliError::Usage(anyhow!("{errors}")))?;
    let spec = plan.functions.first().cloned().ok_or_else(|| {
        CliError::Failed(anyhow!(
            "--module {}: no function resolved",
            module.display()
        ))
    })?;
    Ok((plan, spec))
}

/// How events are presented: their source, subject and payload format.
struct Shape {
    source: SourceKind,
    subject: String,
}

impl Shape {
    fn new(request: &Request) -> Result<Self, CliError> {
        let source = match (request.source, &request.topic) {
            (Some(source), None) => source,
            (None | Some(SourceKind::Mqtt), Some(_)) => SourceKind::Mqtt,
            (Some(other), Some(_)) => {
                return Err(CliError::Usage(anyhow!(
                    "--topic is for MQTT events, not --source {}",
                    source_name(other)
                )))
            }
            (None, None) => SourceKind::Invoke,
        };
        let subject = request.subject.clone().or_else(|| request.topic.clone());
        let subject = match (source, subject) {
            (SourceKind::Invoke, Some(_)) => {
                return Err(CliError::Usage(anyhow!(
                    "--subject needs a --source: a direct invoke has no subject"
                )))
            }
            (SourceKind::Invoke, None) => String::new(),
            (SourceKind::Mqtt, Some(topic)) => {
                crate::topic::validate_topic_name(&topic)
                    .map_err(|e| CliError::Usage(anyhow!("topic `{topic}`: {e}")))?;
                topic
            }
            (SourceKind::Mqtt, None) => {
                return Err(CliError::Usage(anyhow!(
                    "--source mqtt needs the message's topic (--topic or --subject)"
                )))
            }
            (SourceKind::Sensor, subject) => subject.unwrap_or_else(|| "test-sensor".to_owned()),
            (SourceKind::Schedule, subject) => subject.unwrap_or_else(|| "every 1m".to_owned()),
        };
        Ok(Self { source, subject })
    }

    /// The event `payload` becomes, as its source would send it.
    fn event(&self, payload: Vec<u8>) -> Result<Event, String> {
        let now = crate::event::unix_ms();
        let payload = match self.source {
            SourceKind::Invoke | SourceKind::Mqtt => payload,
            SourceKind::Sensor => sensor_payload(&self.subject, payload, now)?,
            SourceKind::Schedule if payload.is_empty() => {
                schedule_payload(&self.subject, now).into_bytes()
            }
            SourceKind::Schedule => payload,
        };
        let source = match self.source {
            SourceKind::Invoke => EventSource::Invoke,
            SourceKind::Mqtt => EventSource::Mqtt,
            SourceKind::Sensor => EventSource::Sensor,
            SourceKind::Schedule => EventSource::Schedule,
        };
        Ok(Event::new(source, self.subject.clone(), payload))
    }
}

fn source_name(source: SourceKind) -> &'static str {
    match source {
        SourceKind::Invoke => "invoke",
        SourceKind::Mqtt => "mqtt",
        SourceKind::Sensor => "sensor",
        SourceKind::Schedule => "schedule",
    }
}

/// A sensor event: a number becomes the reading JSON a sensor sends; a
/// JSON object is taken as such a reading already.
fn sensor_payload(sensor: &str, payload: Vec<u8>, now_ms: u64) -> Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(&payload);
    let text = text.trim();
    if text.starts_with('{') {
        return Ok(payload);
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => {
            Ok(crate::sources::sensor::reading_json(sensor, value, None, now_ms).into_bytes())
        }
        _ => Err(format!(
            "--source sensor: `{text}` is not a reading (give a number, or the reading's JSON)"
        )),
    }
}

/// A schedule tick without a configured payload, as `every` triggers send
/// it (`--subject "every 30s"` sets the interval it names).
fn schedule_payload(subject: &str, now_ms: u64) -> String {
    let every = subject.strip_prefix("every ").unwrap_or(subject);
    let utc = crate::time::tz::TimeZone::Utc.format_iso((now_ms / 1000) as i64);
    let iso = format!("{}.{:03}Z", utc.trim_end_matches('Z'), now_ms % 1000);
    serde_json::json!({
        "every": every,
        "scheduled_at": now_ms,
        "scheduled_at_iso": iso,
    })
    .to_string()
}

/// The events of an `--events` file: one per non-empty line.
fn read_events(path: &Path) -> Result<Vec<Vec<u8>>, CliError> {
    let text = std::fs::read(path)
        .map_err(|e| CliError::Usage(anyhow!("cannot read {}: {e}", path.display())))?;
    let events: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect();
    if events.is_empty() {
        return Err(CliError::Usage(anyhow!(
            "{} has no events (one per line)",
            path.display()
        )));
    }
    Ok(events)
}

/// The plan function `wanted` names, exactly: `NAME:$LATEST` is the draft
/// even when the function has a `default_alias`; `NAME:7` is version 7,
/// read from the store if nothing routes to it; `NAME:alias` and a bare
/// `NAME` go where the running ledge would send them.
fn resolve(plan: &Plan, store: &Store, wanted: &str) -> Result<FunctionSpec, CliError> {
    let (name, qualifier) = Qualifier::split(wanted).map_err(|e| CliError::Usage(anyhow!(e)))?;
    let routed = |target: Option<&crate::config::Target>| {
        target.and_then(|t| plan.functions.get(t.function)).cloned()
    };
    let spec = match &qualifier {
        Qualifier::Default => {
            routed(plan.aliases.get(name)).or_else(|| find(plan, name, "$LATEST"))
        }
        Qualifier::Latest => find(plan, name, "$LATEST"),
        Qualifier::Alias(_) => routed(plan.aliases.get(wanted)),
        Qualifier::Version(number) => match find(plan, name, &number.to_string()) {
            Some(spec) => Some(spec),
            None if find(plan, name, "$LATEST").is_some() => {
                let (spec, warnings) = effective::published_version(plan, store, name, *number)
                    .map_err(|e| CliError::Usage(anyhow!("{e}")))?;
                for warning in warnings {
                    log::warn!(target: "ledge::deploy", "{warning}");
                }
                Some(spec)
            }
            None => None,
        },
    };
    spec.ok_or_else(|| {
        let mut known: Vec<String> = plan.functions.iter().map(|f| f.qualified_name()).collect();
        known.extend(plan.aliases.keys().cloned());
        CliError::Usage(anyhow!(
            "no function `{wanted}` in {} (defined: {})",
            plan.source.display(),
            known.join(", ")
        ))
    })
}

fn find(plan: &Plan, name: &str, version: &str) -> Option<FunctionSpec> {
    plan.functions
        .iter()
        .find(|f| f.name == name && f.version == version)
        .cloned()
}

fn read_payload(request: &Request) -> Result<Vec<u8>, CliError> {
    Ok(match (&request.event, &request.event_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| CliError::Usage(anyhow!("cannot read {}: {e}", path.display())))?,
        (None, None) => Vec::new(),
    })
}

/// What one invocation did, for printing.
struct Report<'a> {
    name: &'a str,
    version: &'a str,
    invocation: &'a Invocation,
    outcome: &'a Outcome,
    published: &'a [OutgoingMessage],
    forwarded: &'a [(String, Vec<u8>)],
}

impl Report<'_> {
    fn print_text(&self) {
        let outcome = self.outcome;
        println!("function  {} ({})", self.name, self.version);
        println!("request   {}", self.invocation.request_id);
        println!(
            "duration  {:.3} ms (fuel {})",
            outcome.duration.as_secs_f64() * 1000.0,
            outcome.fuel_used
        );
        for line in &outcome.logs {
            println!("log       {:5} {}", line.level, line.message);
        }
        if outcome.logs_dropped > 0 {
            println!("log       ({} more lines dropped)", outcome.logs_dropped);
        }
        for message in self.published {
            println!(
                "publish   {} qos{}{} {}",
                message.topic,
                message.qos as u8,
                if message.retain { " retain" } else { "" },
                String::from_utf8_lossy(&message.payload)
            );
        }
        for (topic, payload) in self.forwarded {
            println!("forward   {topic} {}", String::from_utf8_lossy(payload));
        }
        match &outcome.result {
            Ok(response) => {
                println!("status    ok");
                println!("response  {}", String::from_utf8_lossy(response));
            }
            Err(e) => {
                println!("status    error ({})", e.kind());
                println!("error     {e}");
            }
        }
    }

    fn print_json(&self) {
        let outcome = self.outcome;
        let forwards: Vec<serde_json::Value> = self
            .forwarded
            .iter()
            .map(|(topic, payload)| serde_json::json!({"topic": topic, "payload": String::from_utf8_lossy(payload)}))
            .collect();
        let logs: Vec<serde_json::Value> = outcome
            .logs
            .iter()
            .map(|l| serde_json::json!({"level": l.level.as_str(), "message": l.message}))
            .collect();
        let publishes: Vec<serde_json::Value> = self
            .published
            .iter()
            .map(|m| {
                serde_json::json!({
                    "topic": m.topic,
                    "qos": m.qos as u8,
                    "retain": m.retain,
                    "payload": String::from_utf8_lossy(&m.payload),
                })
            })
            .collect();
        let (status, response, error, kind) = match &outcome.result {
            Ok(r) => (
                "ok",
                Some(String::from_utf8_lossy(r).into_owned()),
                None,
                None,
            ),
            Err(e) => ("error", None, Some(e.to_string()), Some(e.kind())),
        };
        let event = &self.invocation.event;
        let report = serde_json::json!({
            "function": self.name,
            "version": self.version,
            "request_id": self.invocation.request_id,
            "source": event.source.as_str(),
            "subject": event.subject,
            "status": status,
            "response": response,
            "error": error,
            "error_kind": kind,
            "permanent": outcome.result.as_ref().err().map(|e| e.is_permanent()),
            "duration_us": outcome.duration.as_micros() as u64,
            "fuel": outcome.fuel_used,
            "logs": logs,
            "logs_dropped": outcome.logs_dropped,
            "publishes": publishes,
            "forwards": forwards,
        });
        println!("{report}");
    }
}
