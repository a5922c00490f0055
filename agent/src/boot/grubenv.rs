//! GRUB's environment block: exactly 1024 bytes, the header line
//! `# GRUB Environment Block`, then `NAME=VALUE` lines (a backslash escapes a backslash or
//! a newline inside a value), padded with `#` to the end. This is the format `grub-editenv`
//! and GRUB's `load_env` / `save_env` read and write; GRUB rewrites the block in place, so
//! its size never changes.

use std::fmt;

/// The size of every environment block.
pub const BLOCK_SIZE: usize = 1024;
/// The first line of every environment block.
pub const HEADER: &str = "# GRUB Environment Block\n";

/// Why bytes are not an environment block, or variables do not fit in one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("an environment block is {BLOCK_SIZE} bytes, this one is {0}")]
    Size(usize),
    #[error("it does not start with the line `# GRUB Environment Block`")]
    Header,
    #[error("line {line} is not NAME=VALUE")]
    Line { line: usize },
    #[error("the variables take {0} bytes, more than a {BLOCK_SIZE}-byte block holds")]
    TooLarge(usize),
    #[error("{0:?} is not a variable name (letters, digits and _ only)")]
    Name(String),
    #[error("line {line} is not UTF-8 text")]
    Utf8 { line: usize },
    #[error("{0} is set twice (GRUB would read the last, grub-editenv change the first)")]
    Duplicate(String),
    #[error("line {line} runs to the end of the block without a newline (GRUB ignores it)")]
    Unterminated { line: usize },
}

