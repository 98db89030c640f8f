//! IPv4 fragmentation on egress (RFC 791 §3.2 "Fragmentation and Reassembly",
//! §3.1 "Options" copied flag; RFC 1812 §5.2.6 / §4.2.2.7).
//!
//! [`fragment4`] splits a packet whose IP datagram exceeds the egress MTU and whose
//! Don't Fragment bit is clear. Fragments `1..n-1` are built in new buffers from the
//! worker's cache (the payload must be copied: RFC 791 demands separate datagrams),
//! and the original buffer becomes the **last** fragment in place — its header is
//! moved forward over payload bytes already copied out, so the last piece of payload
//! is never copied. Fragments go out in order (1, 2, …, n): `1..n-1` are queued on the
//! port by [`Out::emit`] and the caller sends the original right after.
//!
//! Header rules: the first fragment carries the whole original header with its
//! options; later fragments carry only the options whose copied flag (bit 7 of the
//! option type) is set, padded with End-of-Options to a 4-byte boundary. Every
//! fragment's payload except the last is a multiple of 8 bytes; Fragment Offset is the
//! original offset plus the position of the piece (so fragments of fragments are
//! right), More Fragments is set on all but the last, which keeps the original's MF.
//! Total Length and Header Checksum are recomputed; identification, TTL, TOS and the
//! addresses are copied.
//!
//! The Layer-2 header in front of the IP header (`l2_len` bytes) is copied into every
//! new fragment; `fixup` is called on every fragment (including the last) before it is
//! sent, so callers can patch length fields of encapsulations (PPPoE, for example).

use crate::batch::Out;
use crate::buf::Pkt;
use crate::proto::ipv4;

/// Why a packet could not be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragError {
    /// Don't Fragment is set (the caller sends ICMP Fragmentation Needed instead).
    DontFragment,
    /// The IPv4 header is truncated or inconsistent.
    Malformed,
    /// The MTU cannot carry the header and 8 bytes of payload (RFC 791: 68 minimum).
    MtuTooSmall,
    /// The buffer cache ran dry: the fragments already queued went out, the rest not.
    NoBuffer,
}

/// Largest number of fragments produced for one packet (a 2048-byte buffer at the
/// minimum MTU of 68 gives 43).
pub const MAX_FRAGMENTS: usize = 64;

/// The options of a non-first fragment: the copied options of `opts`, padded.
/// Returns the header length (20 + padded options) and fills `buf[20..]`.
fn copied_options(opts: &[u8], buf: &mut [u8; 60]) -> usize {
    let mut w = 20;
    let mut i = 0;
    while let Some(&t) = opts.get(i) {
        match t {
            0 => break,
            1 => i += 1,
            _ => {
                let Some(&l) = opts.get(i + 1) else { break };
                let l = usize::from(l);
                if l < 2 {
                    break;
                }
                let Some(o) = opts.get(i..i + l) else { break };
                if t & 0x80 != 0 {
                    if let Some(d) = buf.get_mut(w..w + l) {
                        d.copy_from_slice(o);
                        w += l;
                    }
                }
                i += l;
            }
        }
    }
    let padded = w.div_ceil(4) * 4;
    if let Some(p) = buf.get_mut(w..padded) {
        p.fill(0);
    }
    padded
}

