//! The `ledge` binary: parse the command line, run it, map the result to an
//! exit code. Everything else lives in the library.

use clap::Parser;

fn main() {
    let cli = ledge::cli::Cli::parse();
    if let Err(e) = ledge::cli::execute(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
