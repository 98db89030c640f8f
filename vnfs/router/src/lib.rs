//! IPv4/IPv6 router VNF (issue 2).
#![no_std]
