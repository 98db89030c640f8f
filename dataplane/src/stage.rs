//! Graph nodes (stages) with VPP-style drop-reason counters (`show errors`), node
//! counters, and a decoded per-packet trace (`trace add` / `show trace`).
//!
//! A [`Stage`] works on a whole [`Batch`]; it sorts each packet to a [`Next`] hop via
//! [`Batch::dispatch`]: a named next node (`Next::Node(i)` = the i-th name of
//! [`Stage::next_nodes`]), the node's default successor (`Next::Keep`), a port, the
//! control plane, or a counted drop. Nodes are wired into a [`crate::graph::Graph`]
//! (a linear [`Pipeline`] is a graph whose nodes keep to the next one). Each node's
//! counters live in the graph's [`NodeStats`], so a stage's own `&mut self` stays
//! free for its tables inside the dispatch closure.
//!
//! Drop reasons are declared once per node with [`drop_reasons!`](crate::drop_reasons):
//! an enum whose variants carry a name and a description; `Next::from(reason)` drops
//! with that reason, counted per reason with no cap.

use crate::batch::{Batch, Next, Out};
use crate::buf::Pkt;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

pub use crate::graph::Graph;

/// A linear chain of stages: the graph built by [`Graph::push`].
pub type Pipeline = Graph;

/// Declares a node's drop reasons as one enum with a name and a description per
/// variant (string literals or `&'static str` constants, so that nodes dropping for
/// the same reason share its text), in `Next::Drop` index order:
///
/// ```
/// dataplane::drop_reasons! {
///     /// Why `ip4-input` drops.
///     pub enum Ip4InputDrop {
///         Truncated = ("truncated", "shorter than its IPv4 header"),
///         Checksum = ("bad-checksum", "IPv4 header checksum does not verify"),
///     }
/// }
/// assert_eq!(Ip4InputDrop::NAMES, &["truncated", "bad-checksum"]);
/// assert_eq!(dataplane::batch::Next::from(Ip4InputDrop::Checksum), dataplane::batch::Next::Drop(1));
/// ```
#[macro_export]
macro_rules! drop_reasons {
    ($(#[$m:meta])* $vis:vis enum $name:ident {
        $($(#[$vm:meta])* $var:ident = ($s:expr, $d:expr)),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        $vis enum $name { $($(#[$vm])* $var),+ }
        impl $name {
            /// Reason names, index = `Next::Drop` code.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// One-line descriptions, same order as `NAMES`.
            pub const HELP: &'static [&'static str] = &[$($d),+];
            /// The `Next::Drop` code of this reason.
            #[inline(always)]
            #[allow(dead_code)]
            pub const fn code(self) -> u16 { self as u16 }
        }
        impl ::core::convert::From<$name> for $crate::batch::Next {
            #[inline(always)]
            fn from(r: $name) -> Self { $crate::batch::Next::Drop(r as u16) }
        }
    };
}

/// Counters of one node.
#[derive(Clone, Debug)]
pub struct NodeStats {
    pub name: &'static str,
    /// Drop-reason names, index = reason.
    pub errors: &'static [&'static str],
    /// Drop-reason descriptions (may be shorter than `errors`).
    pub help: &'static [&'static str],
    /// Packets that entered the node.
    pub packets: u64,
    /// Packets the node sent to a port.
    pub tx: u64,
    /// Packets the node punted to the control plane.
    pub punts: u64,
    /// Packets the node handed to the worker that owns their state.
    pub handoffs: u64,
    /// Drops per reason, one slot per declared reason (sized at start-up).
    pub drops: Vec<u64>,
    /// Drops with a code the node did not declare (a bug in the node; counted, never
    /// lost).
    pub undeclared: u64,
}

impl NodeStats {
    pub fn new(name: &'static str, errors: &'static [&'static str]) -> Self {
        NodeStats {
            name,
            errors,
            help: &[],
            packets: 0,
            tx: 0,
            punts: 0,
            handoffs: 0,
            drops: vec![0; errors.len().max(1)],
            undeclared: 0,
        }
    }

    /// Counts one drop.
    #[inline(always)]
    pub fn count_drop(&mut self, reason: u16) {
        match self.drops.get_mut(reason as usize) {
            Some(c) => *c += 1,
            None => self.undeclared += 1,
        }
    }

    /// Total drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum::<u64>() + self.undeclared
    }

