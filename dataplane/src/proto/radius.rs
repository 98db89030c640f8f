//! RADIUS packets (RFC 2865 §3 packet format, §5 attributes), accounting (RFC 2866 §3
//! authenticator, §5 attributes), extensions (RFC 2869 §5, e.g. §5.16
//! Acct-Interim-Interval), IPv6 attributes (RFC 3162 §2), Message-Authenticator
//! (RFC 3579 §3.2), dynamic authorization (RFC 5176 §2–§3) and the authenticator
//! computations: User-Password hiding (RFC 2865 §5.2), Request/Response Authenticators
//! (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2.3), CHAP-MD5 (RFC 1994 §4.1).
//!
//! [`Packet`] is a checked view (header, Length and attribute framing validated once);
//! [`Builder`] emits into a `Vec` (control path). MD5 and HMAC-MD5 come from the
//! RustCrypto `md-5` and `hmac` crates, built without their `std` features.
//!
//! ```text
//! |     Code      |  Identifier   |            Length             |
//! |                     Authenticator (16 octets)                 |
//! |  Attributes ...
//! ```

use super::bytes::{be16, be32};
use super::{Error, Result};
use alloc::vec::Vec;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;
/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_LEN: usize = 4096;

/// Packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5176 §3).
pub mod code {
    /// Access-Request.
    pub const ACCESS_REQUEST: u8 = 1;
    /// Access-Accept.
    pub const ACCESS_ACCEPT: u8 = 2;
    /// Access-Reject.
    pub const ACCESS_REJECT: u8 = 3;
    /// Accounting-Request.
    pub const ACCOUNTING_REQUEST: u8 = 4;
    /// Accounting-Response.
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    /// Access-Challenge.
    pub const ACCESS_CHALLENGE: u8 = 11;
    /// Disconnect-Request.
    pub const DISCONNECT_REQUEST: u8 = 40;
    /// Disconnect-ACK.
    pub const DISCONNECT_ACK: u8 = 41;
    /// Disconnect-NAK.
    pub const DISCONNECT_NAK: u8 = 42;
    /// CoA-Request.
    pub const COA_REQUEST: u8 = 43;
    /// CoA-ACK.
    pub const COA_ACK: u8 = 44;
    /// CoA-NAK.
    pub const COA_NAK: u8 = 45;
}

