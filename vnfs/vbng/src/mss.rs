//! TCP MSS clamping on the PPPoE sessions (RFC 879 §3: MSS = MTU − 40 for IPv4
//! without options; RFC 6691 §2: the MSS counts neither IP nor TCP options).
//!
//! A PPPoE link has a smaller MTU than the Ethernet behind the BNG (1492 = 1500 − 8,
//! RFC 2516 §7), and path MTU discovery is often broken by filtered ICMP, so the BNG
//! rewrites the MSS option of SYN and SYN-ACK segments, in both directions, that
//! announce more than the session can carry: `auto` clamps to the session's PPP MTU
//! − 40 (1452 on a 1492 session; RFC 4638 sessions with PPP-Max-Payload 1500 get
//! 1460), a number clamps to that value, `off` disables it. The option is rewritten
//! in place with an RFC 1624 incremental checksum update (the engine's
//! `tcp::Packet::clamp_mss`): no copy, no allocation.

use alloc::string::{String, ToString};
use dataplane::proto::tcp;
use serde::{Deserialize, Serialize};

/// Fixed part of the IPv4 + TCP headers that the MSS does not count.
pub const OVERHEAD: u16 = 40;

/// The `tcp_mss_clamp` setting: `"auto"`, a number, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub enum MssClamp {
    /// Session MTU − 40.
    #[default]
    Auto,
    /// A fixed MSS.
    Fixed(u16),
    /// No clamping.
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    N(u16),
    S(String),
}

impl TryFrom<Repr> for MssClamp {
    type Error = String;
    fn try_from(r: Repr) -> Result<MssClamp, String> {
        match r {
            Repr::N(n) if (64..=65495).contains(&n) => Ok(MssClamp::Fixed(n)),
            Repr::N(n) => Err(alloc::format!("tcp_mss_clamp {n}: want 64..=65495")),
            Repr::S(s) => match s.as_str() {
                "auto" => Ok(MssClamp::Auto),
                "off" => Ok(MssClamp::Off),
                _ => s
                    .parse::<u16>()
                    .map_err(|_| {
                        alloc::format!("tcp_mss_clamp {s:?}: want \"auto\", \"off\" or a number")
                    })
                    .and_then(|n| MssClamp::try_from(Repr::N(n))),
            },
        }
    }
}

impl From<MssClamp> for Repr {
    fn from(m: MssClamp) -> Repr {
        match m {
            MssClamp::Auto => Repr::S("auto".to_string()),
            MssClamp::Off => Repr::S("off".to_string()),
            MssClamp::Fixed(n) => Repr::N(n),
        }
    }
}

impl MssClamp {
    /// The largest MSS allowed on a session with PPP MTU `mtu`; `None` = no clamping.
    #[inline]
    pub fn limit(self, mtu: u16) -> Option<u16> {
        match self {
            MssClamp::Auto => Some(mtu.saturating_sub(OVERHEAD).max(1)),
            MssClamp::Fixed(n) => Some(n),
            MssClamp::Off => None,
        }
    }
}

/// What [`clamp_ipv4`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// Not a TCP SYN (first fragment), no MSS option, or already small enough.
    Unchanged,
    /// The MSS option was lowered from this value.
    Clamped(u16),
    /// A SYN with a malformed options area: left as is.
    BadOptions,
}

