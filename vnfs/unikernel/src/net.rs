//! virtio-net ports in poll mode over `virtio-drivers`' `VirtIONetRaw` (virtio 1.2 §5.1:
//! receiveq/transmitq, a `virtio_net_hdr` in front of every frame), implementing the
//! engine's [`Port`] trait without copies: the device reads and writes the engine's
//! packet buffers directly (memory is identity-mapped), the `virtio_net_hdr` sits in
//! the buffer's headroom. Receive buffers are posted ahead; completions are polled,
//! no interrupts.

use crate::virtio::{Found, IdentityHal};
use alloc::string::String;
use alloc::vec::Vec;
use dataplane::batch::Batch;
use dataplane::buf::{Pkt, PoolCache, BUF_SIZE, HEADROOM};
use dataplane::port::{Port, PortStats};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::SomeTransport;

/// Descriptors per virtqueue.
pub const QUEUE_SIZE: usize = 256;

type Dev = VirtIONetRaw<IdentityHal, SomeTransport<'static>, QUEUE_SIZE>;

/// One virtio-net port.
pub struct VirtioPort {
    dev: Dev,
    name: String,
    index: u16,
    mac: [u8; 6],
    /// Length of `virtio_net_hdr` as negotiated (10 legacy, 12 with VERSION_1/MRG_RXBUF).
    hdr_len: usize,
    /// Posted receive buffers, by descriptor token.
    rx: Vec<Option<Pkt>>,
    /// Buffers being transmitted, by descriptor token.
    tx: Vec<Option<Pkt>>,
    tx_inflight: usize,
    stats: PortStats,
    /// The host stack's divert on this port (see `hoststack`).
    tap: Option<crate::hoststack::Tap>,
}

// SAFETY: the unikernel runs one CPU; the device's queues are only touched through
// `&mut self`, so moving the port between (non-existent) threads cannot race.
unsafe impl Send for VirtioPort {}

/// A port could not be brought up.
#[derive(Debug)]
pub enum PortError {
    Device(virtio_drivers::Error),
    NoBuffers,
}

impl core::fmt::Display for PortError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Device(e) => write!(f, "virtio-net: {e}"),
            Self::NoBuffers => write!(f, "packet pool exhausted while posting receive buffers"),
        }
    }
}

/// The part of a buffer handed to the device for receive: header then data room.
fn rx_slice(pkt: &mut Pkt, hdr_len: usize) -> &mut [u8] {
    let buf = pkt.buffer_mut();
    let start = HEADROOM - hdr_len;
    buf.get_mut(start..BUF_SIZE).unwrap_or_default()
}

impl VirtioPort {
    /// Initialise the device and post `rx_buffers` receive buffers from `cache`.
    pub fn new(f: Found, index: usize, cache: &mut PoolCache, rx_buffers: usize) -> Result<Self, PortError> {
        let dev = Dev::new(f.transport).map_err(PortError::Device)?;
        let mut scratch = [0u8; 16];
        let hdr_len = dev.fill_buffer_header(&mut scratch).map_err(PortError::Device)?;
        let mac = dev.mac_address();
        let mut p = Self {
            dev,
            name: alloc::format!("virtio{index} ({})", f.location),
            index: index as u16,
            mac,
            hdr_len,
            rx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx_inflight: 0,
            stats: PortStats::default(),
            tap: None,
        };
        p.dev.disable_interrupts();
        for _ in 0..rx_buffers.min(QUEUE_SIZE) {
            let pkt = cache.alloc().ok_or(PortError::NoBuffers)?;
            if let Err(pkt) = p.post_rx(pkt) {
                cache.free(pkt);
                break;
            }
        }
        Ok(p)
    }

    /// Divert the host stack's frames received on this port (see `hoststack`).
    pub fn set_tap(&mut self, tap: crate::hoststack::Tap) {
        self.tap = Some(tap);
    }

    /// The divert's counters: (frames to the stack, frames lost on the way).
    pub fn tap_stats(&self) -> Option<(u64, u64)> {
        self.tap.as_ref().map(|t| (t.diverted, t.dropped))
    }