/// Attribute types used by the vBNG.
pub mod attr {
    /// User-Name (RFC 2865 §5.1).
    pub const USER_NAME: u8 = 1;
    /// User-Password (§5.2).
    pub const USER_PASSWORD: u8 = 2;
    /// CHAP-Password (§5.3).
    pub const CHAP_PASSWORD: u8 = 3;
    /// NAS-IP-Address (§5.4).
    pub const NAS_IP_ADDRESS: u8 = 4;
    /// NAS-Port (§5.5).
    pub const NAS_PORT: u8 = 5;
    /// Service-Type (§5.6).
    pub const SERVICE_TYPE: u8 = 6;
    /// Framed-Protocol (§5.7).
    pub const FRAMED_PROTOCOL: u8 = 7;
    /// Framed-IP-Address (§5.8).
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    /// Reply-Message (§5.18).
    pub const REPLY_MESSAGE: u8 = 18;
    /// Class (§5.25).
    pub const CLASS: u8 = 25;
    /// Vendor-Specific (§5.26).
    pub const VENDOR_SPECIFIC: u8 = 26;
    /// Session-Timeout (§5.27).
    pub const SESSION_TIMEOUT: u8 = 27;
    /// Idle-Timeout (§5.28).
    pub const IDLE_TIMEOUT: u8 = 28;
    /// Calling-Station-Id (§5.31).
    pub const CALLING_STATION_ID: u8 = 31;
    /// NAS-Identifier (§5.32).
    pub const NAS_IDENTIFIER: u8 = 32;
    /// Acct-Status-Type (RFC 2866 §5.1).
    pub const ACCT_STATUS_TYPE: u8 = 40;
    /// Acct-Delay-Time (§5.2).
    pub const ACCT_DELAY_TIME: u8 = 41;
    /// Acct-Input-Octets (§5.3).
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    /// Acct-Output-Octets (§5.4).
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    /// Acct-Session-Id (§5.5).
    pub const ACCT_SESSION_ID: u8 = 44;
    /// Acct-Authentic (§5.6).
    pub const ACCT_AUTHENTIC: u8 = 45;
    /// Acct-Session-Time (§5.7).
    pub const ACCT_SESSION_TIME: u8 = 46;
    /// Acct-Input-Packets (§5.8).
    pub const ACCT_INPUT_PACKETS: u8 = 47;
    /// Acct-Output-Packets (§5.9).
    pub const ACCT_OUTPUT_PACKETS: u8 = 48;
    /// Acct-Terminate-Cause (§5.10).
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    /// Acct-Input-Gigawords (RFC 2869 §5.1).
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    /// Acct-Output-Gigawords (RFC 2869 §5.2).
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    /// Event-Timestamp (RFC 2869 §5.3).
    pub const EVENT_TIMESTAMP: u8 = 55;
    /// CHAP-Challenge (RFC 2865 §5.40).
    pub const CHAP_CHALLENGE: u8 = 60;
    /// NAS-Port-Type (§5.41).
    pub const NAS_PORT_TYPE: u8 = 61;
    /// Message-Authenticator (RFC 3579 §3.2).
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    /// Acct-Interim-Interval (RFC 2869 §5.16).
    pub const ACCT_INTERIM_INTERVAL: u8 = 85;
    /// NAS-Port-Id (RFC 2869 §5.17).
    pub const NAS_PORT_ID: u8 = 87;
    /// Framed-Pool (RFC 2869 §5.18).
    pub const FRAMED_POOL: u8 = 88;
    /// Framed-IPv6-Prefix (RFC 3162 §2.3).
    pub const FRAMED_IPV6_PREFIX: u8 = 97;
    /// Framed-IPv6-Pool (RFC 3162 §2.4).
    pub const FRAMED_IPV6_POOL: u8 = 100;
    /// Error-Cause (RFC 5176 §3.5).
    pub const ERROR_CAUSE: u8 = 101;
    /// Delegated-IPv6-Prefix (RFC 4818 §3): the prefix delegated by DHCPv6 IA_PD.
    pub const DELEGATED_IPV6_PREFIX: u8 = 123;
    /// Framed-IPv6-Address (RFC 6911 §3.1): the address assigned by DHCPv6 IA_NA.
    pub const FRAMED_IPV6_ADDRESS: u8 = 168;
}

/// Vendor-specific rate-limit attributes the vBNG understands (documented in the
/// crate README section "RADIUS rate limit"): MikroTik `Mikrotik-Rate-Limit`
/// (vendor 14988, type 8, string `"<up>[/<down>]"` with k/M/G suffixes, up = rx at the
/// BNG = subscriber upload) and WISPr `WISPr-Bandwidth-Max-Up`/`-Down` (vendor 14122,
/// types 7/8, integer bit/s). Both ship in FreeRADIUS's dictionary.
pub mod vsa {
    /// MikroTik vendor id.
    pub const MIKROTIK: u32 = 14988;
    /// Mikrotik-Rate-Limit.
    pub const MIKROTIK_RATE_LIMIT: u8 = 8;
    /// WISPr vendor id.
    pub const WISPR: u32 = 14122;
    /// WISPr-Bandwidth-Max-Up.
    pub const WISPR_BW_MAX_UP: u8 = 7;
    /// WISPr-Bandwidth-Max-Down.
    pub const WISPR_BW_MAX_DOWN: u8 = 8;
}

