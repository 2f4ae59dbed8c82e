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
//! [`LONG_INVOCATION`] moves itself to the `SCHED_IDLE` policy: weight 3
//! against 1024 for a normal thread, and (unlike nice 19) a normal thread
//! that wakes up preempts it at once. With nice 19 the kernel's EEVDF
//! scheduler let the long invocation finish its slice first: a woken
//! short function waited 2-4 ms behind a memory bomb (BENCHMARKS.md,
//! 2026-12-02). The long invocation still gets every idle cycle.
//!
//! The length is checked between fuel slices and once more when the
//! invocation ends (`runtime::instance`): a memory bomb's grows take
//! milliseconds inside one slice and were never checked. A low thread
//! runs slices 8 times shorter and calls [`let_others_run`] between them.
//!
//! The thread goes back to `SCHED_OTHER` when an invocation of its
//! function ends short: a function that runs long every time starts each
//! invocation low, instead of taking its first millisecond at the short
//! functions' priority before the first check; a function that ran long
//! once pays for it with one invocation started low.
//!
//! State, per thread (a thread's policy is the thread's own, so the
//! bookkeeping is a thread-local):
//!
//! ```text
//!   Unmanaged ──manage_this_thread──▶ Normal ──yield──▶ Lowered
//!                                       ▲                 │
//!                                       └────restore──────┤ (a short
//!                                          invocation     │  invocation
//!                                          ended)         │  ended, permitted)
//!                                                         ▼
//!                                                       Stuck (EPERM: stays low)
//! ```
//!
//! `sched_setscheduler` is called only on a transition: never per slice,
//! never for a short invocation after a short one (the hot path runs
//! 30,000+ a second), and not at all for a function that is long every
//! time.
//!
//! Leaving `SCHED_IDLE` needs `CAP_SYS_NICE` or an `RLIMIT_NICE` soft
//! limit that allows the thread's nice value (20 for nice 0; the kernel
//! applies the nice rule to this move). [`raise_nice_limit`] lifts the
//! soft limit to the hard one at start-up; the systemd unit sets
//! `LimitNICE=20`. Without either a lowered thread stays idle-class for
//! good (its function then always runs at low priority), and ledge says
//! so once, at info, with what would fix it.

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
/// Linux's `SCHED_OTHER` and `SCHED_IDLE` policies (sched(7)).
pub const SCHED_OTHER: i32 = 0;
pub const SCHED_IDLE: i32 = 5;
/// `RLIMIT_NICE` needed to go back to nice 0 without `CAP_SYS_NICE`.
const NICE_LIMIT_FOR_ZERO: u64 = 20;

/// Where a thread is in the state machine of the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadPriority {
    /// Not a worker thread: yielding is a no-op (`ledge invoke`, tests).
    Unmanaged,
    /// A worker in `SCHED_OTHER`.
    Normal,
    /// A worker in `SCHED_IDLE`, after a long invocation.
    Lowered,
    /// A worker that could not go back to `SCHED_OTHER` and stays low.
    Stuck,
}

/// A `sched_setscheduler`/`setrlimit` call failed.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("sched_setscheduler({policy}) failed: {source}")]
    SetPolicy {
        policy: &'static str,
        source: std::io::Error,
    },
    #[error("sched_getscheduler failed: {0}")]
    GetPolicy(std::io::Error),
    #[error("RLIMIT_NICE: {0}")]
    Limit(std::io::Error),
}

