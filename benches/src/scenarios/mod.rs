//! Bench scenarios. Each is `fn(&Params) -> anyhow::Result<Report>`, registered in
//! [`SCENARIOS`].

use crate::{Params, Report};

pub mod l3fwd;

pub type ScenarioFn = fn(&Params) -> anyhow::Result<Report>;

/// Registered scenarios: (name, description, function).
pub const SCENARIOS: &[(&str, &str, ScenarioFn)] = &[
    (
        "l3fwd-small",
        "router pipeline, 16 routes, mem rings",
        l3fwd::l3fwd_small,
    ),
    (
        "l3fwd-bgp",
        "router pipeline, 1M BGP-like prefixes, random destinations",
        l3fwd::l3fwd_bgp,
    ),
];
