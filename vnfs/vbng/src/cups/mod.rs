//! The disaggregated vBNG (BBF TR-459 control and user plane separation): one
//! control plane ([`cp::Cp`]: the [`crate::control::ControlPlane`] unchanged —
//! PPPoE/PPP, AAA, pools, accounting) programs user planes ([`up::Up`]: the
//! [`crate::vnf::build`] fast path without AAA) over PFCP (3GPP TS 29.244 with the
//! TR-459 BBF IEs, crate `pfcp`), and the user planes tunnel the subscribers' control
//! packets to it in GTP-U (3GPP TS 29.281; TR-459's "control packet redirect").
//!
//! Sans-IO like the rest: both ends take datagrams ([`Datagram`]) and time in and
//! give datagrams out; [`Bus`] carries them in memory (tests, the in-process lab),
//! `udp::UdpLink` (with `std`) over UDP sockets (PFCP 8805, GTP-U 2152); the
//! unikernel's user plane over its host stack's UDP sockets with the same
//! `udp::gtpu_payload` / `udp::ipv4_udp` conversions.
//!
//! # Placement
//!
//! A session lives on the user plane that owns its access line: the control plane
//! sees user plane `n`'s access port as its port `n` (the `port` of
//! [`crate::pppoe::AccessKey`]); every redirected frame from user plane `n` enters the
//! control plane on port `n`, and every frame it sends on port `n` goes back to that
//! user plane.
//!
//! # The PFCP sessions
//!
//! Per user plane, one *redirect session* (established when the association is up):
//! PDRs for PPPoE discovery (Ethertype 0x8863) and PPP control (0x8864 with BBF PPP
//! Protocol "control") from the access side, forwarded by a FAR to Destination
//! Interface CP-function with Outer Header Creation GTP-U/UDP/IPv4 (the control
//! plane's TEID for that user plane), and a PDR with Source Interface CP-function and
//! an F-TEID the user plane chooses (CHOOSE, returned in Created PDR) for the frames
//! the control plane sends back, forwarded to the access side.
//!
//! Per subscriber, one PFCP session, from the control plane's fast-path updates
//! ([`crate::control::FibUpdate`]):
//!
//! | fast-path update | PFCP |
//! |---|---|
//! | `Add` (new) | Session Establishment: PDR [`PDR_UPLINK`] (PDI: Source Interface Access, Ethernet Packet Filter with the subscriber MAC, C-TAG, S-TAG; BBF Logical Port, BBF PPPoE Session ID, BBF PPP Protocol "data", UE IP Address), PDR [`PDR_V4`] (Source Interface Core, UE IP Address as destination) when the address is routed; FAR [`FAR_CORE`] (Destination Core) and FAR [`FAR_ACCESS`] (Destination Access, Outer Header Creation C-TAG/S-TAG, BBF Outer Header Creation PPP, BBF MTU); URR 1 (volume and duration, periodic with Measurement Period); QER 1 (MBR = the session's rate) |
//! | `Add` (again: IPv4 back, new MTU or rate) | Session Modification: Create/Update PDR [`PDR_V4`], Update FAR [`FAR_ACCESS`] (BBF MTU), Update QER |
//! | `Down4` | Modification: Remove PDR [`PDR_V4`] |
//! | `Rate` (CoA) | Modification: Update QER (MBR) |
//! | `Add6` / `Remove6` | Create / Remove PDR [`PDR_V6`] (UE IP Address: the /64, IPv6 Prefix Length 64) |
//! | `AddPd` / `RemovePd` | Create / Remove PDR [`PDR_PD`] (UE IP Address with IPv6 Prefix Delegation Bits) |
//! | `AddAddr6` / `RemoveAddr6` | Create / Remove PDR [`PDR_ADDR6`] (UE IP Address, one IPv6 address) |
//! | `Remove` | Session Deletion (the response's Usage Report is the final count) |
//!
//! The router's interface identifier of an IPv6 PDR (the source of the fast path's
//! ICMPv6 errors) has no 3GPP or BBF IE: it travels in a vendor IE
//! ([`ROUTER_IID_IE`], the documentation enterprise number of RFC 5612).
//!
//! Usage (TS 29.244 §5.2.2): the user plane sends a Session Report Request with a
//! Usage Report every Measurement Period, answers a Query URR in a Modification
//! Response and sends the final report in the Deletion Response; the control plane
//! keeps the session's counters ([`crate::control::SessionCounters`]) from the
//! reports, so accounting, Idle-Timeout and `show sessions` read what the user plane
//! counted.
//!
//! Loss: when PFCP heartbeats to a user plane fail (TS 29.244
//! §6.2.2–§6.2.3), the control plane ends every session of that user plane with an
//! Accounting-Stop (Acct-Terminate-Cause Lost-Service) and tries to associate again;
//! a user plane that loses its control plane removes all its sessions.

