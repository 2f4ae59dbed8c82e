//! One live wasm instance and the invocation loop that keeps it in bounds.
//!
//! The guest runs in fuel slices; between slices the host checks the wall
//! clock and the fuel budget. The slice size adapts to how fast this machine
//! burns fuel (a Pi 4 is 3–6× slower than x86, a debug build 30× slower),
//! aiming at about a millisecond per slice: that bounds how late a timeout
//! fires without paying for a clock read every few instructions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmi::{
    Global, Memory, Store, TrapCode, TypedFunc, TypedResumableCall, WasmParams, WasmResults,
};

use super::abi::{DeadlinePassed, HostState, LogLine};
use super::contract;
use super::priority;
use super::trap_site::{TrapSites, SITE_EXPORT};
use super::{InvokeError, LoadedFunction};
use crate::event::{unix_ms, Event};
use crate::sinks::Sinks;

/// Fuel per slice, shared by every instance in the process so what one
/// instance learns about this machine's speed serves all. Starts small
/// (~25 µs on x86, a few ms on the slowest boards) and grows.
static SLICE_FUEL: AtomicU64 = AtomicU64::new(100_000);
/// Bounds of the adaptive slice.
const MIN_SLICE: u64 = 10_000;
const MAX_SLICE: u64 = 50_000_000;
/// The slice duration the adaptation aims for.
const TARGET_SLICE: Duration = Duration::from_millis(1);
/// A thread at low priority runs slices this many times shorter, and
/// offers the CPU between them (`priority::let_others_run`).
const LOW_SLICE_DIVISOR: u64 = 8;
/// Fuel for instantiation (data segments, a start function): a module whose
/// start function loops must fail to instantiate, not hang the worker or
/// `ledge check`. wasmi cannot pause a start function, so this is its only
/// bound: about 30 ms in a release build on x86, 0.2 s on a Pi 4, 1 s in a
/// debug build; far more than copying data segments (64 bytes per fuel) or
/// a constructor needs.
const INSTANTIATE_FUEL: u64 = 10_000_000;
/// `ledge_handle` statuses with a meaning of their own; any other non-zero
/// status is a failure the retry policy may retry.
const STATUS_OK: i32 = contract::constant("STATUS_OK");
const STATUS_PERMANENT: i32 = contract::constant("STATUS_PERMANENT");
/// A handler's error text is cut here (after redaction): it is logged,
/// reported and kept in dead letters.
const MAX_ERROR_TEXT: usize = 4 << 10;

/// One request to run a function.
pub struct Invocation {
    pub request_id: String,
    pub event: Arc<Event>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// What one invocation produced.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Vec<u8>, InvokeError>,
    pub duration: Duration,
    pub fuel_used: u64,
    /// Lines the function logged, when the instance captures logs
    /// (`ledge invoke`) or tails them; empty otherwise (they went to the
    /// log).
    pub logs: Vec<LogLine>,
    /// Lines over the per-invocation limit, dropped.
    pub logs_dropped: u32,
    /// Highest spool seq the invocation forwarded, to wait on.
    pub forward_seq: Option<u64>,
    /// The instance's linear memory after the call (it only grows, so its
    /// peak): Lambda's "Max Memory Used".
    pub memory_bytes: usize,
    /// Publishes refused for want of `publish_rate` tokens.
    pub publishes_throttled: u32,
}

/// A warm instance of one function.
pub struct Instance {
    store: Store<HostState>,
    alloc: TypedFunc<i32, i32>,
    handle: TypedFunc<(i32, i32), i32>,
    memory: Memory,
    /// Where the guest is (an instrumented module's function index) and the
    /// names to report it by; `None` for a module without names.
    site: Option<(Global, Arc<TrapSites>)>,
    /// Fuel spent by this instance over its life.
    fuel_used: u64,
    /// Fuel left in the current invocation's `max_fuel` budget, if any.
    fuel_left: Option<u64>,
    /// When the invocation in progress started; `None` during `ledge_init`
    /// and between invocations (neither yields the CPU).
    invocation_started: Option<Instant>,
    /// The invocation in progress ran past [`priority::LONG_INVOCATION`]
    /// and asked for its thread to yield (the thread stays low until an
    /// invocation ends short).
    yielded: bool,
}

