//! `np-agent apply FILE`: applies an offline bundle, with a progress bar on a terminal
//! and plain log lines otherwise.

use super::print_done;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::AgentError;
use crate::install::When;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `apply`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (tar or tar.gz) to apply.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Applies the bundle.
pub fn run(cfg: Config, clock: Arc<dyn Clock>, a: &Args) -> Result<(), AgentError> {
    let mut agent = super::online::open_agent(cfg, clock)?;
    super::online::start_box(&mut agent)?;
    let total = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
        ) {
            pb.set_style(style);
        }
        pb
    });
    let mut seen = 0u64;
    let mut logged = 0u64;
    let mut progress = |n: u64| {
        seen += n;
        match &bar {
            Some(pb) => pb.set_position(seen),
            None if total > 0 && seen * 10 / total > logged => {
                logged = seen * 10 / total;
                tracing::info!("read {seen} of {total} bytes of the bundle");
            }
            None => {}
        }
    };
    let r = crate::bundle::apply_file(&mut agent, &a.file, When::Now, &mut progress);
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    crate::checkin::report_outcome(&mut agent, &r);
    print_done(&r?)
}
