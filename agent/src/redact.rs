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
use std::collections::HashSet;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";
/// What a whole field (the health output, an event's detail, a status value) is replaced
/// with when it holds the device key in any form [`Secrets::holds_key`] finds.
pub const KEY_REDACTED: &str = "[redacted: it held the device key]";
/// The shortest piece of the device key (in base64 or hex characters) that marks a field
/// as holding it: 16 base64 characters are 96 bits, 16 hex digits 64 bits of the key, far
/// beyond a chance match in a report.
const KEY_PIECE: usize = 16;
/// Ends of names whose values are secrets (lower case): `KEY=`, `DB_PASS=`, `ADMIN_PWD=`.
const SECRET_SUFFIXES: [&str; 6] = ["key", "token", "secret", "password", "pass", "pwd"];
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
    /// Every [`KEY_PIECE`]-character piece of the device key's base64 forms (standard
    /// alphabet) and of its lower-case hex forms.
    key_b64: HashSet<[u8; KEY_PIECE]>,
    key_hex: HashSet<[u8; KEY_PIECE]>,
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
        let mut key_b64 = HashSet::new();
        let mut key_hex = HashSet::new();
        if let Some(text) = device_key_text {
            exact.extend(key_forms(text));
            key_pieces(text, &mut key_b64, &mut key_hex);
        }
        exact.retain(|s| s.len() >= MIN_EXACT && s != REDACTED);
        exact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        exact.dedup();
        Secrets {
            exact,
            key_b64,
            key_hex,
        }
    }

    /// Whether `text` holds a piece of the device key: its file text or seed in base64
    /// (any alphabet, wrapped, split across lines or JSON strings, or the base64 of the
    /// file text), or the seed or file text in hex (either case, spaced, with the offset
    /// columns of `xxd`, `od` or `hexdump`, in 2-, 4- or 8-byte little-endian words).
    /// Whitespace and separators are removed before matching, so a piece split by them
    /// is still found; any [`KEY_PIECE`] characters of a form are enough.
    pub fn holds_key(&self, text: &str) -> bool {
        if self.key_b64.is_empty() {
            return false;
        }
        let has = |set: &HashSet<[u8; KEY_PIECE]>, n: &[u8]| {
            n.windows(KEY_PIECE)
                .any(|w| <[u8; KEY_PIECE]>::try_from(w).is_ok_and(|w| set.contains(&w)))
        };
        has(&self.key_b64, &b64_chars(text))
            || has(&self.key_hex, &hex_chars(text))
            || has(&self.key_hex, &hex_dump_chars(text))
    }

    /// `text` with every secret replaced by [`REDACTED`]; all of it replaced by
    /// [`KEY_REDACTED`] when it holds the device key.
    pub fn redact(&self, text: &str) -> String {
        if self.holds_key(text) {
            return KEY_REDACTED.to_owned();
        }
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

    /// Whether `bytes` still hold one of the exact secrets or a piece of the device key (a
    /// last check before signing, over the whole report: it also finds a key split across
    /// two fields).
    pub fn leaks(&self, bytes: &[u8]) -> bool {
        self.exact
            .iter()
            .any(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
            || self.holds_key(&String::from_utf8_lossy(bytes))
    }
}

/// The base64 forms a device key's pieces are looked for in: the seed and the file text
/// (with and without its line end), each encoded at the three alignments it can have
/// inside a longer encoded text; only the characters that depend on the secret alone.
/// Hex forms: the seed (bytes in order, and in 2-, 4- and 8-byte little-endian words)
/// and the file text.
fn key_pieces(text: &str, b64: &mut HashSet<[u8; KEY_PIECE]>, hex: &mut HashSet<[u8; KEY_PIECE]>) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let trimmed = text.trim();
    let mut data: Vec<Vec<u8>> = vec![
        trimmed.as_bytes().to_vec(),
        format!("{trimmed}\n").into_bytes(),
        text.as_bytes().to_vec(),
    ];
    let seed = STANDARD.decode(trimmed).ok();
    if let Some(seed) = &seed {
        data.push(seed.clone());
    }
    let add = |set: &mut HashSet<[u8; KEY_PIECE]>, chars: &[u8]| {
        for w in chars.windows(KEY_PIECE) {
            if let Ok(w) = <[u8; KEY_PIECE]>::try_from(w) {
                set.insert(w);
            }
        }
    };
    // The file text itself, as the base64 matching sees it.
    add(b64, &b64_chars(trimmed));
    for d in &data {
        for align in 0..3usize {
            let mut padded = vec![0u8; align];
            padded.extend_from_slice(d);
            let enc = STANDARD_NO_PAD.encode(&padded);
            // Characters whose six bits all come from `d`.
            let start = (8 * align).div_ceil(6);
            let end = (8 * padded.len()) / 6;
            if let Some(inner) = enc.as_bytes().get(start..end.min(enc.len())) {
                add(b64, inner);
            }
        }
        add(hex, hex::encode(d).as_bytes());
    }
    if let Some(seed) = &seed {
        for word in [2usize, 4, 8] {
            let swapped: Vec<u8> = seed
                .chunks(word)
                .flat_map(|c| c.iter().rev().copied())
                .collect();
            add(hex, hex::encode(&swapped).as_bytes());
        }
    }
}

