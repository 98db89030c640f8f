//! `testbed lab run FILE`: a netns lab from a scenario file (TOML). The file names
//! namespaces, veth pairs, bridges, TAP devices, setup commands, the processes to run
//! (VNFs, peers) and the traffic; the testbed creates everything under its per-process
//! prefix, runs the traffic with `pktgen` from inside a namespace, prints the result
//! (JSON with `--json`) and removes everything it created, also on error and Ctrl-C.
//!
//! ```toml
//! [[netns]]
//! name = "t"
//! [[netns]]
//! name = "d"
//! [[veth]]
//! a = "t:g0"            # namespace:interface
//! b = "d:d0"
//! [[bridge]]
//! ns = "d"
//! name = "br0"
//! ports = ["d1", "d2"]
//! [[tap]]
//! ns = "d"
//! name = "tap0"
//! [[exec]]              # setup commands, in order; {mac:NS:DEV} and {ns:NS} expand
//! ns = "d"
//! cmd = ["ip", "neigh", "replace", "198.51.100.2", "lladdr", "{mac:t:s0}", "dev", "d1"]
//! [[process]]           # started after setup, stopped at the end
//! ns = "d"
//! cmd = ["router", "--config", "router.toml"]   # relative paths: from the file's dir
//! ready = "router ready"                        # wait for this line in its output
//! [traffic]
//! tx = "t:afpacket:g0"  # namespace:port spec
//! rx = "t:afpacket:s0"
//! duration = 2.0
//! rate = "100kpps"
//! size = 64
//! src_mac = "{mac:t:g0}"
//! dst_mac = "{mac:d:d0}"
//! src = "192.0.2.2"
//! dst = "198.18.0.1"
//! flows = 16
//! ```

use crate::netns::{in_netns, Lab};
use anyhow::{bail, Context};
use dataplane::buf::Pool;
use dataplane::port::spec;
use pktgen::profile::{FieldSpec, Mode, Scalar, SizeSpec, StreamSpec};
use pktgen::run::run_loop;
use pktgen::{Generator, Receiver, Stream};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetnsDef {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VethDef {
    a: String,
    b: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeDef {
    ns: String,
    name: String,
    #[serde(default)]
    ports: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TapDef {
    ns: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecDef {
    ns: String,
    cmd: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessDef {
    ns: String,
    cmd: Vec<String>,
    #[serde(default)]
    ready: Option<String>,
}

fn d_duration() -> f64 {
    2.0
}
fn d_rate() -> String {
    "10kpps".into()
}
fn d_size() -> u16 {
    64
}
fn d_flows() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficDef {
    tx: String,
    rx: String,
    #[serde(default = "d_duration")]
    duration: f64,
    #[serde(default = "d_rate")]
    rate: String,
    #[serde(default = "d_size")]
    size: u16,
    #[serde(default)]
    src_mac: Option<String>,
    #[serde(default)]
    dst_mac: Option<String>,
    #[serde(default)]
    src: Option<String>,
    #[serde(default)]
    dst: Option<String>,
    #[serde(default = "d_flows")]
    flows: u32,
}

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    netns: Vec<NetnsDef>,
    #[serde(default)]
    veth: Vec<VethDef>,
    #[serde(default)]
    bridge: Vec<BridgeDef>,
    #[serde(default)]
    tap: Vec<TapDef>,
    #[serde(default)]
    exec: Vec<ExecDef>,
    #[serde(default)]
    process: Vec<ProcessDef>,
    traffic: Option<TrafficDef>,
}

/// Options of `testbed lab run`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 done; 1 the run failed, with the reason on one line on \
                  stderr: a bad scenario, a namespace, link or process that could not be \
                  set up, a process that never printed its ready marker, no packet of the \
                  traffic section arrived, or the loss ratio is above --max-plr (the report \
                  is printed first); 2 bad command line."
)]
pub struct RunArgs {
    /// Scenario file (TOML).
    pub file: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// With a traffic section: the run fails when its packet loss ratio is above X
    /// (0 to 1; default: no limit; a run where nothing arrives fails regardless).
    #[arg(long, value_name = "X", value_parser = pktgen::kpi::parse_plr)]
    pub max_plr: Option<f64>,
}

struct Ctx {
    lab: Lab,
    ns: HashMap<String, String>,
}

impl Ctx {
    fn ns(&self, short: &str) -> anyhow::Result<&str> {
        self.ns
            .get(short)
            .map(|s| s.as_str())
            .with_context(|| format!("namespace {short:?} is not declared in [[netns]]"))
    }

    /// Expands `{ns:NAME}` and `{mac:NS:DEV}`.
    fn expand(&self, s: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}') else {
                out.push_str(&rest[i..]);
                return Ok(out);
            };
            let inner = &rest[i + 1..i + j];
            if let Some(n) = inner.strip_prefix("ns:") {
                out.push_str(self.ns(n)?);
            } else if let Some(m) = inner.strip_prefix("mac:") {
                let (n, dev) = m.split_once(':').context("{mac:NS:DEV}")?;
                out.push_str(&self.lab.mac(self.ns(n)?, dev)?);
            } else {
                out.push_str(&rest[i..=i + j]);
            }
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `NS:REST` → (full namespace, REST).
    fn split<'a>(&self, s: &'a str) -> anyhow::Result<(String, &'a str)> {
        let (n, r) = s
            .split_once(':')
            .with_context(|| format!("{s:?}: expected NAMESPACE:..."))?;
        Ok((self.ns(n)?.to_string(), r))
    }
}

