//! Stages (graph nodes) and pipelines, with VPP-style drop-reason counters
//! (`show errors`) and per-packet trace (`trace add` / `show trace`).
//!
//! A [`Stage`] works on a whole [`Batch`]; it sorts each packet to a [`Next`] hop via
//! [`Batch::dispatch`]. A [`Pipeline`] runs its stages in order on a batch; what the
//! last stage keeps is dropped as `end-of-pipeline`. Each stage's counters live in
//! the pipeline's [`NodeStats`], so a stage's own `&mut self` stays free for its
//! tables inside the dispatch closure.

use crate::batch::{Batch, Next, Out};
use crate::buf::Pkt;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Most drop reasons one stage may declare.
pub const MAX_REASONS: usize = 32;

/// Counters of one stage.
#[derive(Clone, Debug)]
pub struct NodeStats {
    pub name: &'static str,
    /// Drop-reason names, index = reason.
    pub errors: &'static [&'static str],
    /// Packets that entered the stage.
    pub packets: u64,
    /// Packets the stage sent to a port.
    pub tx: u64,
    /// Packets the stage punted to the control plane.
    pub punts: u64,
    /// Drops per reason.
    pub drops: [u64; MAX_REASONS],
}

impl NodeStats {
    pub fn new(name: &'static str, errors: &'static [&'static str]) -> Self {
        NodeStats {
            name,
            errors,
            packets: 0,
            tx: 0,
            punts: 0,
            drops: [0; MAX_REASONS],
        }
    }

    /// Counts one drop; reasons past [`MAX_REASONS`] land in the last slot.
    #[inline(always)]
    pub fn count_drop(&mut self, reason: u16) {
        let i = (reason as usize).min(MAX_REASONS - 1);
        self.drops[i] += 1;
    }

    /// Total drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Name of a drop reason.
    pub fn reason_name(&self, reason: usize) -> &'static str {
        self.errors.get(reason).copied().unwrap_or("unknown")
    }

    /// Adds another copy's counters (for summing workers).
    pub fn merge(&mut self, other: &NodeStats) {
        self.packets += other.packets;
        self.tx += other.tx;
        self.punts += other.punts;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += *b;
        }
    }
}

/// One trace record: which stage saw which packet and where it sent it.
#[derive(Clone, Copy, Debug)]
pub struct TraceRec {
    /// Sequence number of the traced packet (per pipeline).
    pub pkt: u32,
    pub node: &'static str,
    pub next: Next,
    /// Packet length when the stage finished with it.
    pub len: u16,
    /// First bytes of the packet at that point.
    pub head: [u8; 64],
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

    /// Records a packet leaving a stage.
    #[inline]
    pub fn record(&mut self, node: &'static str, pkt: &Pkt, next: Next) {
        if self.recs.len() >= self.cap {
            self.overflow += 1;
            return;
        }
        let mut head = [0u8; 64];
        let d = pkt.data();
        let n = d.len().min(64);
        head[..n].copy_from_slice(&d[..n]);
        self.recs.push(TraceRec {
            pkt: pkt.meta.trace,
            node,
            next,
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

    /// Human-readable trace, one line per record (like VPP `show trace`).
    pub fn format(&self) -> String {
        let mut s = String::new();
        for r in &self.recs {
            let _ = write!(
                s,
                "pkt {:>4} {:<20} -> {:<10} len {:>4} ",
                r.pkt,
                r.node,
                fmt_next(r.next),
                r.len
            );
            for b in r.head.iter().take((r.len as usize).min(64)) {
                let _ = write!(s, "{b:02x}");
            }
            s.push('\n');
        }
        if self.overflow > 0 {
            let _ = writeln!(s, "({} records did not fit)", self.overflow);
        }
        s
    }
}

fn fmt_next(n: Next) -> String {
    let mut s = String::new();
    let _ = match n {
        Next::Keep => write!(s, "next"),
        Next::Port(p) => write!(s, "port{p}"),
        Next::Punt => write!(s, "punt"),
        Next::Drop(r) => write!(s, "drop({r})"),
    };
    s
}

/// A graph node working on batches.
pub trait Stage: Send {
    /// Node name (`ip4-lookup`, `nat44-in2out`, ...).
    fn name(&self) -> &'static str;
    /// Drop-reason names; `Next::Drop(i)` counts `errors()[i]`.
    fn errors(&self) -> &'static [&'static str] {
        &[]
    }
    /// Processes a batch: packets kept stay in `batch` for the next stage.
    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out);
    /// Periodic work off the packet path (ageing, retries), called by the runner.
    fn tick(&mut self, _out: &mut Out) {}
}

static PIPELINE_ERRORS: &[&str] = &["end-of-pipeline"];

/// Stages run in order on each batch.
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
    nodes: Vec<NodeStats>,
    end: NodeStats,
    trace_budget: u32,
    trace_seq: u32,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    pub fn new() -> Self {
        Pipeline {
            stages: Vec::new(),
            nodes: Vec::new(),
            end: NodeStats::new("pipeline-end", PIPELINE_ERRORS),
            trace_budget: 0,
            trace_seq: 0,
        }
    }

    /// Appends a stage (start-up only).
    pub fn push(&mut self, stage: Box<dyn Stage>) -> &mut Self {
        self.nodes
            .push(NodeStats::new(stage.name(), stage.errors()));
        self.stages.push(stage);
        self
    }

    /// Traces the next `n` packets entering the pipeline (VPP `trace add`).
    pub fn trace_next(&mut self, n: u32) {
        self.trace_budget = n;
    }

    /// Runs every stage on `batch`; packets left at the end are dropped and counted.
    pub fn run(&mut self, batch: &mut Batch, out: &mut Out) {
        if self.trace_budget > 0 {
            for p in batch.iter_mut() {
                if self.trace_budget == 0 {
                    break;
                }
                self.trace_budget -= 1;
                self.trace_seq = self.trace_seq.wrapping_add(1).max(1);
                p.meta.trace = self.trace_seq;
            }
        }
        for (stage, node) in self.stages.iter_mut().zip(self.nodes.iter_mut()) {
            if batch.is_empty() {
                return;
            }
            stage.process(batch, node, out);
        }
        if !batch.is_empty() {
            let end = &mut self.end;
            batch.dispatch(end, out, |_, _| Next::Drop(0));
        }
    }

    /// Calls every stage's `tick`.
    pub fn tick(&mut self, out: &mut Out) {
        for s in self.stages.iter_mut() {
            s.tick(out);
        }
    }

    /// Per-stage counters, in pipeline order, plus the end-of-pipeline node.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeStats> {
        self.nodes.iter().chain(core::iter::once(&self.end))
    }

    /// The stages (for a VNF that wants to reach into one, e.g. to update a table).
    pub fn stages_mut(&mut self) -> &mut [Box<dyn Stage>] {
        &mut self.stages
    }

    /// `show errors`: one line per non-zero drop reason.
    pub fn show_errors(&self) -> String {
        show_errors(self.nodes())
    }
}

/// Formats non-zero drop counters of `nodes` like VPP's `show errors`.
pub fn show_errors<'a>(nodes: impl Iterator<Item = &'a NodeStats>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:>12}  {:<24} Reason", "Count", "Node");
    for n in nodes {
        for (i, c) in n.drops.iter().enumerate() {
            if *c > 0 {
                let _ = writeln!(s, "{:>12}  {:<24} {}", c, n.name, n.reason_name(i));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;

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
        assert!(t.contains("pkt    1 even"), "{t}");
        assert!(t.contains("drop(0)"), "{t}");
    }
}
