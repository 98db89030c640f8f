//! The traffic figures every lab reports in one shape (`traffic` in the JSON of
//! `testbed lab router` and `testbed lab bng`), so a script reads the same fields
//! from either, and the pass/fail check on them ([`TrafficKpis::check_plr`]).

use serde::Serialize;

/// Offered and received traffic of a whole lab run (all its traffic phases).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TrafficKpis {
    /// Packets offered.
    pub tx: u64,
    /// Packets received at the far end.
    pub rx: u64,
    /// Packets offered and not received (`tx - rx`, never negative).
    pub lost: u64,
    /// Packet loss ratio, `lost / tx` (0 when nothing was offered).
    pub plr: f64,
    /// Seconds of traffic (the sum of the traffic phases).
    pub duration_s: f64,
    /// Offered packets per second of traffic time, millions.
    pub offered_mpps: f64,
    /// Received packets per second of traffic time, millions.
    pub received_mpps: f64,
    /// One-way latency of the received packets, percentiles and maximum, µs
    /// (`null` when the lab measured none).
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub latency_max_us: Option<f64>,
    /// Streams (flows) offered.
    pub flows: u64,
    /// Of them, those whose first and last packet both arrived (`null` when the lab
    /// does not verify flows).
    pub flows_verified: Option<u64>,
    /// Packets per second one DUT core handles, from the DUT's busy time, millions.
    pub dut_mpps_per_core: f64,
}

impl TrafficKpis {
    /// `lost` and `plr` from `tx` and `rx`, and the rates from `duration_s`.
    pub fn finish(&mut self) {
        self.lost = self.tx.saturating_sub(self.rx);
        self.plr = if self.tx > 0 {
            self.lost as f64 / self.tx as f64
        } else {
            0.0
        };
        if self.duration_s > 0.0 {
            self.offered_mpps = self.tx as f64 / self.duration_s / 1e6;
            self.received_mpps = self.rx as f64 / self.duration_s / 1e6;
        }
    }

    /// The run failed when traffic was offered and none of it arrived, or when its
    /// loss ratio is above `max_plr`: a one-line reason.
    pub fn check_plr(&self, max_plr: Option<f64>) -> Result<(), String> {
        if self.tx > 0 && self.rx == 0 {
            return Err(format!(
                "none of the {} packets offered reached the far end",
                self.tx
            ));
        }
        match max_plr {
            Some(m) if self.plr > m => Err(format!(
                "packet loss ratio {:.6} above --max-plr {m} ({} of {} packets lost)",
                self.plr, self.lost, self.tx
            )),
            _ => Ok(()),
        }
    }
}

/// Parse a `--max-plr` value for clap: a ratio from 0 to 1.
pub fn parse_plr(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a loss ratio"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?}: want a loss ratio from 0 to 1"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plr_threshold() {
        let mut k = TrafficKpis {
            tx: 1000,
            rx: 990,
            duration_s: 2.0,
            ..TrafficKpis::default()
        };
        k.finish();
        assert_eq!(k.lost, 10);
        assert!((k.plr - 0.01).abs() < 1e-12);
        assert!((k.offered_mpps - 0.0005).abs() < 1e-12);
        assert!(k.check_plr(None).is_ok());
        assert!(k.check_plr(Some(0.01)).is_ok());
        let e = k.check_plr(Some(0.001)).unwrap_err();
        assert!(e.contains("above --max-plr 0.001"), "{e}");
        assert!(parse_plr("0.5").is_ok());
        let none = TrafficKpis {
            tx: 5,
            ..TrafficKpis::default()
        };
        assert!(none.check_plr(None).unwrap_err().contains("none of the 5"));
        assert!(TrafficKpis::default().check_plr(Some(0.0)).is_ok());
        for bad in ["-0.1", "1.5", "NaN", "x"] {
            assert!(parse_plr(bad).is_err(), "{bad}");
        }
    }
}
