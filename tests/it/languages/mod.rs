//! Functions in C, AssemblyScript and Rust build with their real toolchains
//! and run as documented; `ledge new` projects build and pass `ledge
//! invoke` as made; the shipped example modules are current and behave as
//! their docs say.

mod examples;
mod toolchains;
