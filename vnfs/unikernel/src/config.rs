//! Boot-time configuration without a network round trip.
//!
//! The VNF reads the same TOML as the process VNF. Its source, highest priority first:
//! a boot module (`-initrd FILE` under PVH, GRUB `module FILE`), the fw_cfg file
//! `opt/vnf/config`, or the copy baked into the image at build time. Then the kernel
//! command line applies: platform options (`log=`, `stats=`, `exit=`, `selftest=`,
//! `mgmt=`, for the vBNG `sessions=`, for the key server `core=`) and
//! `config.<dotted.path>=<toml value>` overrides of single keys (array elements by
//! index, e.g. `config.ports.0.mac="02:00:00:00:00:01"`; an unparsable value is taken
//! as a string).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use toml::{Table, Value};

/// Platform options from the kernel command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Console log level.
    pub log: log::LevelFilter,
    /// Period of the counter lines on the console, in ms (0 = never; default: the
    /// VNF config's, else 1 s).
    pub stats_ms: Option<u64>,
    /// Exit (isa-debug-exit, code 0) right after the ready line.
    pub exit_on_ready: bool,
    /// Exit after this many ms of forwarding.
    pub exit_after_ms: Option<u64>,
    /// Clock self-test: print two marks this many ms apart (guest clock), then exit.
    pub selftest_clock_ms: Option<u64>,
    /// `config.` overrides, in command-line order.
    pub overrides: Vec<(String, String)>,
    /// vBNG session slots (`sessions=N`, 1 to `vbng::config::MAX_SESSIONS`; the
    /// tables for every slot are allocated at start).
    #[cfg(any(feature = "vbng", feature = "vbng-up"))]
    pub sessions: Option<u32>,
    /// The host stack's port and address (`mgmt=PORT:ADDR/LEN[:GATEWAY]`); default:
    /// the VNF's own (see `hoststack`).
    pub mgmt: Option<crate::hoststack::NetConfig>,
    /// The key server's IKE stack (`core=PORT:ADDR/LEN[:GATEWAY]`) when management
    /// is on a NIC of its own (see `keyserver_app`).
    #[cfg(feature = "keyserver")]
    pub core: Option<crate::hoststack::NetConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            log: log::LevelFilter::Info,
            stats_ms: None,
            exit_on_ready: false,
            exit_after_ms: None,
            selftest_clock_ms: None,
            overrides: Vec::new(),
            #[cfg(any(feature = "vbng", feature = "vbng-up"))]
            sessions: None,
            mgmt: None,
            #[cfg(feature = "keyserver")]
            core: None,
        }
    }
}

/// A configuration problem, reported on the console before a clean exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A command-line word could not be understood.
    Cmdline { word: String, why: String },
    /// The config text is not UTF-8.
    NotUtf8 { source: &'static str },
    /// The config text is not valid TOML.
    Toml { source: &'static str, msg: String },
    /// A `config.` override names a path that cannot be set.
    Override { path: String, why: String },
    /// The TOML is valid but the VNF rejects it.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Cmdline { word, why } => write!(f, "kernel command line: `{word}`: {why}"),
            Self::NotUtf8 { source } => write!(f, "config from {source} is not UTF-8"),
            Self::Toml { source, msg } => write!(f, "config from {source} is not valid TOML: {msg}"),
            Self::Override { path, why } => write!(f, "override config.{path}: {why}"),
            Self::Invalid(m) => write!(f, "{m}"),
        }
    }
}

fn num(word: &str, v: &str) -> Result<u64, ConfigError> {
    v.parse().map_err(|_| ConfigError::Cmdline {
        word: word.to_string(),
        why: format!("`{v}` is not a number"),
    })
}

