//! `ledge check`: validate a config and show what ledge would run.

use std::path::Path;

use super::{load_config_on, CliError};
use crate::config::{Plan, SensorKind};
use crate::runtime::{LoadedFunction, Runtime};
use crate::units::{format_duration, format_size};

pub fn check(config: &Path, board: Option<&str>) -> Result<(), CliError> {
    let plan = load_config_on(config, board)?;
    let runtime = Runtime::new(plan.broker.max_payload)
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start the wasm runtime: {e}")))?;
    let mut problems = Vec::new();
    let loaded: Vec<Option<LoadedFunction>> = plan
        .functions
        .iter()
        .map(|spec| {
            runtime
                .load(spec.clone())
                .map_err(|e| problems.push(e))
                .ok()
        })
        .collect();
    print_plan(&plan, &loaded);
    for warning in crate::config::lint::warnings(&plan) {
        eprintln!("warning: {warning}");
    }
    if problems.is_empty() {
        println!("\nconfig ok: {}", plan.source.display());
        return Ok(());
    }
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(CliError::Usage(anyhow::anyhow!("{}", listed.join("\n"))))
}

fn print_plan(plan: &Plan, loaded: &[Option<LoadedFunction>]) {
    println!(
        "device    {} (data_dir {})",
        plan.device.id,
        plan.device.data_dir.display()
    );
    if let Some(board) = &plan.board {
        println!(
            "board     {} ({}, {}), max_concurrency {}",
            board.name, board.description, board.target, board.defaults.max_concurrency
        );
    }
    println!(
        "broker    {} (client id {}, max_payload {})",
        plan.broker.mode,
        plan.broker.client_id,
        format_size(plan.broker.max_payload as u64)
    );
    println!("\nfunctions");
    for (spec, function) in plan.functions.iter().zip(loaded) {
        let module = match function {
            Some(f) => format!(
                "{} ({})",
                spec.module_path.display(),
                format_size(f.module_size as u64)
            ),
            None => format!("{} (FAILED TO LOAD)", spec.module_path.display()),
        };
        let publish: Vec<&str> = spec.allow_publish.iter().map(|f| f.as_str()).collect();
        println!("  {:<20} {module}", spec.name);
        println!(
            "  {:<20} memory {}, timeout {}, concurrency {}, queue {}, env {} keys, publish [{}]",
            "",
            format_size(spec.memory_limit as u64),
            format_duration(spec.timeout),
            spec.max_concurrency,
            spec.queue_size,
            spec.env.len(),
            publish.join(", ")
        );
        if !spec.allow_gpio.is_empty() {
            println!("  {:<20} gpio [{}]", "", spec.allow_gpio.join(", "));
        }
    }
    println!("\nroutes");
    for route in &plan.routes {
        let target = format!("{}{}", plan.functions[route.function].name, route.qualifier);
        let durable = if route.durable { " (durable)" } else { "" };
        println!("  {:<36} -> {target}{durable}", route.source.to_string());
    }
    for rule in &plan.forwards {
        let to = rule.to.as_deref().unwrap_or("<prefix>/events/<topic>");
        println!(
            "  {:<36} -> upstream {to}",
            format!("forward {}", rule.filter)
        );
    }
    if let Some(upstream) = &plan.upstream {
        let tls = if upstream.tls.is_some() {
            "mqtts"
        } else {
            "mqtt"
        };
        println!(
            "\nupstream  {tls}://{}:{} as {}, prefix {}, spool fsync {}, max {} ({})",
            upstream.host,
            upstream.port,
            upstream.client_id,
            upstream.topic_prefix,
            plan.spool.fsync,
            format_size(plan.spool.max_bytes),
            plan.spool.on_full.as_str()
        );
    }
    if !plan.gpio.outputs.is_empty() {
        println!("\ngpio outputs");
    }
    for output in &plan.gpio.outputs {
        println!(
            "  {:<20} {}, safe state {}{}{}",
            output.name,
            output.address,
            u8::from(output.default),
            if output.active_low {
                ", active-low"
            } else {
                ""
            },
            if output.restore_on_crash {
                ", restored on crash"
            } else {
                ""
            }
        );
    }
    if !plan.sensors.is_empty() {
        println!("\nsensors");
    }
    for sensor in &plan.sensors {
        let kind = match &sensor.kind {
            SensorKind::Replay { file, looped } => format!(
                "replay {}{}",
                file.display(),
                if *looped { " (loop)" } else { "" }
            ),
            SensorKind::Sysfs {
                path,
                scale,
                offset,
            } => format!("sysfs {} ×{scale} +{offset}", path.display()),
            SensorKind::OneWire { path } => format!("w1 {}", path.display()),
            SensorKind::Iio { dir, channel } => format!("iio {} {channel}", dir.display()),
            SensorKind::Bme280 {
                bus,
                address,
                measure,
            } => format!(
                "bme280 {} 0x{address:02x} {}",
                bus.display(),
                format!("{measure:?}").to_lowercase()
            ),
            SensorKind::Simulated {
                waveform,
                min,
                max,
                period,
                noise,
            } => format!(
                "simulated {waveform:?} {min}..{max} every {}s ±{noise}",
                period.as_secs_f64()
            ),
            SensorKind::Gpio(input) => format!(
                "gpio {} edge {}{}{}",
                input.address,
                input.config.edge.as_str(),
                if input.config.debounce.is_zero() {
                    String::new()
                } else {
                    format!(" debounce {}", format_duration(input.config.debounce))
                },
                if input.config.active_low {
                    " active-low"
                } else {
                    ""
                }
            ),
        };
        let publish = sensor
            .publish_topic
            .as_deref()
            .map(|t| format!(", publish {t}"))
            .unwrap_or_default();
        println!(
            "  {:<20} {kind}, every {}{publish}",
            sensor.name,
            format_duration(sensor.interval)
        );
    }
}
