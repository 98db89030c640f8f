//! The vBNG fast path: one engine stage (`bng-fastpath`) for both directions.
//!
//! Upstream (access port): PPPoE session frames (RFC 2516 §6) carrying IPv4 (PPP
//! protocol 0x0021) are looked up by (port, source MAC, S-VLAN, C-VLAN, session id) in
//! O(1), checked against the subscriber's address (anti-spoofing: a subscriber may only
//! source its own address), policed (per-subscriber token bucket, the engine's
//! `qos::TokenBucket`), TTL-decremented with an RFC 1624 checksum update, and
//! re-framed in place as Ethernet towards the core next hop. Discovery (0x8863) and
//! PPP control protocols (LCP, PAP, CHAP, IPCP, IPv6CP, anything not IPv4) are punted
//! to the control plane.
//!
//! Downstream (core port): IPv4 to a subscriber address is looked up in O(1), policed,
//! TTL-decremented and encapsulated in place (Ethernet + VLANs + PPPoE + PPP) into the
//! packet's headroom, then sent to the access port.
//!
//! Tables are updated by the control plane through a lock-free queue of
//! [`FibUpdate`]s drained at the start of each batch; the packet path does not
//! allocate (the hash tables are sized for `max_sessions` at start-up).

use crate::control::{FibUpdate, SessionCounters};
use crate::pppoe::AccessKey;
use alloc::sync::Arc;
use alloc::vec::Vec;
use crossbeam_queue::ArrayQueue;
use dataplane::batch::{Batch, Next, Out};
use dataplane::buf::Pkt;
use dataplane::proto::checksum::update16;
use dataplane::stage::{NodeStats, Stage};
use dataplane::stages::qos::TokenBucket;
use hashbrown::HashMap;

/// Drop reasons of `bng-fastpath`, in `Next::Drop` index order.
pub static ERRORS: &[&str] = &[
    "malformed",
    "no-session",
    "spoofed-source",
    "policed-up",
    "policed-down",
    "no-route",
    "ttl-exceeded",
    "too-big",
    "no-headroom",
    "unsupported-ethertype",
    "ipv6-not-forwarded",
];
const E_MALFORMED: u16 = 0;
const E_NO_SESSION: u16 = 1;
const E_SPOOF: u16 = 2;
const E_POLICE_UP: u16 = 3;
const E_POLICE_DOWN: u16 = 4;
const E_NO_ROUTE: u16 = 5;
const E_TTL: u16 = 6;
const E_TOO_BIG: u16 = 7;
const E_HEADROOM: u16 = 8;
const E_ETHERTYPE: u16 = 9;
const E_IPV6: u16 = 10;

/// The queue through which the control plane updates the fast path.
pub type UpdateQueue = ArrayQueue<FibUpdate>;

/// A new update queue holding up to `cap` pending updates.
pub fn update_queue(cap: usize) -> Arc<UpdateQueue> {
    Arc::new(ArrayQueue::new(cap.max(1)))
}

/// Burst allowed by the per-subscriber policers, bytes.
pub const POLICER_BURST: u32 = 64 * 1024;

/// Session key packed in 128 bits: port(16) | MAC(48) | S-VLAN(12) | C-VLAN(12) | sid(16).
type Key = u128;

#[inline(always)]
fn pack(port: u16, mac: &[u8; 6], svlan: u16, cvlan: u16, sid: u16) -> Key {
    let m = u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    (u128::from(port) << 88)
        | (u128::from(m) << 40)
        | (u128::from(svlan & 0xfff) << 28)
        | (u128::from(cvlan & 0xfff) << 16)
        | u128::from(sid)
}

/// A keyed multiply-xorshift hasher for the fixed-width table keys (one 64×64
/// multiply per key instead of a general-purpose streaming hash). The key is seeded
/// per table so hash values are not predictable from outside.
#[derive(Clone, Copy, Debug)]
pub struct KeyHasher(u64);

