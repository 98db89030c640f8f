//! The node graph (VPP's graph of nodes, DPDK's bursts): nodes hand batches of
//! packets to named next nodes, so a packet only visits the nodes that concern it.
//!
//! A node declares the names of the nodes it can send to ([`Stage::next_nodes`]);
//! `Next::Node(i)` sends a packet to the i-th of them. Packets a node keeps
//! (`Next::Keep`) go to its default successor: the next node pushed with
//! [`Graph::push`] (a linear pipeline), or the node named in [`Graph::add`]. The
//! graph resolves every name once, when it is sealed (at start-up, before the first
//! batch), orders the nodes topologically (it must be acyclic) and refuses unknown
//! names.
//!
//! Received packets enter at the graph's entry node, or at the entry node of the
//! port they came in on ([`Graph::set_port_entry`], VPP's per-interface input node:
//! a vBNG's access port starts at PPPoE input, its core port at IP input) — a batch
//! comes from one port, as [`crate::worker::Worker`] receives it. Running a batch
//! walks the nodes in that order, from the entry node on. Each node has a pending frame
//! (in [`Out`]) that its predecessors fill; a node's kept packets stay in the batch in
//! hand when its successor is the next node in order (a linear chain moves no
//! packet), and move to the successor's frame otherwise. No allocation happens after
//! sealing: frames are preallocated batches, edge tables are fixed arrays.

use crate::batch::{Batch, Next, Out, MAX_NEXT};
use crate::stage::{Counter, NodeStats, Stage};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Index of a node that does not exist (an edge to "drop").
const NONE: u16 = u16::MAX;

/// Where `Keep` goes for a node added with [`Graph::add`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeepTo {
    /// The node pushed after this one.
    Following,
    /// A named node.
    Named(&'static str),
    /// Kept packets are dropped as `no-next-node`.
    Nothing,
}

/// A graph that failed to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError(pub String);

impl core::fmt::Display for GraphError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

static GRAPH_ERRORS: &[&str] = &["no-next-node", "frame-full"];
static GRAPH_HELP: &[&str] = &[
    "a node kept a packet but has no successor (end of the graph)",
    "a next node's input frame was full",
];

struct NodeSlot {
    stage: Box<dyn Stage>,
    keep_to: KeepTo,
    /// Resolved: `next_nodes()[i]` → node index.
    edges: [u16; MAX_NEXT],
    /// Resolved successor for `Keep` (NONE: drop).
    keep: u16,
    /// Its name ("" for none), resolved when sealed.
    keep_name: &'static str,
}

/// Nodes and their edges; see the module docs.
pub struct Graph {
    slots: Vec<NodeSlot>,
    stats: Vec<NodeStats>,
    /// The graph's own node: packets kept at the end, full frames.
    end: NodeStats,
    /// Name of the node received packets enter (default: the first node).
    entry: Option<&'static str>,
    entry_idx: usize,
    /// Per-port entry nodes by name, and resolved (index by port; NONE = `entry`).
    port_entry: Vec<(u16, &'static str)>,
    port_entry_idx: Vec<u16>,
    sealed: bool,
    /// Why `run` could not seal the graph (it then drops every packet, counted).
    error: Option<GraphError>,
    trace_budget: u32,
    trace_seq: u32,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Graph {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|s| s.stage.name()))
            .finish()
    }
}

impl Graph {
    pub fn new() -> Self {
        let mut end = NodeStats::new("graph", GRAPH_ERRORS);
        end.help = GRAPH_HELP;
        Graph {
            slots: Vec::new(),
            stats: Vec::new(),
            end,
            entry: None,
            entry_idx: 0,
            port_entry: Vec::new(),
            port_entry_idx: Vec::new(),
            sealed: false,
            error: None,
            trace_budget: 0,
            trace_seq: 0,
        }
    }

    /// Appends a node whose kept packets go to the node pushed after it (a linear
    /// pipeline); start-up only.
    pub fn push(&mut self, stage: Box<dyn Stage>) -> &mut Self {
        self.insert(stage, KeepTo::Following)
    }

    /// Adds a node whose kept packets go to the node named `keep_to` (`None`: kept
    /// packets are dropped as `no-next-node`; a node that always names its next
    /// nodes keeps nothing); start-up only.
    pub fn add(&mut self, stage: Box<dyn Stage>, keep_to: Option<&'static str>) -> &mut Self {
        let k = match keep_to {
            Some(n) => KeepTo::Named(n),
            None => KeepTo::Nothing,
        };
        self.insert(stage, k)
    }

