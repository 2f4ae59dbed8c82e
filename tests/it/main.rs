//! ledge's integration tests, one module per guarantee: each module's doc
//! states what it proves, and its tests run the real `ledge` binary (or,
//! for the runtime and the spool, the library) against real mosquitto
//! brokers, real wasm, real files and real kill -9.
//!
//! | guarantee | module |
//! |---|---|
//! | an acknowledgement means stored: kill -9, a full disk or a log flood loses nothing acknowledged | `acknowledged_means_stored` |
//! | what ledge accepts reaches upstream, in order, at least once, whatever happens to the uplink | `nothing_lost_offline` |
//! | each message runs each function once, however many filters match, on either broker | `each_message_runs_each_function_once` |
//! | a function cannot escape its limits: it fails only its own invocation or load | `a_function_cannot_escape_its_limits` |
//! | secrets never reach ledge's output | `secrets_stay_secret` |
//! | bad input is named: file:line:col for config, the path for files | `bad_input_is_named` |
//! | the embedded broker behaves as MQTT says and cannot be taken over | `the_embedded_broker` |
//! | Lambda's invocation contract: retries, dead letters, batches, synchronous requests | `the_invocation_contract` |
//! | deployments lose and repeat nothing, only signed ones go live, bad ones roll back | `deployments` |
//! | SIGHUP, SIGTERM and broker outages lose nothing; systemd hears every state | `life_under_systemd` |
//! | schedules fire when they say, once, and catch up as configured | `schedules` |
//! | sensors report readings and errors; actuators stay safe | `sensors_and_gpio` |
//! | an operator can see what a running ledge does | `observability` |
//! | the guest sees exactly the ABI docs/abi.md promises | `the_guest_abi` |
//! | functions in C, AssemblyScript and Rust build and run; the examples are current | `languages` |
//! | the command line answers with exit codes and output a user can rely on | `cli` |
//! | AWS's clients and API Gateway handlers work against the HTTP server unchanged; no client can take it over | `http` |
//! | lower layers never import the pipeline; no import cycles between top-level modules | `layers` |
//!
//! The aarch64 cross build under qemu is a binary of its own
//! (`tests/cross_aarch64.rs`, run by tests/run.sh): it builds for minutes.

#[path = "../common/mod.rs"]
mod common;

mod a_function_cannot_escape_its_limits;
mod acknowledged_means_stored;
mod bad_input_is_named;
mod cli;
mod deployments;
mod each_message_runs_each_function_once;
mod http;
mod languages;
mod layers;
mod life_under_systemd;
mod nothing_lost_offline;
mod observability;
mod schedules;
mod secrets_stay_secret;
mod sensors_and_gpio;
mod the_embedded_broker;
mod the_guest_abi;
mod the_invocation_contract;
