//! PFCP information elements (3GPP TS 29.244 §8).
//!
//! The IE format (§8.1.1): a 16-bit type and a 16-bit length (of what follows the
//! first four octets), then for a vendor-specific IE (type ≥ 32768) a 16-bit
//! Enterprise ID (IANA private enterprise number) counted in the length, then the
//! value. A grouped IE's value is a sequence of IEs (§8.1.1, the tables of §7.4 and
//! §7.5).
//!
//! ```text
//! | Type (2) | Length = n (2) | [Enterprise ID (2), vendor IEs only] | value ... (n)
//! ```
//!
//! [`Ie`] holds one decoded IE. Grouped IEs are [`Ie::Grouped`], whose children are
//! again [`Ie`]s; the grouped types known here are listed in [`is_grouped`] and are
//! decoded recursively down to [`MAX_DEPTH`] levels. IEs this crate does not know are
//! kept as [`Ie::Unknown`] (type, enterprise id, bytes) and emitted back unchanged.
//!
//! Implemented leaf IEs (TS 29.244 clause): Cause (§8.2.1), Source Interface
//! (§8.2.2), F-TEID (§8.2.3), Network Instance (§8.2.4), SDF Filter (§8.2.5),
//! Application ID (§8.2.6), Gate Status (§8.2.7), MBR (§8.2.8), Precedence (§8.2.11),
//! Volume Threshold (§8.2.13), Reporting Triggers (§8.2.19), Report Type (§8.2.21),
//! Offending IE (§8.2.22), Destination Interface (§8.2.24), UP Function Features
//! (§8.2.25), Apply Action (§8.2.26), PDR ID (§8.2.36), F-SEID (§8.2.37), Node ID
//! (§8.2.38), Measurement Method (§8.2.40), Usage Report Trigger (§8.2.41), Volume
//! Measurement (§8.2.44), Duration Measurement (§8.2.45), URR ID (§8.2.54), Outer
//! Header Creation (§8.2.56), CP Function Features (§8.2.58), UE IP Address (§8.2.62),
//! Outer Header Removal (§8.2.64), Recovery Time Stamp (§8.2.65), Node Report Type
//! (§8.2.69), UR-SEQN (§8.2.71), FAR ID (§8.2.74), QER ID (§8.2.75), MAC address
//! (§8.2.93), C-TAG (§8.2.94), S-TAG (§8.2.95), Ethertype (§8.2.96), Ethernet PDU
//! Session Information (§8.2.102).
//!
//! The BBF TR-459 IEs (vendor-specific, Enterprise ID 3561, TR-459 Issue 1 §6.6, type
//! numbers as Wireshark's `packet-pfcp.c` and the TR-459 implementations use them):
//! BBF UP Function Features (32768), Logical Port (32769), BBF Outer Header Creation
//! (32770), BBF Outer Header Removal (32771), PPPoE Session ID (32772), PPP Protocol
//! (32773), Verification Timers (32774), PPP LCP Magic Number (32775), MTU (32776),
//! PPP LCP Connectivity (32780, grouped) and the CGNAT IEs BBF NAT Outside Address
//! (32782), BBF Apply Action (32783), BBF NAT External Port Range (32784) and BBF NAT
//! Port Block (32786). The L2TP IEs (32777–32779, 32781) are not decoded: they are
//! kept as [`Ie::Unknown`].

use crate::bytes::{arr, be16, be24, be32, be40, be64};
use crate::{Error, Result};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

/// Deepest nesting of grouped IEs accepted (a message's own IEs are depth 0). The
/// deepest structure TS 29.244 defines for the messages here is 3 (Create PDR → PDI →
/// Ethernet Packet Filter → leaf); anything past this bound is refused.
pub const MAX_DEPTH: usize = 8;

/// IE type values (TS 29.244 Table 8.1.2-1).
pub mod ty {
    pub const CREATE_PDR: u16 = 1;
    pub const PDI: u16 = 2;
    pub const CREATE_FAR: u16 = 3;
    pub const FORWARDING_PARAMETERS: u16 = 4;
    pub const CREATE_URR: u16 = 6;
    pub const CREATE_QER: u16 = 7;
    pub const CREATED_PDR: u16 = 8;
    pub const UPDATE_PDR: u16 = 9;
    pub const UPDATE_FAR: u16 = 10;
    pub const UPDATE_FORWARDING_PARAMETERS: u16 = 11;
    pub const UPDATE_URR: u16 = 13;
    pub const UPDATE_QER: u16 = 14;
    pub const REMOVE_PDR: u16 = 15;
    pub const REMOVE_FAR: u16 = 16;
    pub const REMOVE_URR: u16 = 17;
    pub const REMOVE_QER: u16 = 18;
    pub const CAUSE: u16 = 19;
    pub const SOURCE_INTERFACE: u16 = 20;
    pub const F_TEID: u16 = 21;
    pub const NETWORK_INSTANCE: u16 = 22;
    pub const SDF_FILTER: u16 = 23;
    pub const APPLICATION_ID: u16 = 24;
    pub const GATE_STATUS: u16 = 25;
    pub const MBR: u16 = 26;
    pub const PRECEDENCE: u16 = 29;
    pub const VOLUME_THRESHOLD: u16 = 31;
    pub const REPORTING_TRIGGERS: u16 = 37;
    pub const REPORT_TYPE: u16 = 39;
    pub const OFFENDING_IE: u16 = 40;
    pub const DESTINATION_INTERFACE: u16 = 42;
    pub const UP_FUNCTION_FEATURES: u16 = 43;
    pub const APPLY_ACTION: u16 = 44;
    pub const PDR_ID: u16 = 56;
    pub const F_SEID: u16 = 57;
    pub const NODE_ID: u16 = 60;
    pub const MEASUREMENT_METHOD: u16 = 62;
    pub const USAGE_REPORT_TRIGGER: u16 = 63;
    pub const VOLUME_MEASUREMENT: u16 = 66;
    pub const DURATION_MEASUREMENT: u16 = 67;
    /// Usage Report within a Session Modification Response (Table 7.5.5-2).
    pub const USAGE_REPORT_SMR: u16 = 78;
    /// Usage Report within a Session Deletion Response (Table 7.5.7-2).
    pub const USAGE_REPORT_SDR: u16 = 79;
    /// Usage Report within a Session Report Request (Table 7.5.8.3-1).
    pub const USAGE_REPORT_SRR: u16 = 80;
    pub const URR_ID: u16 = 81;
    pub const OUTER_HEADER_CREATION: u16 = 84;
    pub const CP_FUNCTION_FEATURES: u16 = 89;
    pub const UE_IP_ADDRESS: u16 = 93;
    pub const OUTER_HEADER_REMOVAL: u16 = 95;
    pub const RECOVERY_TIME_STAMP: u16 = 96;
    pub const NODE_REPORT_TYPE: u16 = 101;
    pub const UR_SEQN: u16 = 104;
    pub const FAR_ID: u16 = 108;
    pub const QER_ID: u16 = 109;
    pub const ETHERNET_PACKET_FILTER: u16 = 132;
    pub const MAC_ADDRESS: u16 = 133;
    pub const C_TAG: u16 = 134;
    pub const S_TAG: u16 = 135;
    pub const ETHERTYPE: u16 = 136;
    pub const ETHERNET_PDU_SESSION_INFORMATION: u16 = 142;
}