impl core::hash::Hasher for KeyHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    #[inline(always)]
    fn write_u32(&mut self, x: u32) {
        self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    #[inline(always)]
    fn write_u128(&mut self, x: u128) {
        let a = (self.0 ^ x as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        self.0 = a
            ^ ((x >> 64) as u64)
                .wrapping_mul(0xc4ce_b9fe_1a85_ec53)
                .rotate_left(31);
    }
}

/// Builds [`KeyHasher`]s from a per-table seed.
#[derive(Clone, Copy, Debug)]
pub struct KeyHash(u64);

impl core::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    #[inline(always)]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

#[derive(Debug, Clone)]
struct Sess {
    key: AccessKey,
    sid: u16,
    ip: u32,
    up: Option<TokenBucket>,
    down: Option<TokenBucket>,
    mtu: u16,
}

/// Which half of the work a `bng-fastpath` instance does. With CGNAT the pipeline is
/// `[Upstream] → nat44 → [Downstream]`: decapsulated upstream packets are kept for the
/// NAT and forwarded to the core by the second instance; core packets pass the first
/// instance untouched and are encapsulated by the second after the NAT. Each instance
/// has its own table copy, fed by its own update queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Both directions in one stage (no NAT).
    Both,
    /// Decapsulate upstream, keep everything for the next stage.
    Upstream,
    /// Encapsulate downstream; send kept (already decapsulated) upstream packets to the core.
    Downstream,
}

/// Fast-path configuration.
#[derive(Debug, Clone)]
pub struct FastPathConfig {
    /// Engine port index of the access side.
    pub access_port: u16,
    /// Engine port index of the core side.
    pub core_port: u16,
    /// Our MAC on the access side.
    pub access_mac: [u8; 6],
    /// Our MAC on the core side.
    pub core_mac: [u8; 6],
    /// MAC of the core next hop.
    pub core_next_hop: [u8; 6],
    /// Session slots.
    pub max_sessions: u32,
}

/// The stage.
pub struct FastPath {
    cfg: FastPathConfig,
    mode: Mode,
    by_key: HashMap<Key, u32, KeyHash>,
    by_ip: HashMap<u32, u32, KeyHash>,
    sess: Vec<Option<Sess>>,
    updates: Arc<ArrayQueue<FibUpdate>>,
    counters: Arc<SessionCounters>,
}

impl core::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FastPath")
            .field("sessions", &self.by_key.len())
            .finish()
    }
}

fn key_of(k: &AccessKey, sid: u16) -> Key {
    pack(k.port, &k.mac, k.vlans.svlan, k.vlans.cvlan, sid)
}

fn bucket(rate: u64, now_ns: u64) -> Option<TokenBucket> {
    (rate > 0).then(|| TokenBucket::new(rate, POLICER_BURST, now_ns))
}

impl FastPath {
    /// A stage with empty tables sized for `cfg.max_sessions`; `updates` is the queue
    /// the control plane feeds.
    pub fn new(
        cfg: FastPathConfig,
        updates: Arc<ArrayQueue<FibUpdate>>,
        counters: Arc<SessionCounters>,
    ) -> FastPath {
        let n = cfg.max_sessions as usize;
        // Seed the table hashes from the counters' address and the config (no RNG
        // needed in no_std; the seed only has to differ between deployments).
        let seed = (Arc::as_ptr(&counters) as u64).rotate_left(17)
            ^ u64::from_be_bytes([
                0,
                0,
                cfg.access_mac[0],
                cfg.access_mac[1],
                cfg.access_mac[2],
                cfg.access_mac[3],
                cfg.access_mac[4],
                cfg.access_mac[5],
            ]);
        FastPath {
            mode: Mode::Both,
            by_key: HashMap::with_capacity_and_hasher(n, KeyHash(seed)),
            by_ip: HashMap::with_capacity_and_hasher(n, KeyHash(seed.rotate_left(32))),
            sess: (0..n).map(|_| None).collect(),
            cfg,
            updates,
            counters,
        }
    }

