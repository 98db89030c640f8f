//! The key distribution messages (see the crate README, "Protocol"): records carried
//! in one private-use IKEv2 status notify, [`KS_UPDATE`] (RFC 7296 §3.10.1: types
//! 40960-65535 are private use), inside INFORMATIONAL requests from the key server to
//! a CPE, so that the SK payload (§3.14) encrypts and integrity-protects them.
//!
//! ```text
//! update  = version u8 (1) | flags u8 | seq u64 | count u16 | record*count
//! record  = type u8 | length u16 | body (length octets)
//! INSTALL = pair u64 | epoch u32 | flags u8 | alg u8 | spi_in u32 | spi_out u32
//!         | key_in (keymat_len) | key_out (keymat_len) | soft_s u32 | hard_s u32
//!         | local addr | peer addr | local ts | remote ts | peer_id_len u8 | peer_id
//! ACTIVATE = pair u64 | epoch u32
//! DELETE   = pair u64 | epoch u32            (epoch 0xffffffff: every epoch)
//! addr    = family u8 (4 | 6) | 4 or 16 octets
//! ts      = ip_proto u8 | start_port u16 | end_port u16 | start addr | end addr
//! ```
//!
//! Integers are big-endian (network order). Unknown record types are skipped (their
//! length is known), so later versions can add records. Parsing never panics: a
//! malformed update is refused whole with a [`ProtoError`].

use crate::prelude::*;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use ipsec::crypto::Algorithm;
use ipsec::ike::TrafficSelector;
use zeroize::Zeroizing;

/// The private-use status notify type of a key server update (RFC 7296 §3.10.1).
pub const KS_UPDATE: u16 = 40960 + 0x4b53; // "KS"
/// Protocol version of [`Update`].
pub const VERSION: u8 = 1;
/// `Update::flags`: this update starts a full synchronisation (the CPE's state is
/// about to be restated in full).
pub const FLAG_SYNC_BEGIN: u8 = 1;
/// `Update::flags`: this update ends a full synchronisation: pairs not restated
/// since the matching `FLAG_SYNC_BEGIN` are gone.
pub const FLAG_SYNC_END: u8 = 2;
/// `Delete::epoch` meaning every epoch of the pair.
pub const ALL_EPOCHS: u32 = u32::MAX;

const REC_INSTALL: u8 = 1;
const REC_ACTIVATE: u8 = 2;
const REC_DELETE: u8 = 3;

/// One pair's SAs for one epoch as seen from the receiving CPE.
#[derive(Clone, PartialEq, Eq)]
pub struct Install {
    pub pair: u64,
    pub epoch: u32,
    /// Send with this epoch's outbound SA at once (initial keys); otherwise keep
    /// sending with the older epoch until an [`Record::Activate`].
    pub active: bool,
    pub algorithm: Algorithm,
    pub spi_in: u32,
    pub spi_out: u32,
    /// key ‖ salt (RFC 4106 §8.1), `algorithm.keymat_len()` octets each.
    pub key_in: Zeroizing<Vec<u8>>,
    pub key_out: Zeroizing<Vec<u8>>,
    /// Lifetimes in seconds from installation (0: none). The key server rotates
    /// before the soft one; the hard one bounds a CPE that lost the server.
    pub soft_s: u32,
    pub hard_s: u32,
    /// Tunnel endpoints: this CPE's and the peer's outer addresses.
    pub local: IpAddr,
    pub peer: IpAddr,
    /// Traffic behind this CPE and behind the peer.
    pub local_ts: TrafficSelector,
    pub remote_ts: TrafficSelector,
    pub peer_id: String,
}

impl fmt::Debug for Install {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Install")
            .field("pair", &self.pair)
            .field("epoch", &self.epoch)
            .field("active", &self.active)
            .field("spi_in", &self.spi_in)
            .field("spi_out", &self.spi_out)
            .field("keys", &"<secret>")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

/// One instruction to a CPE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Install(Box<Install>),
    /// Switch the pair's outbound traffic to this epoch's SA.
    Activate {
        pair: u64,
        epoch: u32,
    },
    /// Remove the pair's SAs of this epoch ([`ALL_EPOCHS`]: all of them).
    Delete {
        pair: u64,
        epoch: u32,
    },
}

/// The body of one [`KS_UPDATE`] notify.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub flags: u8,
    /// The key server's sequence number of updates to this CPE (diagnostics).
    pub seq: u64,
    pub records: Vec<Record>,
}

/// Why an update was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    Truncated,
    Version(u8),
    BadFamily(u8),
    BadAlgorithm(u8),
    /// A record's content does not fill its stated length exactly.
    RecordLength,
    TrailingBytes,
    BadPeerId,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Truncated => f.write_str("truncated update"),
            ProtoError::Version(v) => write!(f, "unsupported update version {v}"),
            ProtoError::BadFamily(v) => write!(f, "bad address family {v}"),
            ProtoError::BadAlgorithm(v) => write!(f, "unknown algorithm {v}"),
            ProtoError::RecordLength => f.write_str("record length mismatch"),
            ProtoError::TrailingBytes => f.write_str("trailing bytes after the records"),
            ProtoError::BadPeerId => f.write_str("peer identity is not UTF-8"),
        }
    }
}

