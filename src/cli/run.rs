//! `ledge run`.

use std::path::Path;

use super::{load_config_on, CliError};

pub fn run(config: &Path, board: Option<&str>) -> Result<(), CliError> {
    let plan = load_config_on(config, board)?;
    crate::time::started_ms();
    crate::logging::init_with_format(plan.log_level.as_deref(), plan.log_json);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("ledge-io")
        // Blocking helpers (start-up reads, handshakes, reading spilled
        // events back) are short-lived; an idle one is let go after a
        // second rather than tokio's ten: 4 fewer threads on an idle
        // quickstart gateway.
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(crate::node::run(plan))
        .map_err(|e| CliError::Failed(e.into()))
}
