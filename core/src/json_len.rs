//! The exact length of serde_json's compact text for a value, without serde_json's writer.
//!
//! Why not count what `serde_json::to_writer` writes: its float formatter (zmij) carries a
//! 17 KB table of powers of ten, the largest single item in the WASM package (BENCHMARKS.md
//! "## WASM"), only to measure metadata against its 32 KiB limit. Here a float's length comes
//! from its shortest round-trip digits ([`float::shortest`], exact, on a small bignum): slow
//! per float (microseconds), but it only runs for metadata near the limit. `core/tests/json.rs`
//! holds every function here to `serde_json::to_string(..).len()` over random bits.

use crate::float;
use crate::tree::{Json, Object};
use serde_json::Number;

/// Length of `serde_json::to_string(value)`.
pub fn value_len(value: &Json) -> usize {
    match value {
        Json::Null | Json::Bool(true) => 4,
        Json::Bool(false) => 5,
        Json::Number(n) => number_len(n),
        Json::String(s) => str_len(s),
        Json::Array(items) => 2 + items.len().saturating_sub(1) + items.iter().map(value_len).sum::<usize>(),
        Json::Object(map) => map_len(map),
    }
}

/// Length of `serde_json::to_string(map)`.
pub fn map_len(map: &Object) -> usize {
    // Braces, a colon per member and a comma between members.
    2 + map.len() * 2 - usize::from(!map.is_empty()) + map.iter().map(|(k, v)| str_len(k) + value_len(v)).sum::<usize>()
}

/// A string with its quotes and serde_json's escapes: `\"`, `\\`, the five short control
/// escapes (`\b \t \n \f \r`), and `\u00XX` for the other bytes below 0x20. Nothing else
/// (not DEL, not non-ASCII) is escaped.
pub fn str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
}

pub fn number_len(n: &Number) -> usize {
    if let Some(u) = n.as_u64() {
        digits(u)
    } else if let Some(i) = n.as_i64() {
        1 + digits(i.unsigned_abs())
    } else {
        f64_len(n.as_f64().unwrap_or(0.0))
    }
}

fn digits(mut u: u64) -> usize {
    let mut n = 1;
    while u >= 10 {
        u /= 10;
        n += 1;
    }
    n
}

/// Length of serde_json's text for a float: `null` when not finite, else zmij's shortest
/// round-trip form: fixed notation for decimal exponents -5..=15 (`0.0001`, `1.5`,
/// `1000000000000000.0`, always with a fraction), scientific otherwise (
/// `1e+16`, `1.5e-7`, `5e-324`: a sign always, no padding).
pub fn f64_len(f: f64) -> usize {
    if !f.is_finite() {
        return 4;
    }
    let sign = usize::from(f.is_sign_negative());
    if f == 0.0 {
        return sign + 3;
    }
    let (n, e) = float::shortest(f.abs());
    let n = n as i32;
    let len = if (-5..=15).contains(&e) {
        if n - 1 <= e {
            e + 3 // 1234e7 -> 12340000000.0
        } else if e >= 0 {
            n + 1 // 1234e-2 -> 12.34
        } else {
            1 - e + n // 1234e-6 -> 0.001234
        }
    } else {
        let exp_digits = if e.abs() >= 100 {
            3
        } else if e.abs() >= 10 {
            2
        } else {
            1
        };
        n + i32::from(n > 1) + 2 + exp_digits
    };
    sign + len as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_floats() {
        for f in [
            1.5,
            0.1,
            1e15,
            1e16,
            123456789012345680.0,
            1e-5,
            1e-6,
            1.5e-7,
            5e-324,
            1e-323,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from_bits(0x000f_ffff_ffff_ffff),
            9007199254740993.0,
            1e23,
            -0.0,
            0.3,
            2f64.powi(-1074) * 3.0,
        ] {
            for f in [f, -f] {
                let text = serde_json::to_string(&f).unwrap_or_default();
                assert_eq!(f64_len(f), text.len(), "{f:e} -> {text}");
            }
        }
    }
}
