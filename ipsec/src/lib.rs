//! ESP (RFC 4303) with AES-GCM (RFC 4106), SAD/SPD, anti-replay: see issue 5.
#![no_std]
