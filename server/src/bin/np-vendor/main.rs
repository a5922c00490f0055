//! np-vendor: the staff's command line. Offline it creates keys, signs keyrings and
//! documents, verifies envelopes and builds offline bundles; against an np-server it
//! manages devices, warranties, support cases, releases and audit entries.
//!
//! Every subcommand lives in its own file with its `Args` and `run()`; they return a
//! [`Failure`], and the exit code is decided in one place, [`Failure::exit_code`].

mod audit;
mod bundle_build;
mod bundle_get;
mod case;
mod client;
mod device;
mod device_import;
mod device_list;
mod failure;
mod files;
mod key;
mod keyring_server;
mod keyring_sign;
mod receipt;
mod release;
mod sign;
mod table;
mod verify;
mod words;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The staff command line of NP Update & Warranty.
#[derive(Parser)]
#[command(
    name = "np-vendor",
    version,
    after_help = "The server options of the online commands (--server, --token, --token-file, --ca-cert, --json) may come before the command too: np-vendor --server URL device list."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create signing keys (offline).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Sign a keyring with root keys (offline); draft and install keyrings on the server.
    #[command(subcommand)]
    Keyring(keyring_sign::KeyringCommand),
    /// Sign a document payload with one key (offline).
    Sign(sign::Args),
    /// Verify a signed document under a root key (offline).
    Verify(verify::Args),
    /// Build an offline bundle, or fetch one for a box from the server.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Manage devices and warranties on the server.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Publish and steer firmware releases on the server.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Support cases: open, follow up, RMA with its five-day clock, remote diagnostics.
    #[command(subcommand)]
    Case(case::CaseCommand),
    /// Upload the signed receipts of offline boxes.
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// Show the server's audit log.
    Audit(audit::Args),
    /// Write the man pages (for packagers).
    #[command(hide = true)]
    GenerateMan(np_server::cli::man::Args),
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Build an offline bundle from a signed manifest and its image (offline).
    Build(bundle_build::Args),
    /// Download a bundle for one box (by version, or for its signed request) from the server.
    Get(bundle_get::Args),
}

/// Was `--json` asked for (errors are then JSON too)?
fn wants_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// The server options every online command takes; those with a value.
const SERVER_OPTIONS: [&str; 4] = ["--server", "--token", "--token-file", "--ca-cert"];

/// The command line with the server options given before the subcommand
/// (`np-vendor --server URL device list`) moved after it, where each online command
/// takes them (they live in every online command, so that `--help` shows them there).
fn server_options_last(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut iter = args.into_iter();
    let mut out: Vec<std::ffi::OsString> = iter.next().into_iter().collect();
    let mut moved = Vec::new();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    while let Some(a) = iter.next() {
        let text = a.to_string_lossy();
        let name = text.split('=').next().unwrap_or_default();
        if text == "--json" {
            moved.push(a);
        } else if SERVER_OPTIONS.contains(&name) {
            let has_value = text.contains('=');
            moved.push(a);
            if !has_value {
                if let Some(v) = iter.next() {
                    moved.push(v);
                }
            }
        } else {
            rest.push(a);
            break;
        }
    }
    rest.extend(iter);
    if moved.is_empty() {
        out.extend(rest);
        return out;
    }
    // Before a `--`, so that they stay options.
    let end = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let tail = rest.split_off(end);
    out.extend(rest);
    out.extend(moved);
    out.extend(tail);
    out
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(server_options_last(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) if wants_json() && e.use_stderr() => {
            let f = failure::Failure::usage(e.kind().as_str().unwrap_or("bad usage"));
            let mut j = f.to_json();
            j["error"]["message"] = serde_json::Value::String(
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned(),
            );
            np_server::errln!("{j}");
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Key(c) => key::run(c),
        Command::Keyring(c) => keyring_sign::run(c),
        Command::Sign(a) => sign::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Bundle(BundleCommand::Build(a)) => bundle_build::run(a),
        Command::Bundle(BundleCommand::Get(a)) => bundle_get::run(a),
        Command::Device(c) => device::run(c),
        Command::Release(c) => release::run(c),
        Command::Case(c) => case::run(c),
        Command::Receipt(c) => receipt::run(c),
        Command::Audit(a) => audit::run(a),
        Command::GenerateMan(a) => {
            use clap::CommandFactory as _;
            np_server::cli::man::write_pages(
                Cli::command(),
                &np_server::cli::man::VENDOR_FOOTER,
                &a.out,
            )
            .map(|_| ())
            .map_err(|e| {
                failure::Failure::io(format!(
                    "cannot write man pages into {}: {e}",
                    a.out.display()
                ))
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if wants_json() {
                np_server::errln!("{}", f.to_json());
            } else {
                np_server::errln!("error: {}", f.message());
            }
            ExitCode::from(f.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn server_options_before_the_subcommand_move_after_it() {
        let v = |s: &[&str]| s.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            server_options_last(v(&[
                "np-vendor",
                "--server",
                "http://x",
                "--json",
                "--ca-cert=ca.pem",
                "device",
                "list",
                "--limit",
                "2"
            ])),
            v(&[
                "np-vendor",
                "device",
                "list",
                "--limit",
                "2",
                "--server",
                "http://x",
                "--json",
                "--ca-cert=ca.pem"
            ])
        );
        assert_eq!(
            server_options_last(v(&["np-vendor", "device", "list", "--server", "u"])),
            v(&["np-vendor", "device", "list", "--server", "u"])
        );
        assert_eq!(
            server_options_last(v(&["np-vendor", "--token", "t", "sign", "--", "x"])),
            v(&["np-vendor", "sign", "--token", "t", "--", "x"])
        );
        let parsed = Cli::try_parse_from(server_options_last(v(&[
            "np-vendor",
            "--server",
            "http://x",
            "device",
            "show",
            "NR-2000-123456-4",
        ])));
        assert!(parsed.is_ok());
    }

    #[test]
    fn every_option_has_help() {
        let missing = np_server::cli::undocumented_options(&Cli::command());
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }
}