    /// Received packets enter at this node (default: the first node added).
    pub fn set_entry(&mut self, name: &'static str) -> &mut Self {
        self.entry = Some(name);
        self.sealed = false;
        self.error = None;
        self
    }

    /// Packets received on `port` enter at this node (default: the graph's entry
    /// node); start-up only. [`Graph::run`] takes the port from the batch's first
    /// packet: a batch must come from one port.
    pub fn set_port_entry(&mut self, port: u16, name: &'static str) -> &mut Self {
        self.port_entry.retain(|&(p, _)| p != port);
        self.port_entry.push((port, name));
        self.sealed = false;
        self.error = None;
        self
    }

    fn insert(&mut self, stage: Box<dyn Stage>, keep_to: KeepTo) -> &mut Self {
        let mut st = NodeStats::new(stage.name(), stage.errors());
        st.help = stage.error_help();
        self.stats.push(st);
        self.slots.push(NodeSlot {
            stage,
            keep_to,
            edges: [NONE; MAX_NEXT],
            keep: NONE,
            keep_name: "",
        });
        self.sealed = false;
        self.error = None;
        self
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.stage.name() == name)
    }

    /// Resolves every edge, orders the nodes topologically and checks the graph: an
    /// unknown next-node name, a duplicate node name, too many next nodes or a cycle
    /// is an error. Called once at start-up ([`crate::worker::Worker::new`] does it);
    /// [`Graph::run`] seals an unsealed graph itself.
    pub fn seal(&mut self) -> Result<(), GraphError> {
        let n = self.slots.len();
        for (i, s) in self.slots.iter().enumerate() {
            let name = s.stage.name();
            if self
                .slots
                .iter()
                .skip(i + 1)
                .any(|o| o.stage.name() == name)
            {
                return Err(GraphError(format!("two nodes are named {name}")));
            }
            if s.stage.next_nodes().len() > MAX_NEXT {
                return Err(GraphError(format!(
                    "node {name} declares {} next nodes (at most {MAX_NEXT})",
                    s.stage.next_nodes().len()
                )));
            }
        }
        // Successor lists by name → index.
        let mut succ: Vec<Vec<usize>> = Vec::with_capacity(n);
        let mut keeps: Vec<u16> = Vec::with_capacity(n);
        for (i, s) in self.slots.iter().enumerate() {
            let mut v = Vec::new();
            for nn in s.stage.next_nodes() {
                let j = self.index(nn).ok_or_else(|| {
                    GraphError(format!(
                        "node {} names next node {nn}, which is not in the graph",
                        s.stage.name()
                    ))
                })?;
                v.push(j);
            }
            let keep = match s.keep_to {
                KeepTo::Following if i + 1 < n => Some(i + 1),
                KeepTo::Following | KeepTo::Nothing => None,
                KeepTo::Named(nn) => Some(self.index(nn).ok_or_else(|| {
                    GraphError(format!(
                        "node {} keeps to {nn}, which is not in the graph",
                        s.stage.name()
                    ))
                })?),
            };
            if let Some(k) = keep {
                v.push(k);
            }
            keeps.push(keep.map_or(NONE, |k| k as u16));
            succ.push(v);
        }
        // Kahn's algorithm; ties broken by insertion order so a linear pipeline keeps
        // its order.
        let mut indeg = alloc::vec![0usize; n];
        for v in &succ {
            for &j in v {
                if let Some(d) = indeg.get_mut(j) {
                    *d += 1;
                }
            }
        }
        let mut order = Vec::with_capacity(n);
        let mut done = alloc::vec![false; n];
        while order.len() < n {
            let Some(i) = (0..n).find(|&i| !done[i] && indeg[i] == 0) else {
                let names: Vec<&str> = (0..n)
                    .filter(|&i| !done[i])
                    .map(|i| self.slots[i].stage.name())
                    .collect();
                return Err(GraphError(format!(
                    "the graph has a cycle through {}",
                    names.join(", ")
                )));
            };
            done[i] = true;
            order.push(i);
            for &j in &succ[i] {
                indeg[j] -= 1;
            }
        }
        // pos[old] = new index
        let mut pos = alloc::vec![0usize; n];
        for (new, &old) in order.iter().enumerate() {
            pos[old] = new;
        }
        let mut slots: Vec<Option<NodeSlot>> = self.slots.drain(..).map(Some).collect();
        let mut stats: Vec<Option<NodeStats>> = self.stats.drain(..).map(Some).collect();
        for &old in &order {
            if let (Some(mut s), Some(st)) = (slots[old].take(), stats[old].take()) {
                s.edges = [NONE; MAX_NEXT];
                s.keep = match keeps[old] {
                    NONE => NONE,
                    k => pos[k as usize] as u16,
                };
                self.slots.push(s);
                self.stats.push(st);
            }
        }
        // Second pass: next-node names to new indices (all slots are in place now).
        for i in 0..self.slots.len() {
            let k = self.slots[i].keep;
            self.slots[i].keep_name = self.slots_name(k).unwrap_or("");
            let names = self.slots[i].stage.next_nodes();
            for (k, nn) in names.iter().enumerate() {
                self.slots[i].edges[k] = self.index(nn).map_or(NONE, |j| j as u16);
            }
        }
        self.entry_idx = match self.entry {
            Some(e) => self
                .index(e)
                .ok_or_else(|| GraphError(format!("entry node {e} is not in the graph")))?,
            None => order.iter().position(|&o| o == 0).unwrap_or(0),
        };
        let ports = self
            .port_entry
            .iter()
            .map(|&(p, _)| usize::from(p) + 1)
            .max();
        self.port_entry_idx = alloc::vec![NONE; ports.unwrap_or(0)];
        for &(port, name) in &self.port_entry {
            let i = self.index(name).ok_or_else(|| {
                GraphError(format!(
                    "entry node {name} of port {port} is not in the graph"
                ))
            })?;
            self.port_entry_idx[usize::from(port)] = i as u16;
        }
        self.sealed = true;
        Ok(())
    }

    /// Why [`Graph::run`] could not seal the graph, if it could not.
    pub fn error(&self) -> Option<&GraphError> {
        self.error.as_ref()
    }

    /// Gives `out` one input frame per node (start-up: allocates).
    pub fn prepare(&self, out: &mut Out) {
        while out.frames.len() < self.slots.len() {
            out.frames.push(Batch::new());
        }
    }

    /// Traces the next `n` packets entering the graph (VPP `trace add`).
    pub fn trace_next(&mut self, n: u32) {
        self.trace_budget = n;
    }

    /// Runs the graph on a received batch; every packet ends at a port, the punt
    /// batch, or a counted drop. Seals the graph first if it was not (start-up).
    pub fn run(&mut self, batch: &mut Batch, out: &mut Out) {
        self.run_from(batch, out, None);
    }

    /// The node packets received on `port` enter at (its index in the graph).
    pub fn port_entry(&self, port: u16) -> u16 {
        match self.port_entry_idx.get(usize::from(port)) {
            Some(&e) if e != NONE => e,
            _ => self.entry_idx as u16,
        }
    }

    /// Runs the graph on packets already waiting in the nodes' input frames (handed
    /// off by another worker, see [`crate::batch::Next::Handoff`]), from node
    /// `first` on (no frame before it may hold packets).
    pub fn run_frames(&mut self, first: usize, out: &mut Out) {
        // an empty batch in hand: nothing to initialise (uninit slots, length 0)
        let mut b = Batch::new();
        self.run_from(&mut b, out, Some(first));
    }

    fn run_from(&mut self, batch: &mut Batch, out: &mut Out, start: Option<usize>) {
        if !self.sealed && self.error.is_none() {
            if let Err(e) = self.seal() {
                // Kept (see `Graph::error`) so it is not retried on every batch;
                // `Worker::new` reports it at start-up.
                self.error = Some(e);
            }
        }
        if !self.sealed {
            {
                // An unsealable graph drops everything, counted.
                let end = &mut self.end;
                batch.dispatch(end, out, |_, _| Next::Drop(0));
                return;
            }
        }
        if out.frames.len() < self.slots.len() {
            self.prepare(out);
        }
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
        let n = self.slots.len();
        // Packets in `batch` belong to node `cur` (the entry node at first). Nodes
        // before it in order have nothing pending (every run empties every frame),
        // so the walk starts there.
        let mut cur = self.entry_idx;
        if let Some(s) = start {
            cur = s;
        } else if let Some(&e) = batch
            .iter()
            .next()
            .and_then(|p| self.port_entry_idx.get(usize::from(p.meta.port)))
        {
            if e != NONE {
                cur = usize::from(e);
            }
        }
        let first = cur;
        for i in first..n {
            loop {
                // The batch in hand holds packets for node i only when cur == i.
                if cur != i && !batch.is_empty() {
                    self.park(batch, cur, out);
                }
                cur = i;
                if let Some(f) = out.frames.get_mut(i) {
                    if !f.is_empty() {
                        batch.append(f);
                    }
                }
                if batch.is_empty() {
                    break;
                }
                let slot = &mut self.slots[i];
                let keep = slot.keep;
                out.keep_name = slot.keep_name;
                out.keep_idx = keep;
                out.edges = slot.edges;
                out.edge_names = slot.stage.next_nodes();
                out.node = i as u16;
                slot.stage.process(batch, &mut self.stats[i], out);
                if !batch.is_empty() {
                    if keep == NONE {
                        let end = &mut self.end;
                        batch.dispatch(end, out, |_, _| Next::Drop(0));
                    } else if keep as usize == i + 1 {
                        cur = i + 1;
                    } else {
                        self.park(batch, keep as usize, out);
                    }
                }
                let more = out.frames.get(i).is_some_and(|f| !f.is_empty());
                if !more {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let end = &mut self.end;
            batch.dispatch(end, out, |_, _| Next::Drop(0));
        }
        out.edges = [NONE; MAX_NEXT];
        out.edge_names = &[];
        out.keep_name = "";
        out.keep_idx = NONE;
    }

    fn slots_name(&self, i: u16) -> Option<&'static str> {
        self.slots.get(i as usize).map(|s| s.stage.name())
    }

    /// Moves the batch in hand into node `to`'s frame; what does not fit is dropped
    /// as `frame-full`.
    fn park(&mut self, batch: &mut Batch, to: usize, out: &mut Out) {
        if let Some(f) = out.frames.get_mut(to) {
            f.append(batch);
        }
        if !batch.is_empty() {
            let end = &mut self.end;
            batch.dispatch(end, out, |_, _| Next::Drop(1));
        }
    }

    /// Calls every node's `tick`.
    pub fn tick(&mut self, out: &mut Out) {
        for s in self.slots.iter_mut() {
            s.stage.tick(out);
        }
    }

    /// Per-node counters, in graph order, plus the graph's own node.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeStats> {
        self.stats.iter().chain(core::iter::once(&self.end))
    }

    /// Every node's own counters, as (node name, counter).
    pub fn counters(&self, f: &mut dyn FnMut(&'static str, Counter)) {
        for s in &self.slots {
            let name = s.stage.name();
            s.stage.counters(&mut |c| f(name, c));
        }
    }

    /// Node names with their next nodes and default successor, in graph order, then
    /// one `port N -> node` line per port entry (for `show graph` and the
    /// architecture docs).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, slot) in self.slots.iter().enumerate() {
            s.push_str(slot.stage.name());
            let mut nexts: Vec<&str> = slot.stage.next_nodes().to_vec();
            let keep = if self.sealed {
                self.slots_name(slot.keep)
            } else {
                match slot.keep_to {
                    KeepTo::Following => self.slots.get(i + 1).map(|n| n.stage.name()),
                    KeepTo::Named(n) => Some(n),
                    KeepTo::Nothing => None,
                }
            };
            if let Some(k) = keep {
                if !nexts.contains(&k) {
                    nexts.push(k);
                }
            }
            if !nexts.is_empty() {
                s.push_str(" -> ");
                s.push_str(&nexts.join(", "));
            }
            s.push('\n');
        }
        let mut ports = self.port_entry.clone();
        ports.sort_unstable();
        for (port, name) in ports {
            s.push_str(&format!("port {port} -> {name}\n"));
        }
        s
    }

    /// The nodes (for a VNF that wants to reach into one, e.g. to update a table).
    pub fn stages_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn Stage>> {
        self.slots.iter_mut().map(|s| &mut s.stage)
    }

    /// The node named `name` as its concrete type (it must implement
    /// [`Stage::as_any_mut`]).
    pub fn node_mut<T: 'static>(&mut self, name: &str) -> Option<&mut T> {
        self.node_mut_at(self.node_index(name)?)
    }

    /// The index of the node named `name`: fixed once the graph is sealed, so a
    /// hook that reaches into a node on every loop looks its name up once and then
    /// uses [`Graph::node_mut_at`] (no string compares per loop).
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.stage.name() == name)
    }

    /// Node `i` ([`Graph::node_index`]) as its concrete type.
    #[inline]
    pub fn node_mut_at<T: 'static>(&mut self, i: usize) -> Option<&mut T> {
        self.slots
            .get_mut(i)
            .and_then(|s| s.stage.as_any_mut())
            .and_then(|a| a.downcast_mut::<T>())
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// `show errors`: one line per non-zero drop reason.
    pub fn show_errors(&self) -> String {
        crate::stage::show_errors(self.nodes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::{Pkt, Pool};
    use crate::stage::Trace;

    crate::drop_reasons! {
        enum SortDrop {
            Empty = ("empty", "packet has no first byte"),
        }
    }

    /// Sends byte 0 = 4 to `four`, 6 to `six`, keeps the rest.
    struct Sort;
    impl Stage for Sort {
        fn name(&self) -> &'static str {
            "sort"
        }
        fn errors(&self) -> &'static [&'static str] {
            SortDrop::NAMES
        }
        fn error_help(&self) -> &'static [&'static str] {
            SortDrop::HELP
        }
        fn next_nodes(&self) -> &'static [&'static str] {
            &["four", "six"]
        }
        fn process(&mut self, b: &mut Batch, n: &mut NodeStats, o: &mut Out) {
            b.dispatch(n, o, |p, _| match p.data().first() {
                Some(4) => Next::Node(0),
                Some(6) => Next::Node(1),
                Some(_) => Next::Keep,
                None => SortDrop::Empty.into(),
            });
        }
    }

    /// Sends everything to port `self.1`, or keeps it when `keep`.
    struct ToPort(&'static str, u16, bool);
    impl Stage for ToPort {
        fn name(&self) -> &'static str {
            self.0
        }
        fn process(&mut self, b: &mut Batch, n: &mut NodeStats, o: &mut Out) {
            let (port, keep) = (self.1, self.2);
            b.dispatch(
                n,
                o,
                |_, _| if keep { Next::Keep } else { Next::Port(port) },
            );
        }
        fn counters(&self, f: &mut dyn FnMut(Counter)) {
            f(Counter::total("seen", "test counter", 7));
        }
        fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
            Some(self)
        }
    }

    #[test]
    fn nodes_are_reached_by_name_or_by_their_index() {
        let mut g = Graph::new();
        g.add(Box::new(Sort), Some("four"));
        g.add(Box::new(ToPort("four", 1, false)), None);
        g.add(Box::new(ToPort("six", 2, false)), None);
        g.set_entry("sort");
        g.seal().unwrap();
        let i = g.node_index("six").unwrap();
        assert_eq!(g.node_mut_at::<ToPort>(i).map(|n| n.1), Some(2));
        assert_eq!(g.node_mut::<ToPort>("four").map(|n| n.1), Some(1));
        // Wrong type, a node without `as_any_mut`, no such node or index.
        assert!(g.node_mut_at::<Sort>(i).is_none());
        assert!(g.node_mut::<Sort>("sort").is_none());
        assert!(g.node_index("eight").is_none());
        assert!(g.node_mut_at::<ToPort>(99).is_none());
    }

    fn pkts(out: &mut Out, bytes: &[u8]) -> Batch {
        let mut b = Batch::new();
        for &x in bytes {
            let mut p: Pkt = out.cache.alloc().unwrap();
            if x != 0 {
                p.copy_from(&[x, 0xee]).unwrap();
            }
            b.push(p).unwrap();
        }
        b
    }

    #[test]
    fn branches_to_named_nodes_and_keeps_to_named_successor() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(3, pool.cache());
        out.trace = Trace::new(16);
        let mut g = Graph::new();
        // added out of order: the graph sorts them
        g.add(Box::new(ToPort("six", 2, false)), None);
        g.add(Box::new(Sort), Some("other"));
        g.add(Box::new(ToPort("four", 1, true)), Some("other"));
        g.add(Box::new(ToPort("other", 0, false)), None);
        g.set_entry("sort");
        g.seal().unwrap();
        g.trace_next(3);
        let mut b = pkts(&mut out, &[4, 6, 9, 0, 4, 9]);
        g.run(&mut b, &mut out);
        assert!(b.is_empty());
        assert_eq!(out.ports[0].len(), 4, "kept by sort (2) and by four (2)");
        assert_eq!(out.ports[1].len(), 0);
        assert_eq!(out.ports[2].len(), 1);
        let errs = g.show_errors();
        assert!(errs.contains("sort") && errs.contains("empty"), "{errs}");
        assert!(errs.contains("packet has no first byte"), "{errs}");
        let t = out.trace.format();
        assert!(t.contains("sort                 -> four"), "{t}");
        assert!(t.contains("sort                 -> six"), "{t}");
        assert!(t.contains("four                 -> other"), "{t}");
        let d = g.describe();
        assert!(d.contains("sort -> four, six, other"), "{d}");
        let mut seen = 0;
        g.counters(&mut |n, c| {
            if c.name == "seen" {
                seen += 1;
                assert!(["six", "four", "other"].contains(&n));
            }
        });
        assert_eq!(seen, 3);
        for b in out.ports.iter_mut() {
            b.free_all(&mut out.cache);
        }
        drop(out);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn port_entries_start_at_their_node() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(3, pool.cache());
        let mut g = Graph::new();
        g.add(Box::new(Sort), Some("other"));
        g.add(Box::new(ToPort("four", 1, false)), None);
        g.add(Box::new(ToPort("six", 2, false)), None);
        g.add(Box::new(ToPort("other", 0, false)), None);
        g.set_entry("sort");
        g.set_port_entry(1, "six");
        g.seal().unwrap();
        // Port 1 enters at `six` (byte 4 would have gone to `four` through `sort`).
        let mut b = pkts(&mut out, &[4, 9]);
        for p in b.iter_mut() {
            p.meta.port = 1;
        }
        g.run(&mut b, &mut out);
        assert_eq!(out.ports[2].len(), 2);
        assert_eq!(g.nodes().find(|n| n.name == "sort").unwrap().packets, 0);
        // Other ports use the graph's entry.
        let mut b = pkts(&mut out, &[4, 9]);
        g.run(&mut b, &mut out);
        assert_eq!(out.ports[1].len(), 1);
        assert_eq!(out.ports[0].len(), 1);
        assert!(
            g.describe().ends_with("port 1 -> six\n"),
            "{}",
            g.describe()
        );
        for b in out.ports.iter_mut() {
            b.free_all(&mut out.cache);
        }
        let mut g = Graph::new();
        g.add(Box::new(ToPort("a", 0, false)), None);
        g.set_port_entry(0, "nope");
        assert!(g.seal().unwrap_err().0.contains("nope"));
    }

    #[test]
    fn bad_graphs_are_refused() {
        let mut g = Graph::new();
        g.add(Box::new(Sort), None);
        g.add(Box::new(ToPort("four", 0, false)), None);
        let e = g.seal().unwrap_err();
        assert!(e.0.contains("six"), "{e}");

        let mut g = Graph::new();
        g.add(Box::new(ToPort("a", 0, true)), Some("b"));
        g.add(Box::new(ToPort("b", 0, true)), Some("a"));
        assert!(g.seal().unwrap_err().0.contains("cycle"));

        let mut g = Graph::new();
        g.push(Box::new(ToPort("a", 0, true)));
        g.push(Box::new(ToPort("a", 0, true)));
        assert!(g.seal().unwrap_err().0.contains("two nodes"));
    }

    #[test]
    fn full_frames_are_counted_not_lost() {
        // two full batches kept into one successor: the second pass of the
        // successor takes the rest, nothing is dropped
        let pool = Pool::new(1024).unwrap();
        let mut out = Out::new(1, pool.cache());
        let mut g = Graph::new();
        g.add(Box::new(Sort), Some("other"));
        g.add(Box::new(ToPort("four", 0, false)), None);
        g.add(Box::new(ToPort("six", 0, false)), None);
        g.add(Box::new(ToPort("other", 0, false)), None);
        for _ in 0..2 {
            let mut b = pkts(&mut out, &[4; 200]);
            g.run(&mut b, &mut out);
        }
        let total: u64 = g.nodes().map(|n| n.dropped()).sum();
        assert_eq!(out.ports[0].len(), 256, "the tx queue takes a batch");
        assert_eq!(out.stats.tx_full, 144);
        assert_eq!(total, 0);
        out.ports[0].free_all(&mut out.cache);
    }
}
