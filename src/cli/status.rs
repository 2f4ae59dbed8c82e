//! `ledge status`: asks a running ledge over its control socket.

use std::path::Path;

use anyhow::anyhow;
use serde_json::Value;

use super::{load_config, CliError};

fn fetch(config: &Path) -> Result<Value, CliError> {
    let plan = load_config(config)?;
    let socket = crate::control::socket_path(&plan.device.data_dir);
    crate::control::request(&socket, "status").map_err(|e| {
        CliError::Failed(anyhow!(
            "cannot reach ledge at {}: {e} (is `ledge run` running with this config?)",
            socket.display()
        ))
    })
}

/// `ledge metrics`: the functions part of the status document.
pub fn metrics(config: &Path, json: bool, prometheus: bool) -> Result<(), CliError> {
    let doc = fetch(config)?;
    if json {
        println!("{}", doc["functions"]);
        return Ok(());
    }
    if prometheus {
        print!("{}", crate::telemetry::prometheus(&doc));
        return Ok(());
    }
    println!(
        "{:<20} {:>8} {:>7} {:>9} {:>7} {:>5} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "function",
        "invoked",
        "errors",
        "throttled",
        "retries",
        "dlq",
        "running",
        "queued",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs",
        "age p99 ms"
    );
    if let Some(functions) = doc["functions"].as_object() {
        for (name, f) in functions {
            println!(
                "{name:<20} {:>8} {:>7} {:>9} {:>7} {:>5} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10}",
                f["invocations"], f["errors"], f["throttled"], f["retries"], f["dead_letters"],
                f["concurrent"], f["queued"], f["p50_us"], f["p90_us"], f["p99_us"], f["max_us"],
                f["event_age_p99_us"].as_u64().unwrap_or(0) / 1000
            );
        }
    }
    Ok(())
}

pub fn status(config: &Path, json: bool) -> Result<(), CliError> {
    let doc = fetch(config)?;
    if json {
        println!("{doc}");
    } else {
        print_status(&doc);
    }
    Ok(())
}

fn print_status(doc: &Value) {
    let yes = |v: &Value| {
        if v.as_bool() == Some(true) {
            "connected"
        } else {
            "DISCONNECTED"
        }
    };
    println!(
        "device     {} (ledge {}, up {}s)",
        doc["device"].as_str().unwrap_or("?"),
        doc["version"].as_str().unwrap_or("?"),
        doc["uptime_s"]
    );
    println!("broker     {}", yes(&doc["local_broker"]["connected"]));
    if let Some(uplink) = doc.get("uplink") {
        println!(
            "uplink     {}, confirmed seq {}, lag {} records, {} messages sent, {} reconnects",
            yes(&uplink["connected"]),
            uplink["confirmed_seq"],
            uplink["lag_records"],
            uplink["messages_sent"],
            uplink["reconnects"]
        );
        if let Some(error) = uplink["last_error"].as_str() {
            println!("           last error: {error}");
        }
    }
    if let Some(spool) = doc.get("spool") {
        println!(
            "spool      {}: {} segments, {} bytes, seqs {}..{}, {} dropped, {} rejected{}{}",
            spool["dir"].as_str().unwrap_or("?"),
            spool["segments"],
            spool["bytes"],
            spool["oldest_seq"],
            spool["synced_through"],
            spool["dropped"],
            spool["rejected"],
            if spool["disk_full"].as_bool() == Some(true) {
                ", DISK FULL"
            } else {
                ""
            },
            spool["failed"]
                .as_str()
                .map(|f| format!(", FAILED: {f}"))
                .unwrap_or_default()
        );
    }
    println!(
        "functions  {:<20} {:>11} {:>7} {:>8} {:>9} {:>9} {:>9}",
        "", "invocations", "errors", "timeouts", "throttled", "mean µs", "max µs"
    );
    if let Some(functions) = doc["functions"].as_object() {
        for (name, f) in functions {
            println!(
                "           {name:<20} {:>11} {:>7} {:>8} {:>9} {:>9} {:>9}",
                f["invocations"],
                f["errors"],
                f["timeouts"],
                f["throttled"],
                f["mean_us"],
                f["max_us"]
            );
        }
    }
}
