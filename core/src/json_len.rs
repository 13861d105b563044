//! The exact length of serde_json's compact text for a value, without serde_json's writer.
//!
//! Why not count what `serde_json::to_writer` writes: its float formatter (zmij) carries a
//! 17 KB table of powers of ten, the largest single item in the WASM package (BENCHMARKS.md
//! "## WASM"), only to measure metadata against its 32 KiB limit. Here a float's length comes
//! from its shortest round-trip digits, found by the exact free-format algorithm (Steele &
//! White / Dragon4, as `core::fmt` did before Grisu) on a small fixed-size bignum: slow per
//! float (microseconds), but it only runs for metadata near the limit. `core/tests/json.rs`
//! holds every function here to `serde_json::to_string(..).len()` over random bits.

use serde_json::{Map, Number, Value};

/// Length of `serde_json::to_string(value)`.
pub fn value_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => number_len(n),
        Value::String(s) => str_len(s),
        Value::Array(items) => 2 + items.len().saturating_sub(1) + items.iter().map(value_len).sum::<usize>(),
        Value::Object(map) => map_len(map),
    }
}

/// Length of `serde_json::to_string(map)`.
pub fn map_len(map: &Map<String, Value>) -> usize {
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
    let (n, e) = shortest(f.abs());
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

/// The shortest digits that read back as `f` (finite, > 0): their count and the decimal
/// exponent of the first (`f ≈ d.ddd × 10^e`). Free-format digit generation on exact
/// integers: `mant / scale` is the value, `minus` and `plus` the distances to the ends of the
/// interval that rounds to it (ends included when the significand is even).
#[inline(never)]
fn shortest(f: f64) -> (usize, i32) {
    let bits = f.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    // The value is mant * 2^exp, with mant doubled (quadrupled at a power of two, where the
    // gap below is half the gap above) so the half-gaps are whole.
    // (As zmij and `core::fmt` do, the smallest normal counts as a power of two too.)
    let (mant, minus, plus, exp) = if biased == 0 {
        (frac << 1, 1, 1, -1075)
    } else if frac == 0 {
        (1 << 54, 1, 2, biased - 1077)
    } else {
        ((frac | (1 << 52)) << 1, 1, 1, biased - 1076)
    };
    let inclusive = frac & 1 == 0;
    // Estimate of the decimal exponent (never above the true one, at most one below).
    let high = mant + plus;
    let nbits = 64 - i64::from((high - 1).leading_zeros());
    let mut k = (((nbits + i64::from(exp)) * 1_292_913_986) >> 32) as i32;

    let mut m = Big::from(mant);
    let mut lo = Big::from(minus);
    let mut hi = Big::from(plus);
    let mut scale = Big::from(1);
    if exp < 0 {
        scale.shl(exp.unsigned_abs());
    } else {
        for b in [&mut m, &mut lo, &mut hi] {
            b.shl(exp.unsigned_abs());
        }
    }
    if k >= 0 {
        scale.mul_pow10(k.unsigned_abs());
    } else {
        for b in [&mut m, &mut lo, &mut hi] {
            b.mul_pow10(k.unsigned_abs());
        }
    }
    // `below(a, b)`: a < b, or a <= b when the ends of the interval read back as `f`.
    let below = |a: &Big, b: &Big| match a.cmp(b) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => inclusive,
        std::cmp::Ordering::Greater => false,
    };
    if below(&scale, &m.sum(&hi)) {
        k += 1;
    } else {
        for b in [&mut m, &mut lo, &mut hi] {
            b.mul_small(10);
        }
    }
    let mut buf = [0u8; 24];
    let mut n = 0;
    let (down, up) = loop {
        let mut d = 0u8;
        while m.cmp(&scale) != std::cmp::Ordering::Less {
            m.sub(&scale);
            d += 1;
        }
        if let Some(slot) = buf.get_mut(n) {
            *slot = d;
        }
        n += 1;
        let down = below(&m, &lo);
        let up = below(&scale, &m.sum(&hi));
        if down || up || n >= buf.len() {
            break (down, up);
        }
        for b in [&mut m, &mut lo, &mut hi] {
            b.mul_small(10);
        }
    };
    if up
        && (!down || {
            m.shl(1);
            m.cmp(&scale) != std::cmp::Ordering::Less
        })
    {
        // Round the last digit up; all nines become 1 at the next power of ten.
        let mut i = n;
        loop {
            if i == 0 {
                buf[0] = 1;
                n = 1;
                k += 1;
                break;
            }
            i -= 1;
            if buf[i] != 9 {
                buf[i] += 1;
                n = i + 1;
                break;
            }
        }
    }
    while n > 1 && buf.get(n - 1) == Some(&0) {
        n -= 1;
    }
    (n, k - 1)
}

/// An unsigned integer of 40 × 32 bits, enough for any double scaled as above: the largest
/// is below 2^1132 (a subnormal's significand, 2^54, times 10^324 and one more 10). On the
/// heap so that the compiler cannot unroll the loops over it (this is cold code; unrolled,
/// it was 3 KB more of the WASM package).
#[derive(Clone)]
struct Big {
    limbs: Vec<u32>,
}

impl Big {
    fn from(v: u64) -> Big {
        let mut limbs = vec![0; 40];
        limbs[0] = v as u32;
        limbs[1] = (v >> 32) as u32;
        Big { limbs }
    }

    #[inline(never)]
    fn mul_small(&mut self, x: u32) {
        let mut carry = 0u64;
        for l in &mut self.limbs {
            let v = u64::from(*l) * u64::from(x) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
    }

    fn mul_pow10(&mut self, mut n: u32) {
        while n >= 9 {
            self.mul_small(1_000_000_000);
            n -= 9;
        }
        self.mul_small(10u32.pow(n));
    }

    fn shl(&mut self, mut n: u32) {
        while n >= 31 {
            self.mul_small(1 << 31);
            n -= 31;
        }
        self.mul_small(1 << n);
    }

    #[inline(never)]
    fn sum(&self, other: &Big) -> Big {
        let mut out = self.clone();
        let mut carry = 0u64;
        for (a, b) in out.limbs.iter_mut().zip(&other.limbs) {
            let v = u64::from(*a) + u64::from(*b) + carry;
            *a = v as u32;
            carry = v >> 32;
        }
        out
    }

    /// `self -= other`; the caller has checked `self >= other`.
    #[inline(never)]
    fn sub(&mut self, other: &Big) {
        let mut borrow = false;
        for (a, b) in self.limbs.iter_mut().zip(&other.limbs) {
            let (v, b1) = a.overflowing_sub(*b);
            let (v, b2) = v.overflowing_sub(u32::from(borrow));
            *a = v;
            borrow = b1 || b2;
        }
    }

    #[inline(never)]
    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        self.limbs.iter().rev().cmp(other.limbs.iter().rev())
    }
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