#[cfg(feature = "std")]
pub mod app;
pub mod cp;
pub mod udp;
pub mod up;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddr};
use pfcp::ie::{emit_ies, trigger, ty, Flags, Ie, RawIe, VolumeMeasurement};

/// PDR of the subscriber's upstream (access line match, anti-spoofing).
pub const PDR_UPLINK: u16 = 1;
/// PDR of the subscriber's IPv4 address (downstream).
pub const PDR_V4: u16 = 2;
/// PDR of the subscriber's IPv6 /64 (downstream).
pub const PDR_V6: u16 = 3;
/// PDR of the delegated prefix (downstream).
pub const PDR_PD: u16 = 4;
/// PDR of the IA_NA address (downstream).
pub const PDR_ADDR6: u16 = 5;
/// FAR towards the core.
pub const FAR_CORE: u32 = 1;
/// FAR towards the access line.
pub const FAR_ACCESS: u32 = 2;
/// The session's URR and QER.
pub const URR_ID: u32 = 1;
/// See [`URR_ID`].
pub const QER_ID: u32 = 1;
/// Vendor IE (type, enterprise id) carrying the router interface identifier of an
/// IPv6 PDR (8 octets).
pub const ROUTER_IID_IE: (u16, u16) = (0x8001, 32473);
/// Measurement Period (TS 29.244 §8.2, IE type 64): not decoded by `pfcp`, kept raw.
pub const MEASUREMENT_PERIOD: u16 = 64;
/// Query URR (TS 29.244 §7.5.4, grouped IE type 77): kept raw.
pub const QUERY_URR: u16 = 77;

/// One datagram between the control plane and a user plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// A PFCP message (the UDP payload) from `src` to `dst` (UDP port 8805).
    Pfcp {
        src: SocketAddr,
        dst: SocketAddr,
        data: Vec<u8>,
    },
    /// A GTP-U packet: the whole IPv4/UDP/GTP-U packet (`pfcp::gtpu::encap_frame`).
    Gtpu(Vec<u8>),
}

impl Datagram {
    /// Source and destination IPv4 addresses (`None` for a GTP-U packet too short or
    /// not IPv4).
    pub fn addrs(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        match self {
            Datagram::Pfcp { src, dst, .. } => match (src, dst) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => Some((*s.ip(), *d.ip())),
                _ => None,
            },
            Datagram::Gtpu(p) => {
                let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
                let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
                (p[0] >> 4 == 4).then(|| (Ipv4Addr::from(s), Ipv4Addr::from(d)))
            }
        }
    }
}

/// An in-memory network between the control plane and the user planes: datagrams
/// are queued per destination address; a node can be cut off (everything from and to
/// it is dropped, as if it died); with `log` on, every delivered datagram is kept
/// (for a pcap).
#[derive(Debug, Default)]
pub struct Bus {
    queues: BTreeMap<Ipv4Addr, VecDeque<Datagram>>,
    cut: BTreeSet<Ipv4Addr>,
    /// Delivered datagrams, in order, when logging.
    pub log: Option<Vec<Datagram>>,
    /// Datagrams dropped (cut off, or without IPv4 addresses).
    pub dropped: u64,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Keeps a copy of every delivered datagram in [`Bus::log`].
    pub fn with_log(mut self) -> Bus {
        self.log = Some(Vec::new());
        self
    }

