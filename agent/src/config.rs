//! The agent's configuration (docs/formats.md), loaded from TOML. Every error names the file and,
//! where one is at fault, the key.

use jiff::civil::Time;
use np_common::{Model, PublicKey, Serial};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/np-agent/agent.toml";

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}; pass --config FILE or create it")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}, line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config {path}, key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    serial: String,
    model: Option<String>,
    state_dir: PathBuf,
    device_key: Option<PathBuf>,
    server: Option<RawServer>,
    trust: RawTrust,
    #[serde(default)]
    install: RawInstall,
    #[serde(default)]
    inbox: RawInbox,
    #[serde(default)]
    slots: RawSlots,
    #[serde(default)]
    boot: RawBoot,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlots {
    a: Option<PathBuf>,
    b: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoot {
    loader: Option<String>,
    grubenv: Option<PathBuf>,
    cmdline: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    url: String,
    ca_cert: Option<PathBuf>,
    check_interval: Option<String>,
    stall_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    root_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    auto: Option<bool>,
    window: Option<String>,
    health_command: Option<String>,
    activate_command: Option<String>,
    reboot_command: Option<String>,
    max_boot_attempts: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbox {
    poll_interval: Option<String>,
}

/// The server this box checks in with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// An extra trust anchor (PEM).
    pub ca_cert: Option<PathBuf>,
    /// Mean time between check-ins (jittered by the daemon).
    pub check_interval: Duration,
    /// A download that makes no progress for this long is cut (and resumed later).
    pub stall_timeout: Duration,
}

/// A daily maintenance window in local time; it may wrap past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Time,
    pub end: Time,
}

impl Window {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(s: &str) -> Option<Window> {
        let (a, b) = s.split_once('-')?;
        let t = |x: &str| Time::strptime("%H:%M", x.trim()).ok();
        Some(Window {
            start: t(a)?,
            end: t(b)?,
        })
    }

    /// Is the local time `t` inside the window?
    pub fn contains(&self, t: Time) -> bool {
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// How installs happen.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    pub auto: bool,
    pub window: Option<Window>,
    pub health_command: Option<String>,
    pub activate_command: Option<String>,
    pub reboot_command: Option<String>,
    pub max_boot_attempts: u32,
}

/// Where the two slots live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotPaths {
    /// `state_dir/slots/<slot>/image` (development and tests).
    StateDir,
    /// Two block devices or regular files named in `[slots]`.
    Devices { a: PathBuf, b: PathBuf },
}

/// Which boot loader the agent drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoaderKind {
    /// A record in `state_dir/boot.json` only.
    File,
    /// `install.activate_command` (and the record).
    Command,
    /// The GRUB environment block at this path.
    Grub { grubenv: PathBuf },
}

impl LoaderKind {
    /// `file`, `command` or `grub`.
    pub fn name(&self) -> &'static str {
        match self {
            LoaderKind::File => "file",
            LoaderKind::Command => "command",
            LoaderKind::Grub { .. } => "grub",
        }
    }
}

/// The boot loader and where the booted slot is read.
#[derive(Debug, Clone)]
pub struct BootConfig {
    pub loader: LoaderKind,
    /// The kernel command line holding `np.slot=a|b`.
    pub cmdline: PathBuf,
}

/// Where GRUB's environment block is unless `[boot] grubenv` says otherwise.
pub const DEFAULT_GRUBENV: &str = "/boot/efi/EFI/np/grubenv";
/// The most boot attempts the GRUB script can count (it has no arithmetic).
pub const GRUB_MAX_TRIES: u32 = 9;

/// The loaded and checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub serial: Serial,
    pub model: Model,
    pub state_dir: PathBuf,
    pub device_key: PathBuf,
    pub server: Option<ServerConfig>,
    pub root_keys: Vec<PublicKey>,
    pub install: InstallConfig,
    pub inbox_poll: Duration,
    pub slots: SlotPaths,
    pub boot: BootConfig,
}

