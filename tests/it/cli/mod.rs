//! The command line as a user meets it: exit codes (0 ok, 1 the work
//! failed, 2 the input was wrong), `ledge check` and `ledge invoke` output,
//! `ledge invoke` as a test bench, the quickstart and the README's commands
//! as written, and quiet ends on closed pipes.

mod check_and_invoke;
mod closed_pipes;
mod invoke_bench;