/// Fills in total length, flags/offset and the checksum of the IPv4 header at `ip`.
fn finish_header(ip: &mut [u8], hl: usize, total: usize, mf: bool, offset_units: u16) {
    let Some(h) = ip.get_mut(..hl) else { return };
    h[0] = 0x40 | (hl / 4) as u8;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let fo = (offset_units & 0x1fff) | if mf { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&fo.to_be_bytes());
    h[10..12].fill(0);
    let c = crate::proto::checksum::internet(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Splits `pkt` (Layer-2 header of `l2_len` bytes, then an IPv4 datagram) into
/// fragments whose IP datagrams fit `mtu`. Fragments `1..n-1` are queued on `port`
/// through `out`; `pkt` becomes fragment `n` and is left for the caller to send.
/// Returns the number of fragments (1 when the datagram already fits: `pkt` is
/// untouched). See the module docs for the header rules.
pub fn fragment4<F: FnMut(&mut Pkt)>(
    pkt: &mut Pkt,
    l2_len: usize,
    mtu: usize,
    out: &mut Out,
    port: u16,
    mut fixup: F,
) -> Result<usize, FragError> {
    let (hl, total, df, mf, off0) = {
        let ip = pkt.data().get(l2_len..).ok_or(FragError::Malformed)?;
        let v = ipv4::Packet::new_checked(ip).map_err(|_| FragError::Malformed)?;
        (
            v.header_len(),
            usize::from(v.total_len()),
            v.dont_frag(),
            v.more_frags(),
            v.frag_offset() / 8,
        )
    };
    if total <= mtu {
        return Ok(1);
    }
    if df {
        return Err(FragError::DontFragment);
    }
    let mut later_hdr = [0u8; 60];
    let hl2 = {
        let ip = pkt.data().get(l2_len..).ok_or(FragError::Malformed)?;
        let opts = ip.get(20..hl).ok_or(FragError::Malformed)?;
        later_hdr[..20].copy_from_slice(ip.get(..20).ok_or(FragError::Malformed)?);
        copied_options(opts, &mut later_hdr)
    };
    let first_room = mtu.saturating_sub(hl) & !7;
    let later_room = mtu.saturating_sub(hl2) & !7;
    if first_room == 0 || later_room == 0 {
        return Err(FragError::MtuTooSmall);
    }
    let payload_len = total - hl;
    // The pieces' offsets must fit the 13-bit field: a (fragment of a) datagram
    // reaching past 65,535 bytes is malformed (RFC 791 §3.1 Total Length).
    if usize::from(off0) * 8 + payload_len > 0xffff {
        return Err(FragError::Malformed);
    }
    // Number of fragments: the first takes `first_room`, the others `later_room`.
    let n = 1 + (payload_len - first_room.min(payload_len)).div_ceil(later_room);
    if n > MAX_FRAGMENTS {
        return Err(FragError::MtuTooSmall);
    }
    // Fragments 1..n-1 in new buffers.
    let mut pos = 0usize; // payload bytes already placed
    for k in 0..n - 1 {
        let (hdr_len, room) = if k == 0 {
            (hl, first_room)
        } else {
            (hl2, later_room)
        };
        let Some(mut f) = out.cache.alloc() else {
            return Err(FragError::NoBuffer);
        };
        let flen = l2_len + hdr_len + room;
        let data = pkt.data();
        let ok = match (
            data.get(..l2_len),
            data.get(l2_len..l2_len + hl),
            data.get(l2_len + hl + pos..l2_len + hl + pos + room),
        ) {
            (Some(l2), Some(h), Some(p)) => f.append(flen).is_ok_and(|d| {
                d[..l2_len].copy_from_slice(l2);
                if k == 0 {
                    d[l2_len..l2_len + hl].copy_from_slice(h);
                } else {
                    d[l2_len..l2_len + hl2].copy_from_slice(&later_hdr[..hl2]);
                }
                d[l2_len + hdr_len..].copy_from_slice(p);
                true
            }),
            _ => false,
        };
        if !ok {
            out.cache.free(f);
            return Err(FragError::Malformed);
        }
        f.meta = pkt.meta;
        f.meta.l3 = l2_len as u16;
        if let Some(ip) = f.data_mut().get_mut(l2_len..) {
            finish_header(ip, hdr_len, hdr_len + room, true, off0 + (pos / 8) as u16);
        }
        fixup(&mut f);
        out.emit(port, f);
        pos += room;
    }
    // The original becomes the last fragment: move L2 + the later-fragment header to
    // end right where the remaining payload starts.
    let rest = payload_len - pos;
    let payload_at = l2_len + hl + pos;
    let new_start = payload_at - hl2 - l2_len;
    {
        let d = pkt.data_mut();
        if d.len() < payload_at + rest {
            return Err(FragError::Malformed);
        }
        d.copy_within(0..l2_len, new_start);
        if let Some(h) = d.get_mut(new_start + l2_len..payload_at) {
            h.copy_from_slice(&later_hdr[..hl2]);
        }
    }
    pkt.strip(new_start).map_err(|_| FragError::Malformed)?;
    let keep = l2_len + hl2 + rest;
    pkt.trim(pkt.len() - keep)
        .map_err(|_| FragError::Malformed)?;
    pkt.meta.l3 = l2_len as u16;
    if let Some(ip) = pkt.data_mut().get_mut(l2_len..) {
        finish_header(ip, hl2, hl2 + rest, mf, off0 + (pos / 8) as u16);
    }
    fixup(pkt);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use alloc::vec::Vec;

    /// A UDP datagram with `opts` and `payload` bytes of payload (pattern i as u8).
    fn datagram(opts: &[u8], payload: usize, df: bool) -> Vec<u8> {
        let hl = 20 + opts.len();
        let mut f = alloc::vec![0u8; 14 + hl + payload];
        f[12] = 0x08;
        let ip = &mut f[14..];
        ip[0] = 0x40 | (hl / 4) as u8;
        ip[2..4].copy_from_slice(&((hl + payload) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        if df {
            ip[6] = 0x40;
        }
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        ip[20..hl].copy_from_slice(opts);
        for (i, b) in ip[hl..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let c = crate::proto::checksum::internet(&ip[..hl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn run(frame: &[u8], mtu: usize) -> (Result<usize, FragError>, Vec<Vec<u8>>) {
        let pool = Pool::new(128).unwrap();
        let mut out = Out::new(1, pool.cache());
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(frame).unwrap();
        let r = fragment4(&mut p, 14, mtu, &mut out, 0, |_| {});
        let mut frames: Vec<Vec<u8>> = Vec::new();
        out.ports[0].drain(|f| frames.push(f.data().to_vec()));
        frames.push(p.data().to_vec());
        (r, frames)
    }

    /// Reassembles and checks every fragment's header.
    fn reassemble(frames: &[Vec<u8>], mtu: usize) -> Vec<u8> {
        let mut payload = alloc::vec![0u8; 4096];
        let mut end = 0;
        for (i, f) in frames.iter().enumerate() {
            let v = ipv4::Packet::new_checked(&f[14..]).unwrap();
            assert!(v.verify_checksum(), "fragment {i} checksum");
            assert!(usize::from(v.total_len()) <= mtu);
            assert_eq!(usize::from(v.total_len()), f.len() - 14);
            assert_eq!(v.ident(), 0x1234);
            let last = i == frames.len() - 1;
            assert_eq!(v.more_frags(), !last, "MF of fragment {i}");
            if !last {
                assert_eq!(v.payload().len() % 8, 0);
            }
            let o = usize::from(v.frag_offset());
            payload[o..o + v.payload().len()].copy_from_slice(v.payload());
            end = end.max(o + v.payload().len());
        }
        payload.truncate(end);
        payload
    }

    #[test]
    fn splits_in_order_and_reassembles() {
        let f = datagram(&[], 1480, false);
        let (r, frames) = run(&f, 576);
        assert_eq!(r, Ok(3));
        assert_eq!(frames.len(), 3);
        let p = reassemble(&frames, 576);
        assert_eq!(p, f[34..].to_vec());
        // Offsets ascend: 0, 69, 138 (units of 8).
        let offs: Vec<u16> = frames
            .iter()
            .map(|f| ipv4::Packet::new_checked(&f[14..]).unwrap().frag_offset())
            .collect();
        assert_eq!(offs, [0, 552, 1104]);
        // Layer 2 copied.
        assert!(frames.iter().all(|x| x[12] == 0x08));
    }

    #[test]
    fn only_copied_options_follow_the_first_fragment() {
        // Record Route (7, not copied), Router Alert (0x94, copied, 4 bytes) and a NOP.
        let opts = [7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 1];
        let f = datagram(&opts, 1000, false);
        let (r, frames) = run(&f, 400);
        assert!(r.unwrap() >= 3);
        let h0 = ipv4::Packet::new_checked(&frames[0][14..]).unwrap();
        assert_eq!(h0.header_len(), 32);
        assert_eq!(h0.options(), &opts);
        for x in &frames[1..] {
            let h = ipv4::Packet::new_checked(&x[14..]).unwrap();
            assert_eq!(h.header_len(), 24);
            assert_eq!(h.options(), &[0x94, 4, 0, 0]);
        }
        assert_eq!(reassemble(&frames, 400), f[14 + 32..].to_vec());
    }

    #[test]
    fn fragments_of_a_fragment_keep_offsets_and_mf() {
        let mut f = datagram(&[], 1000, false);
        // Make it a middle fragment at offset 800 with MF set.
        f[14 + 6..14 + 8].copy_from_slice(&(0x2000u16 | 100).to_be_bytes());
        let c = {
            f[14 + 10] = 0;
            f[14 + 11] = 0;
            crate::proto::checksum::internet(&f[14..34])
        };
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let (r, frames) = run(&f, 500);
        assert_eq!(r, Ok(3));
        for x in &frames {
            let v = ipv4::Packet::new_checked(&x[14..]).unwrap();
            assert!(v.more_frags(), "MF must stay set: the original had it");
            assert!(v.frag_offset() >= 800);
        }
    }

    #[test]
    fn refusals_are_errors_not_panics() {
        let f = datagram(&[], 1000, true);
        assert_eq!(run(&f, 500).0, Err(FragError::DontFragment));
        let f = datagram(&[], 1000, false);
        assert_eq!(run(&f, 24).0, Err(FragError::MtuTooSmall));
        assert_eq!(run(&f, 1500).0, Ok(1));
        let mut bad = datagram(&[], 1000, false);
        bad[14 + 2..14 + 4].copy_from_slice(&3000u16.to_be_bytes());
        assert_eq!(run(&bad, 500).0, Err(FragError::Malformed));
        assert_eq!(run(&f[..30], 500).0, Err(FragError::Malformed));
        // Every length and MTU: no panic, and whatever is produced reassembles.
        for len in [1usize, 7, 8, 9, 500, 1472, 1973] {
            let f = datagram(&[], len, false);
            for mtu in (68..1500).step_by(37) {
                let (r, frames) = run(&f, mtu);
                if let Ok(n) = r {
                    assert_eq!(n, frames.len());
                    assert_eq!(reassemble(&frames, mtu.max(20 + len)), f[34..].to_vec());
                }
            }
        }
    }
}
