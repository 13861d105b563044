//! Fuzzes validation of every input kind over arbitrary bytes: it must never panic, and a
//! normalised record must validate to itself.
#![no_main]

use jobs_core::Timestamp;
use jobs_core::validate::{Kind, validate_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::from_millis(1_717_200_000_000);
    for kind in [Kind::Record, Kind::Create, Kind::Patch] {
        if let Ok(out) = validate_json(kind, data, now) {
            if kind != Kind::Create {
                let bytes = serde_json::to_vec(&out).expect("serialisable");
                let again = validate_json(Kind::Record, &bytes, now).expect("normalised output stays valid");
                assert_eq!(again, out, "shaping is idempotent");
            }
        }
    }
});
