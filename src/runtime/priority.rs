//! Long invocations yield the CPU to short ones.
//!
//! Every function runs on worker threads of its own (`dispatch::worker`),
//! and the kernel shares the cores between them and ledge's I/O thread by
//! CFS weight. At equal weight a guest that spins until its timeout, or
//! makes 100,000 refused host calls, takes a full core away from a
//! function that answers in 50 µs, and on a 2-core gateway two such guests
//! raise the short function's p99 latency tenfold.
//!
//! So a worker thread whose invocation has run longer than
//! [`LONG_INVOCATION`] lowers its own scheduling priority to nice
//! [`LOW_NICE`] (weight 15 against 1024 at nice 0: the kernel then prefers
//! short work ~70:1 whenever both are runnable, and the long invocation
//! still gets every idle cycle). When the invocation ends the thread goes
//! back to nice 0, so the next invocation starts even.
//!
//! State, per thread (a thread's nice value is the thread's own, so the
//! bookkeeping is a thread-local):
//!
//! ```text
//!   Unmanaged ──manage_this_thread──▶ Normal ──yield──▶ Lowered
//!                                       ▲                 │
//!                                       └────restore──────┤ (permitted)
//!                                                         ▼
//!                                                       Stuck (EPERM: stays low)
//! ```
//!
//! `setpriority` is called only on a transition: never per slice, never for
//! a short invocation (the hot path runs 30,000+ a second).
//!
//! Raising a thread's priority back needs `CAP_SYS_NICE` or an
//! `RLIMIT_NICE` soft limit of 20 (nice may then go down to 20 - 20 = 0).
//! [`raise_nice_limit`] lifts the soft limit to the hard one at start-up;
//! the systemd unit sets `LimitNICE=20`. Without either a lowered thread
//! stays at nice 19 for good (its function then always runs at low
//! priority), and ledge says so once, at info, with what would fix it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long one invocation runs (excluding `ledge_init`) before its thread
/// yields. From BENCHMARKS.md: a warm invocation of the example functions
/// takes 0.6-50 µs on x86 (threshold-alert publishing an alert: 49 µs), and
/// a Pi 4 is 3-6x slower (~0.3 ms). The check runs between fuel slices of
/// ~1 ms, so 1 ms is the first check: three times the slowest example
/// invocation on the slowest board. At 2 ms the hostile benchmark's memory
/// bomb (3.3 ms calls) and the first 2 ms of every spin and flood call still
/// ran at the good function's priority (BENCHMARKS.md, 2026-12-02).
pub const LONG_INVOCATION: Duration = Duration::from_millis(1);
/// The nice value of a thread running a long invocation: the lowest
/// priority an ordinary thread can have.
pub const LOW_NICE: i32 = 19;
/// `RLIMIT_NICE` needed to go back to nice 0 without `CAP_SYS_NICE`.
const NICE_LIMIT_FOR_ZERO: u64 = 20;

/// Where a thread is in the state machine of the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadPriority {
    /// Not a worker thread: yielding is a no-op (`ledge invoke`, tests).
    Unmanaged,
    /// A worker at nice 0.
    Normal,
    /// A worker at nice [`LOW_NICE`], running a long invocation.
    Lowered,
    /// A worker that could not go back to nice 0 and stays low.
    Stuck,
}

/// A `setpriority`/`setrlimit` call failed.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("setpriority(nice {nice}) failed: {source}")]
    SetPriority { nice: i32, source: std::io::Error },
    #[error("getpriority failed: {0}")]
    GetPriority(std::io::Error),
    #[error("RLIMIT_NICE: {0}")]
    Limit(std::io::Error),
}

impl PriorityError {
    /// True if the kernel refused for want of privilege (not a bug).
    pub fn is_permission(&self) -> bool {
        let source = match self {
            PriorityError::SetPriority { source, .. } => source,
            PriorityError::GetPriority(e) | PriorityError::Limit(e) => e,
        };
        source.raw_os_error() == Some(libc::EPERM) || source.raw_os_error() == Some(libc::EACCES)
    }
}

thread_local! {
    static STATE: Cell<ThreadPriority> = const { Cell::new(ThreadPriority::Unmanaged) };
}

/// Set once the "cannot restore" line is logged: once per process, not per
/// thread or invocation.
static TOLD_STUCK: AtomicBool = AtomicBool::new(false);
/// Set once the "cannot lower" line is logged.
static TOLD_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// The calling thread's state.
pub fn this_thread() -> ThreadPriority {
    STATE.with(Cell::get)
}

/// Makes the calling thread a worker whose long invocations yield. Worker
/// threads start at the process's nice value, assumed 0.
pub fn manage_this_thread() {
    STATE.with(|state| {
        if state.get() == ThreadPriority::Unmanaged {
            state.set(ThreadPriority::Normal);
        }
    });
}

/// The calling thread's invocation has run long: lower its priority if it
/// is a worker at normal priority (one `setpriority`), else nothing. If the
/// kernel refuses, the thread is no longer managed and the first refusal
/// in the process is logged.
pub fn yield_this_thread() -> Result<ThreadPriority, PriorityError> {
    STATE.with(|state| {
        if state.get() != ThreadPriority::Normal {
            return Ok(state.get());
        }
        if let Err(e) = set_own_nice(LOW_NICE) {
            // A seccomp filter without `setpriority` (an older unit file)
            // or a kernel without it: this thread stops trying.
            state.set(ThreadPriority::Unmanaged);
            if !TOLD_UNAVAILABLE.swap(true, Ordering::Relaxed) {
                log::info!(
                    target: "ledge::invoke",
                    "long invocations cannot yield the CPU to short ones: {e} (a systemd unit needs SystemCallFilter=setpriority)"
                );
            }
            return Err(e);
        }
        state.set(ThreadPriority::Lowered);
        Ok(ThreadPriority::Lowered)
    })
}