/// A checked view of a RADIUS packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Check header, Length (20..=4096, within the buffer) and attribute framing.
    /// Octets past Length are ignored (RFC 2865 §3).
    pub fn new_checked(b: &'a [u8]) -> Result<Packet<'a>> {
        let len = usize::from(be16(b, 2)?);
        if !(HEADER_LEN..=MAX_LEN).contains(&len) {
            return Err(Error::Malformed);
        }
        let bytes = b.get(..len).ok_or(Error::Truncated)?;
        let p = Packet { bytes };
        for a in p.attrs() {
            a?;
        }
        Ok(p)
    }

    /// Code.
    pub fn code(&self) -> u8 {
        self.bytes[0]
    }
    /// Identifier.
    pub fn id(&self) -> u8 {
        self.bytes[1]
    }
    /// Authenticator.
    pub fn authenticator(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.bytes[4..20]);
        a
    }
    /// The packet bytes (exactly Length long).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Iterate over attributes (type, value).
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs {
            rest: &self.bytes[HEADER_LEN..],
        }
    }
    /// First attribute of type `t`.
    pub fn attr(&self, t: u8) -> Option<&'a [u8]> {
        self.attrs()
            .filter_map(|a| a.ok())
            .find(|(ty, _)| *ty == t)
            .map(|(_, v)| v)
    }
    /// First attribute of type `t` as a 32-bit integer.
    pub fn attr_u32(&self, t: u8) -> Option<u32> {
        self.attr(t)
            .and_then(|v| if v.len() == 4 { be32(v, 0).ok() } else { None })
    }
    /// First vendor-specific sub-attribute (vendor, type).
    pub fn vsa(&self, vendor: u32, t: u8) -> Option<&'a [u8]> {
        self.attrs()
            .filter_map(|a| a.ok())
            .filter(|(ty, _)| *ty == attr::VENDOR_SPECIFIC)
            .find_map(|(_, v)| {
                if be32(v, 0).ok()? != vendor {
                    return None;
                }
                let mut rest = v.get(4..)?;
                while rest.len() >= 2 {
                    let (vt, vl) = (rest[0], usize::from(rest[1]));
                    let val = rest.get(2..vl)?;
                    if vt == t {
                        return Some(val);
                    }
                    rest = rest.get(vl..)?;
                }
                None
            })
    }
}

/// Iterator over attributes; a bad length yields one `Err(Malformed)`.
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u8, &'a [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (Some(&t), Some(&l)) = (self.rest.first(), self.rest.get(1)) else {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        };
        let l = usize::from(l);
        let Some(v) = self.rest.get(2..l).filter(|_| l >= 2) else {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        };
        self.rest = &self.rest[l..];
        Some(Ok((t, v)))
    }
}

/// Builds a RADIUS packet; `finish_*` computes lengths and authenticators.
///
/// `Debug` shows the header and the attribute types and lengths only: the bytes may
/// hold a hidden User-Password (RFC 2865 §5.2) or other secrets.
#[derive(Clone)]
pub struct Builder {
    buf: Vec<u8>,
    msg_auth_at: Option<usize>,
}