    /// Sends datagrams.
    pub fn send(&mut self, ds: impl IntoIterator<Item = Datagram>) {
        for d in ds {
            match d.addrs() {
                Some((s, t)) if !self.cut.contains(&s) && !self.cut.contains(&t) => {
                    if let Some(l) = self.log.as_mut() {
                        l.push(d.clone());
                    }
                    self.queues.entry(t).or_default().push_back(d);
                }
                _ => self.dropped += 1,
            }
        }
    }

    /// Datagrams queued, not yet taken.
    pub fn pending(&self) -> usize {
        self.queues.values().map(|q| q.len()).sum()
    }

    /// Takes what waits for `addr`.
    pub fn recv(&mut self, addr: Ipv4Addr) -> Vec<Datagram> {
        if self.cut.contains(&addr) {
            if let Some(q) = self.queues.remove(&addr) {
                self.dropped += q.len() as u64;
            }
            return Vec::new();
        }
        self.queues
            .get_mut(&addr)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Cuts `addr` off (`true`) or connects it again (`false`).
    pub fn set_cut(&mut self, addr: Ipv4Addr, cut: bool) {
        if cut {
            self.cut.insert(addr);
        } else {
            self.cut.remove(&addr);
        }
    }
}

/// A Usage Report (`t`: the SMR, SDR or SRR variant) of URR [`URR_ID`] with the
/// counters (up octets, up packets, down octets, down packets).
pub fn usage_report(
    t: u16,
    seqn: u32,
    trig: Flags,
    c: (u64, u64, u64, u64),
    duration_s: u32,
) -> Ie {
    Ie::group(
        t,
        alloc::vec![
            Ie::UrrId(URR_ID),
            Ie::UrSeqn(seqn),
            Ie::UsageReportTrigger(trig),
            Ie::VolumeMeasurement(VolumeMeasurement {
                total: Some(c.0.wrapping_add(c.2)),
                ul: Some(c.0),
                dl: Some(c.2),
                total_packets: Some(c.1.wrapping_add(c.3)),
                ul_packets: Some(c.1),
                dl_packets: Some(c.3),
            }),
            Ie::DurationMeasurement(duration_s),
        ],
    )
}

/// The Usage Report Trigger of a periodic report, a query (IMMER) and a termination
/// report (TERMR).
pub fn trigger_periodic() -> Flags {
    Flags::new(&[trigger::PERIO, 0, 0])
}
/// See [`trigger_periodic`].
pub fn trigger_immediate() -> Flags {
    Flags::new(&[trigger::LIUSA_IMMER, 0, 0])
}
/// See [`trigger_periodic`].
pub fn trigger_termination() -> Flags {
    Flags::new(&[0, trigger::URT_O6_TERMR, 0])
}

/// The counters of the first usage report among `ies` (any of the three variants).
pub fn report_counters(ies: &[Ie]) -> Option<(u64, u64, u64, u64)> {
    ies.iter()
        .filter(|i| {
            matches!(
                i.key(),
                (
                    ty::USAGE_REPORT_SMR | ty::USAGE_REPORT_SDR | ty::USAGE_REPORT_SRR,
                    None
                )
            )
        })
        .find_map(|r| {
            r.children().iter().find_map(|c| match c {
                Ie::VolumeMeasurement(v) => Some((
                    v.ul.unwrap_or(0),
                    v.ul_packets.unwrap_or(0),
                    v.dl.unwrap_or(0),
                    v.dl_packets.unwrap_or(0),
                )),
                _ => None,
            })
        })
}

/// Query URR for URR [`URR_ID`] (a raw grouped IE: `pfcp` does not decode it).
pub fn query_urr() -> Ie {
    let mut data = Vec::new();
    // Cannot fail: a URR ID always encodes.
    let _ = emit_ies(&[Ie::UrrId(URR_ID)], &mut data);
    Ie::Unknown(RawIe {
        ty: QUERY_URR,
        enterprise: None,
        data,
    })
}

/// Measurement Period IE (seconds).
pub fn measurement_period(s: u32) -> Ie {
    Ie::Unknown(RawIe {
        ty: MEASUREMENT_PERIOD,
        enterprise: None,
        data: s.to_be_bytes().to_vec(),
    })
}

/// The router interface identifier vendor IE.
pub fn router_iid(iid: u64) -> Ie {
    Ie::Unknown(RawIe {
        ty: ROUTER_IID_IE.0,
        enterprise: Some(ROUTER_IID_IE.1),
        data: iid.to_be_bytes().to_vec(),
    })
}

/// The raw value of IE `(t, enterprise)` among `ies`, if kept raw.
pub fn raw(ies: &[Ie], t: u16, enterprise: Option<u16>) -> Option<&[u8]> {
    ies.iter().find_map(|i| match i {
        Ie::Unknown(r) if r.ty == t && r.enterprise == enterprise => Some(&r.data[..]),
        _ => None,
    })
}

/// Name of the CGNAT pool in the BBF NAT Port Block IE the control plane sends.
pub const NAT_POOL_NAME: &[u8] = b"cgnat";

/// A subscriber's CGNAT binding: its outside address and port range (whole port
/// blocks), allocated by the control plane and installed by the user plane's
/// `nat44` (`Nat44::bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NatBinding {
    pub outside: Ipv4Addr,
    pub port_first: u16,
    pub port_last: u16,
}

