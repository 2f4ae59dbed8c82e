//! The guest sees exactly the ABI docs/abi.md promises: the context and
//! event fields, the host calls and their return codes; the bindings for C
//! and AssemblyScript are rendered from the same contract table; and a
//! module is checked at load for what it may contain, with a message that
//! says what to change.

mod bindings;
mod context;
mod module_checks;
