//! PFCP messages (3GPP TS 29.244 §7).
//!
//! The header (§7.2.2):
//!
//! ```text
//! octet 1:  Version (3 bits, = 1) | spare | spare | FO | MP | S
//! octet 2:  Message Type
//! 3–4:      Message Length (octets after the first 4)
//! 5–12:     SEID (only when S = 1: session related messages, §7.2.2.3)
//! next 3:   Sequence Number
//! next 1:   Message Priority (bits 8–5, when MP = 1) | spare
//! ```
//!
//! then the message's IEs ([`crate::ie`]). FO (follow on, §7.2.1A) marks another
//! message bundled after this one in the same datagram.
//!
//! [`Message::parse`] checks the header (version, S flag against the message type,
//! lengths), decodes every IE and checks the mandatory IEs of the message (the "M"
//! rows of the tables in §7.4 and §7.5; [`MsgType::mandatory`]) and of each grouped
//! IE. [`Message::emit`] refuses what the parser would refuse. Messages handled: Heartbeat
//! Request/Response (§7.4.2), Association Setup/Update/Release Request/Response
//! (§7.4.4), Version Not Supported Response (§7.4.4.7), Node Report Request/Response
//! (§7.4.5), Session Establishment/Modification/Deletion/Report Request/Response
//! (§7.5.2–§7.5.9). PFD Management and the Session Set messages are not handled
//! ([`crate::Error::UnknownMessage`]).

use crate::bytes::{be16, be24, be64};
use crate::ie::{self, check_mandatory, Ie};
use crate::{Error, Result};
use alloc::vec::Vec;

/// UDP port of PFCP requests (§7.2.1; IANA "pfcp").
pub const PORT: u16 = 8805;
/// The PFCP version this crate speaks.
pub const VERSION: u8 = 1;
/// Largest sequence number (24 bits, §7.2.2.2).
pub const MAX_SEQ: u32 = 0x00ff_ffff;

/// Message types (TS 29.244 Table 7.3-1) handled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MsgType {
    HeartbeatRequest = 1,
    HeartbeatResponse = 2,
    AssociationSetupRequest = 5,
    AssociationSetupResponse = 6,
    AssociationUpdateRequest = 7,
    AssociationUpdateResponse = 8,
    AssociationReleaseRequest = 9,
    AssociationReleaseResponse = 10,
    VersionNotSupportedResponse = 11,
    NodeReportRequest = 12,
    NodeReportResponse = 13,
    SessionEstablishmentRequest = 50,
    SessionEstablishmentResponse = 51,
    SessionModificationRequest = 52,
    SessionModificationResponse = 53,
    SessionDeletionRequest = 54,
    SessionDeletionResponse = 55,
    SessionReportRequest = 56,
    SessionReportResponse = 57,
}

impl MsgType {
    /// Every type, in numeric order.
    pub const ALL: [MsgType; 19] = [
        MsgType::HeartbeatRequest,
        MsgType::HeartbeatResponse,
        MsgType::AssociationSetupRequest,
        MsgType::AssociationSetupResponse,
        MsgType::AssociationUpdateRequest,
        MsgType::AssociationUpdateResponse,
        MsgType::AssociationReleaseRequest,
        MsgType::AssociationReleaseResponse,
        MsgType::VersionNotSupportedResponse,
        MsgType::NodeReportRequest,
        MsgType::NodeReportResponse,
        MsgType::SessionEstablishmentRequest,
        MsgType::SessionEstablishmentResponse,
        MsgType::SessionModificationRequest,
        MsgType::SessionModificationResponse,
        MsgType::SessionDeletionRequest,
        MsgType::SessionDeletionResponse,
        MsgType::SessionReportRequest,
        MsgType::SessionReportResponse,
    ];

    pub fn from_u8(v: u8) -> Option<MsgType> {
        MsgType::ALL.iter().copied().find(|t| *t as u8 == v)
    }

    /// Session related (S = 1 and a SEID in the header, §7.2.2.3).
    pub const fn is_session(self) -> bool {
        self as u8 >= 50
    }

    /// A request (its response type is the next number, Table 7.3-1).
    pub const fn is_request(self) -> bool {
        matches!(
            self,
            MsgType::HeartbeatRequest
                | MsgType::AssociationSetupRequest
                | MsgType::AssociationUpdateRequest
                | MsgType::AssociationReleaseRequest
                | MsgType::NodeReportRequest
                | MsgType::SessionEstablishmentRequest
                | MsgType::SessionModificationRequest
                | MsgType::SessionDeletionRequest
                | MsgType::SessionReportRequest
        )
    }

