//! The local control socket: how `ledge status` (and later deployment
//! commands) talk to a running ledge.
//!
//! A Unix stream socket at `<data_dir>/ledge.sock`, mode 0660, so only the
//! ledge user and its group can reach it. Protocol: one command line in
//! (`status`, `reload`, `logs [JSON options]`), JSON lines out: one
//! document for `status` and `reload`, one line per log line for `logs`
//! (which, following, runs until the client hangs up); then the server
//! closes the connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, watch};

use crate::lifecycle::{ReloadRequest, Reloads};
use crate::telemetry::StatusSources;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ledge.sock")
}

/// Binds the socket, replacing one a previous (crashed) ledge left behind.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// How long a `reload` may take: in-flight invocations finish first.
const RELOAD_DEADLINE: Duration = Duration::from_secs(60);
/// How long a client may take to send its command line.
const COMMAND_DEADLINE: Duration = Duration::from_secs(5);

/// What `logs` asks for: `logs {"follow":true,"lines":10,"function":"f",
/// "level":"warn","request_id":"…"}` (every field optional).
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogsRequest {
    #[serde(default)]
    pub follow: bool,
    /// Recent lines to send first (default: all that are kept).
    pub lines: Option<usize>,
    pub function: Option<String>,
    pub level: Option<String>,
    pub request_id: Option<String>,
}

/// Answers requests until `shutdown` changes.
pub async fn serve(
    listener: UnixListener,
    sources: Arc<StatusSources>,
    reloads: Reloads,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!(target: "ledge::control", "control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let sources = Arc::clone(&sources);
        let reloads = reloads.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &sources, &reloads, shutdown).await;
        });
    }
}

async fn answer(
    stream: UnixStream,
    sources: &StatusSources,
    reloads: &Reloads,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader.take(1024));
    let mut line = String::new();
    tokio::time::timeout(COMMAND_DEADLINE, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (command, argument) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let reply = match command {
        "status" => sources.status(),
        "reload" => {
            let (reply, outcome) = oneshot::channel();
            let request = ReloadRequest {
                why: "reload requested on the control socket".to_owned(),
                reply: Some(reply),
            };
            let stopping = serde_json::json!({ "error": "ledge is stopping" });
            if reloads.send(request).is_err() {
                stopping
            } else {
                match tokio::time::timeout(RELOAD_DEADLINE, outcome).await {
                    Ok(Ok(Ok(summary))) => serde_json::json!({ "reloaded": summary }),
                    Ok(Ok(Err(e))) => serde_json::json!({ "error": e }),
                    Ok(Err(_)) => stopping,
                    Err(_) => serde_json::json!({
                        "error": format!("the reload took over {}s", RELOAD_DEADLINE.as_secs())
                    }),
                }
            }
        }
        "logs" => {
            let mut reader = reader.into_inner().into_inner();
            return logs(argument, &mut reader, &mut writer, shutdown).await;
        }
        other => serde_json::json!({
            "error": format!("unknown command `{other}` (known: status, reload, logs)")
        }),
    };
    writer.write_all(format!("{reply}\n").as_bytes()).await?;
    writer.shutdown().await
}

/// Streams log lines as JSON, one per line: the recent ones, then (with
/// `follow`) each new one until the client hangs up or ledge stops.
async fn logs(
    argument: &str,
    reader: &mut tokio::net::unix::OwnedReadHalf,
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let request: LogsRequest = if argument.is_empty() {
        LogsRequest::default()
    } else {
        match serde_json::from_str(argument) {
            Ok(request) => request,
            Err(e) => {
                let reply = serde_json::json!({ "error": format!("logs: {e}") });
                return writer.write_all(format!("{reply}\n").as_bytes()).await;
            }
        }
    };
    let level = match request.level.as_deref().map(str::parse::<log::Level>) {
        None => None,
        Some(Ok(level)) => Some(level),
        Some(Err(_)) => {
            let reply = serde_json::json!({ "error": "logs: level must be error, warn, info, debug or trace" });
            return writer.write_all(format!("{reply}\n").as_bytes()).await;
        }
    };
    let filter = crate::logging::Filter {
        function: request.function,
        level,
        request_id: request.request_id,
    };
    let (recent, mut live) = crate::logging::follow(&filter, request.lines.unwrap_or(usize::MAX));
    let mut out = String::new();
    for line in recent {
        out.push_str(&line.to_json().to_string());
        out.push('\n');
    }
    writer.write_all(out.as_bytes()).await?;
    if !request.follow {
        return writer.shutdown().await;
    }
    log::info!(target: "ledge::control", "a client is following the log ({filter:?})");
    let mut hangup = [0u8; 64];
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(line) if filter.matches(&line) => {
                    writer.write_all(format!("{}\n", line.to_json()).as_bytes()).await?;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    let notice = serde_json::json!({ "MESSAGE": format!("{missed} log lines skipped: this reader fell behind"), "LEVEL": "WARN", "TARGET": "ledge::control" });
                    writer.write_all(format!("{notice}\n").as_bytes()).await?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // The client closed its side (or sent something: ignored).
            read = reader.read(&mut hangup) => if matches!(read, Ok(0) | Err(_)) {
                return Ok(());
            },
            _ = shutdown.changed() => return writer.shutdown().await,
        }
    }
}

/// Client side: sends `command` to the socket at `path`, returns the reply.
pub fn request(path: &Path, command: &str) -> std::io::Result<serde_json::Value> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(RELOAD_DEADLINE + Duration::from_secs(5)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Client side: sends `command` to the socket at `path`, returns the lines
/// of the reply as they arrive (with no time limit: a followed log goes on
/// until the process is interrupted).
pub fn stream(
    path: &Path,
    command: &str,
) -> std::io::Result<impl Iterator<Item = std::io::Result<String>>> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    Ok(std::io::BufReader::new(stream).lines())
}
