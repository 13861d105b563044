//! Differential tests of the core's JSON reader (`validate::json`) against
//! `serde_json::from_slice::<Value>`: the same texts accepted, the same values to the bit, and
//! the validators' `invalid_json` verdict exactly where serde_json rejects the text.

use jobs_core::validate::{Kind, json, validate_any};
use jobs_core::{Code, Timestamp};
use proptest::prelude::*;
use serde_json::Value;

/// Equal values, numbers compared by kind and bits (`Number`'s `==` says `-0.0 == 0.0`).
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

#[track_caller]
fn check(text: &[u8]) {
    let ours = json::parse_value(text).map(Value::from);
    let theirs = serde_json::from_slice::<Value>(text);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert!(same(a, b), "{:?}: ours {a:?}, serde_json {b:?}", String::from_utf8_lossy(text)),
        (Err(_), Err(_)) => {}
        _ => panic!("{:?}: ours {ours:?}, serde_json {theirs:?}", String::from_utf8_lossy(text)),
    }
    // The validators say invalid_json exactly when the text is not JSON.
    let now = Timestamp::MIN;
    for kind in [Kind::Record, Kind::Create, Kind::Patch] {
        let invalid_json = match validate_any(kind, text, now) {
            Ok(_) => false,
            Err(issues) => issues.len() == 1 && issues[0].code == Code::InvalidJson && issues[0].path.is_empty(),
        };
        if kind != Kind::Patch {
            assert_eq!(invalid_json, theirs.is_err(), "{kind:?} {:?}", String::from_utf8_lossy(text));
        } else if theirs.is_err() {
            assert!(invalid_json, "patch {:?}", String::from_utf8_lossy(text));
        }
    }
}

#[test]
fn edges() {
    let cases: &[&str] = &[
        "0",
        "-0",
        "-0.0",
        "0.0",
        "1",
        "-1",
        "01",
        "-01",
        "1.",
        ".5",
        "1.e5",
        "1e",
        "1e+",
        "1e-",
        "-",
        "--1",
        "+1",
        "1e400",
        "-1e400",
        "1.0e-400",
        "1e-400",
        "-1e-400",
        "1e308",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "2.2250738585072014e-308",
        "4.9e-324",
        "2.4e-324",
        "1e-330",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "9223372036854775807",
        "9223372036854775808",
        "123456789012345678901234567890",
        "123456789012345678901234567890e-10",
        "123456789012345678901234567890.123e5",
        "0.123456789012345678901234567890",
        "1e2147483647",
        "1e2147483648",
        "0e2147483648",
        "1e-2147483648",
        "1e-99999999999",
        "-0e99999999999",
        "1E5",
        "1e05",
        "0.000000000000000000000000000001e330",
        "100000000000000000000000000000000000e300",
        "1.5x",
        "NaN",
        "Infinity",
        "true",
        "tru",
        "truex",
        "null",
        "nul",
        "false",
        "\"\"",
        "\"a\"",
        "\"\\u0000\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud83d\"",
        "\"\\ude00\"",
        "\"\\ud83d\\u0041\"",
        "\"\\ud83dx\"",
        "\"\\ud83d\\n\"",
        "\"\\uD83D\\uDE00\"",
        "\"\\u00e9\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
        "\"a\tb\"",
        "\"a\nb\"",
        "\"\u{7f}\"",
        "\"é\"",
        "\"unterminated",
        "[]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "[1,2]",
        " [ 1 , 2 ] ",
        "{}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{1:1}",
        "{\"a\":1,\"a\":2}",
        "{\"b\":1,\"a\":{\"c\":[null,true]}}",
        "{} x",
        "{}\n",
        "",
        " ",
        "\u{feff}{}",
        "{\"a\":1}}",
        "[[]]]",
        "\"\\u0041\"",
    ];
    for c in cases {
        check(c.as_bytes());
    }
    for bytes in [&b"\"\xff\""[..], b"\"\xc3\"", b"\xef\xbb\xbf{}", b"{\"a\xe9\":1}", b"[\"\xed\xa0\x80\"]", b"1\xff"] {
        check(bytes);
    }
}

