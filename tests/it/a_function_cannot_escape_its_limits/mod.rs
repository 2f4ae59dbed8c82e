//! A function cannot escape its limits: runaway loops, memory bombs, traps,
//! forbidden publishes, log floods, slow host calls and self-feeding loops
//! each fail only their own invocation (or their own load), with a clear
//! error, while every other function keeps serving.

mod in_a_running_gateway;
mod in_the_runtime;
mod recursive_loops;
