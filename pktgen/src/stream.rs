//! Runtime streams: frame templates built once per frame size, field variation, and
//! per-packet emission with incremental checksums.
//!
//! Frames: Ethernet II (IEEE 802.3 §3.2.6), optional 802.1Q C-tag or 802.1ad S-tag +
//! C-tag (QinQ), optional PPPoE session header (RFC 2516 §5) with the PPP protocol
//! field (RFC 1661 §2), IPv4 (RFC 791) or IPv6 (RFC 8200), then UDP (RFC 768), TCP
//! (RFC 9293, no options) or ICMP/ICMPv6 echo request (RFC 792 / RFC 4443 §4.1), then
//! filler and the [`crate::sig`] signature at the tail.
//!
//! Each template holds the frame with varying fields zeroed and the one's-complement
//! sums (RFC 1071) of the IPv4 header and of the L4 checksum span (pseudo-header
//! included) without them; per packet we add the words of the values written (RFC 1624
//! style), so the cost does not grow with frame size beyond the copy.

use crate::profile::{
    parse_mac, scalar_value, FieldKind, FieldSpec, Mode, ProfileError, Proto, StreamSpec,
};
use crate::sig::SIG_LEN;
use dataplane::buf::{BufError, Pkt, DATA_ROOM};
use dataplane::proto::checksum::{self, fold};

/// Ethernet FCS length: frame sizes count it, generated data does not.
pub const FCS: usize = 4;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_PPPOE_SESS: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// One's-complement sum of `b` (RFC 1071, the engine's), widened so that field words
/// can be added to it before the final [`fold`].
#[inline(always)]
fn sum_words(b: &[u8]) -> u64 {
    u64::from(checksum::data(b))
}

/// How a varying field steps.
/// A resolved field: its value (or range start) and, when it varies, (span, step,
/// mode).
type Resolved = (u128, Option<(u128, u128, VarMode)>);

