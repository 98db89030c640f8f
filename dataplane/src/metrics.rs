//! Counters in the Prometheus text exposition format (version 0.0.4): `# HELP`,
//! `# TYPE`, then `name{label="value"} number` lines; HELP/TYPE once per family.

use crate::port::PortStats;
use crate::stage::NodeStats;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// A metric family as the code exports it: the registry the VNF packages take their
/// monitoring parameters from (`descriptors`), so a package names only metrics
/// that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Family name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
}

/// Frames received per port (`port` label).
pub const PORT_RX_PACKETS: Metric = Metric {
    name: "dp_port_rx_packets_total",
    help: "Frames received",
    kind: "counter",
};
/// Frames sent per port.
pub const PORT_TX_PACKETS: Metric = Metric {
    name: "dp_port_tx_packets_total",
    help: "Frames sent",
    kind: "counter",
};
/// Bytes received per port.
pub const PORT_RX_BYTES: Metric = Metric {
    name: "dp_port_rx_bytes_total",
    help: "Bytes received",
    kind: "counter",
};
/// Bytes sent per port.
pub const PORT_TX_BYTES: Metric = Metric {
    name: "dp_port_tx_bytes_total",
    help: "Bytes sent",
    kind: "counter",
};
/// Drops per node and reason (every declared reason, zero or not).
pub const NODE_DROPS: Metric = Metric {
    name: "dp_node_drops_total",
    help: "Packets a node dropped, by reason (every declared reason)",
    kind: "counter",
};
/// Poll loops per worker.
pub const WORKER_LOOPS: Metric = Metric {
    name: "dp_worker_loops_total",
    help: "Poll loop iterations",
    kind: "counter",
};
/// Poll loops without a packet per worker (busy ratio = 1 - idle / loops).
pub const WORKER_IDLE_LOOPS: Metric = Metric {
    name: "dp_worker_idle_loops_total",
    help: "Poll loops with no packet",
    kind: "counter",
};

/// Builds one exposition text. Samples are grouped by metric family in the output
/// (the text format requires a family's samples to be contiguous), in the order the
/// families were first used.
#[derive(Default, Debug)]
pub struct Prom {
    families: Vec<Family>,
}

#[derive(Debug)]
struct Family {
    name: String,
    text: String,
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

/// A metric or label name made valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`): other characters
/// become `_`.
pub fn sanitize(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
        s.push(if ok { c } else { '_' });
    }
    s
}

