//! The `np-agent` binary: parses the command line and hands over to the library; the
//! exit code comes from `AgentError::exit_code` (0 done, 1 refused, 2 usage, 3 I/O).

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = np_agent::cli::Cli::parse();
    np_agent::cli::init_logging();
    match np_agent::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("np-agent: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
