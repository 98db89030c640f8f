//! TAP port: a Linux TAP device (`/dev/net/tun` with `IFF_TAP | IFF_NO_PI`, Linux
//! `Documentation/networking/tuntap.rst`), non-blocking; one `read`/`write` per frame.
//!
//! The device is created if missing (it then disappears when the port is dropped,
//! unless it was made persistent with `ip tuntap add`).

use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::{PoolCache, DATA_ROOM, HEADROOM};
use alloc::string::String;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Errors of opening a TAP port.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("bad TAP name {0:?}")]
    Name(String),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
}

/// A TAP device port.
pub struct TapPort {
    name: String,
    fd: OwnedFd,
    mac: Option<[u8; 6]>,
    stats: PortStats,
}

impl TapPort {
    /// Opens (or creates) TAP device `name` and sets it up.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(TapError::Name(name.into()));
        }
        // SAFETY: path literal is NUL-terminated.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(TapError::Sys {
                what: "open /dev/net/tun",
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data.
        let mut ifr: libc::ifreq = unsafe { core::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF takes a valid ifreq.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
            return Err(TapError::Sys {
                what: "TUNSETIFF",
                source: io::Error::last_os_error(),
            });
        }
        set_up(name)?;
        let mac = super::afpacket::iface_info(name).map(|(_, m)| m);
        Ok(TapPort {
            name: name.into(),
            fd,
            mac,
            stats: PortStats::default(),
        })
    }
}

/// Brings an interface up (SIOCSIFFLAGS |= IFF_UP).
fn set_up(name: &str) -> Result<(), TapError> {
    let err = |what| TapError::Sys {
        what,
        source: io::Error::last_os_error(),
    };
    // SAFETY: plain socket for ioctls.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(err("socket"));
    }
    // SAFETY: fresh descriptor we own.
    let s = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data.
    let mut ifr: libc::ifreq = unsafe { core::mem::zeroed() };
    for (d, c) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = c as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS on a valid ifreq; flags is the union member
    // these ioctls use.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(err("SIOCGIFFLAGS"));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr) < 0 {
            return Err(err("SIOCSIFFLAGS"));
        }
    }
    Ok(())
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let mut n = 0;
        while batch.room() > 0 {
            let Some(mut pkt) = cache.alloc() else {
                break;
            };
            let buf = pkt.buffer_mut();
            let Some(dst) = buf.get_mut(HEADROOM..HEADROOM + DATA_ROOM) else {
                cache.free(pkt);
                break;
            };
            // SAFETY: dst is a writable buffer of DATA_ROOM bytes.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len()) };
            if r <= 0 {
                cache.free(pkt);
                break;
            }
            let _ = pkt.set_window(HEADROOM, r as usize);
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += r as u64;
            let _ = batch.push(pkt);
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let mut sent = 0;
        let mut dropped = 0;
        let mut bytes = 0;
        let mut stop = 0;
        for p in batch.iter() {
            let d = p.data();
            // SAFETY: d is a readable slice.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), d.as_ptr().cast(), d.len()) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                // down interface, bad frame: drop it
                dropped += 1;
            } else {
                sent += 1;
                bytes += d.len() as u64;
            }
            stop += 1;
        }
        batch.take_front(stop, |p| cache.free(p));
        self.stats.tx_packets += sent;
        self.stats.tx_bytes += bytes;
        self.stats.tx_dropped += dropped;
        sent as usize
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mac(&self) -> Option<[u8; 6]> {
        self.mac
    }
}