impl Prom {
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: &str) -> &mut String {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                let mut text = String::new();
                let _ = writeln!(text, "# HELP {name} {}", help.replace('\n', " "));
                let _ = writeln!(text, "# TYPE {name} {kind}");
                self.families.push(Family {
                    name: name.into(),
                    text,
                });
                self.families.len() - 1
            }
        };
        &mut self.families[i].text
    }

    fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        labels: &[(&str, &str)],
        value: &dyn core::fmt::Display,
    ) {
        let text = self.family(name, help, kind);
        text.push_str(name);
        if !labels.is_empty() {
            text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(k);
                text.push_str("=\"");
                escape(v, text);
                text.push('"');
            }
            text.push('}');
        }
        let _ = writeln!(text, " {value}");
    }

    /// A counter sample.
    /// A sample of a registered family (a counter or an integer gauge).
    pub fn metric(&mut self, m: &Metric, labels: &[(&str, &str)], v: u64) {
        if m.kind == "gauge" {
            self.gauge(m.name, m.help, labels, v as f64);
        } else {
            self.counter(m.name, m.help, labels, v);
        }
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: u64) {
        self.sample(name, help, "counter", labels, &v);
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], v: f64) {
        let v = if v.is_finite() { v } else { 0.0 };
        self.sample(name, help, "gauge", labels, &v);
    }

    /// Every node's own counters as `dp_node_events_total` (counters) /
    /// `dp_node_level` (gauges) labelled with the node and the counter name (the
    /// family names must not contain `counter` or `gauge`: promtool's lint).
    pub fn node_counters<'a>(
        &mut self,
        worker: &str,
        counters: impl Iterator<Item = (&'a str, &'a crate::stage::Counter)>,
    ) {
        for (node, c) in counters {
            let l = [("worker", worker), ("node", node), ("counter", c.name)];
            if c.gauge {
                self.gauge(
                    "dp_node_level",
                    "A node's own gauge (label counter names it)",
                    &l,
                    c.value as f64,
                );
            } else {
                self.counter(
                    "dp_node_events_total",
                    "A node's own counter (label counter names it)",
                    &l,
                    c.value,
                );
            }
        }
    }

    /// The worker loop's counters and the engine-level drops.
    pub fn worker(
        &mut self,
        worker: &str,
        s: &crate::worker::WorkerStats,
        o: &crate::batch::OutStats,
    ) {
        let l = [("worker", worker)];
        for (name, help, v) in [
            (WORKER_LOOPS.name, WORKER_LOOPS.help, s.loops),
            (
                "dp_worker_busy_cycles_total",
                "CPU cycles (TSC) spent in polls that moved a packet",
                s.busy_cycles,
            ),
            (WORKER_IDLE_LOOPS.name, WORKER_IDLE_LOOPS.help, s.idle_loops),
            (
                "dp_worker_rx_packets_total",
                "Packets received from the ports",
                s.rx_packets,
            ),
            (
                "dp_worker_tx_packets_total",
                "Packets the ports took for transmission",
                s.tx_packets,
            ),
            (
                "dp_worker_punted_total",
                "Packets handed to the control plane",
                s.punted,
            ),
            (
                "dp_worker_punt_dropped_total",
                "Punted packets the control plane ring could not take",
                s.punt_dropped,
            ),
            (
                "dp_worker_injected_total",
                "Packets the control plane injected",
                s.injected,
            ),
            (
                "dp_worker_inject_dropped_total",
                "Injected packets with no port or a full queue",
                s.inject_dropped,
            ),
            (
                "dp_worker_tx_unsent_total",
                "Packets a port could not take",
                s.tx_unsent,
            ),
            ("dp_worker_ticks_total", "Graph timer runs", s.ticks),
            (
                "dp_worker_handed_off_total",
                "Packets handed to the worker that owns their state",
                s.handed_off,
            ),
            (
                "dp_worker_handoff_received_total",
                "Packets other workers handed to this one",
                s.handoff_received,
            ),
            (
                "dp_worker_handoff_dropped_total",
                "Packets dropped because the hand-off ring to their owner was full",
                s.handoff_dropped,
            ),
            (
                "dp_engine_tx_full_total",
                "Packets dropped because a transmit queue was full",
                o.tx_full,
            ),
            (
                "dp_engine_no_port_total",
                "Packets sent to a port that does not exist",
                o.no_port,
            ),
            (
                "dp_engine_punt_full_total",
                "Packets dropped because the punt batch was full",
                o.punt_full,
            ),
            (
                "dp_engine_no_edge_total",
                "Packets sent to an undeclared next node",
                o.no_edge,
            ),
            (
                "dp_engine_frame_full_total",
                "Packets dropped because a next node's frame was full",
                o.frame_full,
            ),
            (
                "dp_engine_no_handoff_total",
                "Packets handed to a worker that does not exist, or whose hand-off batch was full",
                o.no_handoff,
            ),
        ] {
            self.counter(name, help, &l, v);
        }
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
            self.counter(
                "dp_node_handoffs_total",
                "Packets a stage handed to the worker that owns their state",
                &l,
                n.handoffs,
            );
            for (i, c) in n.drops.iter().enumerate() {
                let l = [
                    ("worker", worker),
                    ("node", n.name),
                    ("reason", n.reason_name(i)),
                ];
                self.metric(&NODE_DROPS, &l, *c);
            }
            if n.undeclared > 0 {
                let l = [
                    ("worker", worker),
                    ("node", n.name),
                    ("reason", "undeclared"),
                ];
                self.metric(&NODE_DROPS, &l, n.undeclared);
            }
        }
    }

    /// Port counters.
    pub fn port(&mut self, port: &str, s: &PortStats) {
        let l = [("port", port)];
        self.metric(&PORT_RX_PACKETS, &l, s.rx_packets);
        self.metric(&PORT_RX_BYTES, &l, s.rx_bytes);
        self.counter(
            "dp_port_rx_dropped_total",
            "Frames lost on receive",
            &l,
            s.rx_dropped,
        );
        self.metric(&PORT_TX_PACKETS, &l, s.tx_packets);
        self.metric(&PORT_TX_BYTES, &l, s.tx_bytes);
        self.counter(
            "dp_port_tx_dropped_total",
            "Frames that could not be sent",
            &l,
            s.tx_dropped,
        );
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        let mut t = String::new();
        for f in self.families {
            t.push_str(&f.text);
        }
        t
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
        assert!(
            t.contains("reason=\"no-route\"} 0"),
            "zero reasons listed too"
        );
        // one family's samples are contiguous
        let first = t.find("dp_node_packets_total{").unwrap();
        let last = t.rfind("dp_node_packets_total{").unwrap();
        assert!(!t[first..last].contains("dp_node_tx_total"), "{t}");
    }
}