/// The BBF TR-459 vendor-specific IEs (Enterprise ID 3561, the Broadband Forum).
pub mod bbf {
    /// IANA private enterprise number of the Broadband Forum.
    pub const ENTERPRISE_ID: u16 = 3561;
    pub const UP_FUNCTION_FEATURES: u16 = 32768;
    pub const LOGICAL_PORT: u16 = 32769;
    pub const OUTER_HEADER_CREATION: u16 = 32770;
    pub const OUTER_HEADER_REMOVAL: u16 = 32771;
    pub const PPPOE_SESSION_ID: u16 = 32772;
    pub const PPP_PROTOCOL: u16 = 32773;
    pub const VERIFICATION_TIMERS: u16 = 32774;
    pub const PPP_LCP_MAGIC_NUMBER: u16 = 32775;
    pub const MTU: u16 = 32776;
    pub const L2TP_TUNNEL_ENDPOINT: u16 = 32777;
    pub const L2TP_SESSION_ID: u16 = 32778;
    pub const L2TP_TYPE: u16 = 32779;
    /// Grouped: PPP LCP Magic Number and Verification Timers for LCP keepalive
    /// offload.
    pub const PPP_LCP_CONNECTIVITY: u16 = 32780;
    pub const L2TP_TUNNEL: u16 = 32781;
    pub const NAT_OUTSIDE_ADDRESS: u16 = 32782;
    pub const APPLY_ACTION: u16 = 32783;
    pub const NAT_EXTERNAL_PORT_RANGE: u16 = 32784;
    pub const NAT_PORT_BLOCK: u16 = 32786;

    /// BBF UP Function Features, octet 7 (the first value octet).
    pub mod up_features {
        pub const PPPOE: u8 = 0x01;
        pub const IPOE: u8 = 0x02;
        pub const LAC: u8 = 0x04;
        pub const LNS: u8 = 0x08;
        pub const LCP_KEEPALIVE_OFFLOAD: u8 = 0x10;
    }
    /// BBF Outer Header Creation description (2 octets).
    pub mod outer_header_creation {
        pub const CPR_NSH: u16 = 0x0100;
        pub const TRAFFIC_ENDPOINT: u16 = 0x0200;
        pub const L2TP: u16 = 0x0300;
        pub const PPP: u16 = 0x0400;
    }
    /// BBF Outer Header Removal description.
    pub mod outer_header_removal {
        pub const ETHERNET: u8 = 1;
        pub const PPPOE_ETHERNET: u8 = 2;
        pub const PPP_PPPOE_ETHERNET: u8 = 3;
        pub const L2TP: u8 = 4;
        pub const PPP_L2TP: u8 = 5;
    }
    /// BBF Apply Action flags.
    pub mod apply_action {
        pub const NAT: u8 = 0x01;
    }
}

/// Cause values (TS 29.244 §8.2.1, Table 8.2.1-1).
pub mod cause {
    pub const REQUEST_ACCEPTED: u8 = 1;
    pub const MORE_USAGE_REPORT_TO_SEND: u8 = 2;
    pub const REQUEST_PARTIALLY_ACCEPTED: u8 = 3;
    pub const REQUEST_REJECTED: u8 = 64;
    pub const SESSION_CONTEXT_NOT_FOUND: u8 = 65;
    pub const MANDATORY_IE_MISSING: u8 = 66;
    pub const CONDITIONAL_IE_MISSING: u8 = 67;
    pub const INVALID_LENGTH: u8 = 68;
    pub const MANDATORY_IE_INCORRECT: u8 = 69;
    pub const INVALID_FORWARDING_POLICY: u8 = 70;
    pub const INVALID_F_TEID_ALLOCATION_OPTION: u8 = 71;
    pub const NO_ESTABLISHED_PFCP_ASSOCIATION: u8 = 72;
    pub const RULE_CREATION_MODIFICATION_FAILURE: u8 = 73;
    pub const PFCP_ENTITY_IN_CONGESTION: u8 = 74;
    pub const NO_RESOURCES_AVAILABLE: u8 = 75;
    pub const SERVICE_NOT_SUPPORTED: u8 = 76;
    pub const SYSTEM_FAILURE: u8 = 77;

    /// Whether a cause value means acceptance (1–63, §8.2.1).
    pub const fn is_accepted(c: u8) -> bool {
        c >= 1 && c < 64
    }
}

/// Source/Destination Interface values (§8.2.2, §8.2.24).
pub mod interface {
    pub const ACCESS: u8 = 0;
    pub const CORE: u8 = 1;
    pub const SGI_LAN: u8 = 2;
    pub const CP_FUNCTION: u8 = 3;
}

/// Apply Action flags, octet 5 (§8.2.26).
pub mod apply_action {
    pub const DROP: u8 = 0x01;
    pub const FORW: u8 = 0x02;
    pub const BUFF: u8 = 0x04;
    pub const NOCP: u8 = 0x08;
    pub const DUPL: u8 = 0x10;
}

/// Measurement Method flags (§8.2.40).
pub mod measurement_method {
    pub const DURAT: u8 = 0x01;
    pub const VOLUM: u8 = 0x02;
    pub const EVENT: u8 = 0x04;
}

/// Reporting Triggers (§8.2.19) and Usage Report Trigger (§8.2.41) flags, octet 5.
pub mod trigger {
    pub const PERIO: u8 = 0x01;
    pub const VOLTH: u8 = 0x02;
    pub const TIMTH: u8 = 0x04;
    pub const QUHTI: u8 = 0x08;
    pub const START: u8 = 0x10;
    pub const STOPT: u8 = 0x20;
    pub const DROTH: u8 = 0x40;
    /// LIUSA in Reporting Triggers, IMMER in Usage Report Trigger.
    pub const LIUSA_IMMER: u8 = 0x80;
    /// Usage Report Trigger octet 6, bit 4: TERMR (termination report).
    pub const URT_O6_TERMR: u8 = 0x08;
}

/// Report Type flags (§8.2.21).
pub mod report_type {
    pub const DLDR: u8 = 0x01;
    pub const USAR: u8 = 0x02;
    pub const ERIR: u8 = 0x04;
    pub const UPIR: u8 = 0x08;
}

/// Outer Header Creation description bits as a 16-bit value (§8.2.56, Table
/// 8.2.56-1; octet 5 is the high byte).
pub mod ohc {
    pub const GTPU_UDP_IPV4: u16 = 0x0100;
    pub const GTPU_UDP_IPV6: u16 = 0x0200;
    pub const UDP_IPV4: u16 = 0x0400;
    pub const UDP_IPV6: u16 = 0x0800;
    pub const IPV4: u16 = 0x1000;
    pub const IPV6: u16 = 0x2000;
    pub const C_TAG: u16 = 0x4000;
    pub const S_TAG: u16 = 0x8000;
    pub const N19: u16 = 0x0001;
    pub const N6: u16 = 0x0002;
}

/// Outer Header Removal descriptions (§8.2.64).
pub mod ohr {
    pub const GTPU_UDP_IPV4: u8 = 0;
    pub const GTPU_UDP_IPV6: u8 = 1;
    pub const UDP_IPV4: u8 = 2;
    pub const UDP_IPV6: u8 = 3;
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 5;
    pub const GTPU_UDP_IP: u8 = 6;
    pub const VLAN_S_TAG: u8 = 7;
    pub const S_TAG_AND_C_TAG: u8 = 8;
}

/// A bitmask IE kept as its octets (Apply Action, Reporting Triggers, UP/CP Function
/// Features, ...): extendable IEs grow octets over releases, so all are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flags(pub Vec<u8>);

impl Flags {
    pub fn new(octets: &[u8]) -> Flags {
        Flags(octets.to_vec())
    }
    /// Whether `bit` (a mask) is set in octet `i` (0 = the first value octet).
    pub fn has(&self, i: usize, bit: u8) -> bool {
        self.0.get(i).is_some_and(|o| o & bit != 0)
    }
}

/// Node ID (§8.2.38).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeId {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    /// A fully qualified domain name, dotted (`up1.bng.example`); encoded as DNS
    /// labels on the wire (RFC 1035 §3.1, without the root label).
    Fqdn(String),
}