    /// Name of a drop reason.
    pub fn reason_name(&self, reason: usize) -> &'static str {
        self.errors.get(reason).copied().unwrap_or("unknown")
    }

    /// Description of a drop reason (its name when the node gave none).
    pub fn reason_help(&self, reason: usize) -> &'static str {
        self.help
            .get(reason)
            .copied()
            .unwrap_or_else(|| self.reason_name(reason))
    }

    /// Every non-zero drop count as (reason, description, count), declared reasons
    /// in order, then `undeclared` (a drop code the node did not declare).
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        self.drops
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(i, &c)| (self.reason_name(i), self.reason_help(i), c))
            .chain((self.undeclared > 0).then_some((
                "undeclared",
                "drop code the node did not declare",
                self.undeclared,
            )))
    }

    /// Adds another copy's counters (for summing workers).
    pub fn merge(&mut self, other: &NodeStats) {
        self.packets += other.packets;
        self.tx += other.tx;
        self.punts += other.punts;
        self.handoffs += other.handoffs;
        self.undeclared += other.undeclared;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += *b;
        }
    }

    /// Copies `src`'s counters into `self` without allocating when the shapes match
    /// (how a worker publishes its counters).
    pub fn copy_from(&mut self, src: &NodeStats) {
        self.name = src.name;
        self.errors = src.errors;
        self.help = src.help;
        self.packets = src.packets;
        self.tx = src.tx;
        self.punts = src.punts;
        self.handoffs = src.handoffs;
        self.undeclared = src.undeclared;
        if self.drops.len() == src.drops.len() {
            self.drops.copy_from_slice(&src.drops);
        } else {
            self.drops.clone_from(&src.drops);
        }
    }
}

/// A node's own counter (sessions, allocations, ICMP sent, ...), reported through
/// [`Stage::counters`] and exported as `dp_node_events_total{worker,node,counter}`
/// (counters) or `dp_node_level{worker,node,counter}` (gauges); the family names
/// avoid the words `counter`/`gauge`, which `promtool check metrics` rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    pub value: u64,
    /// A gauge (current value, e.g. sessions in use) rather than a counter.
    pub gauge: bool,
}

impl Counter {
    pub const fn total(name: &'static str, help: &'static str, value: u64) -> Counter {
        Counter {
            name,
            help,
            value,
            gauge: false,
        }
    }
    pub const fn gauge(name: &'static str, help: &'static str, value: u64) -> Counter {
        Counter {
            name,
            help,
            value,
            gauge: true,
        }
    }
}

/// Bytes of each packet a trace record keeps (Ethernet + 2 VLANs + PPPoE + IPv6 +
/// the TCP/UDP ports fit).
pub const TRACE_HEAD: usize = 96;

/// One trace record: which node saw which packet and where it sent it.
#[derive(Clone, Copy, Debug)]
pub struct TraceRec {
    /// Sequence number of the traced packet (per graph).
    pub pkt: u32,
    pub node: &'static str,
    pub next: Next,
    /// Name of the next node when `next` is `Next::Node`.
    pub next_node: &'static str,
    /// The node's drop-reason names (to name a drop).
    pub errors: &'static [&'static str],
    /// Port the packet arrived on.
    pub port: u16,
    /// Packet length when the node finished with it.
    pub len: u16,
    /// First bytes of the packet at that point.
    pub head: [u8; TRACE_HEAD],
}

/// A bounded trace buffer; records are preallocated so tracing allocates nothing.
#[derive(Debug)]
pub struct Trace {
    recs: Vec<TraceRec>,
    cap: usize,
    /// Records that did not fit.
    pub overflow: u64,
}

impl Trace {
    /// A trace buffer of `cap` records (0 disables it).
    pub fn new(cap: usize) -> Self {
        Trace {
            recs: Vec::with_capacity(cap),
            cap,
            overflow: 0,
        }
    }

    /// Records a packet leaving a node.
    #[inline]
    pub fn record(&mut self, node: &NodeStats, pkt: &Pkt, next: Next, next_node: &'static str) {
        if self.recs.len() >= self.cap {
            self.overflow += 1;
            return;
        }
        let mut head = [0u8; TRACE_HEAD];
        let d = pkt.data();
        let n = d.len().min(TRACE_HEAD);
        head[..n].copy_from_slice(&d[..n]);
        self.recs.push(TraceRec {
            pkt: pkt.meta.trace,
            node: node.name,
            next,
            next_node,
            errors: node.errors,
            port: pkt.meta.port,
            len: pkt.len() as u16,
            head,
        });
    }

    pub fn records(&self) -> &[TraceRec] {
        &self.recs
    }

    pub fn clear(&mut self) {
        self.recs.clear();
        self.overflow = 0;
    }

    /// Human-readable trace like VPP's `show trace`: per packet, one line per node it
    /// passed with where it went, and the decoded headers (addresses, ports, VLANs,
    /// PPPoE session id) as the node left them.
    pub fn format(&self) -> String {
        let mut s = String::new();
        let mut last = 0u32;
        // one block per packet, its nodes in the order it passed them
        let mut order: Vec<&TraceRec> = self.recs.iter().collect();
        order.sort_by_key(|r| r.pkt);
        for r in order {
            if r.pkt != last {
                let _ = writeln!(s, "Packet {} (rx port {})", r.pkt, r.port);
                last = r.pkt;
            }
            let _ = write!(s, "  {:<20} -> ", r.node);
            fmt_next(&mut s, r.next, r.next_node, r.errors);
            let _ = writeln!(s, " len {}", r.len);
            let n = (r.len as usize).min(TRACE_HEAD);
            s.push_str("    ");
            crate::proto::decode::summary(r.head.get(..n).unwrap_or(&[]), &mut s);
            s.push('\n');
        }
        if self.overflow > 0 {
            let _ = writeln!(s, "({} records did not fit)", self.overflow);
        }
        s
    }
}

