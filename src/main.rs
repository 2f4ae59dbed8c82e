//! The `ledge` binary: parse the command line, run it, map the result to an
//! exit code. Everything else lives in the library.

use clap::Parser;

fn main() {
    // SIGPIPE's default action, which Rust's runtime sets to "ignore": a
    // command whose reader went away (`ledge status | head -1`) then ends
    // as `cat` or `ls` would, killed by the signal (status 141 in a shell),
    // instead of panicking on its next `println!`. `ledge run` ignores it
    // again: a daemon must see a peer that vanished as an error on that
    // connection, never die of it.
    set_sigpipe(libc::SIG_DFL);
    let cli = ledge::cli::Cli::parse();
    if matches!(cli.command, ledge::cli::Command::Run { .. }) {
        set_sigpipe(libc::SIG_IGN);
    }
    if let Err(e) = ledge::cli::execute(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

fn set_sigpipe(action: libc::sighandler_t) {
    // SAFETY: called before any thread starts, with a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, action);
    }
}