/// F-SEID (§8.2.37): at least one address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FSeid {
    pub seid: u64,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// F-TEID (§8.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FTeid {
    /// A TEID with its address(es).
    Assigned {
        teid: u32,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
    },
    /// CH: the UP function shall choose the TEID (and address of the families set).
    Choose {
        v4: bool,
        v6: bool,
        choose_id: Option<u8>,
    },
}

/// UE IP Address (§8.2.62). An address is present when its family flag (V4/V6) is
/// set; CHV4/CHV6 ask the UP to choose one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UeIpAddress {
    /// S/D: destination address (1) rather than source (0).
    pub destination: bool,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// IPv6 Prefix Delegation Bits (IPv6D).
    pub v6_prefix_delegation_bits: Option<u8>,
    pub choose_v4: bool,
    pub choose_v6: bool,
    /// IPv6 Prefix Length (IP6PL).
    pub v6_prefix_length: Option<u8>,
}

/// SDF Filter (§8.2.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SdfFilter {
    /// Flow Description (FD): an IPFilterRule (RFC 6733 §4.3), ASCII.
    pub flow_description: Option<Vec<u8>>,
    /// ToS Traffic Class (TTC): value and mask octets.
    pub tos_traffic_class: Option<u16>,
    /// Security Parameter Index (SPI).
    pub spi: Option<u32>,
    /// Flow Label (FL), 20 bits in 3 octets.
    pub flow_label: Option<u32>,
    /// SDF Filter ID (BID).
    pub filter_id: Option<u32>,
}

/// Gate Status (§8.2.7): 0 open, 1 closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GateStatus {
    pub ul: u8,
    pub dl: u8,
}

/// MBR (§8.2.8): uplink and downlink maximum bit rates in kbps (40 bits each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mbr {
    pub ul_kbps: u64,
    pub dl_kbps: u64,
}

/// Volume Threshold (§8.2.13): octets, each optional (TOVOL, ULVOL, DLVOL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Volume {
    pub total: Option<u64>,
    pub ul: Option<u64>,
    pub dl: Option<u64>,
}

/// Volume Measurement (§8.2.44): octets (TOVOL, ULVOL, DLVOL) and packets (TONOP,
/// ULNOP, DLNOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VolumeMeasurement {
    pub total: Option<u64>,
    pub ul: Option<u64>,
    pub dl: Option<u64>,
    pub total_packets: Option<u64>,
    pub ul_packets: Option<u64>,
    pub dl_packets: Option<u64>,
}

/// Outer Header Creation (§8.2.56). The fields present follow the description bits
/// ([`ohc`]): TEID for GTP-U, IPv4/IPv6 address for the families named, port for
/// UDP, C-TAG and S-TAG (3 octets each, as in §8.2.94/§8.2.95 octets 5–7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OuterHeaderCreation {
    pub description: u16,
    pub teid: Option<u32>,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    pub port: Option<u16>,
    pub c_tag: Option<[u8; 3]>,
    pub s_tag: Option<[u8; 3]>,
}

/// Outer Header Removal (§8.2.64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OuterHeaderRemoval {
    pub description: u8,
    /// GTP-U Extension Header Deletion octet, if present.
    pub extension_header_deletion: Option<u8>,
}

/// MAC address (§8.2.93): source, destination, upper source, upper destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddress {
    pub src: Option<[u8; 6]>,
    pub dst: Option<[u8; 6]>,
    pub upper_src: Option<[u8; 6]>,
    pub upper_dst: Option<[u8; 6]>,
}

/// C-TAG (§8.2.94) or S-TAG (§8.2.95): each field present when its flag is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    pub pcp: Option<u8>,
    pub dei: Option<bool>,
    pub vid: Option<u16>,
}

impl VlanTag {
    /// A tag matching on the VLAN id only.
    pub const fn vid(vid: u16) -> VlanTag {
        VlanTag {
            pcp: None,
            dei: None,
            vid: Some(vid),
        }
    }
}

/// BBF Outer Header Creation (TR-459 §6.6.3): the description and, for L2TP, the
/// tunnel and session ids (always encoded, 0 when unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BbfOuterHeaderCreation {
    pub description: u16,
    pub tunnel_id: u16,
    pub session_id: u16,
}

/// PPP Protocol (TR-459 §6.6.6): which PPP packets a PDR matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PppProtocol {
    pub control: bool,
    pub data: bool,
    /// A specific PPP protocol number.
    pub protocol: Option<u16>,
}

/// Verification Timers (TR-459 §6.6.7): LCP echo interval (s) and miss count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationTimers {
    pub interval: u16,
    pub count: u8,
}

/// PPP LCP Magic Number (TR-459 §6.6.8): ours (tx) and the peer's (rx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LcpMagicNumber {
    pub tx: u32,
    pub rx: u32,
}

/// A grouped IE: its type, its enterprise id (for vendor grouped IEs) and children.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grouped {
    pub ty: u16,
    pub enterprise: Option<u16>,
    pub ies: Vec<Ie>,
}

/// An IE this crate does not decode, kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawIe {
    pub ty: u16,
    /// Present exactly when `ty >= 32768`.
    pub enterprise: Option<u16>,
    pub data: Vec<u8>,
}

/// One PFCP information element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ie {
    Cause(u8),
    SourceInterface(u8),
    FTeid(FTeid),
    NetworkInstance(Vec<u8>),
    SdfFilter(SdfFilter),
    ApplicationId(Vec<u8>),
    GateStatus(GateStatus),
    Mbr(Mbr),
    Precedence(u32),
    VolumeThreshold(Volume),
    ReportingTriggers(Flags),
    ReportType(Flags),
    OffendingIe(u16),
    DestinationInterface(u8),
    UpFunctionFeatures(Flags),
    ApplyAction(Flags),
    PdrId(u16),
    FSeid(FSeid),
    NodeId(NodeId),
    MeasurementMethod(Flags),
    UsageReportTrigger(Flags),
    VolumeMeasurement(VolumeMeasurement),
    DurationMeasurement(u32),
    UrrId(u32),
    OuterHeaderCreation(OuterHeaderCreation),
    CpFunctionFeatures(Flags),
    UeIpAddress(UeIpAddress),
    OuterHeaderRemoval(OuterHeaderRemoval),
    RecoveryTimeStamp(u32),
    NodeReportType(Flags),
    UrSeqn(u32),
    FarId(u32),
    QerId(u32),
    MacAddress(MacAddress),
    CTag(VlanTag),
    STag(VlanTag),
    Ethertype(u16),
    EthernetPduSessionInformation(Flags),
    BbfUpFunctionFeatures(Flags),
    BbfLogicalPort(Vec<u8>),
    BbfOuterHeaderCreation(BbfOuterHeaderCreation),
    BbfOuterHeaderRemoval(u8),
    BbfPppoeSessionId(u16),
    BbfPppProtocol(PppProtocol),
    BbfVerificationTimers(VerificationTimers),
    BbfLcpMagicNumber(LcpMagicNumber),
    BbfMtu(u16),
    BbfNatOutsideAddress(Ipv4Addr),
    BbfApplyAction(Flags),
    /// (start, end) port pairs.
    BbfNatExternalPortRange(Vec<(u16, u16)>),
    /// The name of a NAT port block (pool).
    BbfNatPortBlock(Vec<u8>),
    Grouped(Grouped),
    Unknown(RawIe),
}

/// Whether `(ty, enterprise)` is a grouped IE known here.
pub const fn is_grouped(ty: u16, enterprise: Option<u16>) -> bool {
    match enterprise {
        None => matches!(
            ty,
            ty::CREATE_PDR
                | ty::PDI
                | ty::CREATE_FAR
                | ty::FORWARDING_PARAMETERS
                | ty::CREATE_URR
                | ty::CREATE_QER
                | ty::CREATED_PDR
                | ty::UPDATE_PDR
                | ty::UPDATE_FAR
                | ty::UPDATE_FORWARDING_PARAMETERS
                | ty::UPDATE_URR
                | ty::UPDATE_QER
                | ty::REMOVE_PDR
                | ty::REMOVE_FAR
                | ty::REMOVE_URR
                | ty::REMOVE_QER
                | ty::USAGE_REPORT_SMR
                | ty::USAGE_REPORT_SDR
                | ty::USAGE_REPORT_SRR
                | ty::ETHERNET_PACKET_FILTER
        ),
        Some(bbf::ENTERPRISE_ID) => matches!(ty, bbf::PPP_LCP_CONNECTIVITY),
        Some(_) => false,
    }
}