/// The variables of an environment block, in the order they appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubEnv {
    vars: Vec<(String, String)>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl GrubEnv {
    /// An empty block.
    pub fn new() -> GrubEnv {
        GrubEnv::default()
    }

    /// Parses a block; anything but exactly [`BLOCK_SIZE`] bytes with the header is refused.
    pub fn parse(bytes: &[u8]) -> Result<GrubEnv, EnvError> {
        if bytes.len() != BLOCK_SIZE {
            return Err(EnvError::Size(bytes.len()));
        }
        let body = bytes
            .strip_prefix(HEADER.as_bytes())
            .ok_or(EnvError::Header)?;
        let mut vars = Vec::new();
        let mut line = Vec::new();
        let mut lineno = 1;
        let mut escaped = false;
        let mut finish = |line: &mut Vec<u8>, lineno: usize| -> Result<(), EnvError> {
            // Comments and the `#` padding are skipped, as GRUB does.
            if !line.is_empty() && line[0] != b'#' {
                let text =
                    std::str::from_utf8(line).map_err(|_| EnvError::Utf8 { line: lineno })?;
                let (name, value) = text
                    .split_once('=')
                    .ok_or(EnvError::Line { line: lineno })?;
                if !valid_name(name) {
                    return Err(EnvError::Line { line: lineno });
                }
                if vars.iter().any(|(n, _): &(String, String)| n == name) {
                    return Err(EnvError::Duplicate(name.to_owned()));
                }
                vars.push((name.to_owned(), value.to_owned()));
            }
            line.clear();
            Ok(())
        };
        for &b in body {
            if escaped {
                line.push(b);
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'\n' {
                lineno += 1;
                finish(&mut line, lineno)?;
            } else {
                line.push(b);
            }
        }
        // The padding after the last newline is all `#`; anything else is a variable (or
        // junk) that GRUB and grub-editenv would silently drop.
        if escaped || line.iter().any(|&b| b != b'#') {
            return Err(EnvError::Unterminated { line: lineno + 1 });
        }
        Ok(GrubEnv { vars })
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (kept in place if it exists, appended otherwise).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), EnvError> {
        if !valid_name(name) {
            return Err(EnvError::Name(name.to_owned()));
        }
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    /// All variables, in order.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// The 1024-byte block.
    pub fn to_block(&self) -> Result<Vec<u8>, EnvError> {
        let mut out = HEADER.as_bytes().to_vec();
        for (name, value) in &self.vars {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            for &b in value.as_bytes() {
                if b == b'\\' || b == b'\n' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'\n');
        }
        if out.len() > BLOCK_SIZE {
            return Err(EnvError::TooLarge(out.len()));
        }
        out.resize(BLOCK_SIZE, b'#');
        Ok(out)
    }
}

impl fmt::Display for GrubEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, v)) in self.vars.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut e = GrubEnv::new();
        e.set("NP_ORDER", "b a").unwrap();
        e.set("NP_A_OK", "1").unwrap();
        e.set("odd", "back\\slash\nnewline").unwrap();
        e.set("NP_A_OK", "0").unwrap();
        let block = e.to_block().unwrap();
        assert_eq!(block.len(), BLOCK_SIZE);
        let text = String::from_utf8(block.clone()).unwrap();
        assert!(text.starts_with("# GRUB Environment Block\nNP_ORDER=b a\nNP_A_OK=0\n"));
        assert!(text.contains("odd=back\\\\slash\\\nnewline\n###"), "{text}");
        assert!(text.ends_with('#'));
        let back = GrubEnv::parse(&block).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.get("odd"), Some("back\\slash\nnewline"));
        assert_eq!(back.get("missing"), None);
        // An empty block is the header and 999 '#'.
        let empty = GrubEnv::new().to_block().unwrap();
        assert_eq!(
            empty.iter().filter(|b| **b == b'#').count(),
            BLOCK_SIZE - 24
        );
    }

    #[test]
    fn refuses_what_is_not_a_block() {
        let block = GrubEnv::new().to_block().unwrap();
        assert_eq!(GrubEnv::parse(&block[..1023]), Err(EnvError::Size(1023)));
        let mut long = block.clone();
        long.push(b'#');
        assert_eq!(GrubEnv::parse(&long), Err(EnvError::Size(1025)));
        assert_eq!(GrubEnv::parse(&[]), Err(EnvError::Size(0)));
        let mut bad = block.clone();
        bad[0] = b'X';
        assert_eq!(GrubEnv::parse(&bad), Err(EnvError::Header));
        let mut noeq = block.clone();
        noeq[25..30].copy_from_slice(b"junk\n");
        assert_eq!(GrubEnv::parse(&noeq), Err(EnvError::Line { line: 2 }));
        let mut e = GrubEnv::new();
        e.set("X", &"v".repeat(1000)).unwrap();
        assert_eq!(e.to_block(), Err(EnvError::TooLarge(1028)));
        assert_eq!(
            GrubEnv::new().set("A B", "1"),
            Err(EnvError::Name("A B".into()))
        );
    }

    /// Writes `body` after the header, padded with `#` to 1024 bytes.
    fn raw(body: &[u8]) -> Vec<u8> {
        let mut b = HEADER.as_bytes().to_vec();
        b.extend_from_slice(body);
        b.resize(BLOCK_SIZE, b'#');
        b
    }

    #[test]
    fn refuses_hostile_blocks() {
        // Non-UTF-8 is refused, not silently replaced (a rewrite would corrupt the value).
        assert_eq!(
            GrubEnv::parse(&raw(b"A=1\nB=\xff\xfe\n")),
            Err(EnvError::Utf8 { line: 3 })
        );
        // A name set twice: GRUB's load_env keeps the last, our set would change the first.
        assert_eq!(
            GrubEnv::parse(&raw(b"NP_ORDER=a b\nNP_ORDER=b a\n")),
            Err(EnvError::Duplicate("NP_ORDER".into()))
        );
        // A variable that spills to the end of the block: no newline before byte 1024.
        let mut spill = raw(b"A=1\n");
        let n = spill.len();
        spill[n - 5..].copy_from_slice(b"\nB=xy");
        assert_eq!(
            GrubEnv::parse(&spill),
            Err(EnvError::Unterminated { line: 4 })
        );
        let mut backslash = raw(b"");
        backslash[BLOCK_SIZE - 1] = b'\\';
        assert!(matches!(
            GrubEnv::parse(&backslash),
            Err(EnvError::Unterminated { .. })
        ));
        // Padding that is not `#` (zeros, spaces) is not a block GRUB wrote.
        let mut zeros = HEADER.as_bytes().to_vec();
        zeros.resize(BLOCK_SIZE, 0);
        assert_eq!(
            GrubEnv::parse(&zeros),
            Err(EnvError::Unterminated { line: 2 })
        );
        // Huge values only fit up to the block: 1024 - header - "X=" - newline.
        let mut e = GrubEnv::new();
        e.set("X", &"v".repeat(BLOCK_SIZE - HEADER.len() - 3))
            .unwrap();
        let full = e.to_block().unwrap();
        assert_eq!(full.len(), BLOCK_SIZE);
        assert_eq!(full[BLOCK_SIZE - 1], b'\n');
        assert_eq!(GrubEnv::parse(&full).unwrap(), e);
        e.set("X", &"v".repeat(BLOCK_SIZE - HEADER.len() - 2))
            .unwrap();
        assert_eq!(e.to_block(), Err(EnvError::TooLarge(BLOCK_SIZE + 1)));
    }

    /// `grub-editenv` reads what we write and we read what it writes (where it is installed).
    #[test]
    fn grub_editenv_agrees() {
        let Ok(out) = std::process::Command::new("grub-editenv")
            .arg("--version")
            .output()
        else {
            eprintln!("grub-editenv is not installed: round trip with it not checked");
            return;
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grubenv");
        let editenv = |args: &[&str]| {
            let out = std::process::Command::new("grub-editenv")
                .arg(&p)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        editenv(&["create"]);
        editenv(&["set", "NP_ORDER=b a", "NP_B_TRY=2", "saved_entry=x\\y"]);
        let ours = GrubEnv::parse(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(ours.get("NP_ORDER"), Some("b a"));
        assert_eq!(ours.get("NP_B_TRY"), Some("2"));
        assert_eq!(ours.get("saved_entry"), Some("x\\y"));
        let mut e = ours.clone();
        e.set("NP_A_OK", "1").unwrap();
        e.set("NP_ORDER", "a b").unwrap();
        std::fs::write(&p, e.to_block().unwrap()).unwrap();
        let listed = editenv(&["list"]);
        assert_eq!(
            listed,
            "NP_ORDER=a b\nNP_B_TRY=2\nsaved_entry=x\\y\nNP_A_OK=1\n"
        );
        // And the bytes grub-editenv writes for the same variables are ours.
        editenv(&["unset", "saved_entry"]);
        let mut e2 = e.clone();
        e2.vars.retain(|(n, _)| n != "saved_entry");
        assert_eq!(std::fs::read(&p).unwrap(), e2.to_block().unwrap());
    }
}
