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
//! (systemd readiness and watchdog), `cli`.
//!
//! | guarantee | where it is kept |
//! |---|---|
//! | a function reaches only topics its `allow_publish` names | `runtime::abi` |
//! | a runaway, bombing or trapping function fails only its own invocation | `runtime::instance`, `dispatch::worker` |
//! | wasm never runs on the async reactor thread | `dispatch::worker` |
//! | queues are bounded; overflow is counted and logged, never silent | `dispatch::queue` |
//! | a full queue holds an embedded-broker client back or spills to flash, never drops | `dispatch`, `broker::connection` (tests/acknowledged.rs, tests/metrics.rs) |
//! | an acknowledgement means stored: a QoS 1 message is acknowledged once its records are durable | `sources::mqtt`, `broker::connection`, `mqtt::link` (tests/acknowledged.rs) |
//! | each message runs each function once, however many filters match | `broker::router`, `topic::disjoint_cover` (tests/embedded_broker.rs) |
//! | no local client can take ledge's place; idle sockets cannot exhaust the broker | `broker` (tests/embedded_broker.rs) |
//! | a chain of 16 function publishes is stopped (recursive loops) | `dispatch` (tests/fairness.rs) |
//! | a bad module disables only its own function | `node` |
//! | every config error names file:line:col | `config` |
//! | a function drives only the GPIO lines its `allow_gpio` names | `runtime::abi` |
//! | actuators are in their safe state at start, at stop and after their writer crashes | `hw::gpio::lines`, `node` |

pub mod board;
#[cfg(feature = "local-broker")]
pub mod broker;
pub mod cli;
pub mod config;
pub mod control;
pub mod deploy;
pub mod dispatch;
pub mod event;
pub(crate) mod fs;
pub mod hex;
pub mod hw;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod node;
pub(crate) mod rand;
pub mod runtime;
pub mod service;
pub mod sinks;
pub mod sources;
pub mod spool;
pub mod telemetry;
pub mod topic;
pub mod uplink;
pub mod users;
