//! Example messages of every type this crate handles, shaped like a BNG CUPS
//! exchange (a PPPoE subscriber on a QinQ access line with CGNAT): the round-trip
//! tests, the tshark check and the fuzz seeds all use them.

use crate::ie::{
    apply_action, bbf, cause, interface, measurement_method, ohc, ohr, report_type, trigger, ty,
    BbfOuterHeaderCreation, FSeid, FTeid, Flags, GateStatus, Ie, LcpMagicNumber, MacAddress, Mbr,
    NodeId, OuterHeaderCreation, OuterHeaderRemoval, PppProtocol, RawIe, SdfFilter, UeIpAddress,
    VerificationTimers, VlanTag, Volume, VolumeMeasurement,
};
use crate::msg::{Message, MsgType};
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// The CP's address in the samples.
pub const CP_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The UP's address in the samples.
pub const UP_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

fn cp_node() -> Ie {
    Ie::NodeId(NodeId::Fqdn("cp.bng.example".to_string()))
}

fn up_node() -> Ie {
    Ie::NodeId(NodeId::Ipv4(UP_ADDR))
}

fn usage_report(t: u16) -> Ie {
    Ie::group(
        t,
        vec![
            Ie::UrrId(1),
            Ie::UrSeqn(7),
            Ie::UsageReportTrigger(Flags::new(&[trigger::PERIO, 0, 0])),
            Ie::VolumeMeasurement(VolumeMeasurement {
                total: Some(3_000_000),
                ul: Some(1_000_000),
                dl: Some(2_000_000),
                total_packets: Some(3000),
                ul_packets: Some(1000),
                dl_packets: Some(2000),
            }),
            Ie::DurationMeasurement(600),
        ],
    )
}

