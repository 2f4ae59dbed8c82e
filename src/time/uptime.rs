//! When this process and this machine started, in UNIX ms: the facts that
//! tell a restarted ledge from one that only reconnected, and a rebooted
//! gateway from both. Read by the status document and the uplink's
//! presence message. The only file read is /proc/stat.

use std::sync::OnceLock;

/// When this ledge started (UNIX ms): fixed by the first call, which
/// `ledge run` makes as it starts.
pub fn started_ms() -> u64 {
    static STARTED: OnceLock<u64> = OnceLock::new();
    *STARTED.get_or_init(crate::event::unix_ms)
}

/// When the gateway booted (UNIX ms), from `btime` in /proc/stat.
pub fn boot_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_btime(&stat)
}

fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|secs| secs.trim().parse::<u64>().ok())
        .map(|secs| secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_comes_from_btime() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1764652800\nprocesses 9\n";
        assert_eq!(parse_btime(stat), Some(1_764_652_800_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }
}
