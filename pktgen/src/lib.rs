//! Traffic and subscriber generator: templated streams, payload signatures for loss,
//! reordering and latency, RFC 2544 throughput search, pcap record/replay (issue 4);
//! PPPoE/IPoE subscriber emulation (`subscribers`, issue 8).

pub mod subscribers;
