//! The `np-agent` binary: parses the command line and hands over to the library; the
//! exit code comes from `AgentError::exit_code` (0 done, 1 refused, 2 usage, 3 I/O).

use clap::Parser as _;
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = np_agent::cli::Cli::parse();
    np_agent::cli::init_logging();
    match np_agent::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output went away: stop quietly, as Unix tools do.
        Err(np_agent::error::AgentError::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(std::io::stderr(), "np-agent: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
