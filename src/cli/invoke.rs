//! `ledge invoke`: run one function once, with no broker.
//!
//! Publishes are captured and printed instead of sent, so a function can be
//! tried on a laptop exactly as it would run on the gateway. It runs exactly
//! the version named (`f:$LATEST` is the draft, `f:7` version 7, loaded
//! from the function store if nothing routes to it), and every result names
//! the version that ran.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;

use super::{load_config, CliError};
use crate::config::{FunctionSpec, Plan, Qualifier};
use crate::deploy::effective;
use crate::deploy::store::Store;
use crate::event::{Event, EventSource};
use crate::runtime::{Instance, Invocation, Outcome, Runtime};
use crate::sinks::capture::CaptureSink;
use crate::sinks::OutgoingMessage;

pub struct Request {
    pub function: String,
    pub config: PathBuf,
    pub event: Option<String>,
    pub event_file: Option<PathBuf>,
    pub topic: Option<String>,
    pub json: bool,
    /// Ask the running ledge instead (`--remote`).
    pub remote: bool,
}

pub fn invoke(request: &Request) -> Result<(), CliError> {
    let plan = load_config(&request.config)?;
    crate::logging::init(Some("warn"));
    if request.remote {
        let payload = read_payload(request)?;
        return super::remote::invoke(&plan, &request.function, &payload, request.json);
    }
    // The store's drafts, versions and aliases, as the running ledge sees
    // them: `NAME`, `NAME:$LATEST`, `NAME:7`, `NAME:live`.
    let mut plan = plan;
    let store = crate::deploy::store::Store::under(&plan.device.data_dir);
    crate::deploy::effective::apply(&mut plan, &store)
        .map_err(|e| CliError::Failed(anyhow!("{e}")))?;
    let spec = resolve(&plan, &store, &request.function)?;
    let payload = read_payload(request)?;
    let runtime = Runtime::new(plan.broker.max_payload)
        .map_err(|e| CliError::Failed(anyhow!("cannot start the wasm runtime: {e}")))?;
    let function = runtime
        .load(spec.clone())
        .map_err(|e| CliError::Usage(anyhow!("{e}")))?;
    let sink = Arc::new(CaptureSink::default());
    let event = match &request.topic {
        Some(topic) => Event::new(EventSource::Mqtt, topic.clone(), payload),
        None => Event::new(EventSource::Invoke, "", payload),
    };
    let invocation = Invocation {
        request_id: crate::dispatch::request_id::next(),
        event: Arc::new(event),
        attempt: 1,
    };
    let outcome = match Instance::new(&function, sink.clone(), true, true) {
        Ok(mut instance) => instance.invoke(&invocation),
        Err(e) => Outcome {
            result: Err(e),
            duration: Default::default(),
            fuel_used: 0,
            logs: Vec::new(),
            logs_dropped: 0,
            forward_seq: None,
        },
    };
    let published = sink.take();
    let forwarded = sink.take_forwards();
    if request.json {
        print_json(
            &spec.name,
            &spec.version,
            &invocation,
            &outcome,
            &published,
            &forwarded,
        );
    } else {
        print_text(
            &spec.name,
            &spec.version,
            &invocation,
            &outcome,
            &published,
            &forwarded,
        );
    }
    match &outcome.result {
        Ok(_) => Ok(()),
        Err(e) => Err(CliError::Failed(anyhow!(
            "function {} version {} request {} failed ({}): {e}",
            spec.name,
            spec.version,
            invocation.request_id,
            e.kind()
        ))),
    }
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

fn print_text(
    name: &str,
    version: &str,
    invocation: &Invocation,
    outcome: &Outcome,
    published: &[OutgoingMessage],
    forwarded: &[(String, Vec<u8>)],
) {
    println!("function  {name} ({version})");
    println!("request   {}", invocation.request_id);
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
    for message in published {
        println!(
            "publish   {} qos{} {}",
            message.topic,
            message.qos as u8,
            String::from_utf8_lossy(&message.payload)
        );
    }
    for (topic, payload) in forwarded {
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

fn print_json(
    name: &str,
    version: &str,
    invocation: &Invocation,
    outcome: &Outcome,
    published: &[OutgoingMessage],
    forwarded: &[(String, Vec<u8>)],
) {
    let forwards: Vec<serde_json::Value> = forwarded
        .iter()
        .map(|(topic, payload)| serde_json::json!({"topic": topic, "payload": String::from_utf8_lossy(payload)}))
        .collect();
    let logs: Vec<serde_json::Value> = outcome
        .logs
        .iter()
        .map(|l| serde_json::json!({"level": l.level.as_str(), "message": l.message}))
        .collect();
    let publishes: Vec<serde_json::Value> = published
        .iter()
        .map(|m| {
            serde_json::json!({
                "topic": m.topic,
                "qos": m.qos as u8,
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
    let report = serde_json::json!({
        "function": name,
        "version": version,
        "request_id": invocation.request_id,
        "status": status,
        "response": response,
        "error": error,
        "error_kind": kind,
        "duration_us": outcome.duration.as_micros() as u64,
        "fuel": outcome.fuel_used,
        "logs": logs,
        "logs_dropped": outcome.logs_dropped,
        "publishes": publishes,
        "forwards": forwards,
    });
    println!("{report}");
}
