//! Differential tests of `json_len` (the exact length of serde_json's compact text, computed
//! without serde_json's writer) against `serde_json::to_string(..).len()`.

use jobs_core::json_len::{f64_len, value_len};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

#[track_caller]
fn check_f64(f: f64) {
    let text = serde_json::to_string(&f).unwrap_or_default();
    assert_eq!(f64_len(f), text.len(), "{:#018x} = {f:e}: serde_json writes {text}", f.to_bits());
}

/// Where the length changes: both neighbours of every power of ten and of every power of two
/// (the asymmetric intervals), every subnormal scale, the fixed/scientific switch, zero.
#[test]
fn edges() {
    let next = |f: f64| f64::from_bits(f.to_bits() + 1);
    let prev = |f: f64| f64::from_bits(f.to_bits() - 1);
    for e in -330..=310 {
        let f = format!("1e{e}").parse::<f64>().unwrap_or(0.0);
        if f > 0.0 && f.is_finite() {
            for g in [prev(prev(f)), prev(f), f, next(f), next(next(f))] {
                check_f64(g);
                check_f64(-g);
            }
        }
    }
    for biased in 0..2047u64 {
        let f = f64::from_bits(biased << 52);
        for g in [f, next(f), next(next(f))] {
            check_f64(g);
        }
        if biased > 0 {
            check_f64(prev(f));
        }
    }
    for bits in 0..5000u64 {
        check_f64(f64::from_bits(bits));
    }
    for f in [0.0, -0.0, f64::MAX, f64::MIN, f64::MIN_POSITIVE, f64::EPSILON, 0.1, 0.2, 0.3, 1.0 / 3.0] {
        check_f64(f);
    }
    for i in 0..2000 {
        check_f64(f64::from(i) / 8.0);
        check_f64(f64::from(i) * 1e13);
        check_f64(9007199254740992.0 + f64::from(i) * 2.0);
    }
}

/// Random doubles (xorshift; the proptest below adds shrinking for any failure). Run once with
/// 1,000,000 (2.5 minutes unoptimised): no difference.
#[test]
fn random_bits() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_finite() {
            check_f64(f);
        }
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|u| Value::Number(u.into())),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        any::<u64>().prop_filter_map("finite", |b| Number::from_f64(f64::from_bits(b)).map(Value::Number)),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        "[a\"\\\\/\u{0}-\u{1f}\u{7f}é😀 ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a\"\\\\\u{0}-\u{1f}é]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn f64_same_as_serde_json(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        prop_assume!(f.is_finite());
        check_f64(f);
    }

    #[test]
    fn value_same_as_serde_json(v in arb_value()) {
        let text = serde_json::to_string(&v).unwrap_or_default();
        prop_assert_eq!(value_len(&v.clone().into()), text.len(), "{}", text);
    }
}
