//! virtio-net ports in poll mode over `virtio-drivers`' `VirtIONetRaw` (virtio 1.2 §5.1:
//! receiveq/transmitq, a `virtio_net_hdr` in front of every frame). Receive buffers
//! are posted ahead; completions are polled, no interrupts.

use crate::virtio::{Found, IdentityHal};
use alloc::boxed::Box;
use alloc::vec::Vec;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::SomeTransport;

/// Descriptors per virtqueue.
pub const QUEUE_SIZE: usize = 256;
/// Bytes per receive buffer (header + a 1514-byte frame + slack).
const BUF_LEN: usize = 2048;

type Dev = VirtIONetRaw<IdentityHal, SomeTransport<'static>, QUEUE_SIZE>;

/// A device-owned buffer.
type Buf = Box<[u8; BUF_LEN]>;

fn new_buf() -> Buf {
    Box::new([0u8; BUF_LEN])
}

/// Per-port counters.
#[derive(Default, Clone, Copy, Debug)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_full: u64,
    pub rx_errors: u64,
}

/// One virtio-net port.
pub struct VirtioPort {
    dev: Dev,
    pub location: alloc::string::String,
    pub mac: [u8; 6],
    hdr_len: usize,
    rx: Vec<Option<Buf>>,
    tx: Vec<Option<Buf>>,
    spare: Vec<Buf>,
    pub counters: Counters,
}

/// A port could not be brought up.
#[derive(Debug)]
pub struct PortError(pub virtio_drivers::Error);

impl VirtioPort {
    /// Initialise the device and post receive buffers.
    pub fn new(f: Found) -> Result<Self, PortError> {
        let dev = Dev::new(f.transport).map_err(PortError)?;
        let mut scratch = [0u8; 16];
        let hdr_len = dev.fill_buffer_header(&mut scratch).map_err(PortError)?;
        let mac = dev.mac_address();
        let mut p = Self {
            dev,
            location: f.location,
            mac,
            hdr_len,
            rx: (0..QUEUE_SIZE).map(|_| None).collect(),
            tx: (0..QUEUE_SIZE).map(|_| None).collect(),
            spare: Vec::new(),
            counters: Counters::default(),
        };
        p.dev.disable_interrupts();
        for _ in 0..QUEUE_SIZE {
            let b = new_buf();
            if !p.post_rx(b) {
                break;
            }
        }
        Ok(p)
    }

    fn post_rx(&mut self, mut b: Buf) -> bool {
        // SAFETY: the buffer is owned by `self.rx[token]` until receive_complete.
        match unsafe { self.dev.receive_begin(&mut b[..]) } {
            Ok(token) => match self.rx.get_mut(token as usize) {
                Some(slot) => {
                    *slot = Some(b);
                    true
                }
                None => false,
            },
            Err(_) => {
                self.spare.push(b);
                false
            }
        }
    }

    /// Receive one frame into `out` (cleared first); returns its length.
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        let token = self.dev.poll_receive()?;
        let mut b = self.rx.get_mut(token as usize)?.take()?;
        // SAFETY: same buffer as passed to receive_begin for this token.
        let r = unsafe { self.dev.receive_complete(token, &mut b[..]) };
        let n = match r {
            Ok((hdr, len)) => {
                out.clear();
                out.extend_from_slice(b.get(hdr..hdr + len).unwrap_or(&[]));
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += len as u64;
                Some(len)
            }
            Err(_) => {
                self.counters.rx_errors += 1;
                None
            }
        };
        self.post_rx(b);
        n
    }

    /// Reclaim completed transmit buffers.
    pub fn reap_tx(&mut self) {
        while let Some(token) = self.dev.poll_transmit() {
            let Some(b) = self.tx.get_mut(token as usize).and_then(|s| s.take()) else {
                break;
            };
            // SAFETY: same buffer as passed to transmit_begin for this token.
            let _ = unsafe { self.dev.transmit_complete(token, &b[..self.tx_len(&b)]) };
            self.spare.push(b);
        }
    }

    fn tx_len(&self, b: &Buf) -> usize {
        // The frame length is stored in the last two bytes of the buffer's slack.
        let n = u16::from_le_bytes([b[BUF_LEN - 2], b[BUF_LEN - 1]]) as usize;
        n.min(BUF_LEN - 2)
    }

    /// Queue one frame for transmission (copied); false when the ring is full.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        self.reap_tx();
        let total = self.hdr_len + frame.len();
        if total > BUF_LEN - 2 {
            return false;
        }
        let mut b = self.spare.pop().unwrap_or_else(new_buf);
        let _ = self.dev.fill_buffer_header(&mut b[..]);
        b[self.hdr_len..total].copy_from_slice(frame);
        let t = (total as u16).to_le_bytes();
        b[BUF_LEN - 2] = t[0];
        b[BUF_LEN - 1] = t[1];
        // SAFETY: the buffer stays in `self.tx[token]` until transmit_complete.
        match unsafe { self.dev.transmit_begin(&b[..total]) } {
            Ok(token) => {
                if let Some(slot) = self.tx.get_mut(token as usize) {
                    *slot = Some(b);
                }
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += frame.len() as u64;
                true
            }
            Err(_) => {
                self.counters.tx_full += 1;
                self.spare.push(b);
                false
            }
        }
    }
}
