//! `np-server`: init a data folder, serve the API, manage staff tokens. A thin layer over
//! `np_server::cli`; exit codes: 0 done, 1 refused, 2 bad usage, 3 I/O failure.

use clap::Parser;
use np_server::cli::{self, CliError};

/// The N-Partner update and warranty server.
#[derive(Debug, Parser)]
#[command(name = "np-server", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Creates a data folder: store, keys, signed keyring, first admin token.
    Init(cli::init::Args),
    /// Serves the staff and device API.
    Serve(cli::serve::Args),
    /// Creates, lists or revokes staff tokens.
    Token(cli::token::Args),
    /// Applies the schema migrations to a PostgreSQL store.
    Migrate(cli::migrate::Args),
    /// Copies a data folder's embedded store into an empty PostgreSQL database.
    MigrateStore(cli::migrate_store::Args),
    /// Writes the man pages (for packagers).
    #[command(hide = true)]
    GenerateMan(cli::man::Args),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sled=warn,tokio_postgres=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Init(a) => cli::init::run(a),
        Cmd::Token(a) => cli::token::run(a),
        Cmd::Migrate(a) => cli::migrate::run(a),
        Cmd::MigrateStore(a) => cli::migrate_store::run(a),
        Cmd::GenerateMan(a) => {
            use clap::CommandFactory as _;
            cli::man::write_pages(Cli::command(), &cli::man::SERVER_FOOTER, &a.out)
                .map(|_| ())
                .map_err(|e| {
                    CliError::Io(format!(
                        "cannot write man pages into {}: {e}",
                        a.out.display()
                    ))
                })
        }
        Cmd::Serve(a) => {
            init_logging();
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(cli::serve::run(a)),
                Err(e) => Err(CliError::Io(format!("cannot start the async runtime: {e}"))),
            }
        }
    };
    if let Err(e) = result {
        np_server::errln!("np-server: {e}");
        std::process::exit(e.exit_code());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_option_has_help() {
        let missing = cli::undocumented_options(&Cli::command());
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }
}