    /// Set the mode (default [`Mode::Both`]).
    pub fn with_mode(mut self, mode: Mode) -> FastPath {
        self.mode = mode;
        self
    }

    /// Installed sessions.
    pub fn sessions(&self) -> usize {
        self.by_key.len()
    }

    /// Apply one table update (also used directly by tests).
    pub fn apply(&mut self, u: FibUpdate, now_ns: u64) {
        match u {
            FibUpdate::Add {
                idx,
                key,
                sid,
                ip,
                rate,
            } => {
                let Some(slot) = self.sess.get_mut(idx as usize) else {
                    return;
                };
                if let Some(old) = slot.take() {
                    self.by_key.remove(&key_of(&old.key, old.sid));
                    self.by_ip.remove(&old.ip);
                }
                *slot = Some(Sess {
                    key,
                    sid,
                    ip,
                    up: bucket(rate.0, now_ns),
                    down: bucket(rate.1, now_ns),
                    mtu: 1492,
                });
                self.by_key.insert(key_of(&key, sid), idx);
                self.by_ip.insert(ip, idx);
            }
            FibUpdate::Remove { idx, key, sid, ip } => {
                if self.by_key.get(&key_of(&key, sid)) == Some(&idx) {
                    self.by_key.remove(&key_of(&key, sid));
                }
                if self.by_ip.get(&ip) == Some(&idx) {
                    self.by_ip.remove(&ip);
                }
                if let Some(s) = self.sess.get_mut(idx as usize) {
                    *s = None;
                }
            }
            FibUpdate::Rate { idx, rate } => {
                if let Some(Some(s)) = self.sess.get_mut(idx as usize) {
                    s.up = bucket(rate.0, now_ns);
                    s.down = bucket(rate.1, now_ns);
                }
            }
        }
    }

