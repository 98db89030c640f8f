//! The key server update codec (`keyserver::proto`): parsing never panics, and what
//! parses re-encodes to an update that parses to the same value.
#![no_main]

use keyserver::proto::Update;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = Update::parse(data) {
        let again = Update::parse(&u.encode()).expect("re-encoded update parses");
        assert_eq!(again, u);
    }
});
