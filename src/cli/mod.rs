//! The command line: argument parsing and one module per subcommand.
//!
//! Exit codes, decided in one place (`main.rs`): 0 success; 1 the work
//! failed (a function returned an error, ledge stopped on a runtime fault);
//! 2 the input was wrong (bad config, unknown function, bad arguments).

mod boards;
mod check;
mod deploy;
mod invoke;
mod logs;
mod new;
mod remote;
mod run;
mod spool;
mod status;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ledge: serverless WebAssembly functions on an edge gateway.
#[derive(Debug, Parser)]
#[command(name = "ledge", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ledge: broker link, functions, sensors and schedules, until SIGTERM.
    Run {
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
        /// Apply a board profile (see `ledge boards`); wins over [device] board.
        #[arg(long)]
        board: Option<String>,
    },
    /// Validate a config and print the resolved functions and routing table.
    Check {
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
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
    Invoke {
        /// The function's name in the config (optional with --module).
        #[arg(required_unless_present = "module")]
        function: Option<String>,
        /// The config [default: /etc/ledge/ledge.toml]; not read for
        /// --module without a function name.
        #[arg(long, short, env = "LEDGE_CONFIG")]
        config: Option<PathBuf>,
        /// Run this .wasm file: alone, as a function named after the file with
        /// default limits that may publish anywhere (nothing is sent); with a
        /// function name, in that function's config.
        #[arg(long)]
        module: Option<PathBuf>,
        /// The event payload (any bytes; JSON is the function's business).
        #[arg(long, conflicts_with_all = ["event_file", "events"])]
        event: Option<String>,
        /// Read the event payload from a file.
        #[arg(long, conflicts_with = "events")]
        event_file: Option<PathBuf>,
        /// Run each line of this file as one event, in order, through one
        /// warm instance (state carries over, as on the gateway).
        #[arg(long)]
        events: Option<PathBuf>,
        /// Present the event as this source would send it: mqtt (payload
        /// unchanged, subject the topic), sensor (a number becomes the
        /// reading JSON), schedule (no payload becomes the tick JSON).
        #[arg(long, value_enum)]
        source: Option<invoke::SourceKind>,
        /// The event's subject: the topic, the sensor name [default:
        /// test-sensor] or the schedule [default: "every 1m"].
        #[arg(long)]
        subject: Option<String>,
        /// Present the event as an MQTT message on this topic.
        #[arg(long, conflicts_with = "subject")]
        topic: Option<String>,
        /// Add KEY=VALUE to the function's env (repeatable; wins over the config).
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Print the result as one JSON object (one per line with --events).
        #[arg(long)]
        json: bool,
        /// Invoke the function in the running ledge, synchronously, over its
        /// local broker (instead of loading it here).
        #[arg(long, conflicts_with_all = ["topic", "module", "events", "source", "env"])]
        remote: bool,
    },
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
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per-function metrics of the running ledge: counts, throttles, retries,
    /// dead letters, concurrency, queue depth, duration percentiles.
    Metrics {
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
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
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
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
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
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
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
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
    Rollback {
        function: String,
        alias: String,
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
    },
    /// The configured functions with their $LATEST, versions, aliases and state.
    Functions {
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
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
    Sign {
        function: String,
        module: PathBuf,
        /// The version number it will have on the gateways (must be above
        /// every version they have).
        #[arg(long)]
        version: u32,
        /// Point this alias at it once it is installed (watched, rolled back
        /// automatically if it fails).
        #[arg(long)]
        alias: Option<String>,
        /// The secret key file from `ledge keygen`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        key_id: String,
        #[arg(long, default_value_t = 65536)]
        chunk_size: u64,
        /// Settings the version pins (the config's are used otherwise).
        #[arg(long)]
        memory: Option<String>,
        #[arg(long)]
        timeout: Option<String>,
        /// KEY=VALUE, repeatable.
        #[arg(long)]
        env: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Inspect the on-flash spool (works beside a running ledge).
    Spool {
        #[command(subcommand)]
        action: SpoolAction,
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml",
            global = true
        )]
        config: PathBuf,
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
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
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

/// Runs a parsed command line.
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

pub fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run { config, board } => run::run(&config, board.as_deref()),
        Command::Check { config, board } => check::check(&config, board.as_deref()),
        Command::Boards { name } => boards::boards(name.as_deref()),
        Command::Invoke {
            function,
            config,
            module,
            event,
            event_file,
            events,
            source,
            subject,
            topic,
            env,
            json,
            remote,
        } => invoke::invoke(&invoke::Request {
            function,
            config,
            module,
            event,
            event_file,
            events,
            source,
            subject,
            topic,
            env,
            remote,
            json,
        }),
        Command::New { name, lang, dir } => new::new(&name, lang, dir.as_deref()),
        Command::Status { config, json } => status::status(&config, json),
        Command::Logs {
            config,
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
        Command::Metrics {
            config,
            json,
            prometheus,
        } => status::metrics(&config, json, prometheus),
        Command::Deploy {
            function,
            module,
            config,
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
            config,
            ..
        } => deploy::delete_version(&config, &function, version),
        Command::Versions {
            function,
            config,
            json,
            delete: None,
        } => deploy::versions(&config, &function, json),
        Command::Alias {
            action:
                AliasAction::Set {
                    function,
                    alias,
                    version,
                    weight,
                    no_watch,
                    config,
                },
        } => deploy::alias_set(
            &config,
            &function,
            &alias,
            version,
            weight.as_deref(),
            !no_watch,
        ),
        Command::Rollback {
            function,
            alias,
            config,
        } => deploy::rollback(&config, &function, &alias),
        Command::Functions { config, json } => deploy::functions(&config, json),
        Command::Passwd { name } => passwd(&name),
        Command::Keygen { id, out } => deploy::keygen(&id, &out),
        Command::Sign {
            function,
            module,
            version,
            alias,
            key,
            key_id,
            chunk_size,
            memory,
            timeout,
            env,
            out,
        } => deploy::sign(&deploy::SignRequest {
            function: &function,
            module: &module,
            version,
            alias: alias.as_deref(),
            key: &key,
            key_id: &key_id,
            chunk_size,
            memory: memory.as_deref(),
            timeout: timeout.as_deref(),
            env: &env,
            out: &out,
        }),
        Command::Spool {
            action,
            config,
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