    #[inline]
    fn upstream(&mut self, p: &mut Pkt, now_ns: u64) -> Next {
        let d = p.data();
        // Ethernet + up to two VLAN tags.
        let (mut off, mut tags, mut vl) = (12usize, 0usize, [0u16; 2]);
        let mut et = match d.get(12..14) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Next::Drop(E_MALFORMED),
        };
        while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
            if tags == 2 {
                return Next::Drop(E_MALFORMED);
            }
            let Some(t) = d.get(off + 2..off + 6) else {
                return Next::Drop(E_MALFORMED);
            };
            vl[tags] = u16::from_be_bytes([t[0], t[1]]) & 0x0fff;
            et = u16::from_be_bytes([t[2], t[3]]);
            tags += 1;
            off += 4;
        }
        let l2 = off + 2;
        match et {
            0x8863 => return Next::Punt,
            0x8864 => {}
            _ => return Next::Drop(E_ETHERTYPE),
        }
        // PPPoE header (6) + PPP protocol (2).
        let Some(h) = d.get(l2..l2 + 8) else {
            return Next::Drop(E_MALFORMED);
        };
        if h[0] != 0x11 || h[1] != 0 {
            return Next::Drop(E_MALFORMED);
        }
        let sid = u16::from_be_bytes([h[2], h[3]]);
        let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let proto = u16::from_be_bytes([h[6], h[7]]);
        if proto != 0x0021 {
            return if proto == 0x0057 {
                Next::Drop(E_IPV6)
            } else {
                Next::Punt
            };
        }
        if plen < 2 + 20 || l2 + 6 + plen > d.len() {
            return Next::Drop(E_MALFORMED);
        }
        let (sv, cv) = match tags {
            0 => (0, 0),
            1 => (0, vl[0]),
            _ => (vl[0], vl[1]),
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&d[6..12]);
        let Some(&idx) = self.by_key.get(&pack(p.meta.port, &mac, sv, cv, sid)) else {
            return Next::Drop(E_NO_SESSION);
        };
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_SESSION);
        };
        let ip_off = l2 + 8;
        let ip_len = plen - 2;
        let ip = &d[ip_off..ip_off + ip_len];
        if ip[0] >> 4 != 4
            || usize::from(ip[0] & 0x0f) * 4 < 20
            || usize::from(u16::from_be_bytes([ip[2], ip[3]])) > ip_len
        {
            return Next::Drop(E_MALFORMED);
        }
        if u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]) != s.ip {
            return Next::Drop(E_SPOOF);
        }
        if ip[8] <= 1 {
            return Next::Drop(E_TTL);
        }
        if let Some(b) = s.up.as_mut() {
            b.fill(now_ns);
            if !b.take(ip_len) {
                return Next::Drop(E_POLICE_UP);
            }
        }
        self.counters.up(idx, ip_len as u64);
        // Trim Ethernet padding past the PPPoE length, then re-frame in place.
        let extra = d.len() - (ip_off + ip_len);
        if extra > 0 && p.trim(extra).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if p.strip(ip_off - 14).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        let core = self.cfg.core_port;
        let (nh, src) = (self.cfg.core_next_hop, self.cfg.core_mac);
        let d = p.data_mut();
        d[0..6].copy_from_slice(&nh);
        d[6..12].copy_from_slice(&src);
        d[12] = 0x08;
        d[13] = 0x00;
        dec_ttl(&mut d[14..]);
        p.meta.l3 = 14;
        p.meta.user = idx;
        Next::Port(core)
    }

    #[inline]
    fn downstream(&mut self, p: &mut Pkt, now_ns: u64) -> Next {
        let d = p.data();
        let Some(h) = d.get(12..34) else {
            return Next::Drop(E_MALFORMED);
        };
        if h[0] != 0x08 || h[1] != 0x00 {
            return Next::Drop(E_ETHERTYPE);
        }
        let ip = &h[2..];
        if ip[0] >> 4 != 4 {
            return Next::Drop(E_MALFORMED);
        }
        let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip_len < 20 || 14 + ip_len > d.len() {
            return Next::Drop(E_MALFORMED);
        }
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        let Some(&idx) = self.by_ip.get(&dst) else {
            return Next::Drop(E_NO_ROUTE);
        };
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_ROUTE);
        };
        if ip[8] <= 1 {
            return Next::Drop(E_TTL);
        }
        if ip_len > usize::from(s.mtu) {
            return Next::Drop(E_TOO_BIG);
        }
        if let Some(b) = s.down.as_mut() {
            b.fill(now_ns);
            if !b.take(ip_len) {
                return Next::Drop(E_POLICE_DOWN);
            }
        }
        self.counters.down(idx, ip_len as u64);
        let (key, sid) = (s.key, s.sid);
        let extra = d.len() - (14 + ip_len);
        if extra > 0 && p.trim(extra).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        let ntags = key.vlans.tag_count();
        let hdr = 14 + 4 * ntags + 8;
        // Strip our Ethernet header, prepend the access header.
        if p.strip(14).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        dec_ttl(p.data_mut());
        let amac = self.cfg.access_mac;
        let Ok(h) = p.prepend(hdr) else {
            return Next::Drop(E_HEADROOM);
        };
        h[0..6].copy_from_slice(&key.mac);
        h[6..12].copy_from_slice(&amac);
        let mut o = 12;
        if key.vlans.svlan != 0 {
            h[o..o + 4].copy_from_slice(&[
                0x88,
                0xa8,
                (key.vlans.svlan >> 8) as u8,
                key.vlans.svlan as u8,
            ]);
            o += 4;
        }
        if key.vlans.cvlan != 0 {
            h[o..o + 4].copy_from_slice(&[
                0x81,
                0x00,
                (key.vlans.cvlan >> 8) as u8,
                key.vlans.cvlan as u8,
            ]);
            o += 4;
        }
        let plen = (ip_len + 2) as u16;
        h[o..o + 10].copy_from_slice(&[
            0x88,
            0x64,
            0x11,
            0x00,
            (sid >> 8) as u8,
            sid as u8,
            (plen >> 8) as u8,
            plen as u8,
            0x00,
            0x21,
        ]);
        p.meta.l3 = hdr as u16;
        p.meta.user = idx;
        Next::Port(key.port)
    }
}