/// The base64 characters of `text` in order (URL-safe ones as standard ones): whatever
/// else (spaces, line breaks, quotes, commas, padding) is left out.
fn b64_chars(text: &str) -> Vec<u8> {
    text.bytes()
        .filter_map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => Some(b),
            b'-' => Some(b'+'),
            b'_' => Some(b'/'),
            _ => None,
        })
        .collect()
}

/// The hex digits of `text` in order, in lower case: whatever else is left out.
fn hex_chars(text: &str) -> Vec<u8> {
    text.bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

/// The hex digits of the hex groups of a dump, line by line, in lower case: without a
/// line's offset column (its first group when longer than 6 digits and followed by
/// others) and without what is not a group of whole bytes (`xxd`'s text column), so that
/// bytes split across narrow lines join.
fn hex_dump_chars(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        let groups: Vec<&str> = line
            .split(|c: char| !(c.is_ascii_hexdigit() || c == 'x' || c == 'X' || c == '\\'))
            .map(|t| {
                t.strip_prefix("0x")
                    .or_else(|| t.strip_prefix("0X"))
                    .or_else(|| t.strip_prefix("\\x"))
                    .unwrap_or(t)
            })
            .filter(|t| !t.is_empty())
            .collect();
        let skip = usize::from(groups.len() > 1 && groups[0].len() > 6);
        for g in &groups[skip..] {
            if g.len() % 2 == 0 && g.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.extend(g.bytes().map(|b| b.to_ascii_lowercase()));
            }
        }
    }
    out
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

