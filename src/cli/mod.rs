//! The command line: argument parsing and one module per subcommand.
//!
//! Exit codes, decided in one place (`main.rs`): 0 success; 1 the work
//! failed (a function returned an error, ledge stopped on a runtime fault);
//! 2 the input was wrong (bad config, unknown function, bad arguments).

mod boards;
mod check;
mod invoke;
mod remote;
mod run;
mod spool;
mod status;

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
    /// Run one function once, locally, with no broker; print its response,
    /// log lines, publishes and duration.
    Invoke {
        /// The function's name in the config.
        function: String,
        #[arg(
            long,
            short,
            env = "LEDGE_CONFIG",
            default_value = "/etc/ledge/ledge.toml"
        )]
        config: PathBuf,
        /// The event payload (any bytes; JSON is the function's business).
        #[arg(long, conflicts_with = "event_file")]
        event: Option<String>,
        /// Read the event payload from a file.
        #[arg(long)]
        event_file: Option<PathBuf>,
        /// Present the event as an MQTT message on this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
        /// Invoke the function in the running ledge, synchronously, over its
        /// local broker (instead of loading it here).
        #[arg(long, conflicts_with = "topic")]
        remote: bool,
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
pub fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run { config, board } => run::run(&config, board.as_deref()),
        Command::Check { config, board } => check::check(&config, board.as_deref()),
        Command::Boards { name } => boards::boards(name.as_deref()),
        Command::Invoke {
            function,
            config,
            event,
            event_file,
            topic,
            json,
            remote,
        } => invoke::invoke(&invoke::Request {
            function,
            config,
            event,
            event_file,
            topic,
            remote,
            json,
        }),
        Command::Status { config, json } => status::status(&config, json),
        Command::Metrics {
            config,
            json,
            prometheus,
        } => status::metrics(&config, json, prometheus),
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
