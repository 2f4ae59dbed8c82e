//! `ledge run`.

use std::path::Path;

use super::{load_config_on, CliError};

pub fn run(config: &Path, board: Option<&str>) -> Result<(), CliError> {
    let plan = load_config_on(config, board)?;
    crate::time::started_ms();
    crate::logging::init_with_format(plan.log_level.as_deref(), plan.log_json);
    fewer_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("ledge-io")
        // Blocking helpers (start-up reads, handshakes) are short-lived; an
        // idle one is let go after a second rather than tokio's ten, so an
        // idle gateway does not keep their stacks resident.
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(crate::node::run(plan))
        .map_err(|e| CliError::Failed(e.into()))
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per
/// core), and every arena keeps at least a 132 KiB heap resident: with a
/// worker per function and the spool's sync threads that was a megabyte of
/// an idle gateway's RSS. Two arenas are shared by all threads instead; the
/// hot path's small allocations come from each thread's own cache (tcache)
/// without taking an arena lock. musl has no arenas, so nothing to do there.
fn fewer_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the
    // runtime and the workers start any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
