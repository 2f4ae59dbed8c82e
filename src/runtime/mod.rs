//! The wasm host: compiles each function's module once, creates warm
//! instances, and runs invocations inside their limits.
//!
//! - [`Runtime`] owns the wasmi engine and the `ledge_v1` imports (one linker
//!   for all functions).
//! - [`LoadedFunction`] is a validated, compiled module plus its settings;
//!   loading checks the ABI (exports, imports) and instantiates once, so a
//!   module that could never run is rejected before any event arrives.
//! - [`Instance`] is one live instance; the dispatcher's workers each keep one
//!   warm and replace it after a trap or timeout.
//!
//! wasm never runs on the async reactor: instances are driven by worker
//! threads (see `dispatch`), and a wall-clock timeout is enforced by running
//! the guest in fuel slices and checking the clock between slices, since
//! wasmi has no asynchronous interrupt.

pub mod abi;
mod error;
mod instance;
mod limits;
pub mod log_budget;

use std::path::Path;
use std::sync::Arc;

use wasmi::{CompilationMode, Engine, ExternType, Linker, Module, ValType};

pub use abi::{HostState, LogLine};
pub use error::{InvokeError, LoadError};
pub use instance::{Instance, Invocation, Outcome};

use crate::config::{files, FunctionSpec};
use crate::sinks::capture::CaptureSink;

/// The wasm engine and the host imports, shared by every function.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    /// Largest payload, publish or response (`broker.max_payload`).
    max_payload: usize,
}

/// A function whose module is validated and compiled, ready to instantiate.
#[derive(Clone)]
pub struct LoadedFunction {
    pub spec: Arc<FunctionSpec>,
    pub module: Module,
    /// Size of the module file in bytes.
    pub module_size: usize,
    /// The function's share of the log, shared by all its instances.
    pub log_budget: Arc<log_budget::LogBudget>,
    runtime: Runtime,
}

impl Runtime {
    pub fn new(max_payload: usize) -> Result<Self, wasmi::Error> {
        let mut config = wasmi::Config::default();
        config
            .consume_fuel(true)
            // Translate everything at load: errors surface before the first
            // event and the first invocation pays no translation cost.
            .compilation_mode(CompilationMode::Eager);
        let engine = Engine::new(&config);
        let mut linker = Linker::new(&engine);
        abi::define_imports(&mut linker)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            max_payload,
        })
    }

    /// Reads, validates and compiles a function's module, checks it against
    /// the ABI, and instantiates it once to prove it can start: the start
    /// function (bounded by fuel) and `ledge_init` (bounded by the
    /// function's timeout) run, with publishes captured and discarded and
    /// no GPIO. `ledge check` and start-up both come here, so a function
    /// that cannot start is named by the one and disabled by the other.
    pub fn load(&self, spec: FunctionSpec) -> Result<LoadedFunction, LoadError> {
        let (name, location) = (spec.name.clone(), spec.module_location.clone());
        let fail = |reason: String| LoadError {
            function: name.clone(),
            location: location.clone(),
            reason: one_line(&reason),
        };
        let bytes = read_module(&spec.module_path).map_err(fail)?;
        let module = Module::new(&self.engine, &bytes[..]).map_err(|e| {
            fail(format!(
                "module {} is not valid WebAssembly: {e}",
                spec.module_path.display()
            ))
        })?;
        check_abi(&module)
            .map_err(|e| fail(format!("module {}: {e}", spec.module_path.display())))?;
        let function = LoadedFunction {
            spec: Arc::new(spec),
            module,
            module_size: bytes.len(),
            log_budget: Arc::default(),
            runtime: self.clone(),
        };
        Instance::new(&function, Arc::new(CaptureSink::default()), true, true)
            .map_err(|e| fail(format!("{e}")))?;
        Ok(function)
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }
}

/// `text` on one line: wasmi's messages may span several, which would
/// split one log record.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A module file: a regular file of at most [`files::MAX_MODULE_FILE`].
pub fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    files::read_capped(path, files::MAX_MODULE_FILE).map_err(|e| format!("module {e}"))
}

/// The exports the host calls, with the signatures it calls them with.
const REQUIRED_EXPORTS: [(&str, &[ValType], &[ValType]); 2] = [
    ("ledge_alloc", &[ValType::I32], &[ValType::I32]),
    (
        "ledge_handle",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
    ),
];
const INIT_EXPORT: (&str, &[ValType], &[ValType]) = ("ledge_init", &[], &[ValType::I32]);

/// The `ledge_v1` imports a module may use.
const KNOWN_IMPORTS: [&str; 10] = [
    "log",
    "publish",
    "forward",
    "env",
    "context",
    "context_int",
    "now_ms",
    "respond",
    "gpio_write",
    "gpio_read",
];

/// Checks exports and imports against docs/abi.md, with messages that say
/// what was expected.
fn check_abi(module: &Module) -> Result<(), String> {
    for import in module.imports() {
        if import.module() != abi::IMPORT_MODULE || !KNOWN_IMPORTS.contains(&import.name()) {
            return Err(format!(
                "imports `{}.{}`, which ledge does not provide (ABI {}: {})",
                import.module(),
                import.name(),
                abi::IMPORT_MODULE,
                KNOWN_IMPORTS.join(", ")
            ));
        }
    }
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => return Err("does not export its linear memory as `memory`".to_owned()),
    }
    for (name, params, results) in REQUIRED_EXPORTS {
        check_export(module, name, params, results, true)?;
    }
    let (name, params, results) = INIT_EXPORT;
    check_export(module, name, params, results, false)
}

fn check_export(
    module: &Module,
    name: &str,
    params: &[ValType],
    results: &[ValType],
    required: bool,
) -> Result<(), String> {
    let expected = signature(params, results);
    match module.get_export(name) {
        None if required => Err(format!(
            "missing export `{name}` (expected a function {expected})"
        )),
        None => Ok(()),
        Some(ExternType::Func(ty)) if ty.params() == params && ty.results() == results => Ok(()),
        Some(ExternType::Func(ty)) => Err(format!(
            "export `{name}` has signature {}, expected {expected}",
            signature(ty.params(), ty.results())
        )),
        Some(_) => Err(format!(
            "export `{name}` is not a function (expected {expected})"
        )),
    }
}

fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(|t| format!("{t:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}
