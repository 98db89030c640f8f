//! The state journal decoder (`keyserver::journal`): never panics on any file.
#![no_main]

use keyserver::journal::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::decode(data) {
        let again = Snapshot::decode(&s.encode()).expect("re-encoded journal decodes");
        assert_eq!(again.pairs.len(), s.pairs.len());
        assert_eq!(again.revoked, s.revoked);
    }
});
