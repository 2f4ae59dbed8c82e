//! Deployments: the function store (versions, aliases), how it shapes the
//! functions a ledge runs, signed over-the-air updates, and the watch that
//! rolls a bad version back.
//!
//! Data flow: `ledge deploy` or an OTA document → [`store`] (durable first)
//! → the running ledge re-reads it ([`effective`]) and swaps its pipeline
//! the way a config reload does, so in-flight invocations finish on the old
//! version while new events go to the new one.

pub mod document;
pub mod effective;
pub mod moves;
pub mod ota;
pub mod probation;
pub mod store;
pub mod watch;
