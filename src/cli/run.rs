//! `ledge run`.

use std::path::Path;

use super::{load_config, CliError};

pub fn run(config: &Path) -> Result<(), CliError> {
    let plan = load_config(config)?;
    crate::logging::init(plan.log_level.as_deref());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("ledge-io")
        .build()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(crate::node::run(plan))
        .map_err(|e| CliError::Failed(e.into()))
}