    /// The response type to a request type.
    pub fn response(self) -> Option<MsgType> {
        if self.is_request() {
            MsgType::from_u8(self as u8 + 1)
        } else {
            None
        }
    }

    /// The mandatory IEs (TS 29.244 §7.4, §7.5 tables, "M").
    pub const fn mandatory(self) -> &'static [u16] {
        use crate::ie::ty::*;
        match self {
            MsgType::HeartbeatRequest | MsgType::HeartbeatResponse => &[RECOVERY_TIME_STAMP],
            MsgType::AssociationSetupRequest => &[NODE_ID, RECOVERY_TIME_STAMP],
            MsgType::AssociationSetupResponse => &[NODE_ID, CAUSE, RECOVERY_TIME_STAMP],
            MsgType::AssociationUpdateRequest | MsgType::AssociationReleaseRequest => &[NODE_ID],
            MsgType::AssociationUpdateResponse
            | MsgType::AssociationReleaseResponse
            | MsgType::NodeReportResponse
            | MsgType::SessionEstablishmentResponse => &[NODE_ID, CAUSE],
            MsgType::NodeReportRequest => &[NODE_ID, NODE_REPORT_TYPE],
            MsgType::VersionNotSupportedResponse
            | MsgType::SessionModificationRequest
            | MsgType::SessionDeletionRequest => &[],
            MsgType::SessionEstablishmentRequest => &[NODE_ID, F_SEID, CREATE_PDR, CREATE_FAR],
            MsgType::SessionModificationResponse
            | MsgType::SessionDeletionResponse
            | MsgType::SessionReportResponse => &[CAUSE],
            MsgType::SessionReportRequest => &[REPORT_TYPE],
        }
    }

    /// A short name for logs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            MsgType::HeartbeatRequest => "Heartbeat Request",
            MsgType::HeartbeatResponse => "Heartbeat Response",
            MsgType::AssociationSetupRequest => "Association Setup Request",
            MsgType::AssociationSetupResponse => "Association Setup Response",
            MsgType::AssociationUpdateRequest => "Association Update Request",
            MsgType::AssociationUpdateResponse => "Association Update Response",
            MsgType::AssociationReleaseRequest => "Association Release Request",
            MsgType::AssociationReleaseResponse => "Association Release Response",
            MsgType::VersionNotSupportedResponse => "Version Not Supported Response",
            MsgType::NodeReportRequest => "Node Report Request",
            MsgType::NodeReportResponse => "Node Report Response",
            MsgType::SessionEstablishmentRequest => "Session Establishment Request",
            MsgType::SessionEstablishmentResponse => "Session Establishment Response",
            MsgType::SessionModificationRequest => "Session Modification Request",
            MsgType::SessionModificationResponse => "Session Modification Response",
            MsgType::SessionDeletionRequest => "Session Deletion Request",
            MsgType::SessionDeletionResponse => "Session Deletion Response",
            MsgType::SessionReportRequest => "Session Report Request",
            MsgType::SessionReportResponse => "Session Report Response",
        }
    }
}

/// A PFCP message header (§7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub msg_type: MsgType,
    /// SEID, present exactly for session related messages.
    pub seid: Option<u64>,
    /// 24-bit sequence number.
    pub seq: u32,
    /// Message priority 0–15 (MP flag), session related messages only.
    pub priority: Option<u8>,
    /// FO: another message follows in the same datagram.
    pub follow_on: bool,
}

/// The fields of a header that can be read before it is validated: enough to answer
/// a message whose version or IEs are wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    pub version: u8,
    pub msg_type: u8,
    pub seid: Option<u64>,
    pub seq: u32,
}

impl RawHeader {
    /// Reads version, type, SEID and sequence number without other checks.
    pub fn peek(b: &[u8]) -> Option<RawHeader> {
        let f = *b.first()?;
        let s = f & 0x01 != 0;
        let at = if s { 12 } else { 4 };
        Some(RawHeader {
            version: f >> 5,
            msg_type: *b.get(1)?,
            seid: if s { Some(be64(b, 4)?) } else { None },
            seq: be24(b, at)?,
        })
    }
}