/// Decrement the IPv4 TTL and patch the header checksum (RFC 1624 eqn. 3).
#[inline]
fn dec_ttl(ip: &mut [u8]) {
    if ip.len() < 20 {
        return;
    }
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] = ip[8].wrapping_sub(1);
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let c = update16(u16::from_be_bytes([ip[10], ip[11]]), old, new);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

impl Stage for FastPath {
    fn name(&self) -> &'static str {
        "bng-fastpath"
    }

    fn errors(&self) -> &'static [&'static str] {
        ERRORS
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns;
        while let Some(u) = self.updates.pop() {
            self.apply(u, now);
        }
        let (access, core, mode) = (self.cfg.access_port, self.cfg.core_port, self.mode);
        batch.dispatch(node, out, |p, _| match (mode, p.meta.port) {
            (Mode::Both | Mode::Downstream, x) if x == core => self.downstream(p, now),
            (Mode::Upstream, x) if x == core => Next::Keep,
            (Mode::Both, x) if x == access => self.upstream(p, now),
            (Mode::Upstream, x) if x == access => match self.upstream(p, now) {
                Next::Port(_) => Next::Keep,
                n => n,
            },
            (Mode::Downstream, x) if x == access => Next::Port(core),
            _ => Next::Drop(E_ETHERTYPE),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::eth::Vlans;
    use dataplane::buf::Pool;
    use dataplane::proto::checksum;

    fn ipv4(src: u32, dst: u32, ttl: u8, payload: usize) -> Vec<u8> {
        let len = 20 + payload;
        let mut v = alloc::vec![
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0,
            0,
            ttl,
            17,
            0,
            0
        ];
        v.extend_from_slice(&src.to_be_bytes());
        v.extend_from_slice(&dst.to_be_bytes());
        let c = checksum::internet(&v);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v.extend(core::iter::repeat_n(0xab, payload));
        v
    }

    fn setup(rate: (u64, u64)) -> (FastPath, AccessKey, Arc<SessionCounters>) {
        let q = Arc::new(ArrayQueue::new(16));
        let c = SessionCounters::new(8);
        let cfg = FastPathConfig {
            access_port: 0,
            core_port: 1,
            access_mac: [2, 0, 0, 0, 0, 0xa],
            core_mac: [2, 0, 0, 0, 0, 0xc],
            core_next_hop: [2, 0, 0, 0, 0, 0xd],
            max_sessions: 8,
        };
        let mut fp = FastPath::new(cfg, q, c.clone());
        let key = AccessKey {
            port: 0,
            mac: [2, 1, 1, 1, 1, 1],
            vlans: Vlans {
                svlan: 10,
                cvlan: 20,
            },
        };
        fp.apply(
            FibUpdate::Add {
                idx: 3,
                key,
                sid: 0x55,
                ip: 0x6440_0005,
                rate,
            },
            0,
        );
        (fp, key, c)
    }

    fn up_frame(key: &AccessKey, sid: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = alloc::vec![2, 0, 0, 0, 0, 0xa];
        f.extend_from_slice(&key.mac);
        f.extend_from_slice(&[
            0x88,
            0xa8,
            0,
            10,
            0x81,
            0,
            0,
            20,
            0x88,
            0x64,
            0x11,
            0,
            (sid >> 8) as u8,
            sid as u8,
        ]);
        f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0x21]);
        f.extend_from_slice(ip);
        f
    }

    fn run(fp: &mut FastPath, port: u16, frames: &[Vec<u8>], now_ns: u64) -> (Out, NodeStats) {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(2, pool.cache());
        out.now_ns = now_ns;
        let mut node = NodeStats::new("bng-fastpath", ERRORS);
        let mut b = Batch::new();
        for f in frames {
            let mut p = out.cache.alloc().unwrap();
            p.copy_from(f).unwrap();
            p.meta.port = port;
            b.push(p).unwrap();
        }
        fp.process(&mut b, &mut node, &mut out);
        (out, node)
    }

    #[test]
    fn upstream_decap_antispoof_and_punt() {
        let (mut fp, key, c) = setup((0, 0));
        let good = ipv4(0x6440_0005, 0x0808_0808, 64, 10);
        let spoof = ipv4(0x6440_0006, 0x0808_0808, 64, 10);
        let mut padded = up_frame(&key, 0x55, &good);
        padded.extend_from_slice(&[0; 6]);
        let mut lcp = up_frame(&key, 0x55, &good);
        lcp[28] = 0xc0;
        lcp[29] = 0x21;
        let frames = alloc::vec![
            padded,
            up_frame(&key, 0x55, &spoof),
            up_frame(&key, 0x56, &good),
            lcp,
            alloc::vec![1, 2, 3]
        ];
        let (out, node) = run(&mut fp, 0, &frames, 0);
        assert_eq!(out.ports[1].len(), 1);
        let p = out.ports[1].iter().next().unwrap();
        let d = p.data();
        assert_eq!(&d[0..6], &[2, 0, 0, 0, 0, 0xd]);
        assert_eq!(&d[12..14], &[8, 0]);
        assert_eq!(d.len(), 14 + good.len());
        assert_eq!(d[14 + 8], 63);
        assert!(checksum::verify(&d[14..34]));
        assert_eq!(node.drops[E_SPOOF as usize], 1);
        assert_eq!(node.drops[E_NO_SESSION as usize], 1);
        assert_eq!(node.drops[E_MALFORMED as usize], 1);
        assert_eq!(out.punt.len(), 1);
        assert_eq!(c.get(3), (good.len() as u64, 1, 0, 0));
    }

    #[test]
    fn downstream_encap_and_policer() {
        let (mut fp, key, _) = setup((0, 8_000_000));
        let ip = ipv4(0x0808_0808, 0x6440_0005, 64, 1000);
        let mut f = alloc::vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 8, 0];
        f.extend_from_slice(&ip);
        let mut other = f.clone();
        other[14 + 19] = 9;
        // 64 KiB burst: 64 packets of 1020 bytes fit; the other 36 are policed.
        let frames: Vec<Vec<u8>> = (0..100)
            .map(|_| f.clone())
            .chain(core::iter::once(other))
            .collect();
        let (out, node) = run(&mut fp, 1, &frames[..64], 0);
        assert_eq!(out.ports[0].len(), 64);
        let d = out.ports[0].iter().next().unwrap().data();
        assert_eq!(&d[0..6], &key.mac);
        assert_eq!(&d[12..22], &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64]);
        assert_eq!(
            &d[22..30],
            &[
                0x11,
                0,
                0,
                0x55,
                ((ip.len() + 2) >> 8) as u8,
                (ip.len() + 2) as u8,
                0,
                0x21
            ]
        );
        assert!(checksum::verify(&d[30..50]));
        assert_eq!(node.drops.iter().sum::<u64>(), 0);
        let (out, node) = run(&mut fp, 1, &frames[64..], 0);
        assert_eq!(out.ports[0].len(), 0);
        assert_eq!(node.drops[E_POLICE_DOWN as usize], 36);
        assert_eq!(node.drops[E_NO_ROUTE as usize], 1);
        // A second later, 1 MB of tokens arrived (capped to the burst).
        let (out, _) = run(&mut fp, 1, &frames[..10], 1_000_000_000);
        assert_eq!(out.ports[0].len(), 10);
    }
}