impl PriorityError {
    /// True if the kernel refused for want of privilege (not a bug).
    pub fn is_permission(&self) -> bool {
        let source = match self {
            PriorityError::SetPolicy { source, .. } => source,
            PriorityError::GetPolicy(e) | PriorityError::Limit(e) => e,
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

/// True if the calling thread runs at low priority (lowered, or stuck
/// there): its invocations then run in short slices and let others run
/// between them ([`let_others_run`]).
pub fn runs_low() -> bool {
    matches!(
        this_thread(),
        ThreadPriority::Lowered | ThreadPriority::Stuck
    )
}

/// Offers the CPU to any thread the kernel wants to run now. A lowered
/// thread calls it between its fuel slices, which are 8 times shorter
/// than a normal thread's. Measured, not derived (hostile-neighbour
/// benchmark, all four attackers, BENCHMARKS.md 2026-12-02 evening): a
/// short function's p99 rose 4.7-6.8× with the short slices alone,
/// 2.8-4.4× with this call alone, 1.1-1.8× with both. So in practice a
/// woken normal thread waited for the low thread's next slice boundary,
/// though the kernel should preempt `SCHED_IDLE` at once (a Python busy
/// loop in `SCHED_IDLE` did not delay wake-ups on the same machine); why
/// is not established.
pub fn let_others_run() {
    // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
    unsafe { libc::sched_yield() };
}

/// Makes the calling thread a worker whose long invocations yield. Worker
/// threads start in `SCHED_OTHER`, at the process's nice value.
pub fn manage_this_thread() {
    STATE.with(|state| {
        if state.get() == ThreadPriority::Unmanaged {
            state.set(ThreadPriority::Normal);
        }
    });
}

/// The calling thread's invocation has run long: move it to `SCHED_IDLE`
/// if it is a worker at normal priority (one system call), else nothing. If the
/// kernel refuses, the thread is no longer managed and the first refusal
/// in the process is logged.
pub fn yield_this_thread() -> Result<ThreadPriority, PriorityError> {
    STATE.with(|state| {
        if state.get() != ThreadPriority::Normal {
            return Ok(state.get());
        }
        if let Err(e) = set_own_policy(SCHED_IDLE) {
            // A seccomp filter without `sched_setscheduler` (an older unit
            // file) or a kernel without it: this thread stops trying.
            state.set(ThreadPriority::Unmanaged);
            if !TOLD_UNAVAILABLE.swap(true, Ordering::Relaxed) {
                log::info!(
                    target: "ledge::invoke",
                    "long invocations cannot yield the CPU to short ones: {e} (a systemd unit needs SystemCallFilter=sched_setscheduler)"
                );
            }
            return Err(e);
        }
        state.set(ThreadPriority::Lowered);
        Ok(ThreadPriority::Lowered)
    })
}

/// An invocation of `function` ended short on the calling thread: back to
/// `SCHED_OTHER` if a long one had lowered it. Refused for want of privilege, the thread stays low
/// ([`ThreadPriority::Stuck`]) and the first such refusal in the process
/// is logged, naming `function` and the fix.
pub fn restore_this_thread(function: &str) -> Result<ThreadPriority, PriorityError> {
    STATE.with(|state| {
        if state.get() != ThreadPriority::Lowered {
            return Ok(state.get());
        }
        match set_own_policy(SCHED_OTHER) {
            Ok(()) => {
                state.set(ThreadPriority::Normal);
                Ok(ThreadPriority::Normal)
            }
            Err(e) if e.is_permission() => {
                state.set(ThreadPriority::Stuck);
                if !TOLD_STUCK.swap(true, Ordering::Relaxed) {
                    log::info!(
                        target: "ledge::invoke",
                        "{function}: a worker thread that ran a long invocation at low priority (SCHED_IDLE) cannot go back to normal priority ({e}); it stays low. Run ledge with LimitNICE=20 (systemd) or CAP_SYS_NICE to allow it"
                    );
                }
                Ok(ThreadPriority::Stuck)
            }
            Err(e) => Err(e),
        }
    })
}

/// Lifts the soft `RLIMIT_NICE` to the hard limit, so that lowered threads
/// may go back to normal priority where the hard limit allows (20, as systemd's
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

/// True if this process may take a thread from `SCHED_IDLE` back to
/// `SCHED_OTHER` at nice 0: it has
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

/// The calling thread's scheduling policy ([`SCHED_OTHER`], [`SCHED_IDLE`], ...).
pub fn own_policy() -> Result<i32, PriorityError> {
    // The raw system call: musl's `sched_getscheduler` wrapper only
    // returns ENOSYS (POSIX speaks of processes, Linux acts on threads).
    // SAFETY: plain syscall on the calling thread's id.
    let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, own_tid()) };
    if policy < 0 {
        return Err(PriorityError::GetPolicy(std::io::Error::last_os_error()));
    }
    Ok(policy as i32)
}

/// Moves the calling thread to `policy` (priority 0, the only one the
/// two policies have); its nice value is untouched.
fn set_own_policy(policy: i32) -> Result<(), PriorityError> {
    // The kernel's `struct sched_param` is one int, the priority (libc's
    // may carry more fields, musl's does); 0 is the only priority either
    // policy has.
    let priority: libc::c_int = 0;
    // SAFETY: plain syscall on the calling thread's id with a pointer to a
    // valid kernel sched_param; raw for the same reason as in `own_policy`.
    let done = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            own_tid(),
            policy,
            &priority as *const libc::c_int,
        )
    };
    if done != 0 {
        let source = std::io::Error::last_os_error();
        let policy = if policy == SCHED_IDLE {
            "SCHED_IDLE"
        } else {
            "SCHED_OTHER"
        };
        return Err(PriorityError::SetPolicy { policy, source });
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
    fn a_worker_thread_yields_to_sched_idle_and_goes_back_when_permitted() {
        let permitted = may_restore() || raise_nice_limit().is_ok_and(|l| l >= 20);
        let (lowered, policy_low, restored, policy_after) = on_a_thread(|| {
            manage_this_thread();
            assert_eq!(own_policy().unwrap(), SCHED_OTHER);
            let lowered = yield_this_thread().unwrap();
            let policy_low = own_policy().unwrap();
            let restored = restore_this_thread("test").unwrap();
            (lowered, policy_low, restored, own_policy().unwrap())
        });
        assert_eq!(lowered, ThreadPriority::Lowered);
        assert_eq!(policy_low, SCHED_IDLE);
        if permitted {
            assert_eq!(
                (restored, policy_after),
                (ThreadPriority::Normal, SCHED_OTHER)
            );
        } else {
            assert_eq!(
                (restored, policy_after),
                (ThreadPriority::Stuck, SCHED_IDLE)
            );
        }
    }

    #[test]
    fn a_thread_not_managed_never_changes_priority() {
        let (state, policy) = on_a_thread(|| {
            let state = yield_this_thread().unwrap();
            (state, own_policy().unwrap())
        });
        assert_eq!((state, policy), (ThreadPriority::Unmanaged, SCHED_OTHER));
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
            assert_eq!(own_policy().unwrap(), SCHED_IDLE);
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
