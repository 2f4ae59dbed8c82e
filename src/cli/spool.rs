//! `ledge spool stat|verify|dump`: offline tools over a spool directory.
//! They read without taking the spool's lock, so they work beside a
//! running ledge (the active segment's tail may then be in flux).

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::{load_config, CliError};
use crate::spool::body::{self, EventBody, LogBody, MetricBody};
use crate::spool::{segment, Kind};
use crate::units::format_size;

/// Where the spool is: from `--dir`, or `<data_dir>/spool/<stream>` of a config.
pub fn locate(config: &Path, dir: Option<&PathBuf>, stream: &str) -> Result<PathBuf, CliError> {
    if let Some(dir) = dir {
        return Ok(dir.clone());
    }
    let plan = load_config(config)?;
    Ok(crate::spool::stream_dir(&plan.device.data_dir, stream))
}

fn require(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(CliError::Usage(anyhow!(
            "no spool at {} (has ledge run with an [upstream] yet?)",
            dir.display()
        )))
    }
}

pub fn stat(dir: &Path) -> Result<(), CliError> {
    require(dir)?;
    let info = crate::spool::inspect(dir)
        .map_err(|e| CliError::Failed(anyhow!("{}: {e}", dir.display())))?;
    println!("spool     {}", dir.display());
    if let Some(epoch) = info.epoch {
        println!("epoch     {epoch:016x}");
    }
    println!("segments  {}", info.segments);
    println!("bytes     {} ({})", info.bytes, format_size(info.bytes));
    match (info.oldest_seq, info.newest_seq) {
        (Some(oldest), Some(newest)) => println!("seqs      {oldest}..={newest}"),
        _ => println!("seqs      (empty)"),
    }
    for (name, cursor) in &info.cursors {
        let lag = info.newest_seq.map_or(0, |n| n.saturating_sub(*cursor));
        println!("cursor    {name} at {cursor} (lag {lag} records)");
    }
    Ok(())
}

pub fn verify(dir: &Path) -> Result<(), CliError> {
    require(dir)?;
    let report = crate::spool::verify(dir)
        .map_err(|e| CliError::Failed(anyhow!("{}: {e}", dir.display())))?;
    for problem in &report.problems {
        println!("{}: {problem}", dir.display());
    }
    println!(
        "{} segments, {} records checked, {} problems",
        report.segments,
        report.records,
        report.problems.len()
    );
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow!(
            "spool {} is damaged",
            dir.display()
        )))
    }
}

pub fn dump(dir: &Path, from: u64, kind: Option<&str>) -> Result<(), CliError> {
    require(dir)?;
    let kind = match kind {
        None => None,
        Some(text) => Some(Kind::parse(text).ok_or_else(|| {
            CliError::Usage(anyhow!(
                "unknown kind `{text}` (event, log, metric, dead-letter)"
            ))
        })?),
    };
    let fail = |e: std::io::Error| CliError::Failed(anyhow!("{}: {e}", dir.display()));
    let bases = crate::spool::recovery_list(dir).map_err(fail)?;
    let mut out = std::io::stdout().lock();
    for (i, &base) in bases.iter().enumerate() {
        if bases.get(i + 1).is_some_and(|&next| next <= from) {
            continue;
        }
        let bytes = std::fs::read(dir.join(segment::file_name(base))).map_err(fail)?;
        for found in segment::scan(&bytes, base).records {
            let frame = found.frame;
            if frame.seq < from || kind.is_some_and(|k| k != frame.kind) {
                continue;
            }
            let body =
                &bytes[found.offset + crate::spool::frame::HEADER_LEN..found.offset + frame.size()];
            let line = serde_json::json!({
                "seq": frame.seq,
                "ts": frame.ts_ms,
                "kind": frame.kind.as_str(),
                "body": describe(frame.kind, body),
            });
            use std::io::Write;
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // stdout closed (| head)
            }
        }
    }
    Ok(())
}

fn describe(kind: Kind, bytes: &[u8]) -> serde_json::Value {
    let decoded = match kind {
        Kind::Event => body::decode::<EventBody>(bytes).map(|EventBody::V1 { topic, payload, origin }| {
            let mut value = serde_json::json!({"topic": topic, "origin": origin});
            match String::from_utf8(payload) {
                Ok(text) => value["payload"] = text.into(),
                Err(e) => value["payload_hex"] = crate::hex::encode(e.as_bytes()).into(),
            }
            value
        }),
        Kind::Log => body::decode::<LogBody>(bytes).map(|LogBody::V1 { level, source, version, request_id, message }| {
            serde_json::json!({"level": level, "source": source, "version": version, "request_id": request_id, "message": message})
        }),
        Kind::Metric => body::decode::<MetricBody>(bytes).map(|MetricBody::V1 { json }| {
            serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json))
        }),
        // Dead letters have their own body; decoding them as metrics showed
        // garbage in `ledge spool dump`.
        Kind::DeadLetter => body::decode::<crate::spool::body::DeadLetterBody>(bytes).map(|letter| letter.to_json(None)),
    };
    decoded.unwrap_or_else(
        |e| serde_json::json!({"undecodable": e.to_string(), "hex": crate::hex::encode(bytes)}),
    )
}
