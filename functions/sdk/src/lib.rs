//! Write ledge functions in Rust.
//!
//! A ledge function is a WebAssembly module that ledge runs on a gateway for
//! each MQTT message, sensor reading or schedule tick it is subscribed to.
//! This crate is a safe layer over the `ledge_v1` guest ABI
//! (`docs/abi.md` in the ledge repository): you write a handler, and
//! [`handler!`] generates the exports the host calls.
//!
//! ```
//! use ledge_sdk::{Context, Event, Qos, info, publish};
//!
//! fn handle(event: &Event, ctx: &Context) -> Result<String, String> {
//!     let text = event.payload_str().map_err(|e| format!("payload is not text: {e}"))?;
//!     let topic = ctx.env("FORWARD_TO").unwrap_or_else(|| "forwarded".into());
//!     publish(&topic, text.to_uppercase(), Qos::AtLeastOnce).map_err(|e| e.to_string())?;
//!     info!("forwarded {} bytes from {}", text.len(), event.subject());
//!     Ok(format!("sent to {topic}"))
//! }
//!
//! ledge_sdk::handler!(handle);
//! # ledge_sdk::mock::set_env("FORWARD_TO", "shouts");
//! # assert_eq!(ledge_sdk::mock::invoke(handle, b"hi"), Ok(b"sent to shouts".to_vec()));
//! ```
//!
//! Build it as a `cdylib` for `wasm32-unknown-unknown`, linked with
//! `-C link-arg=-zstack-size=65536` (`functions/build.sh` shows how).
//!
//! # The pieces
//!
//! | module | owns |
//! |---|---|
//! | [`Event`] | the payload and where it came from (source, subject, time) |
//! | [`Context`] | the invocation: request id, function name, budget, env |
//! | [`publish()`] | messages to the local broker, and why they failed |
//! | [`log`](mod@log) | log lines, plus the [`info!`] family of macros |
//! | [`gpio`] | named GPIO lines: switch an actuator, read an input |
//! | [`handler!`] | the ABI exports, the payload buffer, the response |
//! | [`Failure`] | an error that says whether retrying can help |
//! | [`mock`] | (not on wasm32) a fake host for `cargo test` |
//!
//! # Testing
//!
//! Off wasm32 the host calls go to [`mock`], an in-process host: set env and
//! event there, run the handler with [`mock::invoke`], and check the response,
//! [`mock::published`] and [`mock::logs`].
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `json` | yes | [`Event::json`], with serde and serde_json (`alloc` only, no std features) |
//! | `fast-alloc` | yes | on wasm32, a size-class allocator in front of the standard one: ~50 fuel per allocation instead of ~1,800; turn it off to install your own `#[global_allocator]` |

#![warn(missing_docs)]

mod context;
mod event;
pub mod gpio;
mod handler;
#[cfg(any(test, all(target_arch = "wasm32", feature = "fast-alloc")))]
mod heap;
pub mod log;
mod publish;
mod sys;

#[cfg(not(target_arch = "wasm32"))]
pub mod mock;

#[cfg(all(target_arch = "wasm32", feature = "fast-alloc"))]
#[global_allocator]
static ALLOCATOR: heap::SizeClasses = heap::SizeClasses::new();

pub use context::Context;
pub use event::{Event, Source};
pub use handler::{Failure, HandlerError};
pub use publish::{PublishError, Qos, forward, publish, publish_retained};

/// Wall-clock time, in milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    non_negative(sys::now_ms())
}

/// Fills `buf` with random bytes from the gateway's operating system
/// (for ids, nonces, jitter); `Err` if the host could not provide them.
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomUnavailable> {
    sys::random(buf).map_err(|_| RandomUnavailable)
}

/// The host could not provide random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomUnavailable;

impl core::fmt::Display for RandomUnavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the host has no random bytes to give")
    }
}

/// The host's integers are never negative except as error codes, which the
/// SDK reads as "unknown": 0.
fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// What [`handler!`] expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::handler::{alloc, handle, init, no_init};
}

#[cfg(test)]
mod tests;
