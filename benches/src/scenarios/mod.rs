//! Bench scenarios. Each is `fn(&Params) -> anyhow::Result<Report>`, registered in
//! [`SCENARIOS`].

use crate::{Params, Report};

pub type ScenarioFn = fn(&Params) -> anyhow::Result<Report>;

/// Registered scenarios: (name, description, function).
pub const SCENARIOS: &[(&str, &str, ScenarioFn)] = &[];