/// Parses a duration such as `6h`, `30m`, `45s`, `500ms` or `1d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A serial or model as typed, made canonical: surrounding spaces dropped, upper case.
fn normalize(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks config text; `path` is only used in messages and to resolve nothing.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim_end().to_owned(),
            }
        })?;
        let bad = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        // `nr-2000-123456-4 ` is the serial NR-2000-123456-4: case and spaces are noise.
        let serial =
            Serial::parse(&normalize(&raw.serial)).map_err(|e| bad("serial", e.to_string()))?;
        let model = match raw.model {
            Some(m) => Model::parse(&normalize(&m)).map_err(|e| bad("model", e.to_string()))?,
            None => serial.model(),
        };
        if model != serial.model() {
            return Err(bad(
                "model",
                format!("model {model} contradicts serial {serial}"),
            ));
        }
        let dur = |key: &'static str, v: Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => parse_duration(&s).filter(|d| !d.is_zero()).ok_or_else(|| {
                bad(
                    key,
                    format!("{s:?} is not a duration such as 6h, 10m or 30s"),
                )
            }),
        };
        let server = match raw.server {
            None => None,
            Some(s) => {
                let url = s.url.trim_end_matches('/').to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad("server.url", format!("{url:?} is not an http(s) URL")));
                }
                Some(ServerConfig {
                    url,
                    ca_cert: s.ca_cert,
                    check_interval: dur(
                        "server.check_interval",
                        s.check_interval,
                        Duration::from_secs(6 * 3600),
                    )?,
                    stall_timeout: dur(
                        "server.stall_timeout",
                        s.stall_timeout,
                        Duration::from_secs(60),
                    )?,
                })
            }
        };
        if raw.trust.root_keys.is_empty() {
            return Err(bad(
                "trust.root_keys",
                "at least one root public key is needed".into(),
            ));
        }
        let root_keys = raw
            .trust
            .root_keys
            .iter()
            .map(|k| PublicKey::from_base64(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("trust.root_keys", e.to_string()))?;
        let window = match raw.install.window {
            None => None,
            Some(w) => Some(Window::parse(&w).ok_or_else(|| {
                bad(
                    "install.window",
                    format!("{w:?} is not a window such as 02:00-05:00"),
                )
            })?),
        };
        let max_boot_attempts = raw.install.max_boot_attempts.unwrap_or(3);
        if max_boot_attempts == 0 {
            return Err(bad(
                "install.max_boot_attempts",
                "must be at least 1".into(),
            ));
        }
        let slots = match (raw.slots.a, raw.slots.b) {
            (None, None) => SlotPaths::StateDir,
            (Some(a), Some(b)) => {
                if a == b {
                    return Err(bad(
                        "slots.b",
                        format!("slot b is the same as slot a ({})", a.display()),
                    ));
                }
                SlotPaths::Devices { a, b }
            }
            (Some(_), None) => {
                return Err(bad(
                    "slots.b",
                    "missing: name both slots, or neither (files in the state folder)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "slots.a",
                    "missing: name both slots, or neither (files in the state folder)".into(),
                ))
            }
        };
        let loader = match raw.boot.loader.as_deref() {
            None if raw.install.activate_command.is_some() => LoaderKind::Command,
            None | Some("file") => LoaderKind::File,
            Some("command") => LoaderKind::Command,
            Some("grub") => LoaderKind::Grub {
                grubenv: raw
                    .boot
                    .grubenv
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_GRUBENV)),
            },
            Some(other) => {
                return Err(bad(
                    "boot.loader",
                    format!(
                        "{other:?} is not a boot loader; use \"grub\", \"command\" or \"file\""
                    ),
                ))
            }
        };
        if raw.boot.grubenv.is_some() && !matches!(loader, LoaderKind::Grub { .. }) {
            return Err(bad(
                "boot.grubenv",
                "only used with loader = \"grub\"; set it or remove grubenv".into(),
            ));
        }
        if matches!(loader, LoaderKind::Grub { .. }) && raw.install.reboot_command.is_none() {
            // With GRUB a trial is a boot of the other slot: without a way to restart,
            // the trial would run on the old slot and be taken for a firmware that never
            // came up.
            return Err(bad(
                "install.reboot_command",
                "missing: loader = \"grub\" boots the new slot by restarting the box; set \
                 reboot_command (e.g. \"systemctl reboot\")"
                    .into(),
            ));
        }
        if matches!(loader, LoaderKind::Grub { .. }) && max_boot_attempts > GRUB_MAX_TRIES {
            return Err(bad(
                "install.max_boot_attempts",
                format!("the GRUB script counts at most {GRUB_MAX_TRIES} boot attempts"),
            ));
        }
        Ok(Config {
            path: path.to_owned(),
            serial,
            model,
            state_dir: raw.state_dir,
            device_key: raw
                .device_key
                .unwrap_or_else(|| PathBuf::from("/etc/np-agent/device.key")),
            server,
            root_keys,
            install: InstallConfig {
                auto: raw.install.auto.unwrap_or(true),
                window,
                health_command: raw.install.health_command,
                activate_command: raw.install.activate_command,
                reboot_command: raw.install.reboot_command,
                max_boot_attempts,
            },
            inbox_poll: dur(
                "inbox.poll_interval",
                raw.inbox.poll_interval,
                Duration::from_secs(5),
            )?,
            slots,
            boot: BootConfig {
                loader,
                cmdline: raw
                    .boot
                    .cmdline
                    .unwrap_or_else(|| PathBuf::from("/proc/cmdline")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "+1opRmuE2CsFW6PHBQg3U+XG0nnaEbWy2Sk99+nJw9g=";

    fn cfg(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "serial = \"NR-2000-123456-4\"\nstate_dir = \"/tmp/x\"\n{extra}\n[trust]\nroot_keys = [\"{ROOT}\"]\n"
        );
        Config::parse(Path::new("agent.toml"), &text)
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = cfg("").unwrap();
        assert_eq!(c.model.as_str(), "NR-2000");
        assert!(c.install.auto);
        assert_eq!(c.install.max_boot_attempts, 3);
        assert!(c.server.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let e = cfg("model = \"NR-3000\"").unwrap_err();
        assert!(
            matches!(e, ConfigError::Invalid { key: "model", .. }),
            "{e}"
        );
        let e = Config::parse(
            Path::new("a.toml"),
            "serial = \"NR-2000-123456-5\"\nstate_dir=\"/x\"\n[trust]\nroot_keys=[]\n",
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "serial", .. }));
        assert!(e.to_string().contains("a.toml"));
        let e = cfg("[install]\nwindow = \"2-5\"").unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Invalid {
                key: "install.window",
                ..
            }
        ));
        let e = cfg("bogus = 1").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
    }

    #[test]
    fn slots_and_boot_loader() {
        let c = cfg("").unwrap();
        assert_eq!(c.slots, SlotPaths::StateDir);
        assert_eq!(c.boot.loader, LoaderKind::File);
        assert_eq!(c.boot.cmdline, PathBuf::from("/proc/cmdline"));
        let c = cfg("[install]\nactivate_command = \"x\"").unwrap();
        assert_eq!(c.boot.loader, LoaderKind::Command);
        let c = cfg("[install]\nreboot_command = \"reboot\"\n[slots]\na = \"/dev/disk/by-partlabel/np-root-a\"\nb = \"/dev/vdb\"\n[boot]\nloader = \"grub\"").unwrap();
        assert_eq!(
            c.slots,
            SlotPaths::Devices {
                a: "/dev/disk/by-partlabel/np-root-a".into(),
                b: "/dev/vdb".into()
            }
        );
        assert_eq!(
            c.boot.loader,
            LoaderKind::Grub {
                grubenv: DEFAULT_GRUBENV.into()
            }
        );
        for (extra, key) in [
            ("[slots]\na = \"/dev/x\"", "slots.b"),
            ("[slots]\nb = \"/dev/x\"", "slots.a"),
            ("[slots]\na = \"/dev/x\"\nb = \"/dev/x\"", "slots.b"),
            ("[boot]\nloader = \"uboot\"", "boot.loader"),
            ("[boot]\ngrubenv = \"/x\"", "boot.grubenv"),
            (
                "[install]\nreboot_command = \"reboot\"\nmax_boot_attempts = 10\n[boot]\nloader = \"grub\"",
                "install.max_boot_attempts",
            ),
            ("[boot]\nloader = \"grub\"", "install.reboot_command"),
        ] {
            match cfg(extra) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{extra}"),
                other => panic!("{extra}: {other:?}"),
            }
        }
    }

    #[test]
    fn toml_errors_give_line_and_column() {
        let e = cfg("bogus = 1").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Parse {
                    line: 3,
                    column: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("line 3, column 1"), "{e}");
        let e = Config::parse(
            Path::new("a.toml"),
            "serial = \"NR-2000-123456-4\"\nstate_dir = /x\n",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Parse {
                    line: 2,
                    column: 13,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("config a.toml, line 2, column 13: "),
            "{e}"
        );
    }

    #[test]
    fn serials_and_models_are_normalized() {
        let text = format!(
            "serial = \" nr-2000-123456-4 \"\nmodel = \"nr-2000\"\nstate_dir = \"/x\"\n[trust]\nroot_keys = [\"{ROOT}\"]\n"
        );
        let c = Config::parse(Path::new("a.toml"), &text).unwrap();
        assert_eq!(c.serial.as_str(), "NR-2000-123456-4");
        assert_eq!(c.model.as_str(), "NR-2000");
    }

    #[test]
    fn durations_and_windows() {
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21600)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
        let w = Window::parse("22:00-02:00").unwrap();
        assert!(w.contains(Time::constant(23, 0, 0, 0)));
        assert!(w.contains(Time::constant(1, 0, 0, 0)));
        assert!(!w.contains(Time::constant(3, 0, 0, 0)));
    }
}
