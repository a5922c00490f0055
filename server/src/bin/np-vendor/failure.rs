//! How a command fails, and the one place that maps a failure to an exit code:
//! 0 done, 1 refused or verification failed, 2 bad usage, 3 I/O or network failure.

use std::fmt::Display;

/// The class of a failure; it decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad input, a failed verification, or a 4xx answer from the server.
    Refused,
    /// The command line is incomplete or contradictory.
    Usage,
    /// A file or the network failed, or the server failed (5xx).
    Io,
}

/// A failed command: its class and one sentence for a person.
#[derive(Debug)]
pub struct Failure {
    kind: Kind,
    message: String,
    code: Option<String>,
    details: Option<serde_json::Value>,
}

impl Failure {
    /// Refused: bad input or failed verification (exit 1).
    pub fn refused(message: impl Display) -> Self {
        Failure {
            kind: Kind::Refused,
            message: message.to_string(),
            code: None,
            details: None,
        }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Display) -> Self {
        Failure {
            kind: Kind::Usage,
            message: message.to_string(),
            code: None,
            details: None,
        }
    }

    /// I/O or network failure (exit 3).
    pub fn io(message: impl Display) -> Self {
        Failure {
            kind: Kind::Io,
            message: message.to_string(),
            code: None,
            details: None,
        }
    }

    /// Adds the server's error code and details (for `--json`).
    pub fn with_code(mut self, code: &str, details: Option<serde_json::Value>) -> Self {
        self.code = Some(code.to_owned());
        self.details = details;
        self
    }

    /// The failure as JSON, for `--json`: `{"error": {"code", "message", "exit_code",
    /// "details"?}}`; the code is the server's, or `refused`, `usage`, `io`.
    pub fn to_json(&self) -> serde_json::Value {
        let code = self.code.clone().unwrap_or_else(|| {
            match self.kind {
                Kind::Refused => "refused",
                Kind::Usage => "usage",
                Kind::Io => "io",
            }
            .to_owned()
        });
        // The code has its own field; the message does not repeat it at its end.
        let message = self
            .message
            .trim_end()
            .strip_suffix(&format!("({code})"))
            .map(str::trim_end)
            .unwrap_or(&self.message);
        let mut e = serde_json::json!({
            "code": code,
            "message": message,
            "exit_code": self.exit_code(),
        });
        if let Some(d) = &self.details {
            e["details"] = d.clone();
        }
        serde_json::json!({ "error": e })
    }

    /// The same failure (kind, code, details) with another message.
    pub fn reworded(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    /// The per-row errors of a refused import (`details.errors`), one line each.
    pub fn row_errors(&self) -> String {
        let Some(rows) = self
            .details
            .as_ref()
            .and_then(|d| d.get("errors"))
            .and_then(serde_json::Value::as_array)
        else {
            return format!(": {}", self.message);
        };
        let mut s = String::from(":");
        for r in rows {
            let text = |k: &str| match r.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let words = crate::words::cli_message(&text("code"), &text("message"), Some(r));
            s.push_str(&format!(
                "\n  line {}: {words} ({})",
                text("line"),
                text("code")
            ));
        }
        s
    }

    /// The server's error code, when the server refused.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The sentence shown after `error: `.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The failure's class.
    #[cfg(test)]
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The process exit code: the only place codes are decided.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Refused => 1,
            Kind::Usage => 2,
            Kind::Io => 3,
        }
    }
}

/// Shorthand for a command's result.
pub type CmdResult = Result<(), Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_decided_here() {
        assert_eq!(Failure::refused("x").exit_code(), 1);
        assert_eq!(Failure::usage("x").exit_code(), 2);
        assert_eq!(Failure::io("x").exit_code(), 3);
        assert_eq!(Failure::io("disk").kind(), Kind::Io);
        let j = Failure::refused("no").with_code("lapsed", None).to_json();
        assert_eq!(j["error"]["code"], "lapsed");
        assert_eq!(j["error"]["exit_code"], 1);
        assert_eq!(Failure::usage("x").to_json()["error"]["code"], "usage");
        let j = Failure::refused("the token is not valid (unauthorized)")
            .with_code("unauthorized", None)
            .to_json();
        assert_eq!(j["error"]["message"], "the token is not valid");
    }
}