/// Whether `name` ends like a secret's (`KEY`, `DB_PASS`): its value is a secret when it
/// is assigned with `=` (`device.key: ok` says nothing secret).
fn has_secret_suffix(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    SECRET_SUFFIXES.iter().any(|n| l.ends_with(n))
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
            let mut parts = vec![info.to_owned(), percent_decode(info)];
            if let Some((user, pass)) = info.split_once(':') {
                parts.extend([user.to_owned(), percent_decode(user)]);
                parts.extend([pass.to_owned(), percent_decode(pass)]);
            }
            for p in parts {
                out.extend(encoded_forms(&p));
                out.push(p);
            }
        }
        if let Some(q) = url.find('?') {
            for pair in url[q + 1..].split(['&', '#']) {
                if let Some((k, v)) = pair.split_once('=') {
                    if (is_secret_name(k) || has_secret_suffix(k)) && !v.is_empty() {
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

/// Other ways a credential is written: base64 (as in `Authorization: Basic`, padded or
/// not, either alphabet) and percent-encoded (once more, in both cases of hex digits).
fn encoded_forms(s: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = vec![
        STANDARD.encode(s),
        STANDARD_NO_PAD.encode(s),
        URL_SAFE.encode(s),
        URL_SAFE_NO_PAD.encode(s),
    ];
    let mut upper = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            upper.push(char::from(b));
        } else {
            upper.push_str(&format!("%{b:02X}"));
        }
    }
    // Only the escapes in lower case, the rest as it was.
    let mut lower = String::with_capacity(upper.len());
    let mut rest = upper.as_str();
    while let Some(i) = rest.find('%') {
        lower.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        lower.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    lower.push_str(rest);
    out.push(upper);
    out.push(lower);
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
        let assigned = text[end..]
            .trim_start_matches(['"', '\'', ' ', '\t'])
            .starts_with('=');
        if !(is_secret_name(word) || assigned && has_secret_suffix(word)) {
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
        // The key in any form replaces the whole field.
        let got = s.redact(&text);
        assert_eq!(got, KEY_REDACTED);
        assert!(!s.leaks(got.as_bytes()));
        assert!(s.leaks(text.as_bytes()));
        // Without it, only the config secrets are replaced.
        assert_eq!(s.redact("pw hunter22 ab"), "pw [redacted] ab");
    }

    /// A seed with no repeats, so that a piece found is the piece meant.
    fn seed() -> Vec<u8> {
        (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// `text` cut into lines of `width` characters (as `base64 -w`).
    fn wrapped(text: &str, width: usize) -> String {
        text.as_bytes()
            .chunks(width)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect()
    }

    /// `xxd -c width` of `bytes`: offsets, groups of two bytes, the text column.
    fn xxd(bytes: &[u8], width: usize) -> String {
        let mut out = String::new();
        for (n, line) in bytes.chunks(width).enumerate() {
            out.push_str(&format!("{:08x}:", n * width));
            for pair in line.chunks(2) {
                out.push_str(&format!(" {}", hex::encode(pair)));
            }
            let text: String = line
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() {
                        char::from(b)
                    } else {
                        '.'
                    }
                })
                .collect();
            out.push_str(&format!("  {text}\n"));
        }
        out
    }

    /// `od -tx1` of `bytes` (octal offsets, or none as with `-An`).
    fn od(bytes: &[u8], offsets: bool) -> String {
        let mut out = String::new();
        for (n, line) in bytes.chunks(16).enumerate() {
            if offsets {
                out.push_str(&format!("{:07o}", n * 16));
            }
            for b in line {
                out.push_str(&format!(" {b:02x}"));
            }
            out.push('\n');
        }
        out
    }

    fn key_file() -> (Secrets, String) {
        let file = b64(&seed());
        (Secrets::new(Some(&file), Vec::new()), file)
    }

    #[track_caller]
    fn held(s: &Secrets, output: &str) {
        let text = format!("healthy\n{output}done\n");
        assert_eq!(s.redact(&text), KEY_REDACTED, "not found in:\n{text}");
        assert!(s.leaks(text.as_bytes()));
    }

    #[test]
    fn the_key_file_split_across_lines_is_found() {
        let (s, file) = key_file();
        // cut -c1-20 device.key; cut -c21- device.key
        held(&s, &format!("{}\n{}\n", &file[..20], &file[20..]));
        // In three pieces with spaces and quotes about them.
        held(
            &s,
            &format!(
                "'{}' \"{}\"\n  {}\n",
                &file[..16],
                &file[16..32],
                &file[32..]
            ),
        );
    }

    #[test]
    fn the_base64_of_the_key_file_text_is_found() {
        let (s, file) = key_file();
        // base64 < device.key (with and without a line end), wrapped as base64 does.
        held(&s, &wrapped(&b64(file.as_bytes()), 76));
        held(&s, &wrapped(&b64(format!("{file}\n").as_bytes()), 76));
        // The file after other text, so that its encoding starts at another alignment.
        for prefix in ["a", "ab", "abc"] {
            held(&s, &b64(format!("{prefix}\n{file}\n").as_bytes()));
        }
        // URL-safe and wrapped narrow.
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(file.as_bytes());
        held(&s, &wrapped(&url, 16));
    }

    #[test]
    fn the_seed_in_wrapped_base64_is_found() {
        let (s, _) = key_file();
        // base64 -d < device.key | base64 -w 16
        held(&s, &wrapped(&b64(&seed()), 16));
        held(&s, &wrapped(&b64(&seed()), 4));
        // The seed after other bytes (another alignment).
        let mut bytes = b"x".to_vec();
        bytes.extend(seed());
        held(&s, &wrapped(&b64(&bytes), 16));
    }

    #[test]
    fn hex_dumps_of_the_seed_are_found() {
        let (s, _) = key_file();
        let seed = seed();
        // base64 -d < device.key | xxd | head -2
        held(&s, &xxd(&seed, 16));
        // Narrow lines: no one line holds a whole piece.
        held(&s, &xxd(&seed, 4));
        // od -An -tx1, and od -tx1 with its offsets.
        held(&s, &od(&seed, false));
        held(&s, &od(&seed, true));
        // Upper case with colons, and as C bytes.
        let colons: Vec<String> = seed.iter().map(|b| format!("{b:02X}")).collect();
        held(&s, &colons.join(":"));
        let c: Vec<String> = seed.iter().map(|b| format!("0x{b:02x}")).collect();
        held(&s, &c.join(", "));
        // hexdump's default: little-endian two-byte words.
        let words: Vec<String> = seed
            .chunks(2)
            .map(|w| format!("{:02x}{:02x}", w[1], w[0]))
            .collect();
        held(&s, &format!("0000000 {}\n", words.join(" ")));
        // The key file's own text in hex (xxd device.key).
        held(&s, &xxd(b64(&seed).as_bytes(), 16));
    }

    #[test]
    fn the_key_split_across_two_json_strings_is_found() {
        let (s, file) = key_file();
        // printf '{"a":"%s","b":"%s"}' "$(cut -c1-22 K)" "$(cut -c23- K)"
        held(
            &s,
            &format!("{{\"a\":\"{}\",\"b\":\"{}\"}}\n", &file[..22], &file[22..]),
        );
        let mut v =
            serde_json::json!({"detail": format!("[\"{}\",\n \"{}\"]", &file[..22], &file[22..])});
        s.redact_value(&mut v);
        assert_eq!(v["detail"], KEY_REDACTED);
    }

    #[test]
    fn text_without_the_key_is_left_as_it_is() {
        let (s, file) = key_file();
        let other: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(91)).collect();
        let text = format!(
            "{}{}{}sha256 {}\nslot b: 2.0.0\n{}",
            xxd(&other, 16),
            od(&other, true),
            wrapped(&b64(&other), 16),
            hex::encode(&other),
            // A short piece of the key is not enough to mark the field.
            &file[..12]
        );
        assert_eq!(s.redact(&text), text);
        assert!(!s.leaks(text.as_bytes()));
        // Without a key file, nothing is looked for.
        assert!(!Secrets::default().holds_key(&xxd(&seed(), 16)));
    }

    #[test]
    fn config_secrets_in_other_forms_are_replaced() {
        let url = "http://admin:p%40ssw0rdXYZ@127.0.0.1:18515/";
        let mut values = url_secrets(url);
        values.extend(assigned_values("KEY=ACTKEYsecret9876 /usr/bin/activate"));
        let s = Secrets::new(None, values);
        let basic = b64(b"admin:p@ssw0rdXYZ");
        let text = format!(
            "auth {basic}\ntwice admin%3Ap%2540ssw0rdXYZ\nlower admin%3ap%2540ssw0rdXYZ\n\
             user admin\nactivation ACTKEYsecret9876\n"
        );
        let got = s.redact(&text);
        for secret in [basic.as_str(), "ssw0rdXYZ", "admin", "ACTKEYsecret9876"] {
            assert!(!got.contains(secret), "{secret} leaked: {got}");
        }
        // Assignments to names that end like a secret's, in any case.
        let s = Secrets::default();
        assert_eq!(
            s.redact("KEY=a1 db_pass=b2 ADMIN_PWD='c 3' Api_Token: d4 app_secret=e5 x=1"),
            "KEY=[redacted] db_pass=[redacted] ADMIN_PWD='[redacted]' Api_Token: [redacted] \
             app_secret=[redacted] x=1"
        );
        // A name that only ends like one says nothing secret after a colon.
        let plain = "cat: device.key: No such file or directory; tests pass: 12";
        assert_eq!(s.redact(plain), plain);
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