/// Parse the kernel command line.
pub fn parse_cmdline(line: &str) -> Result<Options, ConfigError> {
    let mut o = Options::default();
    for word in line.split_ascii_whitespace() {
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        match k {
            "log" => {
                o.log = match v {
                    "off" => log::LevelFilter::Off,
                    "error" => log::LevelFilter::Error,
                    "warn" => log::LevelFilter::Warn,
                    "info" => log::LevelFilter::Info,
                    "debug" => log::LevelFilter::Debug,
                    "trace" => log::LevelFilter::Trace,
                    _ => {
                        return Err(ConfigError::Cmdline {
                            word: word.to_string(),
                            why: "expected off|error|warn|info|debug|trace".to_string(),
                        })
                    }
                }
            }
            "stats" => o.stats_ms = Some(num(word, v)?),
            "exit" if v == "ready" => o.exit_on_ready = true,
            #[cfg(any(feature = "vbng", feature = "vbng-up"))]
            "sessions" => {
                let n = num(word, v)?;
                if !(1..=u64::from(vbng::config::MAX_SESSIONS)).contains(&n) {
                    return Err(ConfigError::Cmdline {
                        word: word.to_string(),
                        why: format!("session slots must be 1 to {}", vbng::config::MAX_SESSIONS),
                    });
                }
                o.sessions = Some(n as u32);
            }
            "exit" => o.exit_after_ms = Some(num(word, v)?),
            "mgmt" => {
                o.mgmt = Some(
                    crate::hoststack::NetConfig::parse(k, v).map_err(|why| ConfigError::Cmdline {
                        word: word.to_string(),
                        why,
                    })?,
                )
            }
            #[cfg(feature = "keyserver")]
            "core" => {
                o.core = Some(
                    crate::hoststack::NetConfig::parse(k, v).map_err(|why| ConfigError::Cmdline {
                        word: word.to_string(),
                        why,
                    })?,
                )
            }
            "selftest" => match v.strip_prefix("clock:") {
                Some(ms) => o.selftest_clock_ms = Some(num(word, ms)?),
                None => {
                    return Err(ConfigError::Cmdline {
                        word: word.to_string(),
                        why: "expected selftest=clock:<ms>".to_string(),
                    })
                }
            },
            _ => {
                if let Some(path) = k.strip_prefix("config.") {
                    if path.is_empty() || !word.contains('=') {
                        return Err(ConfigError::Cmdline {
                            word: word.to_string(),
                            why: "expected config.<path>=<value>".to_string(),
                        });
                    }
                    o.overrides.push((path.to_string(), v.to_string()));
                } else {
                    // Words meant for other kernels (console=, virtio_mmio.device=, ...)
                    log::debug!("cmdline: ignoring `{word}`");
                }
            }
        }
    }
    Ok(o)
}

/// Parse config text from `source` into a TOML table.
pub fn parse_toml(bytes: &[u8], source: &'static str) -> Result<Table, ConfigError> {
    let text = core::str::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 { source })?;
    // Blobs padded with NULs (fw_cfg, modules rounded to pages) are fine.
    let text = text.trim_end_matches('\0');
    text.parse::<Table>().map_err(|e| ConfigError::Toml {
        source,
        msg: e.to_string(),
    })
}

/// A TOML value from the command line: a TOML literal, else a bare string.
fn parse_value(v: &str) -> Value {
    let doc = format!("v = {v}");
    match doc.parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(v.to_string())),
        Err(_) => Value::String(v.to_string()),
    }
}

/// Set `path` (dot-separated keys and array indices) in `table` to `value`.
pub fn apply_override(table: &mut Table, path: &str, value: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut root = Value::Table(core::mem::take(table));
    let r = set(&mut root, &parts, parse_value(value));
    if let Value::Table(t) = root {
        *table = t;
    }
    r.map_err(|why| ConfigError::Override {
        path: path.to_string(),
        why,
    })
}

fn set(v: &mut Value, parts: &[&str], value: Value) -> Result<(), String> {
    match parts {
        [] => Err("empty path".to_string()),
        [last] => match v {
            Value::Table(t) => {
                t.insert(last.to_string(), value);
                Ok(())
            }
            Value::Array(a) => {
                let n = a.len();
                let i: usize = last.parse().map_err(|_| format!("`{last}` is not an array index"))?;
                let slot = a
                    .get_mut(i)
                    .ok_or_else(|| format!("index {i} is out of range (array has {n})"))?;
                *slot = value;
                Ok(())
            }
            _ => Err(format!("`{last}`: parent is not a table or array")),
        },
        [first, rest @ ..] => set(step(v, first)?, rest, value),
    }
}

fn step<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Value, String> {
    match v {
        Value::Table(t) => {
            if !t.contains_key(key) {
                t.insert(key.to_string(), Value::Table(Table::new()));
            }
            t.get_mut(key).ok_or_else(|| format!("no key `{key}`"))
        }
        Value::Array(a) => {
            let n = a.len();
            let i: usize = key.parse().map_err(|_| format!("`{key}` is not an array index"))?;
            a.get_mut(i)
                .ok_or_else(|| format!("index {i} is out of range (array has {n})"))
        }
        _ => Err(format!("`{key}`: parent is not a table or array")),
    }
}