impl core::error::Error for ProtoError {}

/// Wire code of an algorithm.
pub fn alg_code(a: Algorithm) -> u8 {
    match a {
        Algorithm::Aes128Gcm16 => 1,
        Algorithm::Aes256Gcm16 => 2,
    }
}

fn alg_from(c: u8) -> Result<Algorithm, ProtoError> {
    match c {
        1 => Ok(Algorithm::Aes128Gcm16),
        2 => Ok(Algorithm::Aes256Gcm16),
        x => Err(ProtoError::BadAlgorithm(x)),
    }
}

fn put_addr(o: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v) => {
            o.push(4);
            o.extend_from_slice(&v.octets());
        }
        IpAddr::V6(v) => {
            o.push(6);
            o.extend_from_slice(&v.octets());
        }
    }
}

fn put_ts(o: &mut Vec<u8>, t: &TrafficSelector) {
    o.push(t.ip_proto);
    o.extend_from_slice(&t.start_port.to_be_bytes());
    o.extend_from_slice(&t.end_port.to_be_bytes());
    put_addr(o, t.start_addr);
    put_addr(o, t.end_addr);
}

impl Record {
    /// Appends the record's encoding (into a buffer that is zeroized by the caller
    /// when it holds keys).
    pub fn encode(&self, o: &mut Vec<u8>) {
        let start = o.len();
        o.extend_from_slice(&[0, 0, 0]);
        let ty = match self {
            Record::Install(i) => {
                o.extend_from_slice(&i.pair.to_be_bytes());
                o.extend_from_slice(&i.epoch.to_be_bytes());
                o.push(u8::from(i.active));
                o.push(alg_code(i.algorithm));
                o.extend_from_slice(&i.spi_in.to_be_bytes());
                o.extend_from_slice(&i.spi_out.to_be_bytes());
                o.extend_from_slice(&i.key_in);
                o.extend_from_slice(&i.key_out);
                o.extend_from_slice(&i.soft_s.to_be_bytes());
                o.extend_from_slice(&i.hard_s.to_be_bytes());
                put_addr(o, i.local);
                put_addr(o, i.peer);
                put_ts(o, &i.local_ts);
                put_ts(o, &i.remote_ts);
                let id = i.peer_id.as_bytes();
                let n = id.len().min(255);
                o.push(n as u8);
                o.extend_from_slice(id.get(..n).unwrap_or_default());
                REC_INSTALL
            }
            Record::Activate { pair, epoch } => {
                o.extend_from_slice(&pair.to_be_bytes());
                o.extend_from_slice(&epoch.to_be_bytes());
                REC_ACTIVATE
            }
            Record::Delete { pair, epoch } => {
                o.extend_from_slice(&pair.to_be_bytes());
                o.extend_from_slice(&epoch.to_be_bytes());
                REC_DELETE
            }
        };
        let len = (o.len() - start - 3) as u16;
        o[start] = ty;
        o[start + 1..start + 3].copy_from_slice(&len.to_be_bytes());
    }

    /// Encoded size in octets.
    pub fn encoded_len(&self) -> usize {
        match self {
            Record::Install(i) => {
                let a = |x: IpAddr| if x.is_ipv4() { 5 } else { 17 };
                let t = |x: &TrafficSelector| 5 + a(x.start_addr) + a(x.end_addr);
                3 + 8
                    + 4
                    + 2
                    + 8
                    + i.key_in.len()
                    + i.key_out.len()
                    + 8
                    + a(i.local)
                    + a(i.peer)
                    + t(&i.local_ts)
                    + t(&i.remote_ts)
                    + 1
                    + i.peer_id.len().min(255)
            }
            _ => 3 + 12,
        }
    }
}

impl Update {
    /// The notify data. Holds keys: the result is zeroized when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut o = Zeroizing::new(Vec::with_capacity(
            12 + self.records.iter().map(Record::encoded_len).sum::<usize>(),
        ));
        o.push(VERSION);
        o.push(self.flags);
        o.extend_from_slice(&self.seq.to_be_bytes());
        o.extend_from_slice(&(self.records.len().min(u16::MAX as usize) as u16).to_be_bytes());
        for r in self.records.iter().take(u16::MAX as usize) {
            r.encode(&mut o);
        }
        o
    }

    /// Parses notify data; never panics.
    pub fn parse(b: &[u8]) -> Result<Update, ProtoError> {
        let mut r = Rd(b);
        let v = r.u8()?;
        if v != VERSION {
            return Err(ProtoError::Version(v));
        }
        let flags = r.u8()?;
        let seq = r.u64()?;
        let count = r.u16()?;
        let mut records = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            let ty = r.u8()?;
            let len = usize::from(r.u16()?);
            let mut body = Rd(r.take(len)?);
            let rec = match ty {
                REC_INSTALL => Some(Record::Install(Box::new(parse_install(&mut body)?))),
                REC_ACTIVATE => Some(Record::Activate {
                    pair: body.u64()?,
                    epoch: body.u32()?,
                }),
                REC_DELETE => Some(Record::Delete {
                    pair: body.u64()?,
                    epoch: body.u32()?,
                }),
                _ => {
                    body = Rd(&[]);
                    None
                }
            };
            if !body.0.is_empty() {
                return Err(ProtoError::RecordLength);
            }
            records.extend(rec);
        }
        if !r.0.is_empty() {
            return Err(ProtoError::TrailingBytes);
        }
        Ok(Update {
            flags,
            seq,
            records,
        })
    }
}

