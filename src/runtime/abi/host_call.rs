//! What every host call shares: reading and writing the guest's memory
//! (a bad pointer traps, naming the call), charging the host's work to the
//! guest's fuel, and stopping at the deadline.

use std::time::Instant;

use wasmi::{Caller, Memory};

use super::{DeadlinePassed, HostState, IMPORT_MODULE};

/// Fuel every host call costs on top of its `call` instruction, and the
/// bytes of host work one more unit of fuel pays for: a guest's fuel (and
/// so its slices and its `max_fuel`) reflects the work it makes the host do.
const HOST_CALL_FUEL: u64 = 100;
const HOST_BYTES_PER_FUEL: u64 = 16;

pub(super) type HostResult<T> = Result<T, wasmi::Error>;

/// The guest's bytes at `ptr..ptr+len`, or a trap naming the host call.
pub(super) fn guest_slice<'m>(
    memory: &'m [u8],
    ptr: i32,
    len: i32,
    call: &str,
) -> HostResult<&'m [u8]> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    start
        .checked_add(len)
        .and_then(|end| memory.get(start..end))
        .ok_or_else(|| out_of_bounds(call, start, len, memory.len()))
}

pub(super) fn guest_slice_mut<'m>(
    memory: &'m mut [u8],
    ptr: i32,
    len: i32,
    call: &str,
) -> HostResult<&'m mut [u8]> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let size = memory.len();
    start
        .checked_add(len)
        .and_then(|end| memory.get_mut(start..end))
        .ok_or_else(|| out_of_bounds(call, start, len, size))
}

pub(super) fn out_of_bounds(call: &str, start: usize, len: usize, size: usize) -> wasmi::Error {
    wasmi::Error::new(format!(
        "{IMPORT_MODULE}.{call}: bytes {start}..{} are outside guest memory ({size} bytes)",
        start.saturating_add(len)
    ))
}

pub(super) fn memory_of(caller: &Caller<'_, HostState>, call: &str) -> HostResult<Memory> {
    caller.data().memory.ok_or_else(|| {
        wasmi::Error::new(format!(
            "{IMPORT_MODULE}.{call}: called from the module's start function, which cannot call ledge (do it in ledge_init)"
        ))
    })
}

/// Copies `value` into the guest buffer with the "return full length, copy
/// what fits" protocol shared by `env` and `context`.
pub(super) fn copy_out(buffer: &mut [u8], value: &[u8]) -> i32 {
    let n = value.len().min(buffer.len());
    buffer[..n].copy_from_slice(&value[..n]);
    i32::try_from(value.len()).unwrap_or(i32::MAX)
}

/// Stops the guest if its deadline has passed: checked before a host call
/// acts and after it worked, so no host call starts late and a slow one
/// overruns the timeout by at most itself.
pub(super) fn check_deadline(state: &HostState) -> HostResult<()> {
    match state.call.deadline {
        Some(deadline) if Instant::now() >= deadline => Err(wasmi::Error::host(DeadlinePassed)),
        _ => Ok(()),
    }
}

/// Ends a host call that handled `bytes` bytes of guest data: charges the
/// work to the guest's fuel (what the slice cannot pay becomes debt the
/// invocation loop accounts) and checks the deadline.
pub(super) fn settle(caller: &mut Caller<'_, HostState>, bytes: usize) -> HostResult<()> {
    let cost = HOST_CALL_FUEL + bytes as u64 / HOST_BYTES_PER_FUEL;
    let left = caller.get_fuel()?;
    if left < cost {
        caller.data_mut().call.fuel_debt += cost - left;
    }
    caller.set_fuel(left.saturating_sub(cost))?;
    check_deadline(caller.data())
}

/// Random bytes from the operating system.
pub(super) fn fill_random(buffer: &mut [u8]) -> Result<(), ()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new().fill(buffer).map_err(|_| ())
}
