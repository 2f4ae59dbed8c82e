//! A function that runs long cannot take the CPU from short ones: its
//! worker thread moves to the SCHED_IDLE policy while the long invocation
//! runs (every normal thread then preempts it), stays there while the
//! function keeps running long, and goes back to SCHED_OTHER when one of
//! its invocations ends short. Read from /proc, the kernel's own account,
//! not from timing.

use std::time::{Duration, Instant};

use crate::common::broker::TestClient;
use crate::common::gateway::{Gateway, Module};
use crate::common::process::Ledge;

const WAIT: Duration = Duration::from_secs(20);

/// SCHED_OTHER and SCHED_IDLE (sched(7)).
const NORMAL: i32 = 0;
const IDLE: i32 = 5;

/// The scheduling policy of `pid`'s thread named `name`
/// (`/proc/.../comm`), if it exists.
fn thread_policy(pid: u32, name: &str) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after `(comm)`: state is field 3, policy field 41 (proc(5)).
        let rest = &stat[stat.rfind(')')? + 1..];
        return rest.split_whitespace().nth(41 - 3)?.parse().ok();
    }
    None
}

/// Polls until the thread's policy is `wanted`; panics with what it last
/// saw after `WAIT`.
#[track_caller]
fn wait_for_policy(pid: u32, thread: &str, wanted: i32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let policy = thread_policy(pid, thread);
        if policy == Some(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "thread {thread} has policy {policy:?}, not {wanted}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `fixture` as function `name` on `<name>/in`, checks that its
/// worker starts in SCHED_OTHER, publishes `go` and waits for the worker
/// to move to SCHED_IDLE.
fn run_until_lowered(
    name: &str,
    fixture: &'static str,
    extra: &str,
) -> (Gateway, Ledge, TestClient) {
    let input = format!("{name}/in");
    let gateway = Gateway::new(&format!("gw-yield-{name}"))
        .function(name, Module::Fixture(fixture), extra)
        .mqtt_trigger(&input, name);
    let ledge = gateway.start();
    let worker = format!("fn-{name}-0");
    wait_for_policy(ledge.pid(), &worker, NORMAL);
    let client = gateway.client("client", &[]);
    client.publish(&input, "go");
    wait_for_policy(ledge.pid(), &worker, IDLE);
    (gateway, ledge, client)
}

#[test]
fn a_long_invocation_runs_idle_class_and_its_thread_returns_after_a_short_one() {
    // The invocation spins for 1 s; well before that its thread yields.
    let (_gateway, mut ledge, client) = run_until_lowered("spin", "spin_on_go", "timeout = \"1s\"");
    let pid = ledge.pid();
    ledge.wait_for_log("failed (timeout)", WAIT);
    // It ended long: the thread stays low, so the function's next
    // invocation does not start at the short functions' priority.
    assert_eq!(thread_policy(pid, "fn-spin-0"), Some(IDLE));
    // An invocation that ends short brings it back (tests run as
    // root or with RLIMIT_NICE 20; without, ledge says why it cannot).
    client.publish("spin/in", "short");
    if ledge_may_restore(pid) {
        wait_for_policy(pid, "fn-spin-0", NORMAL);
    } else {
        ledge.wait_for_log("cannot go back to normal priority", WAIT);
    }
    assert!(ledge.terminate().success(), "{}", ledge.log_text());
}

/// RLIMIT_NICE soft limit of 20 (/proc/<pid>/limits: "Max nice priority").
fn ledge_may_restore(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let cap_sys_nice = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 23) != 0);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let nice_limit = limits
        .lines()
        .find(|l| l.starts_with("Max nice priority"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<u64>().ok())
        .unwrap_or(0);
    cap_sys_nice || nice_limit >= 20
}

#[test]
fn an_invocation_long_within_one_fuel_slice_lowers_its_thread_too() {
    // A memory grow costs more time per unit of fuel than plain
    // instructions: a memory bomb ran 2-3 ms inside one slice and was never
    // checked, so it kept normal priority. The end of an invocation counts
    // as a check. (One 62.5 MiB grow: milliseconds, one slice.)
    let (_gateway, mut ledge, _client) =
        run_until_lowered("grow", "grow_once", "memory = \"64MiB\"");
    assert!(ledge.terminate().success(), "{}", ledge.log_text());
}
