//! `l2-xconnect`: every packet received on a port goes out of its paired port
//! unchanged (VPP's L2 cross-connect, DPDK testpmd's `io` forwarding). Used as the
//! "no VNF" baseline of compare runs and as a wire in labs.

use crate::batch::{Batch, Next, Out};
use crate::stage::{NodeStats, Stage};
use alloc::vec::Vec;

crate::drop_reasons! {
    /// Why `l2-xconnect` drops.
    pub enum XconnectDrop {
        NoPeer = ("no-peer", "the receive port has no cross-connected port"),
    }
}

/// Cross-connects ports: `peer[i]` is where port i's packets go.
#[derive(Debug, Clone)]
pub struct Xconnect {
    peer: Vec<Option<u16>>,
}

impl Xconnect {
    /// Port `i` → `peer[i]` (`None`: dropped as `no-peer`).
    pub fn new(peer: Vec<Option<u16>>) -> Self {
        Xconnect { peer }
    }
}

impl Stage for Xconnect {
    fn name(&self) -> &'static str {
        "l2-xconnect"
    }
    fn errors(&self) -> &'static [&'static str] {
        XconnectDrop::NAMES
    }
    fn error_help(&self) -> &'static [&'static str] {
        XconnectDrop::HELP
    }
    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let peer = &self.peer;
        batch.dispatch(node, out, |p, _| {
            match peer.get(usize::from(p.meta.port)).copied().flatten() {
                Some(to) => Next::Port(to),
                None => XconnectDrop::NoPeer.into(),
            }
        });
    }
}
