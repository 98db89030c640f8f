//! Route files: the text format the router loads its (up to 1M-prefix) tables from.
//!
//! One route per line: `PREFIX/LEN NEXTHOP_INDEX`, fields separated by spaces or
//! tabs, IPv4 and IPv6 mixed freely. `#` starts a comment that runs to the end of the
//! line; blank lines are ignored. Prefixes use the textual forms of RFC 4632 §3.1
//! (IPv4 CIDR) and RFC 4291 §2.3 / RFC 5952 (IPv6); host bits after the prefix length
//! must be zero, as `ip route` demands. The next hop is a decimal index that fits in
//! 24 bits (see [`super::NextHop`]).
//!
//! ```text
//! # default and a few specifics
//! 0.0.0.0/0        0
//! 10.0.0.0/8       1
//! 2001:db8::/32    2
//! 2001:db8:1::/48  3   # a customer
//! ```
//!
//! Every error names its 1-based line number.

use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use super::gen::{Route4, Route6};
use super::ipv4::Lpm4;
use super::ipv6::Lpm6;
use super::{LpmError, NextHop, MAX_NEXT_HOP};

/// One parsed route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    V4(Route4),
    V6(Route6),
}

impl fmt::Display for Route {
    /// Writes the route in route-file syntax (without a newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(r) => write!(f, "{}/{} {}", Ipv4Addr::from(r.addr), r.len, r.nh),
            Self::V6(r) => write!(f, "{}/{} {}", Ipv6Addr::from(r.addr), r.len, r.nh),
        }
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteErrorKind {
    /// The prefix has no `/LEN`.
    MissingLength,
    /// The address is neither IPv4 nor IPv6.
    BadAddress,
    /// The length is not a number or exceeds the address width.
    BadLength,
    /// Bits after the prefix length are set (e.g. `10.0.0.1/8`).
    HostBitsSet,
    /// No next-hop field.
    MissingNextHop,
    /// The next hop is not a decimal number.
    BadNextHop,
    /// The next hop does not fit in 24 bits.
    NextHopTooLarge,
    /// More fields than `PREFIX/LEN NEXTHOP`.
    TrailingText,
    /// The table refused the route (e.g. tbl8 groups exhausted).
    Table(LpmError),
}

impl fmt::Display for RouteErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLength => f.write_str("prefix has no /LEN"),
            Self::BadAddress => f.write_str("not an IPv4 or IPv6 address"),
            Self::BadLength => f.write_str("bad prefix length"),
            Self::HostBitsSet => f.write_str("host bits set after the prefix length"),
            Self::MissingNextHop => f.write_str("missing next-hop index"),
            Self::BadNextHop => f.write_str("next hop is not a decimal index"),
            Self::NextHopTooLarge => {
                write!(f, "next hop exceeds {MAX_NEXT_HOP} (24 bits)")
            }
            Self::TrailingText => f.write_str("unexpected text after the next hop"),
            Self::Table(e) => write!(f, "table refused the route: {e}"),
        }
    }
}

/// A route-file error with its 1-based line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteFileError {
    pub line: usize,
    pub kind: RouteErrorKind,
}

impl fmt::Display for RouteFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route file line {}: {}", self.line, self.kind)
    }
}

impl core::error::Error for RouteFileError {}

/// Parses one line; `Ok(None)` for blank and comment-only lines.
pub fn parse_line(line: &str) -> Result<Option<Route>, RouteErrorKind> {
    let text = line.split('#').next().unwrap_or("");
    let mut fields = text.split_ascii_whitespace();
    let Some(prefix) = fields.next() else {
        return Ok(None);
    };
    let (addr, len) = prefix
        .split_once('/')
        .ok_or(RouteErrorKind::MissingLength)?;
    let len: u8 = len.parse().map_err(|_| RouteErrorKind::BadLength)?;
    let nh = fields.next().ok_or(RouteErrorKind::MissingNextHop)?;
    if fields.next().is_some() {
        return Err(RouteErrorKind::TrailingText);
    }
    if !nh.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RouteErrorKind::BadNextHop);
    }
    let nh: NextHop = nh.parse().map_err(|_| RouteErrorKind::NextHopTooLarge)?;
    if nh > MAX_NEXT_HOP {
        return Err(RouteErrorKind::NextHopTooLarge);
    }
    if let Ok(a) = addr.parse::<Ipv4Addr>() {
        let a = u32::from(a);
        if len > 32 {
            return Err(RouteErrorKind::BadLength);
        }
        let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        if a & host != 0 {
            return Err(RouteErrorKind::HostBitsSet);
        }
        return Ok(Some(Route::V4(Route4 { addr: a, len, nh })));
    }
    if let Ok(a) = addr.parse::<Ipv6Addr>() {
        let a = u128::from(a);
        if len > 128 {
            return Err(RouteErrorKind::BadLength);
        }
        let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        if a & host != 0 {
            return Err(RouteErrorKind::HostBitsSet);
        }
        return Ok(Some(Route::V6(Route6 { addr: a, len, nh })));
    }
    Err(RouteErrorKind::BadAddress)
}

/// The routes of a route file, in order, each error tagged with its line.
pub fn iter_routes(text: &str) -> impl Iterator<Item = Result<Route, RouteFileError>> + '_ {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| match parse_line(l) {
            Ok(r) => r.map(Ok),
            Err(kind) => Some(Err(RouteFileError { line: i + 1, kind })),
        })
}

