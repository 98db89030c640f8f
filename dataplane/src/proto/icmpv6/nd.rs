//! Neighbor Discovery messages and options (RFC 4861 §4.1–4.4 messages, §4.6
//! options: source/target link-layer address, prefix information, MTU).

use super::*;

/// Prefix information option contents (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// L flag.
    pub on_link: bool,
    /// A flag (SLAAC).
    pub autonomous: bool,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// One ND option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption<'a> {
    SourceLinkLayerAddr(MacAddr),
    TargetLinkLayerAddr(MacAddr),
    PrefixInformation(PrefixInfo),
    Mtu(u32),
    /// Any other option, or a link-layer address option that is not 6 bytes; `data`
    /// excludes the type and length bytes.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl NdOption<'_> {
    /// Bytes on the wire (a multiple of 8).
    pub fn buffer_len(&self) -> usize {
        match self {
            NdOption::SourceLinkLayerAddr(_) | NdOption::TargetLinkLayerAddr(_) => 8,
            NdOption::PrefixInformation(_) => 32,
            NdOption::Mtu(_) => 8,
            NdOption::Unknown { data, .. } => (2 + data.len()).div_ceil(8) * 8,
        }
    }

    /// Writes the option (zero padded) at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        let units = u8::try_from(n / 8).map_err(|_| Error::Malformed)?;
        let out = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        out.fill(0);
        bytes::set_u8_at(out, 1, units);
        match *self {
            NdOption::SourceLinkLayerAddr(m) => {
                bytes::set_u8_at(out, 0, opt::SOURCE_LLADDR);
                bytes::set_bytes_at(out, field::LLADDR, &m.0);
            }
            NdOption::TargetLinkLayerAddr(m) => {
                bytes::set_u8_at(out, 0, opt::TARGET_LLADDR);
                bytes::set_bytes_at(out, field::LLADDR, &m.0);
            }
            NdOption::PrefixInformation(pi) => {
                bytes::set_u8_at(out, 0, opt::PREFIX_INFO);
                bytes::set_u8_at(out, field::PI_PREFIX_LEN, pi.prefix_len);
                let flags = (u8::from(pi.on_link) << 7) | (u8::from(pi.autonomous) << 6);
                bytes::set_u8_at(out, field::PI_FLAGS, flags);
                bytes::set_u32_at(out, field::PI_VALID, pi.valid_lifetime);
                bytes::set_u32_at(out, field::PI_PREFERRED, pi.preferred_lifetime);
                bytes::set_bytes_at(out, field::PI_PREFIX, &pi.prefix.octets());
            }
            NdOption::Mtu(m) => {
                bytes::set_u8_at(out, 0, opt::MTU);
                bytes::set_u32_at(out, field::MTU_VALUE, m);
            }
            NdOption::Unknown { kind, data } => {
                bytes::set_u8_at(out, 0, kind);
                bytes::set_bytes_at(out, 2..2 + data.len(), data);
            }
        }
        Ok(n)
    }
}

/// Iterator over ND options; stops after the first error.
#[derive(Debug, Clone)]
pub struct NdOptionsIter<'a> {
    data: &'a [u8],
    failed: bool,
}

impl<'a> NdOptionsIter<'a> {
    pub fn new(data: &'a [u8]) -> NdOptionsIter<'a> {
        NdOptionsIter {
            data,
            failed: false,
        }
    }

    fn parse_one(&mut self) -> Result<NdOption<'a>> {
        let kind = bytes::u8_at(self.data, 0);
        let units = usize::from(*self.data.get(1).ok_or(Error::Truncated)?);
        if units == 0 {
            return Err(Error::Malformed);
        }
        let len = units * 8;
        let o = self.data.get(..len).ok_or(Error::Truncated)?;
        self.data = self.data.get(len..).unwrap_or(&[]);
        let data = o.get(2..).unwrap_or(&[]);
        Ok(match (kind, units) {
            (opt::SOURCE_LLADDR, 1) => {
                NdOption::SourceLinkLayerAddr(MacAddr(bytes::array_at(o, field::LLADDR)))
            }
            (opt::TARGET_LLADDR, 1) => {
                NdOption::TargetLinkLayerAddr(MacAddr(bytes::array_at(o, field::LLADDR)))
            }
            (opt::PREFIX_INFO, 4) => {
                let flags = bytes::u8_at(o, field::PI_FLAGS);
                let prefix_len = bytes::u8_at(o, field::PI_PREFIX_LEN);
                if prefix_len > 128 {
                    return Err(Error::Malformed);
                }
                NdOption::PrefixInformation(PrefixInfo {
                    prefix_len,
                    on_link: flags & 0x80 != 0,
                    autonomous: flags & 0x40 != 0,
                    valid_lifetime: bytes::u32_at(o, field::PI_VALID),
                    preferred_lifetime: bytes::u32_at(o, field::PI_PREFERRED),
                    prefix: Ipv6Addr::from(bytes::array_at::<16>(o, field::PI_PREFIX)),
                })
            }
            (opt::PREFIX_INFO, _) | (opt::MTU, 2..) => return Err(Error::Malformed),
            (opt::MTU, _) => NdOption::Mtu(bytes::u32_at(o, field::MTU_VALUE)),
            _ => NdOption::Unknown { kind, data },
        })
    }
}

