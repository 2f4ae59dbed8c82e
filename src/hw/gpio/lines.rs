//! The named GPIO lines of a running ledge, as functions see them through
//! `gpio_write` and `gpio_read`.
//!
//! Outputs are requested at start in their safe state (`default`), so the
//! line never drives anything else before a function asks it to; they go
//! back to it when ledge stops and, with `restore_on_crash`, when the
//! function that last wrote the line traps, times out or runs out of memory
//! or fuel (a function that crashed mid-way cannot be trusted to have left
//! the relay where it meant to). A kill -9 or power cut restores nothing: on
//! a real chip the kernel releases the line and the hardware keeps or drops
//! the level as its wiring decides; pull the line to its safe state in
//! hardware if that matters.
//!
//! Inputs are owned by their sensor task (`sources::sensor::gpio`), which
//! publishes its debounced level here for `gpio_read`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::GpioOutputSpec;
use super::{open_chip, Backend, OutputConfig, OutputLine};

/// The value of an input cell before its first reading.
pub const UNKNOWN: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no GPIO line named `{0}`")]
    Unknown(String),
    #[error("GPIO line `{0}` is an input")]
    NotOutput(String),
    #[error("GPIO line `{0}` is not available: {1}")]
    Unavailable(String, String),
}

/// One output line and what ledge knows about it.
struct Output {
    spec: GpioOutputSpec,
    /// `None` if the line could not be requested (logged at start).
    line: Option<Box<dyn OutputLine>>,
    /// Why the request failed.
    error: String,
    /// The function that wrote the line last, for `restore_on_crash`.
    last_writer: Option<String>,
}

/// Every named line: outputs by name, and the debounced value of each
/// input by name.
pub struct GpioLines {
    outputs: HashMap<String, Mutex<Output>>,
    inputs: RwLock<HashMap<String, Arc<AtomicU8>>>,
}

impl GpioLines {
    /// Requests every output in its safe state. A line that cannot be
    /// requested is logged and left unavailable; the rest work.
    pub fn open(backend: &Backend, specs: &[GpioOutputSpec]) -> Self {
        let mut outputs = HashMap::new();
        for spec in specs {
            let config = OutputConfig {
                initial: spec.default,
                active_low: spec.active_low,
            };
            let consumer = format!("ledge:{}", spec.name);
            let requested = open_chip(backend, &spec.address.chip)
                .and_then(|chip| chip.request_output(spec.address.line, &consumer, config));
            let (line, error) = match requested {
                Ok(line) => {
                    log::info!(target: "ledge::gpio", "output {} on {} set to its safe state {}", spec.name, spec.address, u8::from(spec.default));
                    (Some(line), String::new())
                }
                Err(e) => {
                    log::error!(target: "ledge::gpio", "output {} on {} not available: {e}", spec.name, spec.address);
                    (None, e.to_string())
                }
            };
            let output = Output {
                spec: spec.clone(),
                line,
                error,
                last_writer: None,
            };
            outputs.insert(spec.name.clone(), Mutex::new(output));
        }
        Self {
            outputs,
            inputs: RwLock::new(HashMap::new()),
        }
    }

    /// Sets output `name` to logical `value` on behalf of `function`.
    pub fn write(&self, function: &str, name: &str, value: bool) -> Result<(), LineError> {
        let Some(output) = self.outputs.get(name) else {
            return Err(self.missing(name));
        };
        let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
        let Some(line) = output.line.as_mut() else {
            return Err(LineError::Unavailable(
                name.to_owned(),
                output.error.clone(),
            ));
        };
        line.set(value)
            .map_err(|e| LineError::Unavailable(name.to_owned(), e.to_string()))?;
        output.last_writer = Some(function.to_owned());
        log::debug!(target: "ledge::gpio", "{function} set {name} to {}", u8::from(value));
        Ok(())
    }

    /// The logical value of line `name`: an output's current value or an
    /// input's debounced one.
    pub fn read(&self, name: &str) -> Result<bool, LineError> {
        if let Some(output) = self.outputs.get(name) {
            let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
            let Some(line) = output.line.as_mut() else {
                return Err(LineError::Unavailable(
                    name.to_owned(),
                    output.error.clone(),
                ));
            };
            return line
                .get()
                .map_err(|e| LineError::Unavailable(name.to_owned(), e.to_string()));
        }
        let inputs = self.inputs.read().unwrap_or_else(|e| e.into_inner());
        match inputs.get(name).map(|cell| cell.load(Ordering::Acquire)) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(_) => Err(LineError::Unavailable(
                name.to_owned(),
                "not read yet".to_owned(),
            )),
            None => Err(LineError::Unavailable(
                name.to_owned(),
                "its sensor is not running".to_owned(),
            )),
        }
    }

    fn missing(&self, name: &str) -> LineError {
        let inputs = self.inputs.read().unwrap_or_else(|e| e.into_inner());
        if inputs.contains_key(name) {
            LineError::NotOutput(name.to_owned())
        } else {
            LineError::Unknown(name.to_owned())
        }
    }

    /// Publishes input `name`'s value cell (its sensor started).
    pub fn register_input(&self, name: &str, cell: Arc<AtomicU8>) {
        let mut inputs = self.inputs.write().unwrap_or_else(|e| e.into_inner());
        inputs.insert(name.to_owned(), cell);
    }

    /// Withdraws input `name` if `cell` is still the one registered (a
    /// reload may have registered a newer one).
    pub fn unregister_input(&self, name: &str, cell: &Arc<AtomicU8>) {
        let mut inputs = self.inputs.write().unwrap_or_else(|e| e.into_inner());
        if inputs.get(name).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            inputs.remove(name);
        }
    }

    /// `function` crashed: every `restore_on_crash` output it wrote last
    /// goes back to its safe state. Returns their names.
    pub fn function_crashed(&self, function: &str) -> Vec<String> {
        let mut restored = Vec::new();
        for (name, output) in &self.outputs {
            let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
            if !output.spec.restore_on_crash || output.last_writer.as_deref() != Some(function) {
                continue;
            }
            if restore(name, &mut output) {
                log::warn!(target: "ledge::gpio", "{function} crashed after writing {name}: {name} restored to its safe state {}", u8::from(output.spec.default));
                restored.push(name.clone());
            }
        }
        restored
    }

    /// Every output back to its safe state (ledge is stopping).
    pub fn restore_all(&self) {
        for (name, output) in &self.outputs {
            let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
            if restore(name, &mut output) {
                log::info!(target: "ledge::gpio", "output {name} restored to its safe state {}", u8::from(output.spec.default));
            }
        }
    }
}

fn restore(name: &str, output: &mut Output) -> bool {
    let safe = output.spec.default;
    let Some(line) = output.line.as_mut() else {
        return false;
    };
    output.last_writer = None;
    match line.set(safe) {
        Ok(()) => true,
        Err(e) => {
            log::error!(target: "ledge::gpio", "cannot restore {name} to its safe state: {e}");
            false
        }
    }
}