/// Builds and runs a scenario; returns the traffic result as JSON (null without
/// traffic). Everything is removed when this returns.
pub fn run_file(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let sc: Scenario =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(t) = &sc.traffic {
        // TOML has nan and inf: a timed loop must end.
        pktgen::parse_seconds(&t.duration.to_string())
            .map_err(|e| anyhow::anyhow!("{}: traffic duration {e}", path.display()))?;
    }
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .canonicalize()?;
    let lab = Lab::new("sc")?;
    let mut ctx = Ctx {
        lab,
        ns: HashMap::new(),
    };
    for n in &sc.netns {
        let full = ctx.lab.netns(&n.name)?;
        ctx.ns.insert(n.name.clone(), full);
    }
    for v in &sc.veth {
        let (na, a) = ctx.split(&v.a)?;
        let (nb, b) = ctx.split(&v.b)?;
        ctx.lab.veth(&na, a, &nb, b)?;
    }
    for t in &sc.tap {
        ctx.lab.tap(ctx.ns(&t.ns)?, &t.name)?;
    }
    for b in &sc.bridge {
        let ports: Vec<&str> = b.ports.iter().map(|s| s.as_str()).collect();
        ctx.lab.bridge(ctx.ns(&b.ns)?, &b.name, &ports)?;
    }
    for e in &sc.exec {
        let cmd = e
            .cmd
            .iter()
            .map(|a| ctx.expand(a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refs: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
        ctx.lab.exec(ctx.ns(&e.ns)?, &refs)?;
    }
    let logdir = std::env::temp_dir().join(format!("{}-logs", ctx.lab.prefix()));
    std::fs::create_dir_all(&logdir)?;
    for (i, p) in sc.process.iter().enumerate() {
        let mut cmd = Vec::new();
        for a in &p.cmd {
            let x = ctx.expand(a)?;
            // relative paths that exist beside the scenario file are made absolute
            let cand = dir.join(&x);
            cmd.push(if !x.starts_with('/') && cand.exists() {
                cand.display().to_string()
            } else {
                x
            });
        }
        let refs: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
        let log = logdir.join(format!("process{i}.log"));
        ctx.lab.spawn(ctx.ns(&p.ns)?, &refs, Some(&log))?;
        if let Some(marker) = &p.ready {
            let mut ok = false;
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(50));
                if std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains(marker.as_str())
                {
                    ok = true;
                    break;
                }
            }
            if !ok {
                bail!(
                    "process `{}` did not print {marker:?}; its log: {}",
                    p.cmd.join(" "),
                    std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .lines()
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
        }
    }
    let Some(t) = &sc.traffic else {
        return Ok(serde_json::Value::Null);
    };
    let (tx_ns, tx_spec) = ctx.split(&t.tx)?;
    let (rx_ns, rx_spec) = ctx.split(&t.rx)?;
    let mut txp = in_netns(&tx_ns, || spec::open_str(tx_spec))??;
    let mut rxp = in_netns(&rx_ns, || spec::open_str(rx_spec))??;
    let mut s = StreamSpec::udp("scenario");
    s.src_mac = t.src_mac.as_deref().map(|m| ctx.expand(m)).transpose()?;
    s.dst_mac = t.dst_mac.as_deref().map(|m| ctx.expand(m)).transpose()?;
    if let Some(a) = &t.src {
        s.ip.src = a.as_str().into();
    }
    if let Some(a) = &t.dst {
        s.ip.dst = a.as_str().into();
    }
    s.l4.sport = FieldSpec::Vary {
        from: Scalar::Num(1024),
        to: Scalar::Num(1024 + t.flows.clamp(1, 60000) as u64 - 1),
        step: None,
        mode: Mode::Inc,
    };
    s.size = SizeSpec::Fixed(t.size as u64);
    s.rate = Scalar::Str(t.rate.clone());
    let pool = Pool::new(32768).context("pool")?;
    let mut cache = pool.cache();
    let mut g = Generator::new(vec![Stream::new(0, &s)?]);
    let mut rcv = Receiver::new();
    let r = run_loop(
        &mut g,
        txp.as_mut(),
        rxp.as_mut(),
        &mut rcv,
        &mut cache,
        Duration::from_secs_f64(t.duration),
        Duration::from_millis(300),
        |_| {},
    );
    let _ = std::fs::remove_dir_all(&logdir);
    Ok(serde_json::to_value(&r)?)
}

/// `testbed lab run FILE`.
pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let header = pktgen::meta::Header::start("testbed.lab.run", 1);
    let v = run_file(&args.file)?;
    if args.json {
        println!("{}", header.json(&v)?);
    } else {
        match v.get("rx") {
            Some(rx) => println!(
                "sent {} received {} lost {} reordered {} duplicates {} latency p99 {} µs",
                v["emitted"],
                rx["rx"],
                rx["lost"],
                rx["reordered"],
                rx["duplicates"],
                rx["latency"]["p99_us"]
            ),
            None => println!("lab built and removed (no traffic section)"),
        }
    }
    if let Some(rx) = v.get("rx") {
        let mut k = pktgen::kpi::TrafficKpis {
            tx: rx["tx"].as_u64().unwrap_or(0),
            rx: rx["rx"].as_u64().unwrap_or(0),
            ..pktgen::kpi::TrafficKpis::default()
        };
        k.finish();
        k.check_plr(args.max_plr)
            .map_err(|e| anyhow::anyhow!("lab failed: {e}"))?;
    }
    Ok(())
}