#[test]
fn nesting_limit() {
    for depth in [1, 100, 126, 127, 128, 129, 500] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        check(arrays.as_bytes());
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        check(objects.as_bytes());
        // Under a top-level object, as the validators read it.
        let inside = format!("{{\"metadata\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        check(inside.as_bytes());
    }
}

/// Text that is JSON, almost JSON, or not: values with every spelling of numbers, strings and
/// whitespace, then sometimes a byte changed, inserted or removed.
fn arb_text() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        any::<f64>().prop_map(|f| format!("{f}")),
        "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?",
        "-?[0-9]{0,3}\\.?[0-9]{0,3}[eE]?[+-]?[0-9]{0,3}",
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("1.0e-400".to_owned()),
    ];
    let string = prop_oneof![
        "[a-z \u{e9}]{0,40}",
        ".{0,6}",
        "(\\\\[\"\\\\/bfnrtx]|\\\\u[0-9a-fA-F]{4}|\\\\u[dD][89abAB][0-9a-f]{2}(\\\\u[dD][c-fC-F][0-9a-f]{2})?|[a\u{e9}\u{1F600}])*",
    ]
    .prop_map(|s| format!("\"{s}\""));
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number,
        string.clone(),
    ];
    let ws = prop_oneof![Just(""), Just(""), Just(" "), Just("\n\t"), Just("\r ")];
    let value = leaf.prop_recursive(5, 48, 6, move |inner| {
        let ws = ws.clone();
        prop_oneof![
            prop::collection::vec((inner.clone(), ws.clone()), 0..6).prop_map(|items| {
                let body: Vec<String> = items.into_iter().map(|(v, w)| format!("{w}{v}{w}")).collect();
                format!("[{}]", body.join(","))
            }),
            prop::collection::vec((string.clone(), inner, ws), 0..6).prop_map(|members| {
                let body: Vec<String> = members.into_iter().map(|(k, v, w)| format!("{w}{k}{w}:{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    });
    let edit = prop_oneof![
        6 => Just(None),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Some((i, b, 0u8))),
        1 => (any::<prop::sample::Index>(), prop::sample::select(b"{}[],:\"\\ -.e0".to_vec())).prop_map(|(i, b)| Some((i, b, 1u8))),
        1 => any::<prop::sample::Index>().prop_map(|i| Some((i, 0, 2u8))),
    ];
    (value, edit).prop_map(|(text, edit)| {
        let mut bytes = text.into_bytes();
        if let Some((at, byte, how)) = edit {
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                2 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, byte),
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn same_as_serde_json(text in arb_text()) {
        check(&text);
    }

    #[test]
    fn same_as_serde_json_on_bytes(bytes in prop::collection::vec(prop::sample::select(b"{}[],:\"\\ 0123456789-+.eEtrufalsn\xff\xc3".to_vec()), 0..24)) {
        check(&bytes);
    }

    /// Long strings, so the eight-bytes-at-a-time scan meets every kind of byte at every offset.
    #[test]
    fn same_as_serde_json_on_strings(body in prop::collection::vec(prop::sample::select(b"abc \"\\/nu0\x01\x1f\x7f\x80\xc3\xa9\xff".to_vec()), 0..64)) {
        let mut text = b"[\"".to_vec();
        text.extend_from_slice(&body);
        text.extend_from_slice(b"\"]");
        check(&text);
        check(&text[1..]);
    }

    #[test]
    fn same_as_serde_json_as_a_job_field(text in arb_text()) {
        let mut doc = b"{\"metadata\":".to_vec();
        doc.extend_from_slice(&text);
        doc.push(b'}');
        check(&doc);
    }
}

/// The double the reader gives for one number, or `None` where it refuses the text.
fn read(text: &str) -> Option<f64> {
    json::parse_value(text.as_bytes()).ok().map(Value::from).and_then(|v| v.as_f64())
}

/// `str::parse` is the standard library's correctly rounded reader: an oracle that is not
/// serde_json. (It reads what JSON refuses too, and says infinity where the reader refuses.)
#[track_caller]
fn check_nearest(text: &str) {
    let expected = text.parse::<f64>().ok().filter(|f| f.is_finite());
    assert_eq!(read(text).map(f64::to_bits), expected.map(f64::to_bits), "{text}");
}

#[test]
fn numbers_are_the_nearest_double() {
    let max_plus_half = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";
    let half_min = format!(
        "0.{}24703282292062327208828439643411068618252990130716238221279284125033775363510437593264991818081799618989828234772285886546332835517796989819938739800539093906315035659515570226392290858392449105184435931802849936536152500319370457678249219365623669863658480757001585769269903706311928279558551332927834338409351978015531246597263579574622766465272827220056374006485499977096599470454020828166226237857393450736339007967761930577506740176324673600968951340535537458516661134223766678604162159680461914467291840300530057530849048765391711386591646239524912623653881879636239373280423891018672348497668235089863388587925628302755995657524455507255189313690836254779186948667994968324049705821028513185451396213837722826145437693412532098591327667236328125",
        "0".repeat(323)
    );
    let cases = [
        // Read wrongly before: one rounding too many (a tenth of Math.random() * 1000 was).
        "985.6906946328695",
        "212.91890726713459",
        "0.30000000000000004",
        "1.0715660391465826e-75",
        "1.603964615428183e143",
        "123456789012345678901234567890.123e5",
        // 1.7976931348623155e308 as PostgreSQL writes it back from a jsonb column: the CI
        // failure of 2026-11-27 (the server could not read a row it had written).
        "179769313486231550000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        max_plus_half,
        "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791.999",
        "2.2250738585072011e-308",
        "2.2250738585072012e-308",
        "2.2250738585072014e-308",
        "4.9406564584124654e-324",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        half_min.as_str(),
        "7.4109846876186982e-324",
        "1e-320",
        "1e23",
        "8.98846567431158e307",
        "9007199254740993",
        "9007199254740993.0",
        "9007199254740992.5",
        "18014398509481987e-1",
        "1e-22",
        "1e22",
        "4503599627370496.5",
        "4503599627370497.5",
        "2.0000000000000004440892098500626161694526672363281250000000000000000000000000000000000000000001",
        "2.000000000000000444089209850062616169452667236328125",
        "0.1e310",
        "0.000001e-318",
    ];
    for text in cases {
        check_nearest(text);
        check_nearest(&format!("-{text}"));
    }
    // Halfway cases with more digits than are kept, and a non-zero digit past them.
    let long_half = format!("{max_plus_half}{}", "0".repeat(900));
    check_nearest(&long_half);
    check_nearest(&format!("{}1", &long_half[..long_half.len() - 1]));
    check_nearest(&format!("{half_min}{}1", "0".repeat(900)));
    // Zeros before the digits that an exponent makes up for: the digits kept are counted
    // from the first that is not zero.
    let digits_of_half_min = half_min.trim_start_matches(['0', '.']);
    for tail in ["", "1", "00000000000000000000000000000000000000000000000001"] {
        check_nearest(&format!("0.{}{digits_of_half_min}{tail}e{}", "0".repeat(1_000), 1_000 - 323));
        check_nearest(&format!("0.{}{max_plus_half}{tail}e{}", "0".repeat(5_000), 5_000 + 309));
        check_nearest(&format!("0.{}{}{tail}e{}", "0".repeat(5_000), &max_plus_half[..300], 5_000 + 300));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Every double written the ways JSON text carries one reads back as itself: shortest
    /// digits (serde_json, JavaScript), every digit with no exponent (PostgreSQL's numeric).
    #[test]
    fn doubles_read_back_as_themselves(bits in any::<u64>(), small in -1e6f64..1e6) {
        for f in [f64::from_bits(bits), small] {
            if f.is_finite() {
                for text in [serde_json::to_string(&f).unwrap_or_default(), format!("{f:e}"), format!("{f}")] {
                    prop_assert_eq!(read(&text).map(f64::to_bits), Some(f.to_bits()), "{}", text);
                }
            }
        }
    }

    /// Any digits at any scale, as `str::parse` reads them.
    #[test]
    fn numbers_are_the_nearest_double_at_any_scale(
        text in "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,3})?",
        long in "[1-9][0-9]{700,820}",
        exp in -1200i32..400,
        zeros in 0usize..3000,
    ) {
        check_nearest(&text);
        check_nearest(&format!("{long}e{exp}"));
        check_nearest(&format!("0.{long}e{exp}"));
        check_nearest(&format!("0.{}{long}e{}", "0".repeat(zeros), exp + zeros as i32));
    }
}
