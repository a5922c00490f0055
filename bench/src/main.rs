//! np-bench: the fleet load generator. It registers simulated boxes (each with its own
//! Ed25519 device key, derived from its index so runs are repeatable) on a real np-server
//! on loopback, then has them check in with signed requests, bounded in count and time, and
//! prints check-ins per second, latency percentiles, errors, the server's RSS, and the
//! ratio to the machine's Ed25519 sign+verify bound measured with `openssl speed`.

mod fleet;
mod sign;
mod stats;

use clap::Parser;

/// Command line of np-bench.
#[derive(Parser, Debug)]
#[command(
    name = "np-bench",
    version,
    about = "Fleet load generator for np-server (loopback only)"
)]
enum Cli {
    /// Register boxes and measure signed check-ins at each fleet size.
    Fleet(fleet::Args),
    /// Print the signed device-API headers of one request (for `curl -H @FILE`).
    Sign(sign::Args),
}

fn main() -> std::process::ExitCode {
    let args = match Cli::parse() {
        Cli::Fleet(args) => args,
        Cli::Sign(args) => {
            return match sign::headers(&args) {
                Ok(text) => {
                    print!("{text}");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::from(3)
                }
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    match rt.block_on(fleet::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(3)
        }
    }
}