/// All routes of a route file, or the first error.
pub fn parse_routes(text: &str) -> Result<Vec<Route>, RouteFileError> {
    iter_routes(text).collect()
}

/// Loads a route file into the two tables. Stops at the first bad line (routes
/// before it stay loaded) and returns the number of IPv4 and IPv6 routes added.
pub fn load(text: &str, v4: &mut Lpm4, v6: &mut Lpm6) -> Result<(usize, usize), RouteFileError> {
    let (mut n4, mut n6) = (0, 0);
    for (i, line) in text.lines().enumerate() {
        let err = |kind| RouteFileError { line: i + 1, kind };
        match parse_line(line).map_err(err)? {
            None => {}
            Some(Route::V4(r)) => {
                v4.add(r.addr, r.len, r.nh)
                    .map_err(|e| err(RouteErrorKind::Table(e)))?;
                n4 += 1;
            }
            Some(Route::V6(r)) => {
                v6.add(r.addr, r.len, r.nh)
                    .map_err(|e| err(RouteErrorKind::Table(e)))?;
                n6 += 1;
            }
        }
    }
    Ok((n4, n6))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::lpm::gen;
    use crate::lpm::ipv4::Lpm4Config;
    use alloc::string::String;
    use core::fmt::Write;

    #[test]
    fn parses_both_families_comments_and_blank_lines() {
        let text = "# header\n\n0.0.0.0/0 0\n10.0.0.0/8\t1   # ten\n  2001:db8::/32 2\n::/0 3\n1.2.3.4/32 16777215\n";
        let r = parse_routes(text).unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(
            r[1],
            Route::V4(Route4 {
                addr: 0x0a00_0000,
                len: 8,
                nh: 1
            })
        );
        assert_eq!(
            r[2],
            Route::V6(Route6 {
                addr: 0x2001_0db8 << 96,
                len: 32,
                nh: 2
            })
        );
        assert_eq!(std::format!("{}", r[2]), "2001:db8::/32 2");
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, RouteErrorKind)] = &[
            ("10.0.0.0 1", RouteErrorKind::MissingLength),
            ("10.0.0.0/33 1", RouteErrorKind::BadLength),
            ("10.0.0.0/x 1", RouteErrorKind::BadLength),
            ("2001:db8::/129 1", RouteErrorKind::BadLength),
            ("10.0.0.1/8 1", RouteErrorKind::HostBitsSet),
            ("2001:db8::1/64 1", RouteErrorKind::HostBitsSet),
            ("10.0.0.0/8", RouteErrorKind::MissingNextHop),
            ("10.0.0.0/8 -1", RouteErrorKind::BadNextHop),
            ("10.0.0.0/8 0x10", RouteErrorKind::BadNextHop),
            ("10.0.0.0/8 16777216", RouteErrorKind::NextHopTooLarge),
            (
                "10.0.0.0/8 99999999999999999999",
                RouteErrorKind::NextHopTooLarge,
            ),
            ("10.0.0.0/8 1 2", RouteErrorKind::TrailingText),
            ("10.0.0.256/8 1", RouteErrorKind::BadAddress),
            ("banana/8 1", RouteErrorKind::BadAddress),
        ];
        for (line, kind) in cases {
            let text = std::format!("# ok\n1.0.0.0/8 1\n{line}\n2.0.0.0/8 2\n");
            let e = parse_routes(&text).unwrap_err();
            assert_eq!(
                e,
                RouteFileError {
                    line: 3,
                    kind: *kind
                },
                "{line}"
            );
            assert!(std::format!("{e}").contains("line 3"));
        }
    }

    #[test]
    fn generated_tables_roundtrip_and_load() {
        let mut text = String::new();
        let v4 = gen::bgp_like_v4(2000, 1);
        let v6 = gen::bgp_like_v6(2000, 1);
        for r in &v4 {
            writeln!(text, "{}", Route::V4(*r)).unwrap();
        }
        for r in &v6 {
            writeln!(text, "{}  # v6", Route::V6(*r)).unwrap();
        }
        let parsed = parse_routes(&text).unwrap();
        assert_eq!(parsed.len(), 4000);
        assert!(parsed
            .iter()
            .take(2000)
            .zip(&v4)
            .all(|(p, r)| *p == Route::V4(*r)));
        assert!(parsed
            .iter()
            .skip(2000)
            .zip(&v6)
            .all(|(p, r)| *p == Route::V6(*r)));
        let (mut t4, mut t6) = (Lpm4::new(), Lpm6::new());
        assert_eq!(load(&text, &mut t4, &mut t6), Ok((2000, 2000)));
        for r in &v4 {
            assert_eq!(t4.get(r.addr, r.len), Some(r.nh));
        }
        for r in &v6 {
            assert_eq!(t6.get(r.addr, r.len), Some(r.nh));
        }
    }

    #[test]
    fn load_reports_table_errors_with_line() {
        let mut t4 = Lpm4::with_config(Lpm4Config { tbl8_groups: 1 }).unwrap();
        let mut t6 = Lpm6::new();
        let text = "1.0.0.1/32 1\n1.0.1.1/32 2\n";
        assert_eq!(
            load(text, &mut t4, &mut t6),
            Err(RouteFileError {
                line: 2,
                kind: RouteErrorKind::Table(LpmError::TableFull(1))
            })
        );
        assert_eq!(t4.len(), 1);
    }
}
