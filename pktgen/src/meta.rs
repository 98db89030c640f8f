//! The header every JSON report of the workspace's tools carries (issue 19): which
//! report it is (`schema`), the command line that made it (`command`), when it
//! started (`started`, RFC 3339 UTC), on what (`machine`: host, CPU model, cores) and
//! from which source (`commit`, the git commit the binary was built from, recorded by
//! this crate's `build.rs`). `pktgen`, `testbed` and the `bench` binary all build
//! their headers here, so the shape is the same in every report.
//!
//! A report is the header's fields followed by the report's own fields in one JSON
//! object ([`Header::wrap`]); the report's fields keep their names.

use serde::Serialize;

/// Which report a JSON object is, and which version of its shape. `name` is the
/// tool and report (`testbed.lab.bng`); `version` grows when a field changes meaning
/// or goes away (adding fields does not change it).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Schema {
    pub name: &'static str,
    pub version: u32,
}

/// The machine a report was made on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub host: String,
    /// CPU model (`model name` of `/proc/cpuinfo`).
    pub cpu_model: String,
    /// CPUs of the machine.
    pub cores: usize,
    /// CPUs this process may run on (its affinity mask).
    pub cores_usable: usize,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
}

impl Machine {
    /// This machine, now.
    pub fn this() -> Machine {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
        };
        let host = read("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let usable = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        Machine {
            host,
            cpu_model,
            cores: if cores > 0 { cores } else { usable },
            cores_usable: usable,
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        }
    }

    /// `CPU, N cores, Linux K` for people.
    pub fn summary(&self) -> String {
        format!(
            "{}, {} cores ({} usable), Linux {}",
            self.cpu_model, self.cores, self.cores_usable, self.kernel
        )
    }
}

/// The git commit this workspace's binaries were built from (`None` when not built
/// from a git checkout).
pub fn commit() -> Option<String> {
    option_env!("PKTGEN_GIT_COMMIT")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// This process's command line, arguments joined by spaces.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Now as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // days since 1970-01-01 to a civil date (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The header of one report. Take it when the run starts ([`Header::start`]) so
/// `started` is the start, and print the report with [`Header::wrap`].
#[derive(Clone, Debug, Serialize)]
pub struct Header {
    pub schema: Schema,
    /// The command line, arguments joined by spaces.
    pub command: String,
    /// Start of the run, RFC 3339 UTC.
    pub started: String,
    pub machine: Machine,
    /// Git commit the binary was built from; `null` when unknown.
    pub commit: Option<String>,
}

/// The header's field names (a report's own fields must not use them).
pub const HEADER_FIELDS: [&str; 5] = ["schema", "command", "started", "machine", "commit"];

impl Header {
    /// The header of report `name` version `version` of this process, started now.
    pub fn start(name: &'static str, version: u32) -> Header {
        Header {
            schema: Schema { name, version },
            command: command_line(),
            started: now_rfc3339(),
            machine: Machine::this(),
            commit: commit(),
        }
    }

    /// One JSON object: the header's fields, then `body`'s. A body that is an object
    /// contributes its fields (a field named like a header field is replaced by the
    /// header's); `null` contributes nothing; any other value goes under `result`.
    pub fn wrap(&self, body: &impl Serialize) -> serde_json::Result<serde_json::Value> {
        let mut out = match serde_json::to_value(self)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        match serde_json::to_value(body)? {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if !HEADER_FIELDS.contains(&k.as_str()) {
                        out.insert(k, v);
                    }
                }
            }
            serde_json::Value::Null => {}
            v => {
                out.insert("result".into(), v);
            }
        }
        Ok(serde_json::Value::Object(out))
    }

    /// [`Header::wrap`] as one line of JSON text.
    pub fn json(&self, body: &impl Serialize) -> serde_json::Result<String> {
        serde_json::to_string(&self.wrap(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[derive(Serialize)]
    struct Body {
        plr: f64,
        machine: &'static str,
    }

    #[test]
    fn wrap_puts_the_header_first_and_keeps_the_body_fields() {
        let h = Header::start("test.report", 3);
        let v = h
            .wrap(&Body {
                plr: 0.5,
                machine: "x",
            })
            .unwrap();
        assert_eq!(v["schema"]["name"], "test.report");
        assert_eq!(v["schema"]["version"], 3);
        assert_eq!(v["plr"], 0.5);
        assert!(v["machine"]["cores"].as_u64().unwrap() >= 1, "{v}");
        assert!(v["started"].as_str().unwrap().ends_with('Z'));
        assert!(v["command"].is_string());
        assert!(v.get("commit").is_some());
        let n = h.wrap(&serde_json::Value::Null).unwrap();
        assert_eq!(n.as_object().unwrap().len(), HEADER_FIELDS.len());
        let s = h.wrap(&7).unwrap();
        assert_eq!(s["result"], 7);
    }
}
