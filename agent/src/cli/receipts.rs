//! `np-agent receipts --out DIR`: copies the signed receipts of the outbox into a folder
//! (a USB stick) for the vendor (`np-vendor receipt upload FILE...`), and says how many
//! and from which seq. The outbox keeps them: uploading one twice changes nothing.

use super::out::say;
use crate::config::Config;
use crate::error::AgentError;
use crate::receipts;
use np_fsutil as fsutil;
use std::path::PathBuf;

/// Arguments of `receipts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to copy the receipts into (it must exist).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Copies the receipts out.
pub fn run(cfg: &Config, a: &Args) -> Result<(), AgentError> {
    if !a.out.is_dir() {
        return Err(AgentError::Usage(format!(
            "{} is not a folder; create it first or choose another --out",
            a.out.display()
        )));
    }
    let io = |what: String| move |source| AgentError::Io { what, source };
    let stored = receipts::list(&cfg.state_dir).map_err(io(format!(
        "cannot list {}",
        receipts::outbox_dir(&cfg.state_dir).display()
    )))?;
    let (Some(first), Some(last)) = (stored.first(), stored.last()) else {
        say!("the outbox holds no receipts: nothing to copy");
        return Ok(());
    };
    let (first, last) = (first.seq, last.seq);
    let mut copied = 0usize;
    for s in &stored {
        let bytes =
            receipts::read(&s.path).map_err(io(format!("cannot read {}", s.path.display())))?;
        let dest = a.out.join(receipts::file_name(s.seq));
        match fsutil::write_new(&dest, &bytes, fsutil::PUBLIC_READ) {
            Ok(()) => copied += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if receipts::read(&dest).ok().as_deref() != Some(bytes.as_slice()) {
                    return Err(AgentError::Usage(format!(
                        "{} already exists and is not this box's receipt {}; choose another --out",
                        dest.display(),
                        s.seq
                    )));
                }
            }
            Err(source) => {
                return Err(AgentError::Io {
                    what: format!("cannot write {}", dest.display()),
                    source,
                })
            }
        }
    }
    let already = stored.len() - copied;
    let note = if already > 0 {
        format!(" ({already} of them already there)")
    } else {
        String::new()
    };
    say!(
        "{} receipt{} from seq {first} to {last} in {}{note}; upload them with `np-vendor receipt upload`",
        stored.len(),
        if stored.len() == 1 { "" } else { "s" },
        a.out.display()
    );
    Ok(())
}