fn parse_install(r: &mut Rd<'_>) -> Result<Install, ProtoError> {
    let pair = r.u64()?;
    let epoch = r.u32()?;
    let active = r.u8()? & 1 == 1;
    let algorithm = alg_from(r.u8()?)?;
    let spi_in = r.u32()?;
    let spi_out = r.u32()?;
    let n = algorithm.keymat_len();
    let key_in = Zeroizing::new(r.take(n)?.to_vec());
    let key_out = Zeroizing::new(r.take(n)?.to_vec());
    let soft_s = r.u32()?;
    let hard_s = r.u32()?;
    let local = r.addr()?;
    let peer = r.addr()?;
    let local_ts = r.ts()?;
    let remote_ts = r.ts()?;
    let idl = usize::from(r.u8()?);
    let peer_id = core::str::from_utf8(r.take(idl)?)
        .map_err(|_| ProtoError::BadPeerId)?
        .to_string();
    Ok(Install {
        pair,
        epoch,
        active,
        algorithm,
        spi_in,
        spi_out,
        key_in,
        key_out,
        soft_s,
        hard_s,
        local,
        peer,
        local_ts,
        remote_ts,
        peer_id,
    })
}

struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.arr::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_be_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    fn addr(&mut self) -> Result<IpAddr, ProtoError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.arr::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.arr::<16>()?))),
            f => Err(ProtoError::BadFamily(f)),
        }
    }
    fn ts(&mut self) -> Result<TrafficSelector, ProtoError> {
        Ok(TrafficSelector {
            ip_proto: self.u8()?,
            start_port: self.u16()?,
            end_port: self.u16()?,
            start_addr: self.addr()?,
            end_addr: self.addr()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(a: [u8; 4], b: [u8; 4]) -> TrafficSelector {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: IpAddr::from(a),
            end_addr: IpAddr::from(b),
        }
    }

    fn sample() -> Update {
        Update {
            flags: FLAG_SYNC_BEGIN,
            seq: 7,
            records: vec![
                Record::Install(Box::new(Install {
                    pair: 42,
                    epoch: 3,
                    active: true,
                    algorithm: Algorithm::Aes256Gcm16,
                    spi_in: 0x1000_0001,
                    spi_out: 0x1000_0002,
                    key_in: Zeroizing::new(vec![1; 36]),
                    key_out: Zeroizing::new(vec![2; 36]),
                    soft_s: 3000,
                    hard_s: 3600,
                    local: IpAddr::from([192, 0, 2, 1]),
                    peer: "2001:db8::2".parse().unwrap(),
                    local_ts: ts([10, 1, 0, 0], [10, 1, 0, 255]),
                    remote_ts: ts([10, 2, 0, 0], [10, 2, 0, 255]),
                    peer_id: "cpe-2".into(),
                })),
                Record::Activate { pair: 42, epoch: 3 },
                Record::Delete {
                    pair: 42,
                    epoch: ALL_EPOCHS,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let u = sample();
        let b = u.encode();
        assert_eq!(
            b.len(),
            12 + u.records.iter().map(Record::encoded_len).sum::<usize>()
        );
        assert_eq!(Update::parse(&b).unwrap(), u);
    }

    #[test]
    fn every_truncation_is_refused() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(Update::parse(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(Update::parse(&long), Err(ProtoError::TrailingBytes));
    }

    #[test]
    fn unknown_records_are_skipped_and_bad_values_refused() {
        let mut b = vec![VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        b.extend_from_slice(&[99, 0, 2, 0xaa, 0xbb]);
        assert_eq!(Update::parse(&b).unwrap().records, vec![]);
        let mut v = sample().encode().to_vec();
        v[0] = 2;
        assert_eq!(Update::parse(&v), Err(ProtoError::Version(2)));
        // Algorithm code of the first record: header 12 + record header 3 + 8 + 4 + 1.
        let mut v = sample().encode().to_vec();
        v[12 + 3 + 13] = 9;
        assert_eq!(Update::parse(&v), Err(ProtoError::BadAlgorithm(9)));
    }
}