/// The CGNAT pool's geometry as both ends see it (from the `[cgnat]` section: the
/// same `nat44` settings as the monolithic vBNG): outside addresses, ports
/// `port_min..` cut in blocks of `block_size`, `blocks_per_addr` blocks each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatPlan {
    /// Outside addresses, sorted.
    pub addrs: Vec<u32>,
    pub port_min: u16,
    pub block_size: u16,
    pub blocks_per_addr: u32,
    /// Blocks one subscriber may hold (the user plane's limit).
    pub max_blocks: u16,
    /// Subscribers the user plane's `nat44` holds.
    pub max_subscribers: u32,
}

impl NatPlan {
    /// From a resolved `nat44` configuration (`Config::nat_config`).
    pub fn new(nc: &dataplane::stages::nat::NatConfig) -> Option<NatPlan> {
        let mut addrs = Vec::new();
        for (lo, hi) in nc.pool_ranges().ok()? {
            addrs.extend(lo..=hi);
        }
        addrs.sort_unstable();
        addrs.dedup();
        let c = nc.cgnat?;
        let (bpa, _) =
            dataplane::stages::nat::alloc::geometry(nc.port_min, nc.port_max, c.block_size);
        Some(NatPlan {
            addrs,
            port_min: nc.port_min,
            block_size: c.block_size.max(1),
            blocks_per_addr: bpa,
            max_blocks: c.blocks_per_subscriber,
            max_subscribers: nc.max_subscribers,
        })
    }

    /// Blocks in the pool.
    pub fn blocks(&self) -> usize {
        self.addrs.len() * self.blocks_per_addr as usize
    }

    /// The binding of block number `i` (address `i / blocks_per_addr`).
    pub fn binding(&self, i: usize) -> Option<NatBinding> {
        let bpa = self.blocks_per_addr as usize;
        let a = *self.addrs.get(i / bpa.max(1))?;
        let b = (i % bpa.max(1)) as u32;
        let first = u32::from(self.port_min) + b * u32::from(self.block_size);
        let last = first + u32::from(self.block_size) - 1;
        Some(NatBinding {
            outside: Ipv4Addr::from(a),
            port_first: u16::try_from(first).ok()?,
            port_last: u16::try_from(last).ok()?,
        })
    }

