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
//! - [`contract`] is the guest ABI as data (imports, codes, fields): the
//!   loader checks modules against it and the bindings are rendered from it.
//! - [`publish_budget`] is a function's `publish_rate` token bucket.
//! - [`priority`] lowers a worker thread's scheduling priority while it runs
//!   a long invocation, so short ones keep their latency beside it.
//! - `trap_site` rewrites a module that has a name section so a trap can
//!   name the function it happened in.
//!
//! wasm never runs on the async reactor: instances are driven by worker
//! threads (see `dispatch`), and a wall-clock timeout is enforced by running
//! the guest in fuel slices and checking the clock between slices, since
//! wasmi has no asynchronous interrupt.

pub mod abi;
pub mod contract;
mod error;
mod instance;
mod limits;
pub mod log_budget;
pub mod priority;
pub mod publish_budget;
mod trap_site;

use std::path::Path;
use std::sync::Arc;

use wasmi::{CompilationMode, Engine, ExternType, Linker, Module, ValType};

use contract::WasmType;

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
    /// The gateway's `[device] id`, for the `DEVICE_ID` context field.
    device_id: Option<Arc<str>>,
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
    /// Its `publish_rate` bucket, shared by all its instances; `None`:
    /// unlimited.
    pub publish_budget: Option<Arc<publish_budget::PublishBudget>>,
    /// Function names for trap reports, if the module has a name section
    /// (and so was instrumented to record where it is).
    trap_sites: Option<Arc<trap_site::TrapSites>>,
    runtime: Runtime,
}

impl Runtime {
    pub fn new(max_payload: usize) -> Result<Self, wasmi::Error> {
        let mut config = wasmi::Config::default();
        config
            .consume_fuel(true)
            // Translate everything at load: errors surface before the first
            // event and the first invocation pays no translation cost.
            .compilation_mode(CompilationMode::Eager)
            // The accepted proposals, explicitly (contract::WASM_FEATURES,
            // docs/abi.md): a wasmi upgrade must not change what loads.
            .wasm_mutable_global(true)
            .wasm_multi_value(true)
            .wasm_sign_extension(true)
            .wasm_saturating_float_to_int(true)
            .wasm_bulk_memory(true)
            .wasm_reference_types(true)
            .wasm_tail_call(true)
            .wasm_extended_const(true)
            // One memory per instance (the limiter allows one): say so at
            // load rather than fail to instantiate.
            .wasm_multi_memory(false)
            .wasm_custom_page_sizes(false)
            .wasm_wide_arithmetic(false);
        let engine = Engine::new(&config);
        let mut linker = Linker::new(&engine);
        abi::define_imports(&mut linker)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            max_payload,
            device_id: None,
        })
    }

    /// The same runtime, telling functions they run on `device_id` (the
    /// `DEVICE_ID` context field; without it the field is not found).
    pub fn with_device_id(mut self, device_id: &str) -> Self {
        self.device_id = Some(Arc::from(device_id));
        self
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
        let compile = |bytes: &[u8]| {
            Module::new(&self.engine, bytes).map_err(|e| {
                fail(format!(
                    "module {} is not valid WebAssembly: {e}",
                    spec.module_path.display()
                ))
            })
        };
        // The rewritten module, if there is one and it compiles; otherwise
        // the original, whose errors then name the bytes the user has.
        let (module, trap_sites) = match trap_site::instrument(&bytes) {
            Some((rewritten, sites)) => match Module::new(&self.engine, &rewritten[..]) {
                Ok(module) => (module, Some(Arc::new(sites))),
                Err(_) => (compile(&bytes)?, None),
            },
            None => (compile(&bytes)?, None),
        };
        check_abi(&module)
            .map_err(|e| fail(format!("module {}: {e}", spec.module_path.display())))?;
        let function = LoadedFunction {
            spec: Arc::new(spec),
            module,
            module_size: bytes.len(),
            log_budget: Arc::default(),
            publish_budget: None,
            trap_sites,
            runtime: self.clone(),
        };
        Instance::new(&function, Arc::new(CaptureSink::default()), true, true)
            .map_err(|e| fail(format!("{e}")))?;
        // After the trial instance: its `ledge_init` publishes are
        // discarded, and must not spend the function's first burst.
        let limit = function.spec.publish_limit.clone();
        Ok(LoadedFunction {
            publish_budget: limit.map(|l| Arc::new(publish_budget::PublishBudget::new(l))),
            ..function
        })
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

/// Checks imports and exports against the contract (docs/abi.md), with
/// messages that say what was expected.
fn check_abi(module: &Module) -> Result<(), String> {
    check_imports(module)?;
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => return Err("does not export its linear memory as `memory`".to_owned()),
    }
    for &(name, params, results, required) in contract::EXPORTS {
        check_export(
            module,
            name,
            &val_types(params),
            &val_types(results),
            required,
        )?;
    }
    Ok(())
}

/// Every import must be a `ledge_v1` function or a toolchain import ledge
/// provides, with the contract's signature. WASI imports are named all
/// together: a module built for WASI needs rebuilding, not one fix.
fn check_imports(module: &Module) -> Result<(), String> {
    let mut wasi = Vec::new();
    for import in module.imports() {
        let (from, name) = (import.module(), import.name());
        let full = format!("{from}.{name}");
        if contract::WASI_MODULES.contains(&from) {
            wasi.push(format!("`{full}`"));
            continue;
        }
        let expected = if from == contract::IMPORT_MODULE {
            contract::IMPORTS.iter().find(|i| i.name == name).map(|i| {
                (
                    val_types(&i.param_types()),
                    val_types(&i.result.into_iter().collect::<Vec<_>>()),
                )
            })
        } else {
            contract::TOOLCHAIN_IMPORTS
                .iter()
                .find(|i| i.module == from && i.name == name)
                .map(|i| {
                    (
                        val_types(i.params),
                        val_types(&i.result.iter().copied().collect::<Vec<_>>()),
                    )
                })
        };
        let Some((params, results)) = expected else {
            let known: Vec<&str> = contract::IMPORTS.iter().map(|i| i.name).collect();
            return Err(format!(
                "imports `{full}`, which ledge does not provide (ABI {}: {}; also env.abort and env.seed)",
                contract::IMPORT_MODULE,
                known.join(", ")
            ));
        };
        match import.ty() {
            ExternType::Func(ty) if ty.params() == params && ty.results() == results => {}
            ExternType::Func(ty) => {
                return Err(format!(
                    "imports `{full}` as {}, but ledge provides {}",
                    signature(ty.params(), ty.results()),
                    signature(&params, &results)
                ))
            }
            _ => {
                return Err(format!(
                    "imports `{full}` as something other than a function"
                ))
            }
        }
    }
    if !wasi.is_empty() {
        return Err(format!(
            "imports {}, which ledge does not provide: they are WASI, and a function gets \
             no files, stdout or process; build for wasm32-unknown-unknown (Rust) or with \
             -nostdlib (C), and use the ledge_v1 imports (docs/abi.md)",
            wasi.join(", ")
        ));
    }
    Ok(())
}

fn val_types(types: &[WasmType]) -> Vec<ValType> {
    types
        .iter()
        .map(|t| match t {
            WasmType::I32 => ValType::I32,
            WasmType::I64 => ValType::I64,
            WasmType::F64 => ValType::F64,
        })
        .collect()
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