fn fmt_next(s: &mut String, n: Next, node: &str, errors: &[&str]) {
    let _ = match n {
        Next::Keep => write!(s, "{}", if node.is_empty() { "next" } else { node }),
        Next::Node(_) => write!(s, "{node}"),
        Next::Port(p) => write!(s, "port {p}"),
        Next::Punt => write!(s, "punt"),
        Next::Handoff(w) => write!(s, "handoff worker {w}"),
        Next::Drop(r) => match errors.get(r as usize) {
            Some(e) => write!(s, "drop ({e})"),
            None => write!(s, "drop ({r})"),
        },
    };
}

/// A graph node working on batches.
pub trait Stage: Send {
    /// Node name (`ip4-lookup`, `nat44-in2out`, ...).
    fn name(&self) -> &'static str;
    /// Drop-reason names; `Next::Drop(i)` counts `errors()[i]` (declare them with
    /// [`drop_reasons!`](crate::drop_reasons) and return `Reasons::NAMES`).
    fn errors(&self) -> &'static [&'static str] {
        &[]
    }
    /// Drop-reason descriptions, same order as [`Stage::errors`].
    fn error_help(&self) -> &'static [&'static str] {
        &[]
    }
    /// Names of the nodes this node can send to with `Next::Node(i)` (VPP's next
    /// nodes); the graph resolves them when it is built.
    fn next_nodes(&self) -> &'static [&'static str] {
        &[]
    }
    /// Processes a batch: packets kept stay in `batch` and go to the node's default
    /// successor.
    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out);
    /// Periodic work off the packet path (ageing, retries), called by the worker loop.
    fn tick(&mut self, _out: &mut Out) {}
    /// The node's own counters (sessions, allocations, ICMP sent, ...), reported to
    /// metrics; called off the packet path.
    fn counters(&self, _f: &mut dyn FnMut(Counter)) {}
    /// For a VNF that needs to reach its own node's tables (table updates between
    /// bursts): `graph.node_mut::<T>(name)`.
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        None
    }
}

/// Formats non-zero drop counters of `nodes` like VPP's `show errors`: count, node,
/// reason name and description.
pub fn show_errors<'a>(nodes: impl Iterator<Item = &'a NodeStats>) -> String {
    let mut s = String::new();
    let mut any = false;
    for n in nodes {
        for (reason, help, c) in n.nonzero_drops() {
            if !any {
                let _ = writeln!(
                    s,
                    "{:>12}  {:<24} {:<24} Description",
                    "Count", "Node", "Reason"
                );
                any = true;
            }
            let _ = writeln!(s, "{:>12}  {:<24} {:<24} {}", c, n.name, reason, help);
        }
    }
    if !any {
        s.push_str("no drops\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use alloc::boxed::Box;

    struct Even;
    impl Stage for Even {
        fn name(&self) -> &'static str {
            "even"
        }
        fn errors(&self) -> &'static [&'static str] {
            &["odd-byte"]
        }
        fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
            batch.dispatch(node, out, |p, _| {
                if p.data().first().is_some_and(|b| b % 2 == 0) {
                    Next::Port(0)
                } else {
                    Next::Drop(0)
                }
            });
        }
    }

    #[test]
    fn pipeline_counts_and_traces() {
        let pool = Pool::new(32).unwrap();
        let mut out = Out::new(1, pool.cache());
        out.trace = Trace::new(8);
        let mut pl = Pipeline::new();
        pl.push(Box::new(Even));
        pl.trace_next(2);
        let mut b = Batch::new();
        for i in 0..6u8 {
            let mut p = out.cache.alloc().unwrap();
            p.copy_from(&[i, 0xaa]).unwrap();
            b.push(p).unwrap();
        }
        pl.run(&mut b, &mut out);
        assert_eq!(out.ports[0].len(), 3);
        let errs = pl.show_errors();
        assert!(errs.contains("odd-byte"), "{errs}");
        assert!(errs.contains("           3  even"), "{errs}");
        let t = out.trace.format();
        assert_eq!(out.trace.records().len(), 2, "{t}");
        assert!(t.contains("Packet 1 (rx port 0)\n  even"), "{t}");
        assert!(t.contains("-> drop (odd-byte)"), "{t}");
        assert!(t.contains("-> port 0"), "{t}");
    }
}