impl<'a> Iterator for NdOptionsIter<'a> {
    type Item = Result<NdOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.data.is_empty() {
            return None;
        }
        let r = self.parse_one();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// A Neighbor Discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscRepr {
    RouterSolicit {
        lladdr: Option<MacAddr>,
    },
    /// Parsing keeps the first prefix option; walk [`Packet::nd_options_iter`] for
    /// all of them.
    RouterAdvert {
        hop_limit: u8,
        flags: u8,
        router_lifetime: u16,
        reachable_time: u32,
        retrans_time: u32,
        lladdr: Option<MacAddr>,
        mtu: Option<u32>,
        prefix_info: Option<PrefixInfo>,
    },
    NeighborSolicit {
        target_addr: Ipv6Addr,
        lladdr: Option<MacAddr>,
    },
    NeighborAdvert {
        flags: u8,
        target_addr: Ipv6Addr,
        lladdr: Option<MacAddr>,
    },
}

#[derive(Default)]
pub(super) struct NdOpts {
    pub(super) slla: Option<MacAddr>,
    pub(super) tlla: Option<MacAddr>,
    pub(super) mtu: Option<u32>,
    pub(super) prefix: Option<PrefixInfo>,
}

pub(super) fn collect_nd_options(iter: NdOptionsIter<'_>) -> Result<NdOpts> {
    let mut o = NdOpts::default();
    for opt in iter {
        match opt? {
            NdOption::SourceLinkLayerAddr(m) => o.slla = Some(m),
            NdOption::TargetLinkLayerAddr(m) => o.tlla = Some(m),
            NdOption::Mtu(m) => o.mtu = Some(m),
            NdOption::PrefixInformation(p) => {
                if o.prefix.is_none() {
                    o.prefix = Some(p);
                }
            }
            NdOption::Unknown { .. } => {}
        }
    }
    Ok(o)
}

pub(super) fn emit_nd(nd: &NdiscRepr, buf: &mut [u8]) -> Result<()> {
    let mut q = Packet::new_unchecked(&mut *buf);
    let mut opts: [Option<NdOption<'static>>; 3] = [None, None, None];
    let at = match *nd {
        NdiscRepr::RouterSolicit { lladdr } => {
            q.set_msg_type(msg::ROUTER_SOLICIT);
            opts[0] = lladdr.map(NdOption::SourceLinkLayerAddr);
            field::RS_OPTIONS
        }
        NdiscRepr::RouterAdvert {
            hop_limit,
            flags,
            router_lifetime,
            reachable_time,
            retrans_time,
            lladdr,
            mtu,
            prefix_info,
        } => {
            q.set_msg_type(msg::ROUTER_ADVERT);
            q.set_current_hop_limit(hop_limit);
            q.set_router_flags(flags);
            q.set_router_lifetime(router_lifetime);
            q.set_reachable_time(reachable_time);
            q.set_retrans_time(retrans_time);
            opts[0] = lladdr.map(NdOption::SourceLinkLayerAddr);
            opts[1] = mtu.map(NdOption::Mtu);
            opts[2] = prefix_info.map(NdOption::PrefixInformation);
            field::RA_OPTIONS
        }
        NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        } => {
            q.set_msg_type(msg::NEIGHBOR_SOLICIT);
            q.set_target_addr(&target_addr);
            opts[0] = lladdr.map(NdOption::SourceLinkLayerAddr);
            field::NS_NA_OPTIONS
        }
        NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        } => {
            q.set_msg_type(msg::NEIGHBOR_ADVERT);
            q.set_neighbor_flags(flags & 0xe0);
            q.set_target_addr(&target_addr);
            opts[0] = lladdr.map(NdOption::TargetLinkLayerAddr);
            field::NS_NA_OPTIONS
        }
    };
    let mut out = buf.get_mut(at..).ok_or(Error::BufferTooSmall)?;
    for o in opts.iter().flatten() {
        let n = o.emit(out)?;
        out = out.get_mut(n..).ok_or(Error::BufferTooSmall)?;
    }
    Ok(())
}
