//! Imports compilers emit on their own, so their modules load unchanged:
//! AssemblyScript's `env.abort` and `env.seed`.

use wasmi::{Caller, Linker};

use super::host_call::{fill_random, settle, HostResult};
use super::HostState;

/// The imports AssemblyScript emits on its own (`env.abort`, `env.seed`),
/// so its modules load without `--use abort=...` tricks. They read memory
/// through the caller's export, not [`HostState::memory`], because
/// AssemblyScript runs top-level code (which may abort) as the start
/// function, before the instance is ready.
pub(super) fn define_imports(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "abort",
        |mut caller: Caller<'_, HostState>,
         message: i32,
         file: i32,
         line: i32,
         column: i32|
         -> HostResult<()> {
            let memory = caller
                .get_export("memory")
                .and_then(wasmi::Extern::into_memory);
            let text = |ptr: i32| {
                memory
                    .and_then(|m| as_string(m.data(&caller), ptr))
                    .unwrap_or_default()
            };
            let (message, file) = (text(message), text(file));
            let spec = &caller.data().spec;
            let message = spec.redact_and_cut(message.as_bytes(), MAX_ABORT_TEXT);
            let file = spec.redact_and_cut(file.as_bytes(), MAX_ABORT_TEXT);
            let message = if message.is_empty() {
                "(no message)".to_owned()
            } else {
                message
            };
            let at = if file.is_empty() {
                String::new()
            } else {
                format!(" at {file}:{}:{}", line as u32, column as u32)
            };
            settle(&mut caller, 0)?;
            Err(wasmi::Error::new(format!("abort: {message}{at}")))
        },
    )?;
    linker.func_wrap(
        "env",
        "seed",
        |mut caller: Caller<'_, HostState>| -> HostResult<f64> {
            let mut bits = [0u8; 8];
            fill_random(&mut bits)
                .map_err(|()| wasmi::Error::new("env.seed: the OS gave no random bytes"))?;
            settle(&mut caller, 0)?;
            // A positive integer below 2^53: exact as an f64, never 0 or NaN
            // (AssemblyScript reinterprets the bits as its PRNG's seed).
            Ok((u64::from_le_bytes(bits) >> 12) as f64 + 1.0)
        },
    )?;
    Ok(())
}

/// Most characters of an `abort` message or file name kept.
const MAX_ABORT_TEXT: usize = 1024;

/// An AssemblyScript string: UTF-16LE code units at `ptr`, whose byte
/// length is the u32 just before it (the object header's `rtSize`).
/// `None` for a null or out-of-bounds string.
pub(super) fn as_string(memory: &[u8], ptr: i32) -> Option<String> {
    let start = ptr as u32 as usize;
    let header = memory.get(start.checked_sub(4)?..start)?;
    let len = u32::from_le_bytes(header.try_into().ok()?) as usize;
    let len = len.min(MAX_ABORT_TEXT * 2) & !1;
    let bytes = memory.get(start..start.checked_add(len)?)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}
