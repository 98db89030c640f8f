//! Traffic and subscriber generator: templated streams, payload signatures for loss,
//! reordering and latency, RFC 2544 throughput search, pcap record/replay (issue 4);
//! subscriber emulation (`subscribers`): PPPoE clients (RFC 2516, RFC 1661; issue 8)
//! and IPoE clients, a DHCPv4 client per subscriber (RFC 2131 §4.4 with the §4.1
//! retransmission backoff, renewal at T1, rebinding at T2, release; issue 15).
//!
//! * [`profile`]: streams in TOML/YAML; [`stream`]: frame templates and field
//!   variation; [`gen`]: paced transmit; [`sig`]: the tail signature; [`rx`]: loss,
//!   reordering, duplicates, latency (HDR histogram); [`rfc2544`]: §26 benchmarks;
//!   [`replay`]: pcap replay at a rate and capture; [`report`]: JSON + HTML/SVG;
//!   [`run`]: the polling loop and a port-pair trial runner; [`meta`]: the header
//!   (`schema`, `command`, `started`, `machine`, `commit`) of every JSON report;
//!   [`kpi`]: the traffic figures every lab reports in one shape.

pub mod gen;
pub mod kpi;
pub mod meta;
pub mod profile;
pub mod replay;
pub mod report;
pub mod rfc2544;
pub mod run;
pub mod rx;
pub mod sig;
pub mod stream;
pub mod subscribers;

/// Most seconds a time argument (`--duration`, `--seconds`) may be: a day.
pub const MAX_SECONDS: f64 = 86_400.0;

/// Parse a time argument in seconds for clap: finite, not negative, at most
/// [`MAX_SECONDS`]. NaN or infinity would never end a timed loop (or make
/// `Duration::from_secs_f64` panic), so they are refused with a clear error.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(format!(
            "{s:?} seconds: want a finite number from 0 to {MAX_SECONDS}"
        ));
    }
    Ok(v)
}

pub use gen::Generator;
pub use profile::{Profile, StreamSpec};
pub use rx::Receiver;
pub use stream::Stream;

#[cfg(test)]
mod seconds_tests {
    /// Issue 20 item 11: `--seconds NaN|inf` never exited.
    #[test]
    fn non_finite_or_negative_seconds_are_refused() {
        for bad in [
            "NaN", "nan", "inf", "-inf", "infinity", "-1", "1e300", "x", "",
        ] {
            assert!(super::parse_seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(super::parse_seconds("2.5"), Ok(2.5));
        assert_eq!(super::parse_seconds("0"), Ok(0.0));
    }
}
