//! Lambda's invocation contract: a failed asynchronous event is retried
//! with backoff exactly as configured, then goes to its failure
//! destination; batches are bounded, in order and checkpointed; a
//! synchronous request gets exactly one response, or an immediate
//! `throttled` beyond capacity.

mod batches;
mod retries;
mod synchronous;
