//! Ports: one burst-oriented trait for every backend.
//!
//! Backends here: [`mem`] (an in-memory pair of virtio split rings, VIRTIO 1.1 §2.6),
//! and with `std` [`pcap`] (nanosecond pcap files), the Linux AF_XDP, AF_PACKET and
//! TAP ports, [`memif`] (VPP's shared-memory interface, master or slave) and
//! [`vhost_user`] (the backend of a virtio-net device driven over vhost-user) and
//! [`virtio_user`] (the frontend: a virtio-net driver over vhost-user). The
//! unikernel's virtio-net port implements the same trait elsewhere.

use crate::batch::Batch;
use crate::buf::PoolCache;

#[cfg(feature = "std")]
pub mod afpacket;
#[cfg(feature = "std")]
pub mod afxdp;
#[cfg(feature = "std")]
mod gate;
pub mod mem;
#[cfg(feature = "std")]
pub mod memif;
#[cfg(feature = "std")]
pub mod pcap;
#[cfg(feature = "std")]
pub mod spec;
#[cfg(feature = "std")]
pub mod tap;
#[cfg(feature = "std")]
mod unix;
#[cfg(feature = "std")]
pub mod vhost_user;
#[cfg(feature = "std")]
pub mod virtio_user;

/// Counters every port keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames lost on receive (no buffer, ring overrun, truncated).
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames the port could not send and freed (`tx_burst` callers that want to
    /// retry see unsent packets left in their batch instead).
    pub tx_dropped: u64,
}

/// A packet port, polled in bursts.
pub trait Port: Send {
    /// Name for logs and metrics.
    fn name(&self) -> &str;
    /// Receives up to `batch.room()` packets, appending them to `batch`; buffers come
    /// from `cache` when the backend copies. Returns how many were received.
    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize;
    /// Sends packets from the front of `batch`, removing those sent (their buffers go
    /// to the device or back to `cache`); packets it could not send stay in `batch`,
    /// in order. Returns how many were sent.
    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize;
    /// Counters.
    fn stats(&self) -> PortStats;
    /// The port's MAC address, when it has one.
    fn mac(&self) -> Option<[u8; 6]> {
        None
    }
}

impl<P: Port + ?Sized> Port for alloc::boxed::Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        (**self).rx_burst(cache, batch)
    }
    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        (**self).tx_burst(cache, batch)
    }
    fn stats(&self) -> PortStats {
        (**self).stats()
    }
    fn mac(&self) -> Option<[u8; 6]> {
        (**self).mac()
    }
}