    /// Give a buffer to the device's receive queue.
    fn post_rx(&mut self, mut pkt: Pkt) -> Result<(), Pkt> {
        pkt.reset();
        let hdr_len = self.hdr_len;
        // SAFETY: the buffer stays untouched in `self.rx[token]` until
        // receive_complete; the pool keeps the memory alive for the whole run.
        let r = unsafe { self.dev.receive_begin(rx_slice(&mut pkt, hdr_len)) };
        match r {
            Ok(token) => match self.rx.get_mut(token as usize) {
                Some(slot @ None) => {
                    *slot = Some(pkt);
                    Ok(())
                }
                _ => Err(pkt),
            },
            Err(_) => Err(pkt),
        }
    }

    /// Reclaim transmitted buffers into `cache`.
    fn reap_tx(&mut self, cache: &mut PoolCache) {
        while let Some(token) = self.dev.poll_transmit() {
            let Some(pkt) = self.tx.get_mut(token as usize).and_then(Option::take) else {
                break;
            };
            // SAFETY: the same buffer (unchanged since transmit_begin) for this token.
            let _ = unsafe { self.dev.transmit_complete(token, pkt.data()) };
            self.tx_inflight = self.tx_inflight.saturating_sub(1);
            cache.free(pkt);
        }
    }
}

impl Port for VirtioPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let mut n = 0;
        while batch.room() > 0 {
            let Some(token) = self.dev.poll_receive() else { break };
            let Some(mut pkt) = self.rx.get_mut(token as usize).and_then(Option::take) else {
                break;
            };
            let hdr_len = self.hdr_len;
            // SAFETY: the same buffer slice as given to receive_begin for this token.
            let r = unsafe { self.dev.receive_complete(token, rx_slice(&mut pkt, hdr_len)) };
            // Refill the ring first (keeps it full); on pool exhaustion the received
            // packet itself goes back to the device and is counted as dropped.
            let fresh = cache.alloc();
            let delivered = match (r, fresh) {
                (Ok((hdr, len)), Some(fresh)) if hdr == hdr_len && pkt.set_window(HEADROOM, len).is_ok() => {
                    if let Err(p) = self.post_rx(fresh) {
                        cache.free(p);
                    }
                    Some(pkt)
                }
                (_, fresh) => {
                    if let Some(p) = fresh {
                        cache.free(p);
                    }
                    if let Err(p) = self.post_rx(pkt) {
                        cache.free(p);
                    }
                    None
                }
            };
            match delivered {
                Some(mut pkt) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += pkt.len() as u64;
                    pkt.meta.port = self.index;
                    let pkt = match self.tap.as_mut() {
                        Some(t) => match t.divert(pkt, cache) {
                            Some(p) => p,
                            None => continue,
                        },
                        None => pkt,
                    };
                    if let Err(p) = batch.push(pkt) {
                        cache.free(p);
                        self.stats.rx_dropped += 1;
                    } else {
                        n += 1;
                    }
                }
                None => self.stats.rx_dropped += 1,
            }
        }
        n
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.reap_tx(cache);
        let n = batch.len().min(QUEUE_SIZE - self.tx_inflight);
        let hdr_len = self.hdr_len;
        let mut sent = 0;
        batch.take_front(n, |mut pkt| {
            let len = pkt.len();
            let ok = match pkt.prepend(hdr_len) {
                Ok(h) => {
                    h.fill(0);
                    true
                }
                Err(_) => false,
            };
            // SAFETY: the buffer stays untouched in `self.tx[token]` until
            // transmit_complete.
            let r = if ok {
                unsafe { self.dev.transmit_begin(pkt.data()) }.ok()
            } else {
                None
            };
            match r.map(|t| (t, self.tx.get_mut(t as usize))) {
                Some((_, Some(slot @ None))) => {
                    *slot = Some(pkt);
                    self.tx_inflight += 1;
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += len as u64;
                    sent += 1;
                }
                _ => {
                    self.stats.tx_dropped += 1;
                    cache.free(pkt);
                }
            }
        });
        sent
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }
}