/// Clamp the MSS option of the TCP SYN in the IPv4 datagram `ip` (header included,
/// validated by the caller's framing) to `max`.
#[inline]
pub fn clamp_ipv4(ip: &mut [u8], max: u16) -> Clamp {
    let Some(h) = ip.get(..20) else {
        return Clamp::Unchanged;
    };
    // TCP, first fragment only (offset 0: the header is there).
    if h[9] != 6 || u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return Clamp::Unchanged;
    }
    let hl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]])).min(ip.len());
    let Some(seg) = ip.get_mut(hl..total) else {
        return Clamp::Unchanged;
    };
    // Cheap pre-check on the flags byte before parsing options.
    if seg.get(13).is_none_or(|f| f & 0x02 == 0) {
        return Clamp::Unchanged;
    }
    let Ok(mut t) = tcp::Packet::new_checked(seg) else {
        return Clamp::BadOptions;
    };
    match t.clamp_mss(max) {
        Ok(Some(old)) => Clamp::Clamped(old),
        Ok(None) => Clamp::Unchanged,
        Err(_) => Clamp::BadOptions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use dataplane::proto::checksum;
    use dataplane::proto::checksum::PseudoHeader;
    use dataplane::proto::ipv4::Packet as Ip;
    use dataplane::proto::tcp::Packet as Tcp;

    /// An IPv4 TCP segment with `flags` and options `opts` (checksums valid).
    pub(crate) fn syn(flags: u8, opts: &[u8]) -> Vec<u8> {
        let tl = 20 + 20 + opts.len();
        let mut v = alloc::vec![0x45, 0, 0, tl as u8, 0, 1, 0x40, 0, 64, 6, 0, 0];
        v.extend_from_slice(&[100, 64, 0, 5, 8, 8, 8, 8]);
        let c = checksum::internet(&v);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0]);
        v.push((((20 + opts.len()) / 4) << 4) as u8);
        v.extend_from_slice(&[flags, 0xff, 0xff, 0, 0, 0, 0]);
        v.extend_from_slice(opts);
        fill(&mut v);
        v
    }

    fn fill(v: &mut [u8]) {
        let (s, d) = {
            let ip = Ip::new_checked(&*v).unwrap();
            (ip.src_addr(), ip.dst_addr())
        };
        let ph = PseudoHeader::V4 { src: s, dst: d };
        Tcp::new_checked(&mut v[20..]).unwrap().fill_checksum(&ph);
    }

    fn tcp_ok(v: &[u8]) -> bool {
        let ip = Ip::new_checked(v).unwrap();
        let ph = PseudoHeader::V4 {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
        };
        Tcp::new_checked(&v[20..]).unwrap().verify_checksum(&ph)
    }

    #[test]
    fn clamps_syn_and_synack_only_when_larger() {
        // MSS at an even offset, then at an odd one (after a NOP).
        for opts in [
            &[2, 4, 0x05, 0xb4, 1, 1, 4, 2][..],
            &[1, 2, 4, 0x05, 0xb4, 1, 1, 0][..],
        ] {
            for flags in [0x02, 0x12] {
                let mut v = syn(flags, opts);
                assert_eq!(clamp_ipv4(&mut v, 1452), Clamp::Clamped(1460));
                assert!(tcp_ok(&v));
                let t = Tcp::new_checked(&v[20..]).unwrap();
                assert_eq!(t.mss().unwrap().map(|m| m.0), Some(1452));
                assert_eq!(clamp_ipv4(&mut v, 1452), Clamp::Unchanged);
                assert_eq!(clamp_ipv4(&mut v, 1460), Clamp::Unchanged);
            }
        }
        // Not a SYN, no MSS, not TCP, a later fragment.
        let mut ack = syn(0x10, &[2, 4, 0x05, 0xb4]);
        assert_eq!(clamp_ipv4(&mut ack, 1000), Clamp::Unchanged);
        let mut nomss = syn(0x02, &[1, 1, 1, 1]);
        assert_eq!(clamp_ipv4(&mut nomss, 1000), Clamp::Unchanged);
        let mut frag = syn(0x02, &[2, 4, 0x05, 0xb4]);
        frag[7] = 1;
        assert_eq!(clamp_ipv4(&mut frag, 1000), Clamp::Unchanged);
        let mut bad = syn(0x02, &[2, 9, 0x05, 0xb4]);
        let before = bad.clone();
        assert_eq!(clamp_ipv4(&mut bad, 1000), Clamp::BadOptions);
        assert_eq!(bad, before);
        assert_eq!(clamp_ipv4(&mut [0u8; 3], 1000), Clamp::Unchanged);
    }

    #[test]
    fn config_values() {
        #[derive(Deserialize)]
        struct C {
            m: MssClamp,
        }
        let p = |s: &str| toml::from_str::<C>(s).map(|c| c.m);
        assert_eq!(p("m = \"auto\"").unwrap(), MssClamp::Auto);
        assert_eq!(p("m = \"off\"").unwrap(), MssClamp::Off);
        assert_eq!(p("m = 1400").unwrap(), MssClamp::Fixed(1400));
        assert_eq!(p("m = \"1400\"").unwrap(), MssClamp::Fixed(1400));
        assert!(p("m = \"big\"").is_err());
        assert!(p("m = 10").is_err());
        assert_eq!(MssClamp::Auto.limit(1492), Some(1452));
        assert_eq!(MssClamp::Auto.limit(1500), Some(1460));
        assert_eq!(MssClamp::Fixed(1300).limit(1492), Some(1300));
        assert_eq!(MssClamp::Off.limit(1492), None);
    }
}