/// The calling thread's long invocation of `function` ended: back to nice
/// 0 if it was lowered. Refused for want of privilege, the thread stays low
/// ([`ThreadPriority::Stuck`]) and the first such refusal in the process
/// is logged, naming `function` and the fix.
pub fn restore_this_thread(function: &str) -> Result<ThreadPriority, PriorityError> {
    STATE.with(|state| {
        if state.get() != ThreadPriority::Lowered {
            return Ok(state.get());
        }
        match set_own_nice(0) {
            Ok(()) => {
                state.set(ThreadPriority::Normal);
                Ok(ThreadPriority::Normal)
            }
            Err(e) if e.is_permission() => {
                state.set(ThreadPriority::Stuck);
                if !TOLD_STUCK.swap(true, Ordering::Relaxed) {
                    log::info!(
                        target: "ledge::invoke",
                        "{function}: a worker thread that ran a long invocation at low priority (nice {LOW_NICE}) cannot go back to nice 0 ({e}); it stays low. Run ledge with LimitNICE=20 (systemd) or CAP_SYS_NICE to allow it"
                    );
                }
                Ok(ThreadPriority::Stuck)
            }
            Err(e) => Err(e),
        }
    })
}

/// Lifts the soft `RLIMIT_NICE` to the hard limit, so that lowered threads
/// may go back to nice 0 where the hard limit allows (20, as systemd's
/// `LimitNICE=20` sets). Returns the soft limit now in force.
pub fn raise_nice_limit() -> Result<u64, PriorityError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } != 0 {
        return Err(PriorityError::Limit(std::io::Error::last_os_error()));
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising soft to hard needs no
        // privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NICE, &limit) } != 0 {
            return Err(PriorityError::Limit(std::io::Error::last_os_error()));
        }
    }
    Ok(limit.rlim_cur)
}

/// True if this process may take a thread from nice 19 back to 0: it has
/// `CAP_SYS_NICE`, or its soft `RLIMIT_NICE` is at least 20.
pub fn may_restore() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    let by_limit = unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } == 0
        && limit.rlim_cur >= NICE_LIMIT_FOR_ZERO;
    by_limit || has_cap_sys_nice()
}

/// `CAP_SYS_NICE` in the effective set, from /proc/self/status.
fn has_cap_sys_nice() -> bool {
    const CAP_SYS_NICE: u32 = 23;
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_NICE) != 0)
}

/// The calling thread's nice value.
pub fn own_nice() -> Result<i32, PriorityError> {
    // getpriority may return -1 as a value: errno tells an error apart.
    // SAFETY: errno is thread-local; clearing it is always sound.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain syscall on the calling thread's id.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, own_tid()) };
    let error = std::io::Error::last_os_error();
    if nice == -1 && error.raw_os_error() != Some(0) {
        return Err(PriorityError::GetPriority(error));
    }
    Ok(nice)
}

/// Sets the calling thread's nice value (Linux: `PRIO_PROCESS` with a
/// thread id acts on that thread alone).
fn set_own_nice(nice: i32) -> Result<(), PriorityError> {
    // SAFETY: plain syscall on the calling thread's id.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, own_tid(), nice) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(PriorityError::SetPriority { nice, source });
    }
    Ok(())
}

fn own_tid() -> libc::id_t {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() as libc::id_t }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` on a fresh thread (a test must not leave the test
    /// harness's threads lowered).
    fn on_a_thread<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(body)
            .join()
            .expect("test thread panicked")
    }

    #[test]
    fn a_worker_thread_yields_to_nice_19_and_goes_back_when_permitted() {
        let permitted = may_restore() || raise_nice_limit().is_ok_and(|l| l >= 20);
        let (lowered, nice_low, restored, nice_after) = on_a_thread(|| {
            manage_this_thread();
            assert_eq!(own_nice().unwrap(), 0);
            let lowered = yield_this_thread().unwrap();
            let nice_low = own_nice().unwrap();
            let restored = restore_this_thread("test").unwrap();
            (lowered, nice_low, restored, own_nice().unwrap())
        });
        assert_eq!(lowered, ThreadPriority::Lowered);
        assert_eq!(nice_low, LOW_NICE);
        if permitted {
            assert_eq!((restored, nice_after), (ThreadPriority::Normal, 0));
        } else {
            assert_eq!((restored, nice_after), (ThreadPriority::Stuck, LOW_NICE));
        }
    }

    #[test]
    fn a_thread_not_managed_never_changes_priority() {
        let (state, nice) = on_a_thread(|| {
            let state = yield_this_thread().unwrap();
            (state, own_nice().unwrap())
        });
        assert_eq!((state, nice), (ThreadPriority::Unmanaged, 0));
    }

    #[test]
    fn only_transitions_touch_the_priority() {
        on_a_thread(|| {
            manage_this_thread();
            // Restoring a thread that never yielded changes nothing.
            assert_eq!(restore_this_thread("t").unwrap(), ThreadPriority::Normal);
            assert_eq!(yield_this_thread().unwrap(), ThreadPriority::Lowered);
            // A second yield is a no-op: the state says the thread is low.
            assert_eq!(yield_this_thread().unwrap(), ThreadPriority::Lowered);
            assert_eq!(own_nice().unwrap(), LOW_NICE);
            // Managing again does not forget the thread is low.
            manage_this_thread();
            assert_eq!(this_thread(), ThreadPriority::Lowered);
        });
    }

    #[test]
    fn the_nice_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nice_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) }, 0);
        assert_eq!((soft, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }
}
