//! A function cannot escape its limits: runaway loops, memory bombs, traps,
//! forbidden publishes, log floods, slow host calls and self-feeding loops
//! each fail only their own invocation (or their own load), with a clear
//! error, while every other function keeps serving; a long invocation
//! yields the CPU to short ones, and a function publishes no faster than
//! its `publish_rate`.

mod in_a_running_gateway;
mod in_the_runtime;
mod long_invocations_yield;
mod publish_rate;
mod recursive_loops;
