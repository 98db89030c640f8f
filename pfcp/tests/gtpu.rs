//! GTP-U: header round trips (sequence number, N-PDU number, extension header
//! chains), Echo/Error Indication/End Marker, the control-frame redirect
//! encapsulation both ways, and hostile inputs refused without panics.

use pfcp::gtpu::{self, msg_type, ExtHeader, Header, Tunnel};
use pfcp::Error;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn rt(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    h.emit(payload, &mut b).unwrap();
    let (back, p) = Header::parse(&b).unwrap();
    assert_eq!(&back, h);
    assert_eq!(p, payload);
    b
}

#[test]
fn headers_round_trip() {
    let b = rt(&Header::new(msg_type::G_PDU, 0xdead_beef), b"abc");
    assert_eq!(b[..8], [0x30, 0xff, 0, 3, 0xde, 0xad, 0xbe, 0xef]);
    rt(
        &Header {
            seq: Some(9),
            npdu: Some(3),
            ..Header::new(msg_type::G_PDU, 1)
        },
        b"x",
    );
    let b = rt(
        &Header {
            ext: vec![
                ExtHeader {
                    ty: 0x85,
                    content: vec![0x10, 0x05],
                },
                ExtHeader {
                    ty: 0x40,
                    content: vec![1, 2, 3, 4, 5, 6],
                },
            ],
            ..Header::new(msg_type::G_PDU, 2)
        },
        b"payload",
    );
    assert_eq!(b[0], 0x34);
    assert_eq!(b[11], 0x85);
    // Extension content must fill whole 4-octet units.
    let bad = Header {
        ext: vec![ExtHeader {
            ty: 0x85,
            content: vec![1],
        }],
        ..Header::new(msg_type::G_PDU, 2)
    };
    assert_eq!(bad.emit(&[], &mut Vec::new()), Err(Error::BadHeader));
}

#[test]
fn signalling_messages() {
    let req = gtpu::echo_request(5);
    let (h, p) = Header::parse(&req).unwrap();
    assert_eq!(
        (h.msg_type, h.teid, h.seq),
        (msg_type::ECHO_REQUEST, 0, Some(5))
    );
    assert!(p.is_empty());
    let resp = gtpu::echo_response(5);
    let (h, p) = Header::parse(&resp).unwrap();
    assert_eq!((h.msg_type, h.seq), (msg_type::ECHO_RESPONSE, Some(5)));
    assert_eq!(p, [gtpu::ie::RECOVERY, 0]);
    let (h, _) = Header::parse(&gtpu::end_marker(77)).unwrap();
    assert_eq!((h.msg_type, h.teid), (msg_type::END_MARKER, 77));
    for a in [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let b = gtpu::error_indication(42, a, 1);
        let (h, p) = Header::parse(&b).unwrap();
        assert_eq!(h.msg_type, msg_type::ERROR_INDICATION);
        assert_eq!(gtpu::parse_error_indication(p).unwrap(), (42, a));
    }
    assert!(gtpu::parse_error_indication(&[16, 0, 0]).is_err());
    assert!(gtpu::parse_error_indication(&[133, 0, 3, 1, 2, 3]).is_err());
    assert!(gtpu::parse_error_indication(&[16, 0, 0, 0, 1]).is_err());
    assert!(gtpu::parse_error_indication(&[7]).is_err());
}

fn tunnel() -> Tunnel {
    Tunnel {
        src: Ipv4Addr::new(192, 0, 2, 11),
        dst: Ipv4Addr::new(192, 0, 2, 1),
        src_port: 40000,
        teid: 0x1001,
    }
}

#[test]
fn redirect_encap_decap() {
    let frame: Vec<u8> = (0..64u8).collect();
    for seq in [None, Some(7)] {
        let pkt = gtpu::encap_frame(&tunnel(), seq, &frame).unwrap();
        let d = gtpu::decap_frame(&pkt).unwrap();
        assert_eq!(d.tunnel, tunnel());
        assert_eq!(d.seq, seq);
        assert_eq!(d.frame, &frame[..]);
    }
    let pkt = gtpu::encap_frame(&tunnel(), None, &frame).unwrap();
    // A flipped payload bit fails the UDP checksum; a flipped header bit the IPv4 one.
    let mut b = pkt.clone();
    *b.last_mut().unwrap() ^= 1;
    assert!(gtpu::decap_frame(&b).is_err());
    let mut b = pkt.clone();
    b[8] ^= 1;
    assert!(gtpu::decap_frame(&b).is_err());
    // Every truncation fails cleanly.
    for n in 0..pkt.len() {
        assert!(gtpu::decap_frame(&pkt[..n]).is_err());
    }
    // Too big for IPv4.
    assert_eq!(
        gtpu::encap_frame(&tunnel(), None, &vec![0; 65_535]),
        Err(Error::TooLong)
    );
}

#[test]
fn hostile_headers() {
    let good = rt(
        &Header {
            ext: vec![ExtHeader {
                ty: 0x85,
                content: vec![0, 1],
            }],
            ..Header::new(msg_type::G_PDU, 2)
        },
        b"data",
    );
    for n in 0..12 {
        assert!(Header::parse(&good[..n]).is_err(), "{n}");
    }
    // Version 2, PT 0.
    let mut b = good.clone();
    b[0] = 0x54;
    assert_eq!(Header::parse(&b), Err(Error::BadVersion(2)));
    let mut b = good.clone();
    b[0] &= !0x10;
    assert_eq!(Header::parse(&b), Err(Error::BadHeader));
    // Extension header length 0, or longer than the message.
    let mut b = good.clone();
    b[12] = 0;
    assert_eq!(Header::parse(&b), Err(Error::BadHeader));
    let mut b = good.clone();
    b[12] = 9;
    assert_eq!(Header::parse(&b), Err(Error::InvalidLength));
    // An endless chain of extension headers is bounded.
    let mut b = vec![0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85];
    for _ in 0..20 {
        b.extend_from_slice(&[1, 0, 0, 0x85]);
    }
    let l = (b.len() - 8) as u16;
    b[2..4].copy_from_slice(&l.to_be_bytes());
    assert_eq!(Header::parse(&b), Err(Error::BadHeader));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok((h, p)) = Header::parse(&b) {
            let mut again = Vec::new();
            h.emit(p, &mut again).unwrap();
            let (h2, p2) = Header::parse(&again).unwrap();
            prop_assert_eq!(h2, h);
            prop_assert_eq!(p2, p);
        }
        let _ = gtpu::decap_frame(&b);
        let _ = gtpu::parse_error_indication(&b);
    }
}