/// The IEs a grouped IE must contain (the "M" rows of the §7.5 tables).
pub fn mandatory_children(ty: u16, enterprise: Option<u16>) -> &'static [u16] {
    if enterprise.is_some() {
        return &[];
    }
    match ty {
        ty::CREATE_PDR => &[ty::PDR_ID, ty::PRECEDENCE, ty::PDI],
        ty::PDI => &[ty::SOURCE_INTERFACE],
        ty::CREATE_FAR => &[ty::FAR_ID, ty::APPLY_ACTION],
        ty::FORWARDING_PARAMETERS => &[ty::DESTINATION_INTERFACE],
        ty::CREATE_URR => &[ty::URR_ID, ty::MEASUREMENT_METHOD, ty::REPORTING_TRIGGERS],
        ty::CREATE_QER => &[ty::QER_ID, ty::GATE_STATUS],
        ty::CREATED_PDR | ty::UPDATE_PDR | ty::REMOVE_PDR => &[ty::PDR_ID],
        ty::UPDATE_FAR | ty::REMOVE_FAR => &[ty::FAR_ID],
        ty::UPDATE_URR | ty::REMOVE_URR => &[ty::URR_ID],
        ty::UPDATE_QER | ty::REMOVE_QER => &[ty::QER_ID],
        ty::USAGE_REPORT_SMR | ty::USAGE_REPORT_SDR | ty::USAGE_REPORT_SRR => {
            &[ty::URR_ID, ty::UR_SEQN, ty::USAGE_REPORT_TRIGGER]
        }
        _ => &[],
    }
}

/// Checks that every type of `mandatory` is among `ies` (3GPP IEs only).
pub fn check_mandatory(ies: &[Ie], mandatory: &[u16]) -> Result<()> {
    for &m in mandatory {
        if !ies.iter().any(|i| i.key() == (m, None)) {
            return Err(Error::MissingIe { ie: m });
        }
    }
    Ok(())
}

/// Parses a sequence of IEs (a message body or a grouped IE's value) at nesting
/// `depth` (0 for a message's own IEs).
pub fn parse_ies(b: &[u8], depth: usize) -> Result<Vec<Ie>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let ty = be16(b, at).ok_or(Error::InvalidLength)?;
        let len = usize::from(be16(b, at + 2).ok_or(Error::InvalidLength)?);
        let body = b.get(at + 4..at + 4 + len).ok_or(Error::InvalidLength)?;
        let (enterprise, v) = if ty & 0x8000 != 0 {
            let e = be16(body, 0).ok_or(Error::BadIe { ie: ty })?;
            (Some(e), &body[2..])
        } else {
            (None, body)
        };
        out.push(Ie::decode(ty, enterprise, v, depth)?);
        at += 4 + len;
    }
    Ok(out)
}

/// Emits a sequence of IEs.
pub fn emit_ies(ies: &[Ie], out: &mut Vec<u8>) -> Result<()> {
    ies.iter().try_for_each(|i| i.emit(out))
}

fn v4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    arr::<4>(b, at).map(Ipv4Addr::from)
}

fn v6(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    arr::<16>(b, at).map(Ipv6Addr::from)
}

fn put40(out: &mut Vec<u8>, v: u64) -> Result<()> {
    if v >> 40 != 0 {
        return Err(Error::TooLong);
    }
    out.extend_from_slice(&v.to_be_bytes()[3..]);
    Ok(())
}

fn decode_fqdn(v: &[u8]) -> Option<String> {
    let mut s = String::new();
    let mut at = 0;
    while at < v.len() {
        let l = usize::from(v[at]);
        if l == 0 {
            // A root label may end the name; nothing may follow it.
            if at + 1 != v.len() {
                return None;
            }
            break;
        }
        if l > 63 {
            return None;
        }
        let label = v.get(at + 1..at + 1 + l)?;
        if !label.iter().all(|c| c.is_ascii_graphic() && *c != b'.') {
            return None;
        }
        if !s.is_empty() {
            s.push('.');
        }
        s.extend(label.iter().map(|&c| char::from(c)));
        at += 1 + l;
    }
    (!s.is_empty()).then_some(s)
}

