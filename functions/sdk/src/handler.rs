//! The glue between the ABI's exports and a Rust handler: [`handler!`] and
//! the functions its expansion calls.
//!
//! One invocation, as the SDK runs it: `ledge_alloc(len)` leaks a
//! `Vec<u8>` of exactly `len` bytes for the host to fill; `ledge_handle`
//! takes that allocation back as the [`Event`]'s payload, runs the handler,
//! frees the payload, and turns the handler's `Result` into a response and a
//! status. A handler error never traps: its text becomes the response and the
//! status is 1, which the host reports as the invocation's error (and may
//! retry), or 2 for a [`Failure::Permanent`], which the host does not retry.
//!
//! [`handler!`]: crate::handler!

use core::fmt::Display;
use std::mem::ManuallyDrop;

use crate::{Context, Event, sys};

/// Status for a failed invocation (the ABI accepts any non-zero value).
const FAILED: i32 = 1;
/// Status for a failure no retry can fix (`STATUS_PERMANENT`).
const PERMANENT: i32 = 2;

/// A handler error that says whether retrying the event can help.
///
/// Any `Display` error converts into `Failure::Retryable`, so `?` works as
/// before; return `Failure::permanent(..)` for an event that is wrong in
/// itself (unparseable, out of range): ledge then sends it straight to the
/// function's `on_failure` instead of retrying it.
///
/// ```
/// use ledge_sdk::{Context, Event, Failure};
///
/// fn handle(event: &Event, _ctx: &Context) -> Result<String, Failure> {
///     let text = event.payload_str().map_err(Failure::permanent)?;
///     let value: f64 = text.trim().parse().map_err(Failure::permanent)?;
///     Ok(format!("{}", value * 2.0))
/// }
/// # assert_eq!(ledge_sdk::mock::invoke(handle, b"x"), Err("invalid float literal".into()));
/// # assert_eq!(ledge_sdk::mock::last_status(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Failed this time; the host retries per the function's policy.
    Retryable(String),
    /// Failed for good: not retried.
    Permanent(String),
}

impl Failure {
    /// A failure retrying cannot fix.
    pub fn permanent(why: impl Display) -> Failure {
        Failure::Permanent(why.to_string())
    }

    /// A failure the host may retry.
    pub fn retryable(why: impl Display) -> Failure {
        Failure::Retryable(why.to_string())
    }
}

// `Failure` itself is not `Display`, which is what lets every `Display`
// error convert into it (as anyhow does for its error type).
impl<E: Display> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::Retryable(error.to_string())
    }
}

/// What a handler may return as its error: anything `Display` (a
/// retryable failure), or a [`Failure`].
pub trait HandlerError {
    /// The error message the host reports.
    fn message(&self) -> String;
    /// True if retrying cannot help.
    fn is_permanent(&self) -> bool {
        false
    }
}

impl<E: Display> HandlerError for E {
    fn message(&self) -> String {
        self.to_string()
    }
}

impl HandlerError for Failure {
    fn message(&self) -> String {
        match self {
            Failure::Retryable(why) | Failure::Permanent(why) => why.clone(),
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Failure::Permanent(_))
    }
}

/// An error message is kept to this many bytes if the host rejects the whole
/// message as too large, so a small `max_payload` still gets the gist.
const SHORT_ERROR: usize = 1024;

/// Exports a handler as a ledge function.
///
/// `handler!(my_fn)` generates the ABI exports (`ledge_alloc`,
/// `ledge_handle`, `ledge_init`) for a function
/// `fn my_fn(event: &Event, ctx: &Context) -> Result<O, E>` where `O` is any
/// `Into<Vec<u8>>` (`Vec<u8>`, `String`, `&'static str`, ...) and `E` is any
/// `Display` or a [`Failure`]. `Ok` bytes become the response; `Err` text
/// becomes the error.
///
/// `handler!(my_fn, init = my_init)` also runs `fn my_init() -> Result<(), E>`
/// once per instance before the first event; an error fails the instance.
///
/// Use it once per crate (the exports are global symbols).
///
/// ```
/// use ledge_sdk::{Context, Event};
///
/// fn check_config() -> Result<(), String> {
///     Ok(())
/// }
///
/// fn handle(_event: &Event, _ctx: &Context) -> Result<&'static str, String> {
///     Ok("ok")
/// }
///
/// ledge_sdk::handler!(handle, init = check_config);
/// # assert_eq!(ledge_init(), 0);
/// ```
#[macro_export]
macro_rules! handler {
    ($handler:path) => {
        $crate::handler!($handler, init = $crate::__private::no_init);
    };
    ($handler:path, init = $init:path) => {
        /// ABI export: memory for the next payload.
        #[unsafe(no_mangle)]
        pub extern "C" fn ledge_alloc(len: usize) -> *mut u8 {
            $crate::__private::alloc(len)
        }

        /// ABI export: handles the payload at `ptr..ptr+len`.
        ///
        /// # Safety
        /// `ptr` and `len` must come from one call of `ledge_alloc(len)`,
        /// as the ABI requires of the host.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn ledge_handle(ptr: *mut u8, len: usize) -> i32 {
            // SAFETY: forwarded to the host (see above).
            unsafe { $crate::__private::handle(ptr, len, $handler) }
        }

        /// ABI export: prepares a new instance.
        #[unsafe(no_mangle)]
        pub extern "C" fn ledge_init() -> i32 {
            $crate::__private::init($init)
        }
    };
}

