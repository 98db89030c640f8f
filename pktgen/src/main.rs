//! `pktgen`: send profile streams on a port and count them on another, RFC 2544
//! searches between two ports, pcap replay and capture.

use anyhow::Context;
use clap::{Parser, Subcommand};
use dataplane::buf::Pool;
use dataplane::port::spec;
use pktgen::profile::{Profile, Rate, StreamSpec};
use pktgen::replay::{self, Pace};
use pktgen::rfc2544::{self, SearchConfig};
use pktgen::run::{run_loop, PortPairRunner};
use pktgen::{Generator, Receiver};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status of an RFC 2544 search that ended generator-limited.
const EXIT_GENERATOR_LIMITED: u8 = 3;

#[derive(Parser)]
#[command(
    about = "Packet generator: streams, RFC 2544, pcap replay/record",
    after_help = "Exit status: 0 done; 1 the run failed, the reason on one line on stderr \
                  (a port or file that cannot be opened; run --rx: nothing arrived, or the \
                  loss ratio is above --max-plr); 2 bad command line; 3 (rfc2544) the search \
                  ended generator-limited for some frame size: the report says so and gives \
                  no DUT throughput for it. Every --json report carries schema, command, \
                  started, machine and commit."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send a profile's streams on --tx and count them on --rx.
    Run {
        /// Profile file (TOML, or YAML by extension).
        #[arg(long)]
        profile: PathBuf,
        /// Transmit port spec (afxdp:IF[:Q], afpacket:IF, tap:NAME, pcap:FILE, mem:NAME, memif:PATH[,id=N][,master], vhost-user:PATH[,server], virtio-user:PATH).
        #[arg(long)]
        tx: String,
        /// Receive port spec (default: none, transmit only).
        #[arg(long)]
        rx: Option<String>,
        /// Seconds to send.
        #[arg(long, default_value_t = 5.0, value_parser = pktgen::parse_seconds)]
        duration: f64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// With --rx: the run fails (exit status 1, after the report) when its packet
        /// loss ratio is above X (0 to 1; default: no limit; a run where nothing
        /// arrives fails regardless).
        #[arg(long, value_name = "X", value_parser = pktgen::kpi::parse_plr)]
        max_plr: Option<f64>,
    },
    /// RFC 2544 §26.1 throughput search (+ latency, loss sweep) from --tx to --rx.
    ///
    /// A trial the generator could not offer (more than 2 % short, no loss) is
    /// generator-limited and never becomes the DUT's throughput; when the search ends
    /// on one, the report gives `"throughput": null`, `"generator_limited": true` and
    /// the exit status is 3.
    Rfc2544 {
        /// Transmit port spec (towards the DUT).
        #[arg(long)]
        tx: String,
        /// Receive port spec (from the DUT).
        #[arg(long)]
        rx: String,
        /// Frame sizes (default: RFC 2544 §9.1 set).
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<u16>,
        /// Highest rate to try (e.g. 1Mpps).
        #[arg(long, default_value = "1Mpps")]
        max_rate: String,
        /// Trial length in seconds.
        #[arg(long, default_value_t = 2.0, value_parser = pktgen::parse_seconds)]
        duration: f64,
        /// Acceptable loss ratio (0 = zero loss).
        #[arg(long, default_value_t = 0.0)]
        plr: f64,
        /// Base stream (first stream of this profile; default UDP/IPv4).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Report directory (report.json, report.html, *.svg), created when missing;
        /// relative paths are taken from the current directory.
        #[arg(long, default_value = "rfc2544-report")]
        out: PathBuf,
        /// Print the report as one JSON object (no progress bar).
        #[arg(long)]
        json: bool,
    },
    /// Replay a pcap file on a port.
    Replay {
        #[arg(long)]
        pcap: PathBuf,
        #[arg(long)]
        tx: String,
        /// Rate (e.g. 100kpps, 1Gbps); default: the capture's own timing.
        #[arg(long)]
        rate: Option<String>,
        /// Speed factor for the capture's timing.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        #[arg(long, default_value_t = 1)]
        loops: u64,
        #[arg(long)]
        json: bool,
    },
    /// Capture what a port receives into a pcap file.
    Record {
        #[arg(long)]
        rx: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5.0, value_parser = pktgen::parse_seconds)]
        duration: f64,
        #[arg(long)]
        count: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the reason chain joined by ": ".
            eprintln!("pktgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let pool = Pool::new(65536).context("no memory for the buffer pool")?;
    match cli.cmd {
        Cmd::Run {
            profile,
            tx,
            rx,
            duration,
            json,
            max_plr,
        } => {
            let header = pktgen::meta::Header::start("pktgen.run", 1);
            let p = Profile::load(&profile)?;
            let mut g = Generator::from_profile(&p)?;
            let mut txp = spec::open_str(&tx)?;
            let mut cache = pool.cache();
            let mut rcv = Receiver::new();
            // a time-based progress bar (hidden when stderr is not a terminal or with
            // --json) ticking beside the polling loop
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let pb = if json {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new((duration * 10.0) as u64)
            };
            let ticker = {
                let done = done.clone();
                let pb = pb.clone();
                std::thread::spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                        pb.inc(1);
                    }
                    pb.finish_and_clear();
                })
            };
            let counting = rx.is_some();
            let r = match rx {
                Some(rx) => {
                    let mut rxp = spec::open_str(&rx)?;
                    run_loop(
                        &mut g,
                        txp.as_mut(),
                        rxp.as_mut(),
                        &mut rcv,
                        &mut cache,
                        Duration::from_secs_f64(duration),
                        Duration::from_millis(500),
                        |_| {},
                    )
                }
                None => {
                    let mut none = dataplane::port::pcap::PcapPort::open(None, None)?;
                    run_loop(
                        &mut g,
                        txp.as_mut(),
                        &mut none,
                        &mut rcv,
                        &mut cache,
                        Duration::from_secs_f64(duration),
                        Duration::ZERO,
                        |_| {},
                    )
                }
            };
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = ticker.join();
            if json {
                println!("{}", header.json(&r)?);
            } else if !counting {
                println!(
                    "sent {} ({:.3} Mpps, {} refused by the port)",
                    r.emitted - r.tx_refused,
                    r.tx_pps / 1e6,
                    r.tx_refused
                );
            } else {
                println!(
                    "sent {} ({:.3} Mpps) received {} ({:.3} Mpps) lost {} reordered {} dup {} plr {:.6} lat p50/p99/max {:.1}/{:.1}/{:.1} µs",
                    r.emitted,
                    r.tx_pps / 1e6,
                    r.rx.rx,
                    r.rx_pps / 1e6,
                    r.rx.lost,
                    r.rx.reordered,
                    r.rx.duplicates,
                    r.rx.plr,
                    r.rx.latency.p50_us,
                    r.rx.latency.p99_us,
                    r.rx.latency.max_us
                );
            }
            if counting {
                let mut k = pktgen::kpi::TrafficKpis {
                    tx: r.rx.tx,
                    rx: r.rx.rx,
                    ..pktgen::kpi::TrafficKpis::default()
                };
                k.finish();
                k.check_plr(max_plr)
                    .map_err(|e| anyhow::anyhow!("run failed: {e}"))?;
            }
        }
        Cmd::Rfc2544 {
            tx,
            rx,
            sizes,
            max_rate,
            duration,
            plr,
            profile,
            out,
            json,
        } => {
            let base = match profile {
                Some(p) => Profile::load(&p)?
                    .streams
                    .into_iter()
                    .next()
                    .context("profile has no stream")?,
                None => StreamSpec::udp("rfc2544"),
            };
            let max = match Rate::parse(&max_rate).map_err(anyhow::Error::msg)? {
                Rate::Pps(p) => p,
                _ => anyhow::bail!("--max-rate must be in pps (e.g. 1Mpps)"),
            };
            let cfg = SearchConfig {
                frame_sizes: if sizes.is_empty() {
                    rfc2544::FRAME_SIZES.to_vec()
                } else {
                    sizes
                },
                duration: Duration::from_secs_f64(duration),
                max_rate_pps: max,
                plr,
                ..SearchConfig::default()
            };
            let mut runner = PortPairRunner::new(
                spec::open_str(&tx)?,
                spec::open_str(&rx)?,
                base,
                pool.cache(),
            );
            let rep = rfc2544::run(&mut runner, &format!("{tx} -> {rx}"), &cfg, json)?;
            let html = pktgen::report::write_rfc2544(&out, &rep)?;
            if json {
                println!("{}", serde_json::to_string(&rep)?);
            } else {
                for line in rep.summary_lines() {
                    println!("{line}");
                }
                println!("report: {}", html.display());
            }
            if rep.generator_limited {
                eprintln!(
                    "pktgen: generator-limited: no DUT throughput for some frame size (see {})",
                    html.display()
                );
                return Ok(ExitCode::from(EXIT_GENERATOR_LIMITED));
            }
        }
        Cmd::Replay {
            pcap,
            tx,
            rate,
            speed,
            loops,
            json,
        } => {
            let header = pktgen::meta::Header::start("pktgen.replay", 1);
            let (frames, skipped) = replay::load(&pcap)?;
            let mean = frames
                .iter()
                .map(|f| f.data.len() as f64 + 4.0)
                .sum::<f64>()
                / frames.len().max(1) as f64;
            let pace = match rate {
                Some(r) => match Rate::parse(&r).map_err(anyhow::Error::msg)?.pps(mean) {
                    Some(p) => Pace::Pps(p),
                    None => Pace::Max,
                },
                None => Pace::Original(speed),
            };
            let mut txp = spec::open_str(&tx)?;
            let mut cache = pool.cache();
            let st = replay::replay(txp.as_mut(), &mut cache, &frames, pace, loops, None);
            if json {
                println!("{}", header.json(&st)?);
            } else {
                println!(
                    "sent {} frames ({} refused, {} skipped as too large) in {:.3} s",
                    st.sent,
                    st.refused,
                    skipped,
                    st.elapsed_ns as f64 / 1e9
                );
            }
        }
        Cmd::Record {
            rx,
            out,
            duration,
            count,
        } => {
            let mut rxp = spec::open_str(&rx)?;
            let mut cache = pool.cache();
            let n = replay::record(
                rxp.as_mut(),
                &mut cache,
                &out,
                Duration::from_secs_f64(duration),
                count,
            )?;
            println!("captured {n} frames into {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
