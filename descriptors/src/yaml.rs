//! Small helpers to build ordered YAML documents (serde_norway `Mapping` keeps insertion
//! order, so descriptors read in the order the specs list their fields).

use serde_norway::{Mapping, Value};

/// Build a YAML mapping in insertion order: `ymap! { "k" => v, ... }`.
macro_rules! ymap {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut m = serde_norway::Mapping::new();
        $( m.insert(serde_norway::Value::from($k), serde_norway::Value::from($v)); )*
        serde_norway::Value::Mapping(m)
    }};
}

/// A YAML sequence.
pub fn list<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Value {
    Value::Sequence(items.into_iter().map(Into::into).collect())
}

/// Add `k: v` to a mapping value (no-op on non-mappings).
pub fn push(m: &mut Value, k: &str, v: impl Into<Value>) {
    if let Value::Mapping(m) = m {
        m.insert(Value::from(k), v.into());
    }
}

/// A single-key mapping `{k: v}` (TOSCA requirement / policy list items).
pub fn single(k: impl Into<Value>, v: impl Into<Value>) -> Value {
    let mut m = Mapping::new();
    m.insert(k.into(), v.into());
    Value::Mapping(m)
}