/// Leaks a buffer of exactly `len` bytes for the host to write the payload
/// into; [`handle`] takes it back.
pub fn alloc(len: usize) -> *mut u8 {
    // `Vec::with_capacity` allocates exactly `len` (a documented guarantee),
    // which is what lets `handle` rebuild the Vec from `len` alone. For
    // `len == 0` this is a dangling, never-dereferenced pointer, which the
    // host may write zero bytes to.
    ManuallyDrop::new(Vec::<u8>::with_capacity(len)).as_mut_ptr()
}

/// Runs one invocation on the buffer from [`alloc`].
///
/// # Safety
/// `ptr` must be the result of `alloc(len)`, not yet handled, with `len`
/// bytes written by the host.
pub unsafe fn handle<F, O, E>(ptr: *mut u8, len: usize, handler: F) -> i32
where
    F: FnOnce(&Event, &Context) -> Result<O, E>,
    O: Into<Vec<u8>>,
    E: HandlerError,
{
    // SAFETY: `alloc(len)` made this allocation with capacity `len`, and the
    // host initialised all `len` bytes (forwarded to the caller).
    let payload = unsafe { Vec::from_raw_parts(ptr, len, len) };
    run(payload, handler)
}

/// Calls the handler and reports its outcome to the host; returns the status.
pub(crate) fn run<F, O, E>(payload: Vec<u8>, handler: F) -> i32
where
    F: FnOnce(&Event, &Context) -> Result<O, E>,
    O: Into<Vec<u8>>,
    E: HandlerError,
{
    let event = Event::new(payload);
    let outcome = handler(&event, &Context::new());
    // The payload can be large; free it before building the response.
    drop(event);
    match outcome {
        Ok(response) => respond(&response.into()),
        Err(err) if err.is_permanent() => fail(&err.message(), PERMANENT),
        Err(err) => fail(&err.message(), FAILED),
    }
}

fn respond(response: &[u8]) -> i32 {
    match sys::respond(response) {
        sys::OK => 0,
        sys::ERR_TOO_LARGE => fail(
            &format!(
                "response of {} bytes is larger than max_payload",
                response.len()
            ),
            FAILED,
        ),
        code => fail(
            &format!("host rejected the response with code {code}"),
            FAILED,
        ),
    }
}

/// Sets `message` as the error response and returns `status`.
fn fail(message: &str, status: i32) -> i32 {
    if sys::respond(message.as_bytes()) != sys::OK {
        let mut cut = message.len().min(SHORT_ERROR);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        // If even this is refused the host reports "handler returned status 1".
        sys::respond(&message.as_bytes()[..cut]);
    }
    status
}

/// Runs once per instance: routes panic messages to the log, then runs the
/// function's own init.
pub fn init<E: Display>(user_init: fn() -> Result<(), E>) -> i32 {
    // On wasm32-unknown-unknown a panic's message would otherwise vanish and
    // the host would see only a bare trap.
    #[cfg(target_arch = "wasm32")]
    std::panic::set_hook(Box::new(|info| crate::log::error(&info.to_string())));
    match user_init() {
        Ok(()) => 0,
        Err(err) => {
            crate::log::error(&format!("init failed: {err}"));
            FAILED
        }
    }
}

/// The init used when a function has none.
pub fn no_init() -> Result<(), core::convert::Infallible> {
    Ok(())
}
