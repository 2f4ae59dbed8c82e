//! ledge: a serverless edge node in one small static binary.
//!
//! Events flow left to right; each stage is one module:
//!
//! ```text
//!  sources ──────────▶ dispatch ─────────▶ runtime ──────────▶ sinks
//!  mqtt (local broker)  routing table       wasm host (wasmi)    local broker (best effort)
//!  sensor (replay,      per-function        ABI ledge_v1         capture (ledge invoke)
//!   sysfs)              bounded queues,     limits: memory,
//!  schedule             worker threads      fuel, timeout
//! ```
//!
//! Beside the pipeline: `config` (TOML → validated plan), `board` (board
//! profiles), `hw` (GPIO lines: inputs feed `sources::sensor`, outputs are
//! driven by functions), `broker` (the embedded MQTT 3.1.1 broker, ledge
//! its in-process local side), `mqtt` (ledge's link to the local broker:
//! in-process, or an MQTT 5 client of an external one),
//! `node` (starts, reloads and stops everything for `ledge run`), `service`
//! (systemd readiness and watchdog), `http` (the HTTP server: routes with
//! API Gateway's events, Lambda's Invoke API, `/metrics`, `/healthz`; it
//! submits to `dispatch` like a source and reads `telemetry`), `cli`.
//!
//! | guarantee | where it is kept | test module (`tests/it/…`) |
//! |---|---|---|
//! | a function reaches only topics its `allow_publish` names | `runtime::abi` | `a_function_cannot_escape_its_limits` |
//! | a runaway, bombing or trapping function fails only its own invocation | `runtime::instance`, `dispatch::worker` | `a_function_cannot_escape_its_limits` |
//! | wasm never runs on the async reactor thread | `dispatch::worker` | `the_invocation_contract` |
//! | queues are bounded; overflow is counted and logged, never silent | `dispatch::queue` | `observability::counts` |
//! | a full queue holds an embedded-broker client back or spills to flash, never drops | `dispatch`, `broker::connection` | `acknowledged_means_stored::bursts` |
//! | an acknowledgement means stored: a QoS 1 message is acknowledged once its records are durable | `sources::mqtt`, `broker::connection`, `mqtt::link` | `acknowledged_means_stored` |
//! | each message runs each function once, however many filters match | `broker::router`, `topic::disjoint_cover` | `each_message_runs_each_function_once` |
//! | no local client can take ledge's place; idle sockets cannot exhaust the broker | `broker` | `the_embedded_broker` |
//! | a chain of 16 function publishes is stopped (recursive loops) | `dispatch` | `a_function_cannot_escape_its_limits::recursive_loops` |
//! | nothing accepted is lost while the uplink is down, or across kill -9 | `spool`, `uplink` | `nothing_lost_offline` |
//! | a bad module disables only its own function; every config error names file:line:col | `node::pipeline`, `config` | `bad_input_is_named` |
//! | deployments are verified before they run and roll back on failure | `deploy` | `deployments` |
//! | secrets never appear in logs, status or metrics | `config::resolve::secrets`, `logging` | `secrets_stay_secret` |
//! | AWS's clients and API Gateway handlers work unchanged; no HTTP client can take the server over | `http` | `http` |
//! | a function drives only the GPIO lines its `allow_gpio` names; actuators are safe at start, stop and crash | `runtime::abi`, `hw::gpio::lines`, `node` | `sensors_and_gpio` |
//!
//! Layers: `config`, `spool`, `units`, `time`, `signing`, `hex`, `fs`,
//! `rand`, `hw`, `board`, `topic`, `users`, `event` sit below the pipeline
//! and never import it; no two top-level modules import each other
//! (checked by `tests/it/layers.rs`).
//!
//! Modules are crate-private unless the binary (`cli`), the integration
//! tests or the benchmarks drive them as a library: `cli`, `config`,
//! `deploy`, `dispatch`, `event`, `metrics`, `runtime`, `signing`, `sinks`,
//! `sources`, `spool`, `uplink`. Everything else is reachable only from
//! inside ledge, so the compiler reports what nothing uses.

pub(crate) mod board;
#[cfg(feature = "local-broker")]
pub(crate) mod broker;
pub mod cli;
pub mod config;
pub(crate) mod control;
pub mod deploy;
pub mod dispatch;
pub mod event;
pub(crate) mod fs;
pub(crate) mod hex;
pub(crate) mod http;
pub(crate) mod hw;
pub(crate) mod lifecycle;
pub(crate) mod logging;
pub mod metrics;
pub(crate) mod mqtt;
pub(crate) mod node;
pub(crate) mod rand;
pub mod runtime;
pub(crate) mod service;
pub mod signing;
pub mod sinks;
pub mod sources;
pub mod spool;
pub(crate) mod telemetry;
pub(crate) mod time;
pub(crate) mod topic;
pub(crate) mod units;
pub mod uplink;
pub(crate) mod users;
