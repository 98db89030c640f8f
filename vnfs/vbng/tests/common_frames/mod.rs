//! A minimal IPv4/UDP datagram shared by the CUPS and graph integration tests.

/// IPv4 (RFC 791, header checksum set) + UDP (RFC 768, checksum 0: none) with 20
/// zero payload bytes, from `src:sport` to `dst:dport`.
pub fn udp(src: u32, dst: u32, sport: u16, dport: u16) -> Vec<u8> {
    let mut v = vec![0u8; 48];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&48u16.to_be_bytes());
    v[8] = 64;
    v[9] = 17;
    v[12..16].copy_from_slice(&src.to_be_bytes());
    v[16..20].copy_from_slice(&dst.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&v[..20]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dport.to_be_bytes());
    v[24..26].copy_from_slice(&28u16.to_be_bytes());
    v
}