/// The subscriber's PDRs, FARs, URR and QER (TR-459 style).
fn establishment_ies() -> Vec<Ie> {
    let line = Ie::group(
        ty::ETHERNET_PACKET_FILTER,
        vec![
            Ie::MacAddress(MacAddress {
                src: Some([2, 0, 0, 0, 0, 0x10]),
                ..MacAddress::default()
            }),
            Ie::CTag(VlanTag::vid(7)),
            Ie::STag(VlanTag {
                pcp: Some(3),
                dei: Some(false),
                vid: Some(100),
            }),
            Ie::Ethertype(0x8864),
        ],
    );
    let uplink_pdi = Ie::group(
        ty::PDI,
        vec![
            Ie::SourceInterface(interface::ACCESS),
            Ie::NetworkInstance(b"\x06access".to_vec()),
            Ie::UeIpAddress(UeIpAddress {
                v4: Some(Ipv4Addr::new(100, 64, 0, 10)),
                ..UeIpAddress::default()
            }),
            line.clone(),
            Ie::EthernetPduSessionInformation(Flags::new(&[0x01])),
            Ie::BbfLogicalPort(b"olt1-1/1/1".to_vec()),
            Ie::BbfPppoeSessionId(0x1234),
            Ie::BbfPppProtocol(PppProtocol {
                data: true,
                ..PppProtocol::default()
            }),
        ],
    );
    let downlink_pdi = Ie::group(
        ty::PDI,
        vec![
            Ie::SourceInterface(interface::CORE),
            Ie::NetworkInstance(b"\x08internet".to_vec()),
            Ie::UeIpAddress(UeIpAddress {
                destination: true,
                v4: Some(Ipv4Addr::new(100, 64, 0, 10)),
                ..UeIpAddress::default()
            }),
            Ie::SdfFilter(SdfFilter {
                flow_description: Some(b"permit out ip from any to assigned".to_vec()),
                ..SdfFilter::default()
            }),
            Ie::ApplicationId(b"internet".to_vec()),
        ],
    );
    let control_pdi = Ie::group(
        ty::PDI,
        vec![
            Ie::SourceInterface(interface::ACCESS),
            Ie::FTeid(FTeid::Choose {
                v4: true,
                v6: false,
                choose_id: Some(1),
            }),
            line,
            Ie::BbfLogicalPort(b"olt1-1/1/1".to_vec()),
            Ie::BbfPppoeSessionId(0x1234),
            Ie::BbfPppProtocol(PppProtocol {
                control: true,
                ..PppProtocol::default()
            }),
        ],
    );
    vec![
        cp_node(),
        Ie::FSeid(FSeid {
            seid: 0x0000_0001_0000_0001,
            v4: Some(CP_ADDR),
            v6: None,
        }),
        Ie::group(
            ty::CREATE_PDR,
            vec![
                Ie::PdrId(1),
                Ie::Precedence(100),
                uplink_pdi,
                Ie::BbfOuterHeaderRemoval(bbf::outer_header_removal::PPP_PPPOE_ETHERNET),
                Ie::FarId(1),
                Ie::UrrId(1),
                Ie::QerId(1),
            ],
        ),
        Ie::group(
            ty::CREATE_PDR,
            vec![
                Ie::PdrId(2),
                Ie::Precedence(100),
                downlink_pdi,
                Ie::FarId(2),
                Ie::UrrId(1),
                Ie::QerId(1),
            ],
        ),
        Ie::group(
            ty::CREATE_PDR,
            vec![
                Ie::PdrId(3),
                Ie::Precedence(10),
                control_pdi,
                Ie::OuterHeaderRemoval(OuterHeaderRemoval {
                    description: ohr::S_TAG_AND_C_TAG,
                    extension_header_deletion: None,
                }),
                Ie::FarId(3),
            ],
        ),
        Ie::group(
            ty::CREATE_FAR,
            vec![
                Ie::FarId(1),
                Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                Ie::group(
                    ty::FORWARDING_PARAMETERS,
                    vec![
                        Ie::DestinationInterface(interface::CORE),
                        Ie::NetworkInstance(b"\x08internet".to_vec()),
                        Ie::BbfApplyAction(Flags::new(&[bbf::apply_action::NAT])),
                        Ie::BbfNatPortBlock(b"cgnat-pool-1".to_vec()),
                        Ie::BbfNatOutsideAddress(Ipv4Addr::new(203, 0, 113, 5)),
                        Ie::BbfNatExternalPortRange(vec![(1024, 2047)]),
                    ],
                ),
            ],
        ),
        Ie::group(
            ty::CREATE_FAR,
            vec![
                Ie::FarId(2),
                Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                Ie::group(
                    ty::FORWARDING_PARAMETERS,
                    vec![
                        Ie::DestinationInterface(interface::ACCESS),
                        Ie::OuterHeaderCreation(OuterHeaderCreation {
                            description: ohc::C_TAG | ohc::S_TAG,
                            teid: None,
                            v4: None,
                            v6: None,
                            port: None,
                            c_tag: Some([0x04, 0x00, 7]),
                            s_tag: Some([0x04, 0x00, 100]),
                        }),
                        Ie::BbfOuterHeaderCreation(BbfOuterHeaderCreation {
                            description: bbf::outer_header_creation::PPP,
                            tunnel_id: 0,
                            session_id: 0,
                        }),
                        Ie::BbfMtu(1492),
                    ],
                ),
            ],
        ),
        Ie::group(
            ty::CREATE_FAR,
            vec![
                Ie::FarId(3),
                Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                Ie::group(
                    ty::FORWARDING_PARAMETERS,
                    vec![
                        Ie::DestinationInterface(interface::CP_FUNCTION),
                        Ie::OuterHeaderCreation(OuterHeaderCreation {
                            description: ohc::GTPU_UDP_IPV4,
                            teid: Some(0x0000_1001),
                            v4: Some(CP_ADDR),
                            v6: None,
                            port: None,
                            c_tag: None,
                            s_tag: None,
                        }),
                    ],
                ),
            ],
        ),
        Ie::group(
            ty::CREATE_URR,
            vec![
                Ie::UrrId(1),
                Ie::MeasurementMethod(Flags::new(&[
                    measurement_method::DURAT | measurement_method::VOLUM
                ])),
                Ie::ReportingTriggers(Flags::new(&[trigger::PERIO | trigger::VOLTH, 0])),
                Ie::VolumeThreshold(Volume {
                    total: Some(1 << 30),
                    ul: None,
                    dl: None,
                }),
            ],
        ),
        Ie::group(
            ty::CREATE_QER,
            vec![
                Ie::QerId(1),
                Ie::GateStatus(GateStatus { ul: 0, dl: 0 }),
                Ie::Mbr(Mbr {
                    ul_kbps: 20_000,
                    dl_kbps: 100_000,
                }),
            ],
        ),
        Ie::bbf_group(
            bbf::PPP_LCP_CONNECTIVITY,
            vec![
                Ie::BbfLcpMagicNumber(LcpMagicNumber {
                    tx: 0x1122_3344,
                    rx: 0x5566_7788,
                }),
                Ie::BbfVerificationTimers(VerificationTimers {
                    interval: 30,
                    count: 3,
                }),
            ],
        ),
        // A vendor IE nobody here knows (RFC 5612's documentation enterprise
        // number): kept and sent back as is.
        Ie::Unknown(RawIe {
            ty: 0x8001,
            enterprise: Some(32473),
            data: vec![1, 2, 3],
        }),
    ]
}

