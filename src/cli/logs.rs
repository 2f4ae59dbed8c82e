//! `ledge logs [-f]`: the running ledge's recent log lines, or a live tail
//! of them, over its control socket.

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;
use serde_json::Value;

use super::{load_config, CliError};
use crate::control::LogsRequest;

pub fn logs(config: &Path, request: &LogsRequest, json: bool) -> Result<(), CliError> {
    if let Some(level) = &request.level {
        level.parse::<log::Level>().map_err(|_| {
            CliError::Usage(anyhow!(
                "--level `{level}`: use error, warn, info, debug or trace"
            ))
        })?;
    }
    let plan = load_config(config)?;
    let socket = crate::control::socket_path(&plan.device.data_dir);
    let argument = serde_json::to_string(request).map_err(|e| CliError::Failed(e.into()))?;
    let unreachable = |e: std::io::Error| {
        CliError::Failed(anyhow!(
            "cannot reach ledge at {}: {e} (is `ledge run` running with this config?)",
            socket.display()
        ))
    };
    let lines =
        crate::control::stream(&socket, &format!("logs {argument}")).map_err(unreachable)?;
    let stdout = std::io::stdout();
    for line in lines {
        let line = line.map_err(unreachable)?;
        let doc: Value = serde_json::from_str(&line).map_err(|e| {
            CliError::Failed(anyhow!("ledge sent a line that is not JSON ({e}): {line}"))
        })?;
        if let Some(error) = doc.get("error").and_then(Value::as_str) {
            return Err(CliError::Failed(anyhow!("{error}")));
        }
        let text = if json { line } else { human(&doc) };
        let mut out = stdout.lock();
        // Followed lines are printed as they come, not when a buffer fills.
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Failed(e.into()))?;
    }
    Ok(())
}

/// `<time> <LEVEL> <target>: <message>`, as ledge writes it to stderr.
fn human(doc: &Value) -> String {
    let field = |key: &str| doc[key].as_str().unwrap_or("");
    let target = field("TARGET");
    let request = match doc["REQUEST_ID"].as_str() {
        // A function's own lines carry their request id in front, as in
        // ledge's log; ledge's lines about a request name it already.
        Some(id) if target.starts_with("fn::") => format!("[{id}] "),
        _ => String::new(),
    };
    format!(
        "{} {:5} {target}: {request}{}",
        field("TIMESTAMP"),
        field("LEVEL"),
        field("MESSAGE")
    )
}