/// A header field found while laying out a frame: offset, width, resolved value, and
/// whether it enters the IPv4 header and the L4 checksums.
type LaidField = (
    usize,
    usize,
    u128,
    Option<(u128, u128, VarMode)>,
    bool,
    bool,
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VarMode {
    Inc,
    Dec,
    Random,
    Subscriber,
}

/// Where a varying field goes and which checksums it enters. Values are at most 64
/// bits wide: an IPv6 address varies in its low 64 bits (the high half stays in the
/// template).
#[derive(Clone, Debug)]
struct VarField {
    off: usize,
    /// 2, 4 or 8 bytes.
    width: usize,
    mode: VarMode,
    from: u64,
    /// Number of values (0 = 2^64).
    span: u64,
    step: u64,
    cur: u64,
    in_ip_csum: bool,
    in_l4_csum: bool,
}

impl VarField {
    #[inline(always)]
    fn value(&mut self, rng: &mut u64) -> u64 {
        match self.mode {
            VarMode::Random => {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                let r = *rng;
                self.from
                    .wrapping_add(if self.span == 0 { r } else { r % self.span })
            }
            VarMode::Dec => self
                .from
                .wrapping_add(self.span.wrapping_sub(1).wrapping_sub(self.cur)),
            _ => self.from.wrapping_add(self.cur),
        }
    }

    #[inline(always)]
    fn advance(&mut self) {
        self.cur = self.cur.wrapping_add(self.step);
        if self.span != 0 && self.cur >= self.span {
            self.cur -= self.span;
        }
    }

    /// Writes `v` big endian at the field and returns its one's-complement word sum.
    #[inline(always)]
    fn write(&self, d: &mut [u8], v: u64) -> u64 {
        match self.width {
            2 => {
                if let Some(x) = d.get_mut(self.off..self.off + 2) {
                    x.copy_from_slice(&(v as u16).to_be_bytes());
                }
                v & 0xffff
            }
            4 => {
                if let Some(x) = d.get_mut(self.off..self.off + 4) {
                    x.copy_from_slice(&(v as u32).to_be_bytes());
                }
                ((v >> 16) & 0xffff) + (v & 0xffff)
            }
            _ => {
                if let Some(x) = d.get_mut(self.off..self.off + 8) {
                    x.copy_from_slice(&v.to_be_bytes());
                }
                (v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff)
            }
        }
    }
}

/// A frame of one size with varying fields zeroed, and its partial checksums.
#[derive(Clone, Debug)]
struct Template {
    bytes: Vec<u8>,
    frame_size: u16,
    ip_base: u64,
    l4_base: u64,
    sig_off: usize,
    sig_odd: bool,
}

/// Offsets of the header fields in a frame (same for every size of a stream).
#[derive(Clone, Copy, Debug, Default)]
struct Layout {
    l4_csum: usize,
    ip_csum: Option<usize>,
    headers: usize,
}

/// A stream ready to emit packets.
#[derive(Clone, Debug)]
pub struct Stream {
    pub id: u16,
    pub name: String,
    templates: Vec<Template>,
    seq_sizes: Vec<usize>,
    size_pos: usize,
    fields: Vec<VarField>,
    layout: Layout,
    udp: bool,
    subscribers: u32,
    sub: u32,
    rng: u64,
    /// Next sequence number.
    pub next_seq: u64,
    /// Packets per second, `None` = as fast as possible.
    pub rate_pps: Option<f64>,
    /// Most packets sent back to back.
    pub burst: u32,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Mean frame size in bytes (incl. FCS).
    pub mean_frame: f64,
    /// Sizes raised to the minimum that holds the headers and the signature.
    pub min_frame: u16,
}

fn kind_err(spec: &StreamSpec, what: &str, e: String) -> ProfileError {
    spec.err(format!("{what}: {e}"))
}

fn resolve(
    spec: &StreamSpec,
    what: &str,
    f: &FieldSpec,
    kind: FieldKind,
) -> Result<Resolved, ProfileError> {
    match f {
        FieldSpec::Fixed(s) => Ok((
            scalar_value(s, kind).map_err(|e| kind_err(spec, what, e))?,
            None,
        )),
        FieldSpec::Vary {
            from,
            to,
            step,
            mode,
        } => {
            let a = scalar_value(from, kind).map_err(|e| kind_err(spec, what, e))?;
            let b = scalar_value(to, kind).map_err(|e| kind_err(spec, what, e))?;
            if b < a {
                return Err(spec.err(format!("{what}: `to` below `from`")));
            }
            // span 0 stands for the full 2^128 range
            let span = (b - a).wrapping_add(1);
            let step = step.unwrap_or(1) as u128;
            if step == 0 {
                return Err(spec.err(format!("{what}: step 0")));
            }
            let step = if span == 0 { step } else { step % span };
            let m = match mode {
                Mode::Inc => VarMode::Inc,
                Mode::Dec => VarMode::Dec,
                Mode::Random => VarMode::Random,
                Mode::Subscriber => VarMode::Subscriber,
            };
            Ok((a, Some((span, step, m))))
        }
    }
}

fn put(buf: &mut [u8], off: usize, width: usize, v: u128) {
    let be = v.to_be_bytes();
    if let (Some(dst), Some(src)) = (buf.get_mut(off..off + width), be.get(16 - width..)) {
        dst.copy_from_slice(src);
    }
}

impl Stream {
    /// Builds a stream from its spec (`id` goes into every signature).
    pub fn new(id: u16, spec: &StreamSpec) -> Result<Stream, ProfileError> {
        let src_mac = parse_mac(spec.src_mac.as_deref().unwrap_or("02:00:00:00:00:01"))
            .map_err(|e| spec.err(e))?;
        let dst_mac = parse_mac(spec.dst_mac.as_deref().unwrap_or("02:00:00:00:00:02"))
            .map_err(|e| spec.err(e))?;
        if spec.vlan.len() > 2 {
            return Err(spec.err("at most two VLAN tags (QinQ)"));
        }
        let v6 = match spec.ip.version {
            4 => false,
            6 => true,
            v => return Err(spec.err(format!("IP version {v}"))),
        };
        if spec.subscribers == 0 {
            return Err(spec.err("subscribers must be at least 1"));
        }
        let rate = spec.rate().map_err(|e| spec.err(e))?;
        let sizes = spec.size.sequence().map_err(|e| spec.err(e))?;

        // Header layout.
        let mut fields: Vec<LaidField> = Vec::new();
        let mut hdr: Vec<u8> = Vec::with_capacity(128);
        hdr.extend_from_slice(&dst_mac);
        hdr.extend_from_slice(&src_mac);
        for (i, v) in spec.vlan.iter().enumerate() {
            let tpid = if spec.vlan.len() == 2 && i == 0 {
                ETH_P_8021AD
            } else {
                ETH_P_8021Q
            };
            hdr.extend_from_slice(&tpid.to_be_bytes());
            let (val, var) = resolve(spec, "vlan", v, FieldKind::Bits(12))?;
            fields.push((hdr.len(), 2, val, var, false, false));
            hdr.extend_from_slice(&[0, 0]);
        }
        let mut pppoe_len_off = None;
        if let Some(sess) = &spec.pppoe_session {
            hdr.extend_from_slice(&ETH_P_PPPOE_SESS.to_be_bytes());
            hdr.extend_from_slice(&[0x11, 0x00]);
            let (val, var) = resolve(spec, "pppoe_session", sess, FieldKind::Bits(16))?;
            fields.push((hdr.len(), 2, val, var, false, false));
            hdr.extend_from_slice(&[0, 0]);
            pppoe_len_off = Some(hdr.len());
            hdr.extend_from_slice(&[0, 0]);
            hdr.extend_from_slice(&(if v6 { PPP_IPV6 } else { PPP_IPV4 }).to_be_bytes());
        } else {
            hdr.extend_from_slice(&(if v6 { ETH_P_IPV6 } else { ETH_P_IPV4 }).to_be_bytes());
        }
        let ip = hdr.len();
        let proto: u8 = match (spec.l4.proto, v6) {
            (Proto::Udp, _) => 17,
            (Proto::Tcp, _) => 6,
            (Proto::Icmp, false) => 1,
            (Proto::Icmp, true) => 58,
        };
        let akind = if v6 { FieldKind::Ipv6 } else { FieldKind::Ipv4 };
        let (src, src_var) = resolve(spec, "ip.src", &spec.ip.src, akind)?;
        let (dst, dst_var) = resolve(spec, "ip.dst", &spec.ip.dst, akind)?;
        let ip_csum;
        if v6 {
            hdr.extend_from_slice(&[0x60 | (spec.ip.tos >> 4), spec.ip.tos << 4, 0, 0]);
            hdr.extend_from_slice(&[0, 0, proto, spec.ip.ttl]); // payload length set per size
            fields.push((hdr.len(), 16, src, src_var, false, true));
            hdr.extend_from_slice(&[0; 16]);
            fields.push((hdr.len(), 16, dst, dst_var, false, true));
            hdr.extend_from_slice(&[0; 16]);
            ip_csum = None;
        } else {
            hdr.extend_from_slice(&[0x45, spec.ip.tos, 0, 0, 0, 0, 0x40, 0]);
            hdr.extend_from_slice(&[spec.ip.ttl, proto, 0, 0]);
            ip_csum = Some(ip + 10);
            fields.push((hdr.len(), 4, src, src_var, true, true));
            hdr.extend_from_slice(&[0; 4]);
            fields.push((hdr.len(), 4, dst, dst_var, true, true));
            hdr.extend_from_slice(&[0; 4]);
        }
        let l4 = hdr.len();
        let l4_csum;
        match spec.l4.proto {
            Proto::Udp | Proto::Tcp => {
                let (sp, sp_var) = resolve(spec, "l4.sport", &spec.l4.sport, FieldKind::Bits(16))?;
                let (dp, dp_var) = resolve(spec, "l4.dport", &spec.l4.dport, FieldKind::Bits(16))?;
                fields.push((l4, 2, sp, sp_var, false, true));
                fields.push((l4 + 2, 2, dp, dp_var, false, true));
                if spec.l4.proto == Proto::Udp {
                    hdr.extend_from_slice(&[0; 8]);
                    l4_csum = l4 + 6;
                } else {
                    let flags = match spec.l4.flags.as_deref().unwrap_or("syn") {
                        "syn" => 0x02u8,
                        "ack" => 0x10,
                        "syn-ack" | "synack" => 0x12,
                        "psh-ack" => 0x18,
                        "fin-ack" => 0x11,
                        "rst" => 0x04,
                        f => return Err(spec.err(format!("unknown TCP flags {f:?}"))),
                    };
                    let ack: u32 = if flags & 0x10 != 0 { 1 } else { 0 };
                    hdr.extend_from_slice(&[0; 4]);
                    hdr.extend_from_slice(&1u32.to_be_bytes());
                    hdr.extend_from_slice(&ack.to_be_bytes());
                    hdr.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
                    l4_csum = l4 + 16;
                }
            }
            Proto::Icmp => {
                let ty = if v6 { 128 } else { 8 };
                hdr.extend_from_slice(&[ty, 0, 0, 0]);
                hdr.extend_from_slice(&id.to_be_bytes());
                hdr.extend_from_slice(&[0, 1]);
                l4_csum = l4 + 2;
            }
        }
        let headers = hdr.len();
        let min_frame = (headers + SIG_LEN + FCS) as u16;
        let layout = Layout {
            l4_csum,
            ip_csum,
            headers,
        };
        // Fixed fields are baked into the template; varying ones become u64 fields
        // (an IPv6 address keeps its high half in the template).
        let mut varying: Vec<VarField> = Vec::new();
        for (off, width, val, var, ipc, l4c) in fields {
            match var {
                Some((span, step, mode)) if step != 0 => {
                    let (off, width, from, span) = if width == 16 {
                        let last = val.wrapping_add(span.wrapping_sub(1));
                        if span == 0 || span > 1u128 << 64 || last >> 64 != val >> 64 {
                            return Err(spec.err(
                                "an IPv6 range must stay within one /64 (the low 64 bits vary)",
                            ));
                        }
                        put(&mut hdr, off, 8, val >> 64);
                        (
                            off + 8,
                            8,
                            val as u64,
                            if span == 1u128 << 64 { 0 } else { span as u64 },
                        )
                    } else {
                        (off, width, val as u64, span as u64)
                    };
                    varying.push(VarField {
                        off,
                        width,
                        mode,
                        from,
                        span,
                        step: step as u64,
                        cur: 0,
                        in_ip_csum: ipc,
                        in_l4_csum: l4c,
                    });
                }
                _ => put(&mut hdr, off, width, val),
            }
        }
        // ICMP: no pseudo-header; ICMPv6 has one (RFC 4443 §2.3).
        let pseudo = spec.l4.proto != Proto::Icmp || v6;
        for f in varying.iter_mut() {
            if !pseudo && f.off < l4 {
                f.in_l4_csum = false;
            }
        }

        let mut distinct: Vec<u16> = Vec::new();
        let mut seq_sizes = Vec::with_capacity(sizes.len());
        for s in &sizes {
            let s = (*s).max(min_frame);
            let i = match distinct.iter().position(|d| *d == s) {
                Some(i) => i,
                None => {
                    distinct.push(s);
                    distinct.len() - 1
                }
            };
            seq_sizes.push(i);
        }
        let mut templates = Vec::new();
        for &fs in &distinct {
            let len = fs as usize - FCS;
            if len > DATA_ROOM {
                return Err(spec.err(format!("frame size {fs} exceeds the buffer")));
            }
            let mut b = hdr.clone();
            // filler: a counting pattern, so payload bytes are not all zero
            b.extend((0..len - headers).map(|i| i as u8));
            if let Some(o) = pppoe_len_off {
                put(&mut b, o, 2, (len - o - 2) as u128);
            }
            let l4_len = len - l4;
            if v6 {
                put(&mut b, ip + 4, 2, l4_len as u128);
            } else {
                put(&mut b, ip + 2, 2, (len - ip) as u128);
            }
            if spec.l4.proto == Proto::Udp {
                put(&mut b, l4 + 4, 2, l4_len as u128);
            }
            let sig_off = len - SIG_LEN;
            if let Some(s) = b.get_mut(sig_off..) {
                s.fill(0);
            }
            let ip_base = if v6 {
                0
            } else {
                sum_words(b.get(ip..ip + 20).unwrap_or(&[]))
            };
            let mut l4_base = sum_words(b.get(l4..).unwrap_or(&[]));
            if pseudo {
                // pseudo-header without the (varying or fixed) addresses, which are
                // summed from the frame bytes below
                l4_base += proto as u64 + l4_len as u64;
                let alen = if v6 { 32 } else { 8 };
                let aoff = if v6 { ip + 8 } else { ip + 12 };
                l4_base += sum_words(b.get(aoff..aoff + alen).unwrap_or(&[]));
            }
            templates.push(Template {
                bytes: b,
                frame_size: fs,
                ip_base,
                l4_base,
                sig_off,
                sig_odd: (sig_off - l4) % 2 == 1,
            });
        }
        let n = seq_sizes.len().max(1) as f64;
        let mean_frame = seq_sizes
            .iter()
            .filter_map(|i| templates.get(*i))
            .map(|t| t.frame_size as f64)
            .sum::<f64>()
            / n;
        let mut s = Stream {
            id,
            name: spec.name.clone(),
            templates,
            seq_sizes,
            size_pos: 0,
            fields: varying,
            layout,
            udp: spec.l4.proto == Proto::Udp,
            subscribers: spec.subscribers,
            sub: 0,
            rng: 0x9e37_79b9_7f4a_7c15 ^ ((id as u64) << 32 | 1),
            next_seq: 0,
            rate_pps: rate.pps(0.0),
            burst: spec.burst.max(1),
            count: spec.count,
            mean_frame,
            min_frame,
        };
        s.rate_pps = rate.pps(s.mean_frame);
        Ok(s)
    }

    /// Restarts sequence numbers and field variation (a new trial).
    pub fn reset(&mut self) {
        self.next_seq = 0;
        self.size_pos = 0;
        self.sub = 0;
        for f in self.fields.iter_mut() {
            f.cur = 0;
        }
    }

    /// Frame sizes of one cycle of the size sequence (incl. FCS).
    pub fn frame_sizes(&self) -> Vec<u16> {
        self.seq_sizes
            .iter()
            .filter_map(|i| self.templates.get(*i))
            .map(|t| t.frame_size)
            .collect()
    }

    /// True when `count` packets have been emitted.
    #[inline(always)]
    pub fn done(&self) -> bool {
        self.count.is_some_and(|c| self.next_seq >= c)
    }

    /// Writes the next packet of the stream into `pkt` with transmit time `ts`.
    #[inline]
    pub fn emit(&mut self, pkt: &mut Pkt, ts: u64) -> Result<(), BufError> {
        let ti = self.seq_sizes.get(self.size_pos).copied().unwrap_or(0);
        self.size_pos += 1;
        if self.size_pos >= self.seq_sizes.len() {
            self.size_pos = 0;
        }
        let Some(t) = self.templates.get(ti) else {
            return Err(BufError::TooShort);
        };
        pkt.copy_from(&t.bytes)?;
        let d = pkt.data_mut();
        let mut ip_sum = t.ip_base;
        let mut l4_sum = t.l4_base;
        self.sub += 1;
        let wrap = self.sub >= self.subscribers;
        if wrap {
            self.sub = 0;
        }
        for f in self.fields.iter_mut() {
            let v = f.value(&mut self.rng);
            let w = f.write(d, v);
            if f.in_ip_csum {
                ip_sum += w;
            }
            if f.in_l4_csum {
                l4_sum += w;
            }
            if f.mode == VarMode::Subscriber && wrap {
                f.cur = 0;
            } else {
                f.advance();
            }
        }
        let seq = self.next_seq & crate::sig::SEQ_MASK;
        self.next_seq += 1;
        let o = t.sig_off;
        if let Some(x) = d.get_mut(o..o + SIG_LEN) {
            x[0..2].copy_from_slice(&crate::sig::MAGIC);
            x[2..4].copy_from_slice(&self.id.to_be_bytes());
            x[4..10].copy_from_slice(&seq.to_be_bytes()[2..8]);
            x[10..18].copy_from_slice(&ts.to_be_bytes());
        }
        let magic = u16::from_be_bytes(crate::sig::MAGIC) as u64;
        let sig_sum = magic
            + self.id as u64
            + (seq >> 32)
            + ((seq >> 16) & 0xffff)
            + (seq & 0xffff)
            + (ts >> 48)
            + ((ts >> 32) & 0xffff)
            + ((ts >> 16) & 0xffff)
            + (ts & 0xffff);
        // at an odd offset every word is byte-swapped (RFC 1071 §2(B))
        l4_sum += if t.sig_odd {
            fold(sig_sum).swap_bytes() as u64
        } else {
            sig_sum
        };
        if let Some(o) = self.layout.ip_csum {
            if let Some(x) = d.get_mut(o..o + 2) {
                x.copy_from_slice(&(!fold(ip_sum)).to_be_bytes());
            }
        }
        let mut c = !fold(l4_sum);
        if self.udp && c == 0 {
            c = 0xffff; // RFC 768: a computed zero is sent as all ones
        }
        let o = self.layout.l4_csum;
        if let Some(x) = d.get_mut(o..o + 2) {
            x.copy_from_slice(&c.to_be_bytes());
        }
        Ok(())
    }

    /// Header bytes in front of the payload.
    pub fn header_len(&self) -> usize {
        self.layout.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, SizeSpec};
    use crate::sig::Signature;
    use dataplane::buf::Pool;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn frames(spec: &StreamSpec, n: usize) -> Vec<Vec<u8>> {
        let pool = Pool::new(8).unwrap();
        let mut c = pool.cache();
        let mut s = Stream::new(3, spec).unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            let mut p = c.alloc().unwrap();
            s.emit(&mut p, 1000 + i as u64).unwrap();
            out.push(p.data().to_vec());
            c.free(p);
        }
        out
    }

    fn check_l4(f: &[u8]) {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        match (&p.net, &p.transport) {
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) => {
                assert!(
                    ip.header().to_header().calc_header_checksum() == ip.header().header_checksum()
                );
                let h = u.to_header();
                let c = h
                    .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
                    .unwrap();
                assert_eq!(c, h.checksum);
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(u))) => {
                let h = u.to_header();
                let c = h
                    .calc_checksum_ipv6(&ip.header().to_header(), u.payload())
                    .unwrap();
                assert_eq!(c, h.checksum);
            }
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) => {
                let h = t.to_header();
                let c = h
                    .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                    .unwrap();
                assert_eq!(c, h.checksum);
            }
            (Some(NetSlice::Ipv4(_)), Some(TransportSlice::Icmpv4(i))) => {
                assert!(dataplane::proto::checksum::verify(i.slice()));
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(i))) => {
                let h = i.header();
                let c = h
                    .icmp_type
                    .calc_checksum(ip.header().source(), ip.header().destination(), i.payload())
                    .unwrap();
                assert_eq!(c, i.checksum());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn udp_v4_imix_with_variation_has_valid_checksums_and_signature() {
        let t = r#"
[[stream]]
name = "a"
size = "imix"
subscribers = 5
[stream.ip]
src = { from = "10.0.0.1", to = "10.0.0.5", mode = "subscriber" }
dst = { from = "198.51.100.0", to = "198.51.100.255", mode = "random" }
[stream.l4]
sport = { from = 1000, to = 1003 }
dport = 7
"#;
        let spec = Profile::from_toml(t).unwrap().streams.remove(0);
        let fs = frames(&spec, 24);
        for (i, f) in fs.iter().enumerate() {
            assert_eq!(f.len() + FCS, crate::profile::IMIX_SEQ[i % 12] as usize);
            check_l4(f);
            let sig = Signature::from_tail(f).unwrap();
            assert_eq!(sig.seq, i as u64);
            assert_eq!(sig.stream, 3);
            assert_eq!(sig.tx_ns, 1000 + i as u64);
            assert_eq!(
                &f[26..30],
                &[10, 0, 0, 1 + (i % 5) as u8],
                "per-subscriber src"
            );
            assert_eq!(u16::from_be_bytes([f[34], f[35]]), 1000 + (i % 4) as u16);
        }
    }

    #[test]
    fn tcp_icmp_v6_vlan_pppoe_frames_parse() {
        let mut s = StreamSpec::udp("t");
        s.l4.proto = Proto::Tcp;
        s.l4.flags = Some("syn-ack".into());
        s.size = SizeSpec::Fixed(65); // odd: signature at an odd L4 offset
        for f in frames(&s, 3) {
            assert_eq!(f.len(), 14 + 20 + 20 + SIG_LEN);
            check_l4(&f);
            assert_eq!(f[47], 0x12);
        }
        let mut s = StreamSpec::udp("i");
        s.l4.proto = Proto::Icmp;
        s.size = SizeSpec::Fixed(101);
        for f in frames(&s, 3) {
            check_l4(&f);
        }
        let mut s = StreamSpec::udp("v6");
        s.ip.version = 6;
        s.ip.src = "2001:db8::1".into();
        s.ip.dst = FieldSpec::Vary {
            from: crate::profile::Scalar::Str("2001:db8::100".into()),
            to: crate::profile::Scalar::Str("2001:db8::1ff".into()),
            step: None,
            mode: Mode::Inc,
        };
        s.size = SizeSpec::Fixed(64);
        for f in frames(&s, 3) {
            assert_eq!(f.len(), 14 + 40 + 8 + SIG_LEN, "64 B raised to the minimum");
            check_l4(&f);
        }
        s.l4.proto = Proto::Icmp;
        for f in frames(&s, 3) {
            check_l4(&f);
        }
        let mut s = StreamSpec::udp("q");
        s.vlan = vec![100u64.into(), 200u64.into()];
        s.size = SizeSpec::Fixed(128);
        let f = &frames(&s, 1)[0];
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(u16::from_be_bytes([f[14], f[15]]), 100);
        check_l4(f);
        let mut s = StreamSpec::udp("p");
        s.pppoe_session = Some(0x1234u64.into());
        s.size = SizeSpec::Fixed(128);
        let f = &frames(&s, 1)[0];
        assert_eq!(&f[12..14], &[0x88, 0x64]);
        assert_eq!(&f[16..18], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]) as usize, f.len() - 20);
        assert_eq!(&f[20..22], &[0x00, 0x21]);
        // IPv4 header checksum inside PPPoE
        assert!(dataplane::proto::checksum::verify(&f[22..42]));
    }

    #[test]
    fn bad_specs_are_errors() {
        let mut s = StreamSpec::udp("x");
        s.ip.version = 5;
        assert!(Stream::new(0, &s).is_err());
        let mut s = StreamSpec::udp("x");
        s.vlan = vec![1u64.into(); 3];
        assert!(Stream::new(0, &s).is_err());
        let mut s = StreamSpec::udp("x");
        s.ip.version = 6;
        s.ip.src = "2001:db8::1".into();
        s.ip.dst = FieldSpec::Vary {
            from: crate::profile::Scalar::Str("2001:db8::".into()),
            to: crate::profile::Scalar::Str("2001:db8:0:1::".into()),
            step: None,
            mode: Mode::Inc,
        };
        assert!(Stream::new(0, &s).is_err(), "IPv6 ranges stay within a /64");
        let mut s = StreamSpec::udp("x");
        s.l4.dport = 70000u64.into();
        assert!(Stream::new(0, &s).is_err());
        let mut s = StreamSpec::udp("x");
        s.l4.proto = Proto::Tcp;
        s.l4.flags = Some("xmas".into());
        assert!(Stream::new(0, &s).is_err());
    }
}
