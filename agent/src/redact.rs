//! Redaction of a diagnostics report (docs/formats.md, "Diagnostics"): no private key, token
//! or secret from the config ever leaves the box in one.
//!
//! Two kinds of rule, both replacing with [`REDACTED`]:
//! - exact secrets this box knows: the device key file's text and its seed in every usual
//!   encoding, and the secrets in the config (the user and password of `server.url`, its
//!   secret-looking query values, values assigned to secret-looking names in the commands);
//! - shapes of secrets in free text: PEM private key blocks (to the end of the text when the
//!   block is cut), the user and password of any URL (`scheme://user:pass@host`), `Bearer`/
//!   `Basic` credentials, and values given to secret-looking names (`token=`, `password:`,
//!   `"api_key": "..."`).

use crate::config::Config;
use base64::Engine as _;
use serde_json::Value;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Exact secrets shorter than this are left to the shape rules (replacing every `ab` in a
/// report would make it unreadable).
const MIN_EXACT: usize = 4;
/// Names whose values are secrets (lower case, matched inside a word).
const SECRET_NAMES: [&str; 12] = [
    "token",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "privatekey",
    "credential",
];

/// The secrets of one box, and the rules that find secrets in free text.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Longest first, so that a secret holding another is replaced whole.
    exact: Vec<String>,
}

impl Secrets {
    /// The secrets of `cfg`: its device key file (when readable) and its config values.
    pub fn of(cfg: &Config) -> Secrets {
        let key_text = std::fs::read_to_string(&cfg.device_key).ok();
        let mut config_values: Vec<String> = Vec::new();
        if let Some(s) = &cfg.server {
            config_values.extend(url_secrets(&s.url));
        }
        for cmd in [
            &cfg.install.health_command,
            &cfg.install.activate_command,
            &cfg.install.reboot_command,
        ]
        .into_iter()
        .flatten()
        {
            config_values.extend(assigned_values(cmd));
            config_values.extend(url_secrets(cmd));
        }
        Secrets::new(key_text.as_deref(), config_values)
    }

    /// The secrets of a device key file's text and of config values.
    pub fn new(device_key_text: Option<&str>, config_values: Vec<String>) -> Secrets {
        let mut exact = config_values;
        if let Some(text) = device_key_text {
            exact.extend(key_forms(text));
        }
        exact.retain(|s| s.len() >= MIN_EXACT && s != REDACTED);
        exact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        exact.dedup();
        Secrets { exact }
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = redact_pem(text);
        for s in &self.exact {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out = redact_url_userinfo(&out);
        out = redact_auth_schemes(&out);
        redact_assignments(&out)
    }

    /// `text`, which was cut, redacted and without a tail that begins one of the exact
    /// secrets (the rest of it was cut off, so the whole could not be matched).
    pub fn redact_cut(&self, text: &str) -> String {
        let mut out = self.redact(text);
        for s in &self.exact {
            for k in (MIN_EXACT..s.len()).rev() {
                if s.is_char_boundary(k) && out.ends_with(&s[..k]) {
                    out.truncate(out.len() - k);
                    out.push_str(REDACTED);
                    break;
                }
            }
        }
        out
    }

    /// Redacts every string of `v`, and every value whose key names a secret.
    pub fn redact_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_value(i)),
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    if is_secret_name(k) && !item.is_null() {
                        *item = Value::String(REDACTED.into());
                    } else {
                        self.redact_value(item);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether `bytes` still hold one of the exact secrets (a last check before signing).
    pub fn leaks(&self, bytes: &[u8]) -> bool {
        self.exact
            .iter()
            .any(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
    }
}

/// The device key file's text and its seed as base64 (padded or not, standard or URL-safe)
/// and hex.
fn key_forms(text: &str) -> Vec<String> {
    let trimmed = text.trim();
    let mut out = vec![trimmed.to_owned()];
    if let Ok(seed) = base64::engine::general_purpose::STANDARD.decode(trimmed) {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        out.push(STANDARD.encode(&seed));
        out.push(STANDARD_NO_PAD.encode(&seed));
        out.push(URL_SAFE.encode(&seed));
        out.push(URL_SAFE_NO_PAD.encode(&seed));
        out.push(hex::encode(&seed));
        out.push(hex::encode_upper(&seed));
    }
    out
}

fn is_secret_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|n| l.contains(n))
}

