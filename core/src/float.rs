//! Exact float helpers on a small bignum, for the two places that need exactness without the
//! standard library's or serde_json's big tables (BENCHMARKS.md "## WASM"): the shortest
//! round-trip digits of a double ([`crate::json_len`]: the length of serde_json's text), and
//! the powers of ten the JSON reader scales by, rounded as the literals `1e23` ... `1e308` are.

use std::sync::OnceLock;

/// 10^k rounded to the nearest double, for k <= 308 (`None` above). Up to 10^22 the powers
/// are exact and kept as literals; the rest are made once, on first use (a few reads of
/// numbers with large exponents), instead of carrying 2.3 KB of table in the WASM package.
pub(crate) fn pow10(k: u32) -> Option<f64> {
    #[rustfmt::skip]
    const EXACT: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    static LARGE: OnceLock<Vec<f64>> = OnceLock::new();
    match EXACT.get(k as usize) {
        Some(&p) => Some(p),
        None => LARGE.get_or_init(|| (23..=308).map(pow10_rounded).collect()).get(k as usize - 23).copied(),
    }
}

/// 10^k (k >= 20) rounded to nearest, ties to even: its top 64 bits with a sticky bit for
/// the rest (so `as f64` rounds exactly as the whole number would), times 2^shift.
#[inline(never)]
fn pow10_rounded(k: u32) -> f64 {
    let mut b = Big::from(1);
    b.mul_pow10(k);
    let bits = b.bits();
    let shift = bits.saturating_sub(64);
    let mut m = 0u64;
    for j in 0..64 {
        m |= u64::from(b.bit(shift + j)) << j;
    }
    if (0..shift).any(|i| b.bit(i)) {
        m |= 1;
    }
    (m as f64) * f64::from_bits(u64::from(shift + 1023) << 52)
}

/// The shortest digits that read back as `f` (finite, > 0): their count and the decimal
/// exponent of the first (`f ≈ d.ddd × 10^e`). Free-format digit generation on exact
/// integers: `mant / scale` is the value, `minus` and `plus` the distances to the ends of the
/// interval that rounds to it (ends included when the significand is even).
#[inline(never)]
pub(crate) fn shortest(f: f64) -> (usize, i32) {
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
    fn bit(&self, i: u32) -> bool {
        self.limbs.get((i / 32) as usize).is_some_and(|l| l >> (i % 32) & 1 == 1)
    }

    fn bits(&self) -> u32 {
        (0..self.limbs.len() as u32 * 32).rev().find(|&i| self.bit(i)).map_or(0, |i| i + 1)
    }

    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        self.limbs.iter().rev().cmp(other.limbs.iter().rev())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_ten_are_the_literals() {
        for k in 0..=308 {
            let literal: f64 = format!("1e{k}").parse().unwrap_or(f64::NAN);
            assert_eq!(pow10(k).map(f64::to_bits), Some(literal.to_bits()), "1e{k}");
        }
        assert_eq!(pow10(309), None);
        assert_eq!(pow10(u32::MAX), None);
    }
}