impl Header {
    /// Length of this header on the wire.
    pub const fn len(&self) -> usize {
        if self.seid.is_some() {
            16
        } else {
            8
        }
    }

    /// Always false: a header is never empty (for clippy's `len` convention).
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Parses a header; returns it with the total length of its message (header and
    /// IEs), which `b` holds.
    pub fn parse(b: &[u8]) -> Result<(Header, usize)> {
        let f = *b.first().ok_or(Error::InvalidLength)?;
        let version = f >> 5;
        if version != VERSION {
            return Err(Error::BadVersion(version));
        }
        let t = *b.get(1).ok_or(Error::InvalidLength)?;
        let msg_type = MsgType::from_u8(t).ok_or(Error::UnknownMessage(t))?;
        let s = f & 0x01 != 0;
        if s != msg_type.is_session() {
            return Err(Error::BadHeader);
        }
        let total = usize::from(be16(b, 2).ok_or(Error::InvalidLength)?) + 4;
        let hlen = if s { 16 } else { 8 };
        if total < hlen || total > b.len() {
            return Err(Error::InvalidLength);
        }
        let seid = if s { be64(b, 4) } else { None };
        let seq = be24(b, hlen - 4).ok_or(Error::InvalidLength)?;
        let mp = f & 0x02 != 0;
        if mp && !s {
            return Err(Error::BadHeader);
        }
        let priority = mp.then_some(b[hlen - 1] >> 4);
        Ok((
            Header {
                msg_type,
                seid,
                seq,
                priority,
                follow_on: f & 0x04 != 0,
            },
            total,
        ))
    }

    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.seid.is_some() != self.msg_type.is_session()
            || self.seq > MAX_SEQ
            || self.priority.is_some_and(|p| p > 15)
            || (self.priority.is_some() && self.seid.is_none())
        {
            return Err(Error::BadHeader);
        }
        out.push(
            VERSION << 5
                | u8::from(self.follow_on) << 2
                | u8::from(self.priority.is_some()) << 1
                | u8::from(self.seid.is_some()),
        );
        out.push(self.msg_type as u8);
        out.extend_from_slice(&[0, 0]);
        if let Some(s) = self.seid {
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&self.seq.to_be_bytes()[1..]);
        out.push(self.priority.unwrap_or(0) << 4);
        Ok(())
    }
}

/// One PFCP message: header and IEs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub header: Header,
    pub ies: Vec<Ie>,
}

impl Message {
    /// A message without priority or follow-on; `seid` must be given exactly for
    /// session related types.
    pub fn new(msg_type: MsgType, seid: Option<u64>, seq: u32, ies: Vec<Ie>) -> Message {
        Message {
            header: Header {
                msg_type,
                seid,
                seq,
                priority: None,
                follow_on: false,
            },
            ies,
        }
    }

    pub fn msg_type(&self) -> MsgType {
        self.header.msg_type
    }

    /// Parses one message at the start of `b`; returns it and the bytes it used
    /// (more may follow when the FO flag is set).
    pub fn parse(b: &[u8]) -> Result<(Message, usize)> {
        let (header, total) = Header::parse(b)?;
        let ies = ie::parse_ies(&b[header.len()..total], 0)?;
        check_mandatory(&ies, header.msg_type.mandatory())?;
        Ok((Message { header, ies }, total))
    }

    /// Parses a datagram holding exactly one message.
    pub fn parse_bytes(b: &[u8]) -> Result<Message> {
        let (m, used) = Message::parse(b)?;
        if used != b.len() || m.header.follow_on {
            return Err(Error::InvalidLength);
        }
        Ok(m)
    }

    /// Parses every message of a datagram (§7.2.1A: FO set on all but the last).
    pub fn parse_datagram(mut b: &[u8]) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        loop {
            let (m, used) = Message::parse(b)?;
            let fo = m.header.follow_on;
            out.push(m);
            b = &b[used..];
            match (fo, b.is_empty()) {
                (false, true) => return Ok(out),
                (true, false) => {}
                _ => return Err(Error::InvalidLength),
            }
        }
    }

    /// Appends the message to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        check_mandatory(&self.ies, self.header.msg_type.mandatory())?;
        let start = out.len();
        let r = self
            .header
            .emit(out)
            .and_then(|()| ie::emit_ies(&self.ies, out));
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

    /// The message as a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.emit(&mut v)?;
        Ok(v)
    }
}
