//! The store's resource limiter: what a guest may allocate.
//!
//! wasmi's own `StoreLimits` with `trap_on_grow_failure` also traps when a
//! `memory.grow` merely lacks fuel in the current slice (wasmi charges a
//! grow by the bytes it adds), which ledge then reported as the memory
//! limit: a 64 MiB function failed an 8 MiB grow. This limiter traps only
//! for the limit itself and leaves every other failure to wasmi: a grow
//! short of fuel pauses the call as out of fuel (the host refuels and
//! resumes), and a host out of memory returns -1 to the guest.

use wasmi::errors::MemoryError;
use wasmi::ResourceLimiter;
use wasmi_core::LimiterError;

/// Elements a table may hold.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Limits of one store (one instance).
#[derive(Debug)]
pub struct GuestLimits {
    memory_limit: usize,
    /// Bytes the guest asked for when it hit the memory limit, if it did.
    pub(crate) memory_refused: Option<usize>,
}

impl GuestLimits {
    pub fn new(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            memory_refused: None,
        }
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if desired > self.memory_limit {
            self.memory_refused = Some(desired);
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn memory_grow_failed(&mut self, _error: &MemoryError) -> Result<(), LimiterError> {
        Ok(())
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}