    /// The block numbers (as [`NatPlan::binding`] counts them) a binding holds, if
    /// it is whole blocks of this pool within the per-subscriber limit.
    pub fn blocks_of(&self, b: &NatBinding) -> Option<core::ops::Range<usize>> {
        let a = self.addrs.binary_search(&u32::from(b.outside)).ok()?;
        let bs = u32::from(self.block_size);
        let lo = u32::from(b.port_first).checked_sub(u32::from(self.port_min))?;
        let hi = (u32::from(b.port_last) + 1).checked_sub(u32::from(self.port_min))?;
        if b.port_last < b.port_first || lo % bs != 0 || hi % bs != 0 {
            return None;
        }
        let (b0, b1) = (lo / bs, hi / bs);
        if b1 > self.blocks_per_addr || b1 - b0 > u32::from(self.max_blocks) {
            return None;
        }
        let base = a * self.blocks_per_addr as usize;
        Some(base + b0 as usize..base + b1 as usize)
    }
}

/// The binding a Forwarding Parameters (or Update Forwarding Parameters) IE asks
/// for: `None` without BBF Apply Action NAT; `Some(Err((cause, ie)))` when NAT is
/// asked for without a BBF NAT Outside Address or BBF NAT External Port Range
/// (Cause 67 "Conditional IE missing") or with several port ranges (Cause 69
/// "Mandatory IE incorrect": a binding is one range), `ie` the IE missing or faulty.
pub fn nat_binding_of(fp: &[Ie]) -> Option<Result<NatBinding, (u8, u16)>> {
    use pfcp::ie::{bbf, cause, IeList};
    let b = Some(bbf::ENTERPRISE_ID);
    let nat = fp.all(bbf::APPLY_ACTION, b).any(|i| match i {
        Ie::BbfApplyAction(f) => f.has(0, bbf::apply_action::NAT),
        _ => false,
    });
    if !nat {
        return None;
    }
    let outside = fp.all(bbf::NAT_OUTSIDE_ADDRESS, b).find_map(|i| match i {
        Ie::BbfNatOutsideAddress(a) => Some(*a),
        _ => None,
    });
    let range = fp
        .all(bbf::NAT_EXTERNAL_PORT_RANGE, b)
        .find_map(|i| match i {
            Ie::BbfNatExternalPortRange(r) => Some(r.clone()),
            _ => None,
        });
    let missing = cause::CONDITIONAL_IE_MISSING;
    Some(match (outside, range) {
        (None, _) => Err((missing, bbf::NAT_OUTSIDE_ADDRESS)),
        (Some(_), None) => Err((missing, bbf::NAT_EXTERNAL_PORT_RANGE)),
        (Some(outside), Some(r)) => match r[..] {
            [(port_first, port_last)] => Ok(NatBinding {
                outside,
                port_first,
                port_last,
            }),
            _ => Err((cause::MANDATORY_IE_INCORRECT, bbf::NAT_EXTERNAL_PORT_RANGE)),
        },
    })
}

/// The BBF NAT IEs of a binding for a Forwarding Parameters IE (BBF TR-459 CGNAT:
/// BBF Apply Action NAT, BBF NAT Port Block naming the pool, BBF NAT Outside
/// Address, BBF NAT External Port Range).
pub fn nat_ies(b: &NatBinding) -> [Ie; 4] {
    use pfcp::ie::bbf;
    [
        Ie::BbfApplyAction(Flags::new(&[bbf::apply_action::NAT])),
        Ie::BbfNatPortBlock(NAT_POOL_NAME.to_vec()),
        Ie::BbfNatOutsideAddress(b.outside),
        Ie::BbfNatExternalPortRange(alloc::vec![(b.port_first, b.port_last)]),
    ]
}
