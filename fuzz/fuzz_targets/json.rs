//! Differential fuzzing of the core's JSON reader against serde_json over arbitrary bytes: the
//! same texts accepted, the same values (numbers to the bit), and `invalid_json` from the
//! validators exactly where serde_json rejects the text.
#![no_main]

use jobs_core::validate::{Kind, json, validate_any};
use jobs_core::{Code, Timestamp};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_u64() == y.as_u64()
                && x.as_i64() == y.as_i64()
                && x.is_f64() == y.is_f64()
                && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = json::parse_value(data).map(Value::from);
    let theirs = serde_json::from_slice::<Value>(data);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert!(same(a, b), "values differ: ours {a:?}, serde_json {b:?}"),
        (Err(_), Err(_)) => {}
        _ => panic!("verdicts differ: ours {ours:?}, serde_json {theirs:?}"),
    }
    for kind in [Kind::Record, Kind::Create] {
        let invalid_json = match validate_any(kind, data, Timestamp::MIN) {
            Ok(_) => false,
            Err(issues) => issues.len() == 1 && issues[0].code == Code::InvalidJson && issues[0].path.is_empty(),
        };
        assert_eq!(invalid_json, theirs.is_err(), "{kind:?}");
    }
});