impl core::fmt::Debug for Builder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut attrs = Vec::new();
        let mut rest = self.buf.get(20..).unwrap_or(&[]);
        while let [t, l, ..] = *rest {
            attrs.push((t, l));
            rest = rest.get(usize::from(l.max(2))..).unwrap_or(&[]);
        }
        f.debug_struct("Builder")
            .field("code", &self.buf.first())
            .field("id", &self.buf.get(1))
            .field("attrs (type, length)", &attrs)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Start a packet with `code`, `id` and a 16-byte authenticator field (the random
    /// Request Authenticator for Access-Request; anything for the others, it is
    /// overwritten by `finish_*`).
    pub fn new(code: u8, id: u8, authenticator: [u8; 16]) -> Builder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[code, id, 0, 0]);
        buf.extend_from_slice(&authenticator);
        Builder {
            buf,
            msg_auth_at: None,
        }
    }

    /// Add an attribute; values longer than 253 octets are cut (none of ours are).
    pub fn attr(&mut self, t: u8, v: &[u8]) -> &mut Self {
        let v = &v[..v.len().min(253)];
        self.buf.push(t);
        self.buf.push((v.len() + 2) as u8);
        self.buf.extend_from_slice(v);
        self
    }

    /// Add a 32-bit integer attribute.
    pub fn attr_u32(&mut self, t: u8, v: u32) -> &mut Self {
        self.attr(t, &v.to_be_bytes())
    }

    /// Add a vendor-specific attribute (RFC 2865 §5.26 recommended format).
    pub fn vsa(&mut self, vendor: u32, t: u8, v: &[u8]) -> &mut Self {
        let v = &v[..v.len().min(247)];
        let mut x = Vec::with_capacity(v.len() + 6);
        x.extend_from_slice(&vendor.to_be_bytes());
        x.push(t);
        x.push((v.len() + 2) as u8);
        x.extend_from_slice(v);
        self.attr(attr::VENDOR_SPECIFIC, &x)
    }

    /// Add User-Password hidden per RFC 2865 §5.2 with the Request Authenticator
    /// given to [`Builder::new`].
    pub fn user_password(&mut self, secret: &[u8], password: &[u8]) -> &mut Self {
        let mut ra = [0u8; 16];
        ra.copy_from_slice(&self.buf[4..20]);
        let hidden = hide_password(secret, &ra, password);
        self.attr(attr::USER_PASSWORD, &hidden)
    }

    /// Reserve a Message-Authenticator (computed by `finish_*`).
    pub fn message_authenticator(&mut self) -> &mut Self {
        self.msg_auth_at = Some(self.buf.len() + 2);
        self.attr(attr::MESSAGE_AUTHENTICATOR, &[0; 16])
    }

    fn set_len(&mut self) -> Result<()> {
        let l = u16::try_from(self.buf.len()).map_err(|_| Error::BufferTooSmall)?;
        if usize::from(l) > MAX_LEN {
            return Err(Error::BufferTooSmall);
        }
        self.buf[2..4].copy_from_slice(&l.to_be_bytes());
        Ok(())
    }

    fn sign_msg_auth(&mut self, secret: &[u8]) {
        if let Some(at) = self.msg_auth_at {
            let m = hmac_md5(secret, &self.buf);
            self.buf[at..at + 16].copy_from_slice(&m);
        }
    }

    /// Finish an Access-Request: the authenticator stays as given; Message-Authenticator
    /// is HMAC-MD5 over the packet (RFC 3579 §3.2).
    pub fn finish_access_request(mut self, secret: &[u8]) -> Result<Vec<u8>> {
        self.set_len()?;
        self.sign_msg_auth(secret);
        Ok(self.buf)
    }

    /// Finish an Accounting-Request, CoA-Request or Disconnect-Request: authenticator =
    /// MD5(Code+Id+Length+16 zero octets+Attributes+Secret) (RFC 2866 §3, RFC 5176 §2.3);
    /// a Message-Authenticator is computed first with the authenticator zeroed.
    pub fn finish_request_md5(mut self, secret: &[u8]) -> Result<Vec<u8>> {
        self.set_len()?;
        self.buf[4..20].fill(0);
        self.sign_msg_auth(secret);
        let a = md5_concat(&[&self.buf, secret]);
        self.buf[4..20].copy_from_slice(&a);
        Ok(self.buf)
    }

    /// Finish a response to a request with authenticator `req_auth`: authenticator =
    /// MD5(Code+Id+Length+RequestAuth+Attributes+Secret) (RFC 2865 §3).
    pub fn finish_response(mut self, secret: &[u8], req_auth: &[u8; 16]) -> Result<Vec<u8>> {
        self.set_len()?;
        self.buf[4..20].copy_from_slice(req_auth);
        self.sign_msg_auth(secret);
        let a = md5_concat(&[&self.buf, secret]);
        self.buf[4..20].copy_from_slice(&a);
        Ok(self.buf)
    }
}

