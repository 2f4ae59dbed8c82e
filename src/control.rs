//! The local control socket: how `ledge status` (and later deployment
//! commands) talk to a running ledge.
//!
//! A Unix stream socket at `<data_dir>/ledge.sock`, mode 0660, so only the
//! ledge user and its group can reach it. Protocol: one command line in, one
//! JSON document line out, then the server closes the connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

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

/// A request to re-read the config and the function store and apply them
/// (what SIGHUP does); the outcome goes to `reply`.
pub struct ReloadRequest {
    /// For the log: who asked.
    pub why: String,
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

pub type Reloads = mpsc::UnboundedSender<ReloadRequest>;

/// How long a `reload` may take: in-flight invocations finish first.
const RELOAD_DEADLINE: Duration = Duration::from_secs(60);

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
        tokio::spawn(async move {
            let _ = tokio::time::timeout(RELOAD_DEADLINE, answer(stream, &sources, &reloads)).await;
        });
    }
}

async fn answer(
    stream: UnixStream,
    sources: &StatusSources,
    reloads: &Reloads,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    BufReader::new(reader)
        .take(1024)
        .read_line(&mut line)
        .await?;
    let reply = match line.trim() {
        "status" => sources.status(),
        "reload" => {
            let (reply, outcome) = oneshot::channel();
            let request = ReloadRequest {
                why: "reload requested on the control socket".to_owned(),
                reply: Some(reply),
            };
            match reloads.send(request) {
                Ok(()) => match outcome.await {
                    Ok(Ok(summary)) => serde_json::json!({ "reloaded": summary }),
                    Ok(Err(e)) => serde_json::json!({ "error": e }),
                    Err(_) => serde_json::json!({ "error": "ledge is stopping" }),
                },
                Err(_) => serde_json::json!({ "error": "ledge is stopping" }),
            }
        }
        other => serde_json::json!({
            "error": format!("unknown command `{other}` (known: status, reload)")
        }),
    };
    writer.write_all(format!("{reply}\n").as_bytes()).await?;
    writer.shutdown().await
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
