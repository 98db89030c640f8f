//! Validation placeholder.
use std::path::Path;
/// Validate.
pub fn validate(_p: &Path) -> crate::Result<String> { Ok(String::new()) }