fn md5_concat(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 (RFC 2104) as used by Message-Authenticator.
pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    match Hmac::<Md5>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().into()
        }
        Err(_) => [0; 16],
    }
}

/// Hide a password (RFC 2865 §5.2); the result is padded to a multiple of 16, at most
/// 128 octets.
pub fn hide_password(secret: &[u8], req_auth: &[u8; 16], password: &[u8]) -> Vec<u8> {
    let p = &password[..password.len().min(128)];
    let n = p.len().div_ceil(16).max(1) * 16;
    let mut out = Vec::with_capacity(n);
    let mut prev: [u8; 16] = *req_auth;
    for chunk in 0..n / 16 {
        let b = md5_concat(&[secret, &prev]);
        let mut c = [0u8; 16];
        for (i, ci) in c.iter_mut().enumerate() {
            *ci = p.get(chunk * 16 + i).copied().unwrap_or(0) ^ b[i];
        }
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

/// Recover a hidden password (server side, used by tests and the CoA listener).
pub fn unhide_password(secret: &[u8], req_auth: &[u8; 16], hidden: &[u8]) -> Result<Vec<u8>> {
    if hidden.is_empty() || hidden.len() & 15 != 0 || hidden.len() > 128 {
        return Err(Error::Malformed);
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut prev: &[u8] = req_auth;
    for c in hidden.chunks(16) {
        let b = md5_concat(&[secret, prev]);
        out.extend(c.iter().zip(b.iter()).map(|(x, y)| x ^ y));
        prev = c;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// CHAP-MD5 response value: MD5(Identifier + secret + challenge) (RFC 1994 §4.1).
pub fn chap_md5(id: u8, password: &[u8], challenge: &[u8]) -> [u8; 16] {
    md5_concat(&[&[id], password, challenge])
}

/// Verify the Response Authenticator of `resp` against the request authenticator, and
/// its Message-Authenticator if present (RFC 2865 §3, RFC 3579 §3.2).
pub fn verify_response(resp: &Packet<'_>, secret: &[u8], req_auth: &[u8; 16]) -> bool {
    let mut b = resp.as_bytes().to_vec();
    b[4..20].copy_from_slice(req_auth);
    let want = md5_concat(&[&b, secret]);
    if want != resp.authenticator() {
        return false;
    }
    verify_msg_auth(&mut b, secret)
}

/// Verify only the Response Authenticator of `resp` (RFC 2865 §3), not its
/// Message-Authenticator; used to tell a forged reply from one whose
/// Message-Authenticator is bad or missing.
pub fn verify_response_authenticator(
    resp: &Packet<'_>,
    secret: &[u8],
    req_auth: &[u8; 16],
) -> bool {
    let mut b = resp.as_bytes().to_vec();
    if let Some(a) = b.get_mut(4..20) {
        a.copy_from_slice(req_auth);
    }
    md5_concat(&[&b, secret]) == resp.authenticator()
}

/// Verify the authenticator of an Accounting-, CoA- or Disconnect-Request (RFC 2866 §3,
/// RFC 5176 §2.3) and its Message-Authenticator if present.
pub fn verify_request_md5(req: &Packet<'_>, secret: &[u8]) -> bool {
    let mut b = req.as_bytes().to_vec();
    b[4..20].fill(0);
    let want = md5_concat(&[&b, secret]);
    if want != req.authenticator() {
        return false;
    }
    verify_msg_auth(&mut b, secret)
}

/// Check a Message-Authenticator in `b` (whose authenticator field is already set as
/// the check requires). Absent = OK.
fn verify_msg_auth(b: &mut [u8], secret: &[u8]) -> bool {
    let mut off = HEADER_LEN;
    while off + 2 <= b.len() {
        let (t, l) = (b[off], usize::from(b[off + 1]));
        if l < 2 || off + l > b.len() {
            return false;
        }
        if t == attr::MESSAGE_AUTHENTICATOR {
            if l != 18 {
                return false;
            }
            let mut got = [0u8; 16];
            got.copy_from_slice(&b[off + 2..off + 18]);
            b[off + 2..off + 18].fill(0);
            return hmac_md5(secret, b) == got;
        }
        off += l;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_debug_shows_no_attribute_bytes() {
        let mut b = Builder::new(1, 7, [0x5a; 16]);
        b.attr(1, b"alice")
            .user_password(b"s3cret", b"hunter2-password");
        let d = alloc::format!("{b:?}");
        assert!(d.contains("(1, 7)") && d.contains("(2, 18)"), "{d}");
        assert!(!d.contains("97, 108"), "user name bytes printed: {d}");
        assert!(!d.contains("buf"), "{d}");
    }

    #[test]
    fn rfc2865_password_example() {
        // RFC 2865 §7.1 example: secret "xyzzy5461", password "arctangent".
        let ra = [
            0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4,
            0x22, 0x7a,
        ];
        let h = hide_password(b"xyzzy5461", &ra, b"arctangent");
        assert_eq!(
            h,
            [
                0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a,
                0x0a, 0xee
            ]
        );
        assert_eq!(
            unhide_password(b"xyzzy5461", &ra, &h).unwrap(),
            b"arctangent"
        );
    }

    #[test]
    fn rfc2865_accept_authenticator() {
        // RFC 2865 §7.1: the Access-Accept's Response Authenticator.
        let ra = [
            0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4,
            0x22, 0x7a,
        ];
        // RFC 2865 §7.1: Service-Type=Login, Login-Service=Telnet, Login-IP-Host.
        let mut b = Builder::new(code::ACCESS_ACCEPT, 0, [0; 16]);
        b.attr_u32(attr::SERVICE_TYPE, 1)
            .attr_u32(15, 0)
            .attr(14, &[192, 168, 1, 3]);
        let out = b.finish_response(b"xyzzy5461", &ra).unwrap();
        assert_eq!(
            &out[4..20],
            &[
                0x86, 0xfe, 0x22, 0x0e, 0x76, 0x24, 0xba, 0x2a, 0x10, 0x05, 0xf6, 0xbf, 0x9b, 0x55,
                0xe0, 0xb2
            ]
        );
        let p = Packet::new_checked(&out).unwrap();
        assert!(verify_response(&p, b"xyzzy5461", &ra));
        assert!(!verify_response(&p, b"wrong", &ra));
    }

    #[test]
    fn message_authenticator_and_md5_requests() {
        let mut b = Builder::new(code::COA_REQUEST, 9, [0; 16]);
        b.attr(attr::USER_NAME, b"bob").message_authenticator().vsa(
            vsa::MIKROTIK,
            vsa::MIKROTIK_RATE_LIMIT,
            b"5M/10M",
        );
        let out = b.finish_request_md5(b"s3cret").unwrap();
        let p = Packet::new_checked(&out).unwrap();
        assert!(verify_request_md5(&p, b"s3cret"));
        assert!(!verify_request_md5(&p, b"other"));
        assert_eq!(
            p.vsa(vsa::MIKROTIK, vsa::MIKROTIK_RATE_LIMIT),
            Some(&b"5M/10M"[..])
        );
        let mut tampered = out.clone();
        let n = tampered.len();
        tampered[n - 1] ^= 1;
        let p = Packet::new_checked(&tampered).unwrap();
        assert!(!verify_request_md5(&p, b"s3cret"));
    }

    #[test]
    fn malformed() {
        assert!(Packet::new_checked(&[1, 1, 0, 19]).is_err());
        let mut b = [0u8; 24];
        b[3] = 24;
        b[20] = 1;
        b[21] = 1; // attribute length 1
        assert_eq!(Packet::new_checked(&b).err(), Some(Error::Malformed));
        b[21] = 9; // overruns
        assert_eq!(Packet::new_checked(&b).err(), Some(Error::Malformed));
        b[3] = 30; // Length > buffer
        assert_eq!(Packet::new_checked(&b).err(), Some(Error::Truncated));
    }
}