/// The user info of the URLs in `text` (`user:pass`, `pass`, percent-decoded too) and the
/// values of their secret-looking query parameters.
fn url_secrets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || "\"'<>`".contains(c))
            .unwrap_or(after.len());
        let url = &after[..end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        if let Some(at) = url[..authority_end].rfind('@') {
            let info = &url[..at];
            out.push(info.to_owned());
            out.push(percent_decode(info));
            if let Some((_, pass)) = info.split_once(':') {
                out.push(pass.to_owned());
                out.push(percent_decode(pass));
            }
        }
        if let Some(q) = url.find('?') {
            for pair in url[q + 1..].split(['&', '#']) {
                if let Some((k, v)) = pair.split_once('=') {
                    if is_secret_name(k) && !v.is_empty() {
                        out.push(v.to_owned());
                        out.push(percent_decode(v));
                    }
                }
            }
        }
        rest = &after[end..];
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces each PEM private key block (`-----BEGIN ... PRIVATE KEY-----` to its `END`
/// line; to the end of the text when it has none).
fn redact_pem(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(b) = rest.find("-----BEGIN") {
        let header_end = rest[b + 10..]
            .find("-----")
            .map(|e| b + 10 + e + 5)
            .unwrap_or(rest.len());
        if !rest[b..header_end].contains("PRIVATE KEY") {
            out.push_str(&rest[..header_end]);
            rest = &rest[header_end..];
            continue;
        }
        out.push_str(&rest[..b]);
        out.push_str(REDACTED);
        let end = rest[header_end..].find("-----END").and_then(|e| {
            let from = header_end + e + 8;
            rest[from..].find("-----").map(|c| from + c + 5)
        });
        match end {
            Some(e) => rest = &rest[e..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// `scheme://user:pass@host` becomes `scheme://[redacted]@host`.
fn redact_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || "\"'<>`/?#".contains(c))
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(at) if after[..at] != *REDACTED => {
                out.push_str(REDACTED);
                rest = &after[at..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

fn is_value_end(c: char) -> bool {
    c.is_whitespace() || "\"'`,;&)}]<>".contains(c)
}

/// Replaces the word after each `Bearer ` or `Basic ` (HTTP credentials).
fn redact_auth_schemes(text: &str) -> String {
    let mut out = text.to_owned();
    for scheme in ["Bearer ", "bearer ", "Basic ", "basic "] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(scheme) {
            let v = i + scheme.len();
            result.push_str(&rest[..v]);
            let tail = &rest[v..];
            let end = tail.find(is_value_end).unwrap_or(tail.len());
            if let Some(after) = tail.strip_prefix(REDACTED) {
                result.push_str(REDACTED);
                rest = after;
                continue;
            }
            if end > 0 {
                result.push_str(REDACTED);
            } else {
                result.push_str(&tail[..end]);
            }
            rest = &tail[end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Where the value given to a secret-looking name starts after `pos` (the end of the
/// name), and whether it is quoted: `=`, `:` or `=>` with optional quotes and spaces.
fn value_start(text: &str, pos: usize) -> Option<(usize, Option<char>)> {
    let mut rest = &text[pos..];
    let mut at = pos;
    let skip = |r: &str, pred: &dyn Fn(char) -> bool| r.len() - r.trim_start_matches(pred).len();
    // A closing quote of a quoted name (`"token": ...`).
    let n = skip(rest, &|c| c == '"' || c == '\'');
    at += n;
    rest = &text[at..];
    let n = skip(rest, &|c| c == ' ' || c == '\t');
    at += n;
    rest = &text[at..];
    let sep = if rest.starts_with("=>") {
        2
    } else if rest.starts_with('=') || rest.starts_with(':') {
        1
    } else {
        return None;
    };
    at += sep;
    rest = &text[at..];
    let n = skip(rest, &|c| c == ' ' || c == '\t');
    at += n;
    rest = &text[at..];
    match rest.chars().next() {
        Some(q @ ('"' | '\'')) => Some((at + 1, Some(q))),
        Some(_) => Some((at, None)),
        None => None,
    }
}

/// The value given to each secret-looking name in `text` (`token=abc` gives `abc`).
fn assigned_values(text: &str) -> Vec<String> {
    assignments(text)
        .into_iter()
        .map(|(s, e)| text[s..e].to_owned())
        .collect()
}

/// The byte ranges of the values given to secret-looking names.
fn assignments(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        if !is_word_char(c) {
            i += c.len_utf8();
            continue;
        }
        let end = text[i..]
            .find(|c: char| !is_word_char(c))
            .map_or(text.len(), |e| i + e);
        let word = &text[i..end];
        i = end;
        if !is_secret_name(word) {
            continue;
        }
        let Some((start, quote)) = value_start(text, end) else {
            continue;
        };
        let tail = &text[start..];
        if tail.starts_with(REDACTED) {
            i = start + REDACTED.len();
            continue;
        }
        let len = match quote {
            Some(q) => tail.find(q).unwrap_or(tail.len()),
            None => tail.find(is_value_end).unwrap_or(tail.len()),
        };
        if len > 0 {
            out.push((start, start + len));
        }
        i = start + len;
    }
    out
}

/// Replaces the values given to secret-looking names.
fn redact_assignments(text: &str) -> String {
    let ranges = assignments(text);
    if ranges.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (s, e) in ranges {
        out.push_str(&text[last..s]);
        out.push_str(REDACTED);
        last = e;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQAAACB\n-----END OPENSSH PRIVATE KEY-----";

    #[test]
    fn exact_secrets_in_every_encoding_are_replaced() {
        let seed = [0x5a_u8; 32];
        let file = format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(seed)
        );
        let s = Secrets::new(Some(&file), vec!["hunter22".into(), "ab".into()]);
        let hexed = hex::encode(seed);
        let nopad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seed);
        let text = format!("key {} hex {hexed} url {nopad} pw hunter22 ab", file.trim());
        let got = s.redact(&text);
        assert_eq!(
            got,
            "key [redacted] hex [redacted] url [redacted] pw [redacted] ab"
        );
        assert!(!s.leaks(got.as_bytes()));
        assert!(s.leaks(text.as_bytes()));
    }

    #[test]
    fn shapes_of_secrets_are_replaced_in_free_text() {
        let s = Secrets::default();
        let text = format!(
            "start\n{PEM}\nmiddle url=https://ops:pa55word@updates.example.com/x?token=abc123&x=1 \
             Authorization: Bearer eyJ.a.b password=hunter2 {{\"api_key\": \"K-99\"}} api_token: tok-1 end"
        );
        let got = s.redact(&text);
        for secret in [
            "b3BlbnNzaC1",
            "pa55word",
            "ops:",
            "abc123",
            "eyJ.a.b",
            "hunter2",
            "K-99",
            "tok-1",
        ] {
            assert!(!got.contains(secret), "{secret} leaked: {got}");
        }
        assert!(got.starts_with("start\n[redacted]\nmiddle"), "{got}");
        assert!(got.contains("https://[redacted]@updates.example.com/x?token=[redacted]&x=1"));
        assert!(got.ends_with(" end"), "{got}");
        // Redacting twice changes nothing more.
        assert_eq!(s.redact(&got), got);
        // A block cut before its end is redacted to the end of the text.
        let cut = &PEM[..50];
        assert_eq!(s.redact(&format!("a {cut}")), "a [redacted]");
        // Harmless text stays as it is.
        let plain = "the time floor is 2026-11-23; slot b: 2.0.0 (ok)";
        assert_eq!(s.redact(plain), plain);
    }

    #[test]
    fn config_values_that_are_secrets_are_found() {
        let got = url_secrets("https://user:p%40ss@h.example/x?api_key=K1&v=2");
        assert!(got.contains(&"p%40ss".to_owned()) && got.contains(&"p@ss".to_owned()));
        assert!(got.contains(&"K1".to_owned()) && !got.contains(&"2".to_owned()));
        assert_eq!(
            assigned_values("HEALTH_TOKEN=s3cr3t /usr/bin/check --password 'x' secret: \"a b\""),
            vec!["s3cr3t".to_owned(), "a b".to_owned()]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn a_cut_tail_that_begins_a_secret_is_redacted() {
        let s = Secrets::new(None, vec!["0123456789abcdef".into()]);
        assert_eq!(s.redact_cut("log 01234567"), "log [redacted]");
        assert_eq!(s.redact_cut("log 012"), "log 012");
    }

    #[test]
    fn odd_text_never_panics_and_comes_back_whole_when_it_holds_no_secret() {
        let s = Secrets::new(Some("not base64 ✓"), vec!["émoji✓secret".into()]);
        let pieces = [
            "",
            "-----BEGIN",
            "-----BEGIN PRIVATE KEY",
            "-----END",
            "://",
            "a://@",
            "é://ü:ö@",
            "token",
            "token=",
            "token:\"",
            "token='",
            "Bearer",
            "Bearer ",
            "%",
            "%é1",
            "%4",
            "✓",
            "password=>",
            "\u{0}",
            "=",
            ":",
            "@",
            "[redacted",
            "émoji✓secre",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}{b}{c}");
                    let _ = s.redact(&text);
                    let _ = s.redact_cut(&text);
                    let _ = url_secrets(&text);
                    let _ = percent_decode(&text);
                }
            }
        }
        let plain = "ünïcode ✓ text, 100% fine: slot=a";
        assert_eq!(s.redact(plain), plain);
    }

    #[test]
    fn json_values_under_secret_names_are_replaced() {
        let s = Secrets::default();
        let mut v = serde_json::json!({"serial": "x", "auth": {"token": 5, "url": "http://u:p@h"}});
        s.redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"serial": "x", "auth": {"token": "[redacted]", "url": "http://[redacted]@h"}})
        );
    }
}
