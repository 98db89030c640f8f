//! Traffic and subscriber generator: templated streams, payload signatures for loss,
//! reordering and latency, RFC 2544 throughput search, pcap record/replay (issue 4);
//! PPPoE/IPoE subscriber emulation (`subscribers`, issue 8).
//!
//! * [`profile`]: streams in TOML/YAML; [`stream`]: frame templates and field
//!   variation; [`gen`]: paced transmit; [`sig`]: the tail signature; [`rx`]: loss,
//!   reordering, duplicates, latency (HDR histogram); [`rfc2544`]: §26 benchmarks;
//!   [`replay`]: pcap replay at a rate and capture; [`report`]: JSON + HTML/SVG;
//!   [`run`]: the polling loop and a port-pair trial runner.

pub mod gen;
pub mod profile;
pub mod replay;
pub mod report;
pub mod rfc2544;
pub mod run;
pub mod rx;
pub mod sig;
pub mod stream;
pub mod subscribers;

pub use gen::Generator;
pub use profile::{Profile, StreamSpec};
pub use rx::Receiver;
pub use stream::Stream;