impl Instance {
    /// Instantiates `function`. With `run_init`, also calls the guest's
    /// optional `ledge_init` export.
    pub fn new(
        function: &LoadedFunction,
        sinks: impl Into<Sinks>,
        capture_logs: bool,
        run_init: bool,
    ) -> Result<Self, InvokeError> {
        let spec = Arc::clone(&function.spec);
        let runtime = &function.runtime;
        let state = HostState::new(
            spec,
            runtime.device_id.clone(),
            sinks.into(),
            runtime.max_payload,
            capture_logs,
            Arc::clone(&function.log_budget),
            function.publish_budget.clone(),
        );
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|state| &mut state.limits);
        let instantiate = |e: wasmi::Error| InvokeError::Instantiate(e.to_string());
        store.set_fuel(INSTANTIATE_FUEL).map_err(instantiate)?;
        let started = runtime
            .linker
            .instantiate_and_start(&mut store, &function.module);
        let instance = started.map_err(|e| {
            let limits = &store.data().limits;
            match (e.as_trap_code(), limits.memory_refused) {
                (_, Some(wanted)) => InvokeError::Instantiate(format!(
                    "the module needs {wanted} bytes of memory, over its limit of {} bytes (`memory`)",
                    store.data().spec.memory_limit
                )),
                (Some(TrapCode::OutOfFuel), None) => InvokeError::Instantiate(format!(
                    "start function did not finish within {INSTANTIATE_FUEL} fuel (does it loop?)"
                )),
                _ => instantiate(e),
            }
        })?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| InvokeError::Instantiate("no `memory` export".to_owned()))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&store, "ledge_alloc")
            .map_err(instantiate)?;
        let handle = instance
            .get_typed_func::<(i32, i32), i32>(&store, "ledge_handle")
            .map_err(instantiate)?;
        store.data_mut().memory = Some(memory);
        let site = function.trap_sites.as_ref().and_then(|sites| {
            let global = instance.get_global(&store, SITE_EXPORT)?;
            Some((global, Arc::clone(sites)))
        });
        let mut this = Self {
            store,
            alloc,
            handle,
            memory,
            site,
            fuel_used: 0,
            fuel_left: None,
            invocation_started: None,
            yielded: false,
        };
        if run_init {
            if let Ok(init) = instance.get_typed_func::<(), i32>(&this.store, "ledge_init") {
                this.begin_call(None, 1);
                match this.run(init, ()) {
                    Ok(0) => {}
                    Ok(status) => {
                        let state = this.store.data();
                        let response = &state.call.response;
                        let reason = if response.is_empty() {
                            format!("ledge_init returned {status}")
                        } else {
                            let text = state.spec.redact_and_cut(response, MAX_ERROR_TEXT);
                            format!("ledge_init returned {status}: {text}")
                        };
                        return Err(InvokeError::Instantiate(reason));
                    }
                    Err(e) => return Err(InvokeError::Instantiate(format!("ledge_init: {e}"))),
                }
            }
        }
        Ok(this)
    }

    /// Keep the lines the next invocations log in their
    /// [`Outcome::logs`] too (they still go to the log): Lambda's `Tail`.
    pub fn tail_logs(&mut self, on: bool) {
        self.store.data_mut().tail_logs = on;
    }

    /// Runs one invocation to completion, failure, or timeout.
    pub fn invoke(&mut self, invocation: &Invocation) -> Outcome {
        let started = Instant::now();
        self.begin_call(Some(invocation), invocation.attempt);
        let fuel_before = self.fuel_used;
        self.invocation_started = Some(started);
        let result = self.call_handler(&invocation.event.payload);
        self.invocation_started = None;
        let duration = started.elapsed();
        // A thread lowered by a long invocation stays low until one of
        // its function's invocations ends short: a function that runs long
        // every time (a spin, a memory bomb) then starts each invocation
        // low instead of taking its first slice at the short functions'
        // priority. An invocation that never reached a slice boundary can
        // be long too (a memory bomb's grows cost more time per unit of
        // fuel than instructions: 2-3 ms in one slice), so the end counts
        // as a check. `restore_this_thread` is a thread-local read unless
        // the thread is low.
        let ran_long = std::mem::take(&mut self.yielded) || duration >= priority::LONG_INVOCATION;
        if ran_long {
            let _ = priority::yield_this_thread();
        } else {
            let name = &self.store.data().spec.name;
            if let Err(e) = priority::restore_this_thread(name) {
                log::warn!(target: "ledge::invoke", "{name}: {e}");
            }
        }
        let memory_bytes = self.memory.data_size(&self.store);
        let host = self.store.data_mut();
        let spec = &host.spec;
        let state = &mut host.call;
        let result = match result {
            Ok(STATUS_OK) => Ok(std::mem::take(&mut state.response)),
            Ok(status) => {
                let message = if state.response.is_empty() {
                    format!("handler returned status {status}")
                } else {
                    spec.redact_and_cut(&state.response, MAX_ERROR_TEXT)
                };
                Err(if status == STATUS_PERMANENT {
                    InvokeError::Permanent(message)
                } else {
                    InvokeError::Handler(message)
                })
            }
            Err(e) => Err(e),
        };
        host.log_budget.summarise(&spec.name);
        if let Some(budget) = &host.publish_budget {
            budget.summarise(&spec.name);
        }
        // A crash (not an error the handler returned) may leave an actuator
        // wherever the function had got to: put its lines back to safe.
        if let (Err(e), Some(gpio)) = (&result, &host.sinks.gpio) {
            if e.poisons_instance() {
                gpio.function_crashed(&spec.name);
            }
        }
        state.event = None;
        Outcome {
            result,
            duration,
            fuel_used: self.fuel_used - fuel_before,
            logs: std::mem::take(&mut state.logs),
            logs_dropped: state.logs_dropped,
            forward_seq: state.forward_seq,
            memory_bytes,
            publishes_throttled: state.publishes_throttled,
        }
    }

    fn begin_call(&mut self, invocation: Option<&Invocation>, attempt: u32) {
        let state = self.store.data_mut();
        let timeout = state.spec.timeout;
        let call = &mut state.call;
        call.request_id.clear();
        call.event = None;
        match invocation {
            Some(invocation) => {
                call.request_id.push_str(&invocation.request_id);
                call.event = Some(Arc::clone(&invocation.event));
            }
            None => call.request_id.push_str("init"),
        }
        call.attempt = attempt;
        call.deadline = Some(Instant::now() + timeout);
        call.deadline_unix_ms = unix_ms() + timeout.as_millis() as u64;
        call.response.clear();
        call.log_lines = 0;
        call.log_bytes = 0;
        call.logs_dropped = 0;
        call.fuel_debt = 0;
        call.publishes = 0;
        call.publishes_throttled = 0;
        call.gpio_writes = 0;
        call.forward_seq = None;
        call.logs.clear();
        self.fuel_left = state.spec.max_fuel;
    }

    fn call_handler(&mut self, payload: &[u8]) -> Result<i32, InvokeError> {
        let len = i32::try_from(payload.len())
            .map_err(|_| InvokeError::Trap("payload larger than 2 GiB".to_owned()))?;
        let ptr = self.run(self.alloc, len)?;
        let start = ptr as u32 as usize;
        let memory = self.memory.data_mut(&mut self.store);
        let size = memory.len();
        let target = start
            .checked_add(payload.len())
            .and_then(|end| memory.get_mut(start..end))
            .ok_or_else(|| {
                InvokeError::Trap(format!(
                    "ledge_alloc({len}) returned {start}, outside guest memory ({size} bytes)"
                ))
            })?;
        target.copy_from_slice(payload);
        self.run(self.handle, (ptr, len))
    }

    /// Calls a guest function in fuel slices until it returns, traps, runs
    /// past the deadline, or spends its fuel budget.
    fn run<P: WasmParams, R: WasmResults>(
        &mut self,
        func: TypedFunc<P, R>,
        params: P,
    ) -> Result<R, InvokeError> {
        let mut slice = self.next_slice(0)?;
        let mut slice_started = Instant::now();
        let mut call = func
            .call_resumable(&mut self.store, params)
            .map_err(|e| self.classify(e))?;
        loop {
            match call {
                TypedResumableCall::Finished(result) => {
                    self.account(slice);
                    return Ok(result);
                }
                TypedResumableCall::HostTrap(trap) => {
                    self.account(slice);
                    let error = trap.host_error();
                    if error.downcast_ref::<DeadlinePassed>().is_some() {
                        return Err(InvokeError::Timeout(self.store.data().spec.timeout));
                    }
                    return Err(self.trap(error.to_string()));
                }
                TypedResumableCall::OutOfFuel(out_of_fuel) => {
                    self.account(slice);
                    let now = Instant::now();
                    // A low-priority thread's slices are short and its wall
                    // time includes waiting for others: neither says how
                    // fast this machine burns fuel.
                    if !priority::runs_low() {
                        self.adapt_slice(now - slice_started, slice);
                    }
                    slice_started = now;
                    self.check_deadline(now)?;
                    self.yield_if_long(now);
                    // A `memory.grow` is charged by the bytes it adds and
                    // waits for a slice that can pay for it whole.
                    slice = self.next_slice(out_of_fuel.required_fuel())?;
                    // Dropping `out_of_fuel` on an early return above
                    // abandons the call; the instance is then replaced.
                    call = out_of_fuel
                        .resume(&mut self.store)
                        .map_err(|e| self.classify(e))?;
                }
            }
        }
    }

    /// Sets the fuel for the next slice: at least `required` (what the
    /// paused instruction needs), bounded by the remaining budget.
    fn next_slice(&mut self, required: u64) -> Result<u64, InvokeError> {
        let mut slice = SLICE_FUEL.load(Ordering::Relaxed);
        if priority::runs_low() {
            slice = (slice / LOW_SLICE_DIVISOR).max(MIN_SLICE);
        }
        let slice = slice.max(required);
        let slice = match self.fuel_left {
            Some(left) if left == 0 || left < required => {
                let budget = self.store.data().spec.max_fuel.unwrap_or(0);
                return Err(InvokeError::FuelExhausted(budget));
            }
            Some(left) => left.min(slice),
            None => slice,
        };
        self.store
            .set_fuel(slice)
            .map_err(|e| InvokeError::Trap(e.to_string()))?;
        Ok(slice)
    }

    /// Records the fuel the last slice used, with what host calls charged
    /// beyond it.
    fn account(&mut self, slice: u64) {
        let left = self.store.get_fuel().unwrap_or(0);
        let debt = std::mem::take(&mut self.store.data_mut().call.fuel_debt);
        let used = slice.saturating_sub(left) + debt;
        self.fuel_used += used;
        if let Some(left) = self.fuel_left.as_mut() {
            *left = left.saturating_sub(used);
        }
    }

    /// Halves or doubles the slice when a full slice took far longer or
    /// far shorter than the target.
    fn adapt_slice(&self, took: Duration, slice: u64) {
        let adapted = if took > TARGET_SLICE * 2 {
            (slice / 2).max(MIN_SLICE)
        } else if took < TARGET_SLICE / 2 {
            (slice * 2).min(MAX_SLICE)
        } else {
            return;
        };
        SLICE_FUEL.store(adapted, Ordering::Relaxed);
    }

    /// Lowers the thread's priority once the invocation in progress has
    /// run long (see [`priority`]); checked between slices, so it costs no
    /// clock read of its own and short invocations never get here.
    fn yield_if_long(&mut self, now: Instant) {
        // Publishes made so far leave now, not when the invocation ends.
        crate::sinks::local::flush_wakes();
        let long = self
            .invocation_started
            .is_some_and(|started| now.duration_since(started) >= priority::LONG_INVOCATION);
        if long && !self.yielded {
            self.yielded = true;
            // A refusal is logged once by `priority`, and the thread then
            // runs on at its priority: nothing for this invocation to do.
            let _ = priority::yield_this_thread();
        }
        if priority::runs_low() {
            priority::let_others_run();
        }
    }

    fn check_deadline(&self, now: Instant) -> Result<(), InvokeError> {
        let state = self.store.data();
        match state.call.deadline {
            Some(deadline) if now >= deadline => Err(InvokeError::Timeout(state.spec.timeout)),
            _ => Ok(()),
        }
    }

    fn classify(&self, error: wasmi::Error) -> InvokeError {
        let spec = &self.store.data().spec;
        match error.as_trap_code() {
            Some(TrapCode::GrowthOperationLimited)
                if self.store.data().limits.memory_refused.is_some() =>
            {
                InvokeError::MemoryLimit(spec.memory_limit)
            }
            Some(TrapCode::OutOfFuel) => InvokeError::FuelExhausted(spec.max_fuel.unwrap_or(0)),
            _ => self.trap(error.to_string()),
        }
    }

    /// A trap, naming the function the guest was in when the module says.
    fn trap(&self, message: String) -> InvokeError {
        let name = self.site.as_ref().and_then(|(global, sites)| {
            let index = global.get(&self.store).i32()?;
            sites.name(index as u32)
        });
        match name {
            Some(name) => InvokeError::Trap(format!("{message} (in function `{name}`)")),
            None => InvokeError::Trap(message),
        }
    }
}
