//! The command line: argument parsing and one module per subcommand.
//!
//! Exit codes, decided in one place (`main.rs`): 0 success; 1 the work
//! failed (a function returned an error, ledge stopped on a runtime fault);
//! 2 the input was wrong (bad config, unknown function, bad arguments).

mod boards;
mod check;
mod deploy;
mod functions;
mod invoke;
mod logs;
mod new;
mod remote;
mod run;
mod sign;
mod spool;
mod status;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ledge: serverless WebAssembly functions on an edge gateway.
#[derive(Debug, Parser)]
#[command(name = "ledge", version, about)]
pub struct Cli {
    /// The config file (every command that reads one).
    #[arg(long, short, env = "LEDGE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The config read when `--config` and `$LEDGE_CONFIG` name none.
pub const DEFAULT_CONFIG: &str = "/etc/ledge/ledge.toml";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ledge: broker link, functions, sensors and schedules, until SIGTERM.
    Run {
        /// Apply a board profile (see `ledge boards`); wins over [device] board.
        #[arg(long)]
        board: Option<String>,
    },
    /// Validate a config and print the resolved functions and routing table.
    Check {
        /// Apply a board profile (see `ledge boards`); wins over [device] board.
        #[arg(long)]
        board: Option<String>,
    },
    /// List the board profiles built in, or show one (pins, paths, defaults).
    Boards {
        /// A board to show in full.
        name: Option<String>,
    },
    /// Run a function locally, with no broker; print its response, log
    /// lines, publishes and duration.
    Invoke(invoke::Request),
    /// Make a new function project: source, build script, an event to try
    /// and a config snippet; it builds and passes `ledge invoke` as made.
    New {
        /// The function's name (also its directory, unless --dir).
        name: String,
        #[arg(long, value_enum)]
        lang: new::Lang,
        /// Where to make it [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Ask a running ledge how it is: links, spool, functions.
    Status {
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per-function metrics of the running ledge: counts, throttles, retries,
    /// dead letters, concurrency, queue depth, duration percentiles.
    Metrics {
        /// Print them as JSON.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print them in the Prometheus text format.
        #[arg(long)]
        prometheus: bool,
    },
    /// The running ledge's recent log lines (function and runtime), or with
    /// -f a live tail of them; filtered by function, level, request id.
    Logs {
        /// Keep printing new lines as they are logged (after the recent
        /// ones), until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Only lines of this function (its own, and ledge's about it).
        #[arg(long)]
        function: Option<String>,
        /// Only lines at this level or more severe: error, warn, info, debug.
        #[arg(long)]
        level: Option<String>,
        /// Only lines of this invocation.
        #[arg(long)]
        request_id: Option<String>,
        /// How many recent lines first (default: all kept, the last 1000,
        /// or 10 with --follow).
        #[arg(long, short = 'n')]
        lines: Option<usize>,
        /// Print each line as a JSON object (journald-style field names).
        #[arg(long)]
        json: bool,
    },
    /// Store a module as a function's $LATEST; with --publish, also as a new
    /// immutable version (and with --alias, point an alias at it). A running
    /// ledge applies it at once; in-flight invocations finish on the old one.
    Deploy {
        /// The function's name in the config.
        function: String,
        /// The .wasm module.
        module: PathBuf,
        /// Also publish it as the next version.
        #[arg(long)]
        publish: bool,
        /// Point this alias at the new version (needs --publish).
        #[arg(long, requires = "publish")]
        alias: Option<String>,
        /// Do not watch the new alias target for errors (no automatic rollback).
        #[arg(long)]
        no_watch: bool,
        /// Wait for the running ledge's verdict on the new alias target's
        /// probation: exit 0 when it passes, 1 when it is rolled back.
        #[arg(long, requires = "alias", conflicts_with = "no_watch")]
        wait: bool,
        /// Give up waiting after this long [default: the `[deploy] watch_period` + 1m].
        #[arg(long, requires = "wait", value_name = "DURATION")]
        wait_timeout: Option<String>,
    },
    /// A function's $LATEST draft and published versions, with their aliases.
    Versions {
        function: String,
        /// Delete this published version instead (refused while an alias
        /// points at it or could roll back to it).
        #[arg(long, conflicts_with = "json")]
        delete: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Point an alias at a version, or split it between two (a canary).
    Alias {
        #[command(subcommand)]
        action: AliasAction,
    },
    /// Move an alias one step back in its history: after v1, v2, v3 were
    /// deployed through it, rollback goes to v2, again to v1, then refuses
    /// (no earlier target). A rollback is not undone by another: point the
    /// alias forward with `ledge alias set`.
    Rollback { function: String, alias: String },
    /// The configured functions with their $LATEST, versions, aliases and state.
    Functions {
        #[arg(long)]
        json: bool,
    },
    /// Make a line for the embedded broker's users file ([broker]
    /// users_file): the user name and a salted PBKDF2 hash of the password,
    /// which is read from stdin (one line), never from the command line.
    Passwd {
        /// The user name local MQTT clients log in with.
        name: String,
    },
    /// Make an ed25519 key pair for signing deployments.
    Keygen {
        /// The key's id, as deployments and `[deploy] trusted_keys` name it.
        #[arg(long)]
        id: String,
        /// Where the secret key goes (mode 0600); the public key line is
        /// printed and written next to it with the extension .pub.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a module as a deployment for over-the-air delivery: writes
    /// OUT/deployment.json and OUT/chunks/<index>.
    Sign(sign::SignRequest),
    /// Inspect the on-flash spool (works beside a running ledge).
    Spool {
        #[command(subcommand)]
        action: SpoolAction,
        /// The spool directory itself, instead of finding it via the config.
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
        /// Which spool stream under data_dir/spool.
        #[arg(long, default_value = "uplink", global = true)]
        stream: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasAction {
    /// Point ALIAS at VERSION; --weight V2=PCT sends PCT% of events to V2.
    Set {
        function: String,
        alias: String,
        version: u32,
        #[arg(long)]
        weight: Option<String>,
        /// Do not watch the new target for errors (no automatic rollback).
        #[arg(long)]
        no_watch: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpoolAction {
    /// Segments, bytes, oldest/newest seq, cursors and their lag.
    Stat,
    /// Check the CRC of every record; exit 1 on any damage.
    Verify,
    /// Print records as JSON lines.
    Dump {
        /// First seq to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only records of this kind: event, log, metric, dead-letter.
        #[arg(long)]
        kind: Option<String>,
    },
}

/// An error at the command-line edge, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Wrong input: exit 2.
    Usage(anyhow::Error),
    /// The work failed: exit 1.
    Failed(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(e) | Self::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

/// `ledge passwd NAME`: reads the password from stdin, prints the line.
fn passwd(name: &str) -> Result<(), CliError> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).map_err(|e| {
        CliError::Failed(anyhow::anyhow!("cannot read the password from stdin: {e}"))
    })?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(CliError::Failed(anyhow::anyhow!(
            "no password on stdin (try: echo -n 'secret' | ledge passwd {name})"
        )));
    }
    let line = crate::users::hash_line(name, password.as_bytes(), crate::users::DEFAULT_ITERATIONS)
        .map_err(|e| CliError::Failed(anyhow::anyhow!(e)))?;
    println!("{line}");
    Ok(())
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Result<(), CliError> {
    let named = cli.config;
    let config = named
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match cli.command {
        Command::Run { board } => run::run(&config, board.as_deref()),
        Command::Check { board } => check::check(&config, board.as_deref()),
        Command::Boards { name } => boards::boards(name.as_deref()),
        Command::Invoke(mut request) => {
            request.config = named;
            invoke::invoke(&request)
        }
        Command::New { name, lang, dir } => new::new(&name, lang, dir.as_deref()),
        Command::Status { json } => status::status(&config, json),
        Command::Logs {
            follow,
            function,
            level,
            request_id,
            lines,
            json,
        } => logs::logs(
            &config,
            &crate::control::LogsRequest {
                follow,
                lines: lines.or(follow.then_some(10)),
                function,
                level,
                request_id,
            },
            json,
        ),
        Command::Metrics { json, prometheus } => status::metrics(&config, json, prometheus),
        Command::Deploy {
            function,
            module,
            publish,
            alias,
            no_watch,
            wait,
            wait_timeout,
        } => {
            let timeout = wait_timeout
                .map(|text| {
                    crate::units::parse_duration(&text)
                        .map_err(|e| CliError::Usage(anyhow::anyhow!("--wait-timeout {text}: {e}")))
                })
                .transpose()?;
            deploy::deploy(&deploy::DeployRequest {
                config: &config,
                function: &function,
                module: &module,
                publish,
                alias: alias.as_deref(),
                watch: !no_watch,
                wait: wait.then_some(timeout),
            })
        }
        Command::Versions {
            function,
            delete: Some(version),
            ..
        } => deploy::delete_version(&config, &function, version),
        Command::Versions { function, json, .. } => functions::versions(&config, &function, json),
        Command::Alias {
            action:
                AliasAction::Set {
                    function,
                    alias,
                    version,
                    weight,
                    no_watch,
                },
        } => deploy::alias_set(
            &config,
            &function,
            &alias,
            version,
            weight.as_deref(),
            !no_watch,
        ),
        Command::Rollback { function, alias } => deploy::rollback(&config, &function, &alias),
        Command::Functions { json } => functions::functions(&config, json),
        Command::Passwd { name } => passwd(&name),
        Command::Keygen { id, out } => sign::keygen(&id, &out),
        Command::Sign(request) => sign::sign(&request),
        Command::Spool {
            action,
            dir,
            stream,
        } => {
            let dir = spool::locate(&config, dir.as_ref(), &stream)?;
            match action {
                SpoolAction::Stat => spool::stat(&dir),
                SpoolAction::Verify => spool::verify(&dir),
                SpoolAction::Dump { from, kind } => spool::dump(&dir, from, kind.as_deref()),
            }
        }
    }
}

/// Loads a config, mapping errors to a usage failure that lists them all.
fn load_config(path: &std::path::Path) -> Result<crate::config::Plan, CliError> {
    load_config_on(path, None)
}

/// Loads a config with a `--board` profile.
fn load_config_on(
    path: &std::path::Path,
    board: Option<&str>,
) -> Result<crate::config::Plan, CliError> {
    crate::config::load_with(path, board)
        .map_err(|errors| CliError::Usage(anyhow::anyhow!("{errors}")))
}