fn encode_fqdn(s: &str, out: &mut Vec<u8>) -> Option<()> {
    if s.is_empty() {
        return None;
    }
    for label in s.split('.') {
        let b = label.as_bytes();
        if b.is_empty() || b.len() > 63 || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    Some(())
}

impl Ie {
    /// Builds a 3GPP grouped IE.
    pub fn group(ty: u16, ies: Vec<Ie>) -> Ie {
        Ie::Grouped(Grouped {
            ty,
            enterprise: None,
            ies,
        })
    }

    /// Builds a BBF grouped IE (PPP LCP Connectivity).
    pub fn bbf_group(ty: u16, ies: Vec<Ie>) -> Ie {
        Ie::Grouped(Grouped {
            ty,
            enterprise: Some(bbf::ENTERPRISE_ID),
            ies,
        })
    }

    /// The IE's type and enterprise id (`None` for 3GPP IEs).
    pub fn key(&self) -> (u16, Option<u16>) {
        const B: Option<u16> = Some(bbf::ENTERPRISE_ID);
        let t = match self {
            Ie::Cause(_) => ty::CAUSE,
            Ie::SourceInterface(_) => ty::SOURCE_INTERFACE,
            Ie::FTeid(_) => ty::F_TEID,
            Ie::NetworkInstance(_) => ty::NETWORK_INSTANCE,
            Ie::SdfFilter(_) => ty::SDF_FILTER,
            Ie::ApplicationId(_) => ty::APPLICATION_ID,
            Ie::GateStatus(_) => ty::GATE_STATUS,
            Ie::Mbr(_) => ty::MBR,
            Ie::Precedence(_) => ty::PRECEDENCE,
            Ie::VolumeThreshold(_) => ty::VOLUME_THRESHOLD,
            Ie::ReportingTriggers(_) => ty::REPORTING_TRIGGERS,
            Ie::ReportType(_) => ty::REPORT_TYPE,
            Ie::OffendingIe(_) => ty::OFFENDING_IE,
            Ie::DestinationInterface(_) => ty::DESTINATION_INTERFACE,
            Ie::UpFunctionFeatures(_) => ty::UP_FUNCTION_FEATURES,
            Ie::ApplyAction(_) => ty::APPLY_ACTION,
            Ie::PdrId(_) => ty::PDR_ID,
            Ie::FSeid(_) => ty::F_SEID,
            Ie::NodeId(_) => ty::NODE_ID,
            Ie::MeasurementMethod(_) => ty::MEASUREMENT_METHOD,
            Ie::UsageReportTrigger(_) => ty::USAGE_REPORT_TRIGGER,
            Ie::VolumeMeasurement(_) => ty::VOLUME_MEASUREMENT,
            Ie::DurationMeasurement(_) => ty::DURATION_MEASUREMENT,
            Ie::UrrId(_) => ty::URR_ID,
            Ie::OuterHeaderCreation(_) => ty::OUTER_HEADER_CREATION,
            Ie::CpFunctionFeatures(_) => ty::CP_FUNCTION_FEATURES,
            Ie::UeIpAddress(_) => ty::UE_IP_ADDRESS,
            Ie::OuterHeaderRemoval(_) => ty::OUTER_HEADER_REMOVAL,
            Ie::RecoveryTimeStamp(_) => ty::RECOVERY_TIME_STAMP,
            Ie::NodeReportType(_) => ty::NODE_REPORT_TYPE,
            Ie::UrSeqn(_) => ty::UR_SEQN,
            Ie::FarId(_) => ty::FAR_ID,
            Ie::QerId(_) => ty::QER_ID,
            Ie::MacAddress(_) => ty::MAC_ADDRESS,
            Ie::CTag(_) => ty::C_TAG,
            Ie::STag(_) => ty::S_TAG,
            Ie::Ethertype(_) => ty::ETHERTYPE,
            Ie::EthernetPduSessionInformation(_) => ty::ETHERNET_PDU_SESSION_INFORMATION,
            Ie::BbfUpFunctionFeatures(_) => return (bbf::UP_FUNCTION_FEATURES, B),
            Ie::BbfLogicalPort(_) => return (bbf::LOGICAL_PORT, B),
            Ie::BbfOuterHeaderCreation(_) => return (bbf::OUTER_HEADER_CREATION, B),
            Ie::BbfOuterHeaderRemoval(_) => return (bbf::OUTER_HEADER_REMOVAL, B),
            Ie::BbfPppoeSessionId(_) => return (bbf::PPPOE_SESSION_ID, B),
            Ie::BbfPppProtocol(_) => return (bbf::PPP_PROTOCOL, B),
            Ie::BbfVerificationTimers(_) => return (bbf::VERIFICATION_TIMERS, B),
            Ie::BbfLcpMagicNumber(_) => return (bbf::PPP_LCP_MAGIC_NUMBER, B),
            Ie::BbfMtu(_) => return (bbf::MTU, B),
            Ie::BbfNatOutsideAddress(_) => return (bbf::NAT_OUTSIDE_ADDRESS, B),
            Ie::BbfApplyAction(_) => return (bbf::APPLY_ACTION, B),
            Ie::BbfNatExternalPortRange(_) => return (bbf::NAT_EXTERNAL_PORT_RANGE, B),
            Ie::BbfNatPortBlock(_) => return (bbf::NAT_PORT_BLOCK, B),
            Ie::Grouped(g) => return (g.ty, g.enterprise),
            Ie::Unknown(r) => return (r.ty, r.enterprise),
        };
        (t, None)
    }

    /// The children of a grouped IE (empty for a leaf).
    pub fn children(&self) -> &[Ie] {
        match self {
            Ie::Grouped(g) => &g.ies,
            _ => &[],
        }
    }

    /// Decodes one IE's value (`v` without the Enterprise ID).
    pub fn decode(t: u16, enterprise: Option<u16>, v: &[u8], depth: usize) -> Result<Ie> {
        let bad = Error::BadIe { ie: t };
        if is_grouped(t, enterprise) {
            if depth >= MAX_DEPTH {
                return Err(Error::TooDeep { ie: t });
            }
            let ies = parse_ies(v, depth + 1)?;
            check_mandatory(&ies, mandatory_children(t, enterprise))?;
            return Ok(Ie::Grouped(Grouped {
                ty: t,
                enterprise,
                ies,
            }));
        }
        let b0 = || v.first().copied().ok_or(bad);
        let u16_ = || be16(v, 0).ok_or(bad);
        let u32_ = || be32(v, 0).ok_or(bad);
        let flags = |min: usize| {
            if v.len() < min {
                Err(bad)
            } else {
                Ok(Flags(v.to_vec()))
            }
        };
        match enterprise {
            None => {}
            Some(bbf::ENTERPRISE_ID) => {
                return Ok(match t {
                    bbf::UP_FUNCTION_FEATURES => Ie::BbfUpFunctionFeatures(flags(1)?),
                    bbf::LOGICAL_PORT if !v.is_empty() => Ie::BbfLogicalPort(v.to_vec()),
                    bbf::OUTER_HEADER_CREATION => {
                        Ie::BbfOuterHeaderCreation(BbfOuterHeaderCreation {
                            description: u16_()?,
                            tunnel_id: be16(v, 2).unwrap_or(0),
                            session_id: be16(v, 4).unwrap_or(0),
                        })
                    }
                    bbf::OUTER_HEADER_REMOVAL => Ie::BbfOuterHeaderRemoval(b0()?),
                    bbf::PPPOE_SESSION_ID => Ie::BbfPppoeSessionId(u16_()?),
                    bbf::PPP_PROTOCOL => {
                        let f = b0()?;
                        let protocol = if f & 0x01 != 0 {
                            Some(be16(v, 1).ok_or(bad)?)
                        } else {
                            None
                        };
                        Ie::BbfPppProtocol(PppProtocol {
                            control: f & 0x04 != 0,
                            data: f & 0x02 != 0,
                            protocol,
                        })
                    }
                    bbf::VERIFICATION_TIMERS => Ie::BbfVerificationTimers(VerificationTimers {
                        interval: u16_()?,
                        count: *v.get(2).ok_or(bad)?,
                    }),
                    bbf::PPP_LCP_MAGIC_NUMBER => Ie::BbfLcpMagicNumber(LcpMagicNumber {
                        tx: u32_()?,
                        rx: be32(v, 4).ok_or(bad)?,
                    }),
                    bbf::MTU => Ie::BbfMtu(u16_()?),
                    bbf::NAT_OUTSIDE_ADDRESS => Ie::BbfNatOutsideAddress(v4(v, 0).ok_or(bad)?),
                    bbf::APPLY_ACTION => Ie::BbfApplyAction(flags(1)?),
                    bbf::NAT_EXTERNAL_PORT_RANGE => {
                        if v.is_empty() || v.len() & 3 != 0 {
                            return Err(bad);
                        }
                        Ie::BbfNatExternalPortRange(
                            v.chunks_exact(4)
                                .map(|c| {
                                    (
                                        u16::from_be_bytes([c[0], c[1]]),
                                        u16::from_be_bytes([c[2], c[3]]),
                                    )
                                })
                                .collect(),
                        )
                    }
                    bbf::NAT_PORT_BLOCK if !v.is_empty() => Ie::BbfNatPortBlock(v.to_vec()),
                    bbf::LOGICAL_PORT | bbf::NAT_PORT_BLOCK => return Err(bad),
                    _ => Ie::Unknown(RawIe {
                        ty: t,
                        enterprise,
                        data: v.to_vec(),
                    }),
                });
            }
            Some(_) => {
                return Ok(Ie::Unknown(RawIe {
                    ty: t,
                    enterprise,
                    data: v.to_vec(),
                }))
            }
        }
        Ok(match t {
            ty::CAUSE => Ie::Cause(b0()?),
            ty::SOURCE_INTERFACE => Ie::SourceInterface(b0()? & 0x0f),
            ty::DESTINATION_INTERFACE => Ie::DestinationInterface(b0()? & 0x0f),
            ty::F_TEID => {
                let f = b0()?;
                if f & 0x04 != 0 {
                    Ie::FTeid(FTeid::Choose {
                        v4: f & 0x01 != 0,
                        v6: f & 0x02 != 0,
                        choose_id: if f & 0x08 != 0 {
                            Some(*v.get(1).ok_or(bad)?)
                        } else {
                            None
                        },
                    })
                } else {
                    let teid = be32(v, 1).ok_or(bad)?;
                    let mut at = 5;
                    let a4 = if f & 0x01 != 0 {
                        at += 4;
                        Some(self::v4(v, at - 4).ok_or(bad)?)
                    } else {
                        None
                    };
                    let a6 = if f & 0x02 != 0 {
                        Some(self::v6(v, at).ok_or(bad)?)
                    } else {
                        None
                    };
                    if a4.is_none() && a6.is_none() {
                        return Err(bad);
                    }
                    Ie::FTeid(FTeid::Assigned {
                        teid,
                        v4: a4,
                        v6: a6,
                    })
                }
            }
            ty::NETWORK_INSTANCE => Ie::NetworkInstance(v.to_vec()),
            ty::APPLICATION_ID => Ie::ApplicationId(v.to_vec()),
            ty::SDF_FILTER => {
                let f = b0()?;
                let mut at = 2;
                if v.len() < 2 {
                    return Err(bad);
                }
                let mut s = SdfFilter::default();
                if f & 0x01 != 0 {
                    let l = usize::from(be16(v, at).ok_or(bad)?);
                    s.flow_description = Some(v.get(at + 2..at + 2 + l).ok_or(bad)?.to_vec());
                    at += 2 + l;
                }
                if f & 0x02 != 0 {
                    s.tos_traffic_class = Some(be16(v, at).ok_or(bad)?);
                    at += 2;
                }
                if f & 0x04 != 0 {
                    s.spi = Some(be32(v, at).ok_or(bad)?);
                    at += 4;
                }
                if f & 0x08 != 0 {
                    s.flow_label = Some(be24(v, at).ok_or(bad)? & 0x000f_ffff);
                    at += 3;
                }
                if f & 0x10 != 0 {
                    s.filter_id = Some(be32(v, at).ok_or(bad)?);
                }
                Ie::SdfFilter(s)
            }
            ty::GATE_STATUS => {
                let g = b0()?;
                Ie::GateStatus(GateStatus {
                    ul: g >> 2 & 3,
                    dl: g & 3,
                })
            }
            ty::MBR => Ie::Mbr(Mbr {
                ul_kbps: be40(v, 0).ok_or(bad)?,
                dl_kbps: be40(v, 5).ok_or(bad)?,
            }),
            ty::PRECEDENCE => Ie::Precedence(u32_()?),
            ty::VOLUME_THRESHOLD => {
                let f = b0()?;
                let mut vals = [None; 3];
                let mut at = 1;
                for (i, slot) in vals.iter_mut().enumerate() {
                    if f & (1 << i) != 0 {
                        *slot = Some(be64(v, at).ok_or(bad)?);
                        at += 8;
                    }
                }
                Ie::VolumeThreshold(Volume {
                    total: vals[0],
                    ul: vals[1],
                    dl: vals[2],
                })
            }
            ty::VOLUME_MEASUREMENT => {
                let f = b0()?;
                let mut vals = [None; 6];
                let mut at = 1;
                for (i, slot) in vals.iter_mut().enumerate() {
                    if f & (1 << i) != 0 {
                        *slot = Some(be64(v, at).ok_or(bad)?);
                        at += 8;
                    }
                }
                Ie::VolumeMeasurement(VolumeMeasurement {
                    total: vals[0],
                    ul: vals[1],
                    dl: vals[2],
                    total_packets: vals[3],
                    ul_packets: vals[4],
                    dl_packets: vals[5],
                })
            }
            ty::REPORTING_TRIGGERS => Ie::ReportingTriggers(flags(2)?),
            ty::USAGE_REPORT_TRIGGER => Ie::UsageReportTrigger(flags(2)?),
            ty::REPORT_TYPE => Ie::ReportType(flags(1)?),
            ty::OFFENDING_IE => Ie::OffendingIe(u16_()?),
            ty::UP_FUNCTION_FEATURES => Ie::UpFunctionFeatures(flags(2)?),
            ty::CP_FUNCTION_FEATURES => Ie::CpFunctionFeatures(flags(1)?),
            ty::APPLY_ACTION => Ie::ApplyAction(flags(1)?),
            ty::MEASUREMENT_METHOD => Ie::MeasurementMethod(flags(1)?),
            ty::NODE_REPORT_TYPE => Ie::NodeReportType(flags(1)?),
            ty::ETHERNET_PDU_SESSION_INFORMATION => Ie::EthernetPduSessionInformation(flags(1)?),
            ty::PDR_ID => Ie::PdrId(u16_()?),
            ty::F_SEID => {
                let f = b0()?;
                let seid = be64(v, 1).ok_or(bad)?;
                let mut at = 9;
                let a4 = if f & 0x02 != 0 {
                    at += 4;
                    Some(self::v4(v, at - 4).ok_or(bad)?)
                } else {
                    None
                };
                let a6 = if f & 0x01 != 0 {
                    Some(self::v6(v, at).ok_or(bad)?)
                } else {
                    None
                };
                if a4.is_none() && a6.is_none() {
                    return Err(bad);
                }
                Ie::FSeid(FSeid {
                    seid,
                    v4: a4,
                    v6: a6,
                })
            }
            ty::NODE_ID => Ie::NodeId(match b0()? & 0x0f {
                0 => NodeId::Ipv4(self::v4(v, 1).ok_or(bad)?),
                1 => NodeId::Ipv6(self::v6(v, 1).ok_or(bad)?),
                2 => NodeId::Fqdn(decode_fqdn(&v[1..]).ok_or(bad)?),
                _ => return Err(bad),
            }),
            ty::DURATION_MEASUREMENT => Ie::DurationMeasurement(u32_()?),
            ty::URR_ID => Ie::UrrId(u32_()?),
            ty::FAR_ID => Ie::FarId(u32_()?),
            ty::QER_ID => Ie::QerId(u32_()?),
            ty::UR_SEQN => Ie::UrSeqn(u32_()?),
            ty::RECOVERY_TIME_STAMP => Ie::RecoveryTimeStamp(u32_()?),
            ty::ETHERTYPE => Ie::Ethertype(u16_()?),
            ty::OUTER_HEADER_CREATION => {
                let d = u16_()?;
                let mut at = 2;
                let mut o = OuterHeaderCreation {
                    description: d,
                    teid: None,
                    v4: None,
                    v6: None,
                    port: None,
                    c_tag: None,
                    s_tag: None,
                };
                if d & (ohc::GTPU_UDP_IPV4 | ohc::GTPU_UDP_IPV6) != 0 {
                    o.teid = Some(be32(v, at).ok_or(bad)?);
                    at += 4;
                }
                if d & (ohc::GTPU_UDP_IPV4 | ohc::UDP_IPV4 | ohc::IPV4) != 0 {
                    o.v4 = Some(self::v4(v, at).ok_or(bad)?);
                    at += 4;
                }
                if d & (ohc::GTPU_UDP_IPV6 | ohc::UDP_IPV6 | ohc::IPV6) != 0 {
                    o.v6 = Some(self::v6(v, at).ok_or(bad)?);
                    at += 16;
                }
                if d & (ohc::UDP_IPV4 | ohc::UDP_IPV6) != 0 {
                    o.port = Some(be16(v, at).ok_or(bad)?);
                    at += 2;
                }
                if d & ohc::C_TAG != 0 {
                    o.c_tag = Some(arr::<3>(v, at).ok_or(bad)?);
                    at += 3;
                }
                if d & ohc::S_TAG != 0 {
                    o.s_tag = Some(arr::<3>(v, at).ok_or(bad)?);
                }
                Ie::OuterHeaderCreation(o)
            }
            ty::OUTER_HEADER_REMOVAL => Ie::OuterHeaderRemoval(OuterHeaderRemoval {
                description: b0()?,
                extension_header_deletion: v.get(1).copied(),
            }),
            ty::UE_IP_ADDRESS => {
                let f = b0()?;
                let mut at = 1;
                let mut u = UeIpAddress {
                    destination: f & 0x04 != 0,
                    choose_v4: f & 0x10 != 0,
                    choose_v6: f & 0x20 != 0,
                    ..UeIpAddress::default()
                };
                if f & 0x02 != 0 {
                    u.v4 = Some(self::v4(v, at).ok_or(bad)?);
                    at += 4;
                }
                if f & 0x01 != 0 {
                    u.v6 = Some(self::v6(v, at).ok_or(bad)?);
                    at += 16;
                }
                if f & 0x08 != 0 {
                    u.v6_prefix_delegation_bits = Some(*v.get(at).ok_or(bad)?);
                    at += 1;
                }
                if f & 0x40 != 0 {
                    u.v6_prefix_length = Some(*v.get(at).ok_or(bad)?);
                }
                Ie::UeIpAddress(u)
            }
            ty::MAC_ADDRESS => {
                let f = b0()?;
                let mut at = 1;
                let mut m = [None; 4];
                for (i, slot) in m.iter_mut().enumerate() {
                    if f & (1 << i) != 0 {
                        *slot = Some(arr::<6>(v, at).ok_or(bad)?);
                        at += 6;
                    }
                }
                Ie::MacAddress(MacAddress {
                    src: m[0],
                    dst: m[1],
                    upper_src: m[2],
                    upper_dst: m[3],
                })
            }
            ty::C_TAG | ty::S_TAG => {
                let b = arr::<3>(v, 0).ok_or(bad)?;
                let tag = VlanTag {
                    pcp: (b[0] & 0x01 != 0).then_some(b[1] & 0x07),
                    dei: (b[0] & 0x02 != 0).then_some(b[1] & 0x08 != 0),
                    vid: (b[0] & 0x04 != 0).then_some(u16::from(b[1] >> 4) << 8 | u16::from(b[2])),
                };
                if t == ty::C_TAG {
                    Ie::CTag(tag)
                } else {
                    Ie::STag(tag)
                }
            }
            _ => Ie::Unknown(RawIe {
                ty: t,
                enterprise: None,
                data: v.to_vec(),
            }),
        })
    }

    /// Appends the IE (header, enterprise id, value) to `out`. Refuses what
    /// [`Ie::decode`] would refuse, so the bytes parse back to the same value.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let (t, enterprise) = self.key();
        if (t & 0x8000 != 0) != enterprise.is_some() {
            return Err(Error::BadIe { ie: t });
        }
        let start = out.len();
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        if let Some(e) = enterprise {
            out.extend_from_slice(&e.to_be_bytes());
        }
        let r = self.emit_value(out);
        if let Err(e) = r {
            out.truncate(start);
            return Err(e);
        }
        let Ok(len) = u16::try_from(out.len() - start - 4) else {
            out.truncate(start);
            return Err(Error::TooLong);
        };
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn emit_value(&self, out: &mut Vec<u8>) -> Result<()> {
        let (t, _) = self.key();
        let bad = Error::BadIe { ie: t };
        let flags = |f: &Flags, min: usize, out: &mut Vec<u8>| {
            if f.0.len() < min {
                return Err(bad);
            }
            out.extend_from_slice(&f.0);
            Ok(())
        };
        match self {
            Ie::Cause(c) | Ie::BbfOuterHeaderRemoval(c) => out.push(*c),
            Ie::SourceInterface(i) | Ie::DestinationInterface(i) => {
                if *i > 0x0f {
                    return Err(bad);
                }
                out.push(*i)
            }
            Ie::FTeid(FTeid::Assigned { teid, v4, v6 }) => {
                if v4.is_none() && v6.is_none() {
                    return Err(bad);
                }
                out.push(u8::from(v4.is_some()) | u8::from(v6.is_some()) << 1);
                out.extend_from_slice(&teid.to_be_bytes());
                if let Some(a) = v4 {
                    out.extend_from_slice(&a.octets());
                }
                if let Some(a) = v6 {
                    out.extend_from_slice(&a.octets());
                }
            }
            Ie::FTeid(FTeid::Choose { v4, v6, choose_id }) => {
                out.push(
                    u8::from(*v4) | u8::from(*v6) << 1 | 0x04 | u8::from(choose_id.is_some()) << 3,
                );
                if let Some(c) = choose_id {
                    out.push(*c);
                }
            }
            Ie::NetworkInstance(b) | Ie::ApplicationId(b) => out.extend_from_slice(b),
            Ie::BbfLogicalPort(b) | Ie::BbfNatPortBlock(b) => {
                if b.is_empty() {
                    return Err(bad);
                }
                out.extend_from_slice(b)
            }
            Ie::SdfFilter(s) => {
                let f = u8::from(s.flow_description.is_some())
                    | u8::from(s.tos_traffic_class.is_some()) << 1
                    | u8::from(s.spi.is_some()) << 2
                    | u8::from(s.flow_label.is_some()) << 3
                    | u8::from(s.filter_id.is_some()) << 4;
                out.extend_from_slice(&[f, 0]);
                if let Some(d) = &s.flow_description {
                    let l = u16::try_from(d.len()).map_err(|_| Error::TooLong)?;
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(d);
                }
                if let Some(x) = s.tos_traffic_class {
                    out.extend_from_slice(&x.to_be_bytes());
                }
                if let Some(x) = s.spi {
                    out.extend_from_slice(&x.to_be_bytes());
                }
                if let Some(x) = s.flow_label {
                    if x > 0x000f_ffff {
                        return Err(bad);
                    }
                    out.extend_from_slice(&x.to_be_bytes()[1..]);
                }
                if let Some(x) = s.filter_id {
                    out.extend_from_slice(&x.to_be_bytes());
                }
            }
            Ie::GateStatus(g) => {
                if g.ul > 3 || g.dl > 3 {
                    return Err(bad);
                }
                out.push(g.ul << 2 | g.dl)
            }
            Ie::Mbr(m) => {
                put40(out, m.ul_kbps)?;
                put40(out, m.dl_kbps)?;
            }
            Ie::Precedence(x)
            | Ie::DurationMeasurement(x)
            | Ie::UrrId(x)
            | Ie::FarId(x)
            | Ie::QerId(x)
            | Ie::UrSeqn(x)
            | Ie::RecoveryTimeStamp(x) => out.extend_from_slice(&x.to_be_bytes()),
            Ie::VolumeThreshold(vol) => {
                let vals = [vol.total, vol.ul, vol.dl];
                emit_optional_u64s(&vals, out);
            }
            Ie::VolumeMeasurement(m) => {
                let vals = [
                    m.total,
                    m.ul,
                    m.dl,
                    m.total_packets,
                    m.ul_packets,
                    m.dl_packets,
                ];
                emit_optional_u64s(&vals, out);
            }
            Ie::ReportingTriggers(f) | Ie::UsageReportTrigger(f) | Ie::UpFunctionFeatures(f) => {
                flags(f, 2, out)?
            }
            Ie::ReportType(f)
            | Ie::CpFunctionFeatures(f)
            | Ie::ApplyAction(f)
            | Ie::MeasurementMethod(f)
            | Ie::NodeReportType(f)
            | Ie::EthernetPduSessionInformation(f)
            | Ie::BbfUpFunctionFeatures(f)
            | Ie::BbfApplyAction(f) => flags(f, 1, out)?,
            Ie::OffendingIe(x)
            | Ie::PdrId(x)
            | Ie::Ethertype(x)
            | Ie::BbfPppoeSessionId(x)
            | Ie::BbfMtu(x) => out.extend_from_slice(&x.to_be_bytes()),
            Ie::FSeid(f) => {
                if f.v4.is_none() && f.v6.is_none() {
                    return Err(bad);
                }
                out.push(u8::from(f.v6.is_some()) | u8::from(f.v4.is_some()) << 1);
                out.extend_from_slice(&f.seid.to_be_bytes());
                if let Some(a) = f.v4 {
                    out.extend_from_slice(&a.octets());
                }
                if let Some(a) = f.v6 {
                    out.extend_from_slice(&a.octets());
                }
            }
            Ie::NodeId(NodeId::Ipv4(a)) => {
                out.push(0);
                out.extend_from_slice(&a.octets());
            }
            Ie::NodeId(NodeId::Ipv6(a)) => {
                out.push(1);
                out.extend_from_slice(&a.octets());
            }
            Ie::NodeId(NodeId::Fqdn(s)) => {
                out.push(2);
                encode_fqdn(s, out).ok_or(bad)?;
            }
            Ie::OuterHeaderCreation(o) => {
                let d = o.description;
                let need = |bits: u16, present: bool| (d & bits != 0) == present;
                if !(need(ohc::GTPU_UDP_IPV4 | ohc::GTPU_UDP_IPV6, o.teid.is_some())
                    && need(
                        ohc::GTPU_UDP_IPV4 | ohc::UDP_IPV4 | ohc::IPV4,
                        o.v4.is_some(),
                    )
                    && need(
                        ohc::GTPU_UDP_IPV6 | ohc::UDP_IPV6 | ohc::IPV6,
                        o.v6.is_some(),
                    )
                    && need(ohc::UDP_IPV4 | ohc::UDP_IPV6, o.port.is_some())
                    && need(ohc::C_TAG, o.c_tag.is_some())
                    && need(ohc::S_TAG, o.s_tag.is_some()))
                {
                    return Err(bad);
                }
                out.extend_from_slice(&d.to_be_bytes());
                if let Some(x) = o.teid {
                    out.extend_from_slice(&x.to_be_bytes());
                }
                if let Some(a) = o.v4 {
                    out.extend_from_slice(&a.octets());
                }
                if let Some(a) = o.v6 {
                    out.extend_from_slice(&a.octets());
                }
                if let Some(p) = o.port {
                    out.extend_from_slice(&p.to_be_bytes());
                }
                if let Some(c) = o.c_tag {
                    out.extend_from_slice(&c);
                }
                if let Some(s) = o.s_tag {
                    out.extend_from_slice(&s);
                }
            }
            Ie::OuterHeaderRemoval(o) => {
                out.push(o.description);
                if let Some(x) = o.extension_header_deletion {
                    out.push(x);
                }
            }
            Ie::UeIpAddress(u) => {
                out.push(
                    u8::from(u.v6.is_some())
                        | u8::from(u.v4.is_some()) << 1
                        | u8::from(u.destination) << 2
                        | u8::from(u.v6_prefix_delegation_bits.is_some()) << 3
                        | u8::from(u.choose_v4) << 4
                        | u8::from(u.choose_v6) << 5
                        | u8::from(u.v6_prefix_length.is_some()) << 6,
                );
                if let Some(a) = u.v4 {
                    out.extend_from_slice(&a.octets());
                }
                if let Some(a) = u.v6 {
                    out.extend_from_slice(&a.octets());
                }
                if let Some(x) = u.v6_prefix_delegation_bits {
                    out.push(x);
                }
                if let Some(x) = u.v6_prefix_length {
                    out.push(x);
                }
            }
            Ie::MacAddress(m) => {
                let all = [m.src, m.dst, m.upper_src, m.upper_dst];
                let f = all
                    .iter()
                    .enumerate()
                    .fold(0u8, |f, (i, a)| f | u8::from(a.is_some()) << i);
                out.push(f);
                for a in all.iter().flatten() {
                    out.extend_from_slice(a);
                }
            }
            Ie::CTag(tag) | Ie::STag(tag) => {
                let pcp = tag.pcp.unwrap_or(0);
                let vid = tag.vid.unwrap_or(0);
                if pcp > 7 || vid > 0x0fff {
                    return Err(bad);
                }
                out.push(
                    u8::from(tag.pcp.is_some())
                        | u8::from(tag.dei.is_some()) << 1
                        | u8::from(tag.vid.is_some()) << 2,
                );
                out.push(((vid >> 8) as u8) << 4 | u8::from(tag.dei == Some(true)) << 3 | pcp);
                out.push(vid as u8);
            }
            Ie::BbfOuterHeaderCreation(o) => {
                out.extend_from_slice(&o.description.to_be_bytes());
                out.extend_from_slice(&o.tunnel_id.to_be_bytes());
                out.extend_from_slice(&o.session_id.to_be_bytes());
            }
            Ie::BbfPppProtocol(p) => {
                out.push(
                    u8::from(p.control) << 2
                        | u8::from(p.data) << 1
                        | u8::from(p.protocol.is_some()),
                );
                if let Some(x) = p.protocol {
                    out.extend_from_slice(&x.to_be_bytes());
                }
            }
            Ie::BbfVerificationTimers(vt) => {
                out.extend_from_slice(&vt.interval.to_be_bytes());
                out.push(vt.count);
            }
            Ie::BbfLcpMagicNumber(m) => {
                out.extend_from_slice(&m.tx.to_be_bytes());
                out.extend_from_slice(&m.rx.to_be_bytes());
            }
            Ie::BbfNatOutsideAddress(a) => out.extend_from_slice(&a.octets()),
            Ie::BbfNatExternalPortRange(r) => {
                if r.is_empty() {
                    return Err(bad);
                }
                for (s, e) in r {
                    out.extend_from_slice(&s.to_be_bytes());
                    out.extend_from_slice(&e.to_be_bytes());
                }
            }
            Ie::Grouped(g) => {
                if !is_grouped(g.ty, g.enterprise) {
                    return Err(bad);
                }
                check_mandatory(&g.ies, mandatory_children(g.ty, g.enterprise))?;
                emit_ies(&g.ies, out)?;
            }
            Ie::Unknown(r) => {
                if is_grouped(r.ty, r.enterprise) {
                    return Err(bad);
                }
                out.extend_from_slice(&r.data)
            }
        }
        Ok(())
    }
}

fn emit_optional_u64s(vals: &[Option<u64>], out: &mut Vec<u8>) {
    let f = vals
        .iter()
        .enumerate()
        .fold(0u8, |f, (i, x)| f | u8::from(x.is_some()) << i);
    out.push(f);
    for x in vals.iter().flatten() {
        out.extend_from_slice(&x.to_be_bytes());
    }
}

/// Look-ups over a list of IEs (a message body or a grouped IE's children).
pub trait IeList {
    /// The first IE of 3GPP type `t`.
    fn find(&self, t: u16) -> Option<&Ie>;
    /// Every IE of type `t` and enterprise `enterprise`.
    fn all(&self, t: u16, enterprise: Option<u16>) -> impl Iterator<Item = &Ie>;
    fn cause(&self) -> Option<u8>;
    fn node_id(&self) -> Option<&NodeId>;
    fn recovery_time_stamp(&self) -> Option<u32>;
    fn f_seid(&self) -> Option<&FSeid>;
    fn offending_ie(&self) -> Option<u16>;
}

impl IeList for [Ie] {
    fn find(&self, t: u16) -> Option<&Ie> {
        self.iter().find(|i| i.key() == (t, None))
    }
    fn all(&self, t: u16, enterprise: Option<u16>) -> impl Iterator<Item = &Ie> {
        self.iter().filter(move |i| i.key() == (t, enterprise))
    }
    fn cause(&self) -> Option<u8> {
        match self.find(ty::CAUSE)? {
            Ie::Cause(c) => Some(*c),
            _ => None,
        }
    }
    fn node_id(&self) -> Option<&NodeId> {
        match self.find(ty::NODE_ID)? {
            Ie::NodeId(n) => Some(n),
            _ => None,
        }
    }
    fn recovery_time_stamp(&self) -> Option<u32> {
        match self.find(ty::RECOVERY_TIME_STAMP)? {
            Ie::RecoveryTimeStamp(t) => Some(*t),
            _ => None,
        }
    }
    fn f_seid(&self) -> Option<&FSeid> {
        match self.find(ty::F_SEID)? {
            Ie::FSeid(f) => Some(f),
            _ => None,
        }
    }
    fn offending_ie(&self) -> Option<u16> {
        match self.find(ty::OFFENDING_IE)? {
            Ie::OffendingIe(t) => Some(*t),
            _ => None,
        }
    }
}
