//! Counters in the Prometheus text exposition format (version 0.0.4): `# HELP`,
//! `# TYPE`, then `name{label="value"} number` lines; HELP/TYPE once per family.

use crate::port::PortStats;
use crate::stage::NodeStats;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Builds one exposition text.
#[derive(Default, Debug)]
pub struct Prom {
    text: String,
    families: Vec<&'static str>,
}

fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Prom {
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&mut self, name: &'static str, help: &str, kind: &str) {
        if !self.families.contains(&name) {
            self.families.push(name);
            let _ = writeln!(self.text, "# HELP {name} {help}");
            let _ = writeln!(self.text, "# TYPE {name} {kind}");
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &dyn core::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(k);
                self.text.push_str("=\"");
                escape(v, &mut self.text);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A counter sample.
    pub fn counter(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], v: u64) {
        self.family(name, help, "counter");
        self.sample(name, labels, &v);
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], v: f64) {
        self.family(name, help, "gauge");
        self.sample(name, labels, &v);
    }

    /// Per-stage packet, tx, punt and per-reason drop counters.
    pub fn nodes<'a>(&mut self, worker: &str, nodes: impl Iterator<Item = &'a NodeStats>) {
        for n in nodes {
            let l = [("worker", worker), ("node", n.name)];
            self.counter(
                "dp_node_packets_total",
                "Packets that entered a stage",
                &l,
                n.packets,
            );
            self.counter(
                "dp_node_tx_total",
                "Packets a stage sent to a port",
                &l,
                n.tx,
            );
            self.counter(
                "dp_node_punts_total",
                "Packets a stage punted to the control plane",
                &l,
                n.punts,
            );
            for (i, c) in n.drops.iter().enumerate() {
                if *c > 0 {
                    let l = [
                        ("worker", worker),
                        ("node", n.name),
                        ("reason", n.reason_name(i)),
                    ];
                    self.counter(
                        "dp_node_drops_total",
                        "Packets a stage dropped, by reason",
                        &l,
                        *c,
                    );
                }
            }
        }
    }

    /// Port counters.
    pub fn port(&mut self, port: &str, s: &PortStats) {
        let l = [("port", port)];
        self.counter(
            "dp_port_rx_packets_total",
            "Frames received",
            &l,
            s.rx_packets,
        );
        self.counter("dp_port_rx_bytes_total", "Bytes received", &l, s.rx_bytes);
        self.counter(
            "dp_port_rx_dropped_total",
            "Frames lost on receive",
            &l,
            s.rx_dropped,
        );
        self.counter("dp_port_tx_packets_total", "Frames sent", &l, s.tx_packets);
        self.counter("dp_port_tx_bytes_total", "Bytes sent", &l, s.tx_bytes);
        self.counter(
            "dp_port_tx_dropped_total",
            "Frames that could not be sent",
            &l,
            s.tx_dropped,
        );
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_prometheus_text() {
        static E: &[&str] = &["no-route", "ttl-expired"];
        let mut n = NodeStats::new("ip4-lookup", E);
        n.packets = 10;
        n.drops[1] = 3;
        let mut p = Prom::new();
        p.nodes("0", [n.clone(), n].iter());
        p.port(
            "eth\"0",
            &PortStats {
                rx_packets: 5,
                ..Default::default()
            },
        );
        let t = p.finish();
        assert_eq!(t.matches("# TYPE dp_node_packets_total counter").count(), 1);
        assert!(t.contains(
            "dp_node_drops_total{worker=\"0\",node=\"ip4-lookup\",reason=\"ttl-expired\"} 3"
        ));
        assert!(t.contains("dp_port_rx_packets_total{port=\"eth\\\"0\"} 5"));
        assert!(!t.contains("no-route"));
    }
}
