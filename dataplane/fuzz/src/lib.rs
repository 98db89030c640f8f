//! Shared drivers for the `dataplane` fuzz targets: one target per protocol parser
//! in `fuzz_targets/`, all calling into [`exercise`]. Run them with `scripts/fuzz`.

pub mod exercise;