/// One message of every type (and a few variants: an error response with an
/// Offending IE, a session message with a priority).
pub fn messages() -> Vec<Message> {
    let rts = 0xe7a1_0000;
    let up_seid = Some(0x0000_0002_0000_0001);
    let cp_seid = Some(0x0000_0001_0000_0001);
    let mut v = vec![
        Message::new(
            MsgType::HeartbeatRequest,
            None,
            1,
            vec![Ie::RecoveryTimeStamp(rts)],
        ),
        Message::new(
            MsgType::HeartbeatResponse,
            None,
            1,
            vec![Ie::RecoveryTimeStamp(rts + 1)],
        ),
        Message::new(
            MsgType::AssociationSetupRequest,
            None,
            2,
            vec![
                cp_node(),
                Ie::RecoveryTimeStamp(rts),
                Ie::CpFunctionFeatures(Flags::new(&[0x00])),
            ],
        ),
        Message::new(
            MsgType::AssociationSetupResponse,
            None,
            2,
            vec![
                up_node(),
                Ie::Cause(cause::REQUEST_ACCEPTED),
                Ie::RecoveryTimeStamp(rts + 1),
                Ie::UpFunctionFeatures(Flags::new(&[0x00, 0x00])),
                Ie::BbfUpFunctionFeatures(Flags::new(&[
                    bbf::up_features::PPPOE
                        | bbf::up_features::IPOE
                        | bbf::up_features::LCP_KEEPALIVE_OFFLOAD,
                    0,
                    0,
                    0,
                ])),
            ],
        ),
        Message::new(
            MsgType::AssociationUpdateRequest,
            None,
            3,
            vec![up_node(), Ie::UpFunctionFeatures(Flags::new(&[0x00, 0x00]))],
        ),
        Message::new(
            MsgType::AssociationUpdateResponse,
            None,
            3,
            vec![cp_node(), Ie::Cause(cause::REQUEST_ACCEPTED)],
        ),
        Message::new(MsgType::AssociationReleaseRequest, None, 4, vec![cp_node()]),
        Message::new(
            MsgType::AssociationReleaseResponse,
            None,
            4,
            vec![up_node(), Ie::Cause(cause::REQUEST_ACCEPTED)],
        ),
        Message::new(MsgType::VersionNotSupportedResponse, None, 5, vec![]),
        Message::new(
            MsgType::NodeReportRequest,
            None,
            6,
            vec![up_node(), Ie::NodeReportType(Flags::new(&[0x01]))],
        ),
        Message::new(
            MsgType::NodeReportResponse,
            None,
            6,
            vec![cp_node(), Ie::Cause(cause::REQUEST_ACCEPTED)],
        ),
        Message::new(
            MsgType::SessionEstablishmentRequest,
            Some(0),
            7,
            establishment_ies(),
        ),
        Message::new(
            MsgType::SessionEstablishmentResponse,
            cp_seid,
            7,
            vec![
                up_node(),
                Ie::Cause(cause::REQUEST_ACCEPTED),
                Ie::FSeid(FSeid {
                    seid: 0x0000_0002_0000_0001,
                    v4: Some(UP_ADDR),
                    v6: None,
                }),
                Ie::group(
                    ty::CREATED_PDR,
                    vec![
                        Ie::PdrId(3),
                        Ie::FTeid(FTeid::Assigned {
                            teid: 0x0000_2001,
                            v4: Some(UP_ADDR),
                            v6: None,
                        }),
                    ],
                ),
            ],
        ),
        Message::new(
            MsgType::SessionEstablishmentResponse,
            Some(0),
            8,
            vec![
                up_node(),
                Ie::Cause(cause::MANDATORY_IE_MISSING),
                Ie::OffendingIe(ty::F_SEID),
            ],
        ),
        Message::new(
            MsgType::SessionModificationRequest,
            up_seid,
            9,
            vec![
                Ie::group(ty::REMOVE_PDR, vec![Ie::PdrId(3)]),
                Ie::group(ty::REMOVE_FAR, vec![Ie::FarId(3)]),
                Ie::group(ty::UPDATE_PDR, vec![Ie::PdrId(1), Ie::Precedence(90)]),
                Ie::group(
                    ty::UPDATE_FAR,
                    vec![
                        Ie::FarId(2),
                        Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                        Ie::group(
                            ty::UPDATE_FORWARDING_PARAMETERS,
                            vec![Ie::DestinationInterface(interface::ACCESS)],
                        ),
                    ],
                ),
                Ie::group(
                    ty::UPDATE_URR,
                    vec![
                        Ie::UrrId(1),
                        Ie::VolumeThreshold(Volume {
                            total: None,
                            ul: Some(1 << 20),
                            dl: Some(1 << 24),
                        }),
                    ],
                ),
                Ie::group(
                    ty::UPDATE_QER,
                    vec![
                        Ie::QerId(1),
                        Ie::Mbr(Mbr {
                            ul_kbps: 50_000,
                            dl_kbps: 250_000,
                        }),
                    ],
                ),
                Ie::group(
                    ty::CREATE_QER,
                    vec![Ie::QerId(2), Ie::GateStatus(GateStatus { ul: 1, dl: 1 })],
                ),
                Ie::group(ty::REMOVE_QER, vec![Ie::QerId(2)]),
                Ie::group(ty::REMOVE_URR, vec![Ie::UrrId(9)]),
            ],
        ),
        Message::new(
            MsgType::SessionModificationResponse,
            cp_seid,
            9,
            vec![
                Ie::Cause(cause::REQUEST_ACCEPTED),
                usage_report(ty::USAGE_REPORT_SMR),
            ],
        ),
        Message::new(MsgType::SessionDeletionRequest, up_seid, 10, vec![]),
        Message::new(
            MsgType::SessionDeletionResponse,
            cp_seid,
            10,
            vec![
                Ie::Cause(cause::REQUEST_ACCEPTED),
                usage_report(ty::USAGE_REPORT_SDR),
            ],
        ),
        Message::new(
            MsgType::SessionReportRequest,
            cp_seid,
            11,
            vec![
                Ie::ReportType(Flags::new(&[report_type::USAR])),
                usage_report(ty::USAGE_REPORT_SRR),
            ],
        ),
        Message::new(
            MsgType::SessionReportResponse,
            up_seid,
            11,
            vec![Ie::Cause(cause::REQUEST_ACCEPTED)],
        ),
    ];
    let mut prio = Message::new(MsgType::SessionDeletionRequest, up_seid, 12, vec![]);
    prio.header.priority = Some(5);
    v.push(prio);
    v
}
