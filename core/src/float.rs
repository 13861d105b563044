//! Exact float helpers on a small bignum, for the two places that need exactness without the
//! standard library's or serde_json's big tables (BENCHMARKS.md "## WASM"): the shortest
//! round-trip digits of a double ([`crate::json_len`]: the length of serde_json's text), and
//! the double nearest to a decimal number (the JSON reader, off its fast path).

use std::cmp::Ordering;

/// The powers of ten a double holds exactly (Clinger's fast path).
#[rustfmt::skip]
pub(crate) const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A number the embedding reads for the core: its digits, fraction and exponent as JSON writes
/// them (ASCII, no sign), to the nearest double, or `None` when that is infinite.
#[cfg(feature = "host-numbers")]
pub type HostNumbers = fn(&[u8]) -> Option<f64>;

#[cfg(feature = "host-numbers")]
static HOST: std::sync::OnceLock<HostNumbers> = std::sync::OnceLock::new();

/// With the `host-numbers` feature (jobs-wasm's build only): the JSON reader's numbers off its
/// fast path are read by `host` instead of [`nearest`], so the package does not carry it
/// (1.1 KB gzipped): the browser's `Number`, which is the conversion `JSON.parse` uses.
/// Install it once, before any JSON is read; later calls change nothing. Until then such
/// numbers read as out of range.
#[cfg(feature = "host-numbers")]
pub fn use_host_numbers(host: HostNumbers) {
    let _ = HOST.set(host);
}

/// The double nearest to a JSON number's text (see [`nearest`]), as the reader gets it: the
/// embedding's conversion when built with `host-numbers`, else [`nearest`].
pub(crate) fn read(text: &[u8]) -> Option<f64> {
    #[cfg(feature = "host-numbers")]
    return HOST.get().and_then(|host| host(text));
    #[cfg(not(feature = "host-numbers"))]
    nearest(text)
}

/// The double nearest to a JSON number (`text`: its digits, fraction and exponent, without
/// the sign), ties to even, as `str::parse` gives it; `None` when that is infinite. A guess
/// from the first 19 digits (a few units in the last place away at most) steps to the double
/// whose rounding interval holds the exact value, comparing it with the interval's ends as
/// whole numbers in a bignum sized to them. (Comparing in 128 bits where both fit was 1.8x
/// faster for 17-digit numbers and 0.3 KB more of the WASM package.)
#[cfg_attr(feature = "host-numbers", allow(dead_code))]
#[inline(never)]
pub(crate) fn nearest(text: &[u8]) -> Option<f64> {
    let mut d = Decimal { text, lead: 0, kept: 0, sticky: false, exp: 0 };
    // Digits; zeros before the first that is not; digits before the point; the first 19
    // significant digits as a number.
    let (mut n, mut lead, mut point) = (0, 0, None);
    let mut first19 = 0u64;
    let mut rest = text.iter();
    for &c in rest.by_ref() {
        match c {
            b'.' => point = Some(n),
            b'0'..=b'9' => {
                if lead == n && c == b'0' {
                    lead += 1;
                } else if n - lead < 19 {
                    first19 = first19 * 10 + u64::from(c - b'0');
                }
                n += 1;
                d.sticky |= n - lead > Decimal::KEPT && c != b'0';
            }
            _ => break,
        }
    }
    let (mut e, mut negative) = (0i64, false);
    for &c in rest {
        match c {
            b'-' => negative = true,
            b'0'..=b'9' => e = (e * 10 + i64::from(c - b'0')).min(1 << 40),
            _ => {}
        }
    }
    let e = if negative { -e } else { e };
    let p = point.unwrap_or(n) as i64;
    // The place of the first digit that is not zero: the value is below ten times that.
    let first = p - lead as i64 - 1 + e;
    if lead == n || first < -324 {
        return Some(0.0);
    }
    if first >= 309 {
        return None;
    }
    // The value is about first19 × 10^e19; that as a double is the first guess.
    let e19 = first + 1 - (n - lead).min(19) as i64;
    let mut f = first19 as f64;
    let mut left = e19.unsigned_abs();
    while left > 0 {
        let pow = EXACT_POW10[left.min(22) as usize];
        f = if e19 > 0 { f * pow } else { f / pow };
        left -= left.min(22);
    }
    let mut f = f.min(f64::MAX);
    d.kept = n.min(lead + Decimal::KEPT);
    d.lead = lead;
    d.exp = e + p - d.kept as i64 - i64::from(d.sticky);
    // The guess is a few units in the last place away: a bound, so that nothing unforeseen
    // can keep the search stepping.
    for _ in 0..64 {
        let bits = f.to_bits();
        let biased = (bits >> 52) as i32;
        let frac = bits & ((1 << 52) - 1);
        let (m, q) = if biased == 0 { (frac, -1074) } else { (frac | (1 << 52), biased - 1075) };
        // The ends of f's interval: halfway to the next double up, and down (a quarter of
        // the way at a power of two, where the gap below is half the gap above).
        let up = f64::from_bits(bits + 1);
        match d.compare(2 * m + 1, q - 1) {
            Ordering::Greater => f = up,
            Ordering::Equal => return Some(if m & 1 == 1 { up } else { f }).filter(|f| f.is_finite()),
            Ordering::Less if f == 0.0 => return Some(f),
            Ordering::Less => {
                let (low, at) = if frac == 0 && biased > 1 { (4 * m - 1, q - 2) } else { (2 * m - 1, q - 1) };
                let down = f64::from_bits(bits - 1);
                match d.compare(low, at) {
                    Ordering::Less => f = down,
                    Ordering::Equal => return Some(if m & 1 == 1 { down } else { f }),
                    Ordering::Greater => return Some(f),
                }
            }
        }
        if f.is_infinite() {
            return None;
        }
    }
    debug_assert!(false, "no double found near {:?}", String::from_utf8_lossy(text));
    Some(f)
}

/// A decimal number as `digits × 10^exp`: the first `kept` digits of `text` (`lead` zeros,
/// then at most KEPT more), then a 1 when `sticky` (digits past them that are not all zero).
/// A halfway point between two doubles has at most 767 significant digits, so digits past
/// KEPT significant ones only count as being there.
struct Decimal<'a> {
    text: &'a [u8],
    lead: usize,
    kept: usize,
    sticky: bool,
    exp: i64,
}

impl Decimal<'_> {
    const KEPT: usize = 800;

    /// The digits as a whole number, in a bignum of at least `bits` bits.
    fn digits(&self, bits: i64) -> Big {
        let mut b = Big::sized(0, bits);
        // Nine digits at a time; when sticky, the digit after the kept ones counts as a 1.
        let mut left = self.kept + usize::from(self.sticky);
        let (mut chunk, mut pow) = (0, 1);
        for &c in self.text {
            if left == 0 {
                break;
            }
            if c.is_ascii_digit() {
                let d = if left == 1 && self.sticky { 1 } else { c - b'0' };
                chunk = chunk * 10 + u32::from(d);
                pow *= 10;
                left -= 1;
                if pow == 1_000_000_000 {
                    b.mul_add(pow, chunk);
                    (chunk, pow) = (0, 1);
                }
            }
        }
        b.mul_add(pow, chunk);
        b
    }

    /// This number against `half × 2^at`, both made whole numbers.
    fn compare(&self, half: u64, at: i32) -> Ordering {
        let at = i64::from(at);
        let left = bits((self.kept - self.lead) as i64 + 1) + bits(self.exp) - at.min(0);
        let right = 64 + bits(-self.exp) + at.max(0);
        let mut l = self.digits(left.max(right));
        let mut r = Big::sized(half, left.max(right));
        l.mul_pow10(self.exp.max(0) as u32);
        r.mul_pow10(self.exp.min(0).unsigned_abs() as u32);
        r.shl(at.max(0) as u32);
        l.shl(at.min(0).unsigned_abs() as u32);
        l.cmp(&r)
    }
}

/// Bits enough for 10^n (log2 10 < 10/3); 1 for n <= 0.
fn bits(n: i64) -> i64 {
    n.max(0) * 10 / 3 + 1
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

/// An unsigned integer in a fixed number of 32-bit limbs, sized by its maker: 40 hold any
/// double scaled as in [`shortest`] (the largest is below 2^1132: a subnormal's significand,
/// 2^54, times 10^324 and one more 10). On the heap so that the compiler cannot unroll the
/// loops over it (this is cold code; unrolled, it was 3 KB more of the WASM package).
#[derive(Clone)]
struct Big {
    limbs: Vec<u32>,
}

impl Big {
    /// 40 limbs.
    fn from(v: u64) -> Big {
        Big::sized(v, 38 * 32)
    }

    /// `v` in limbs enough for `bits` bits and one to spare.
    fn sized(v: u64, bits: i64) -> Big {
        let mut limbs = vec![0; (bits.max(64) / 32 + 2) as usize];
        limbs[0] = v as u32;
        limbs[1] = (v >> 32) as u32;
        Big { limbs }
    }

    fn mul_small(&mut self, x: u32) {
        self.mul_add(x, 0);
    }

    /// `self × x + a`.
    #[inline(never)]
    fn mul_add(&mut self, x: u32, a: u32) {
        let mut carry = u64::from(a);
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

    /// `self × 2^n`: whole limbs moved up, then the rest of the bits.
    fn shl(&mut self, n: u32) {
        let (len, k) = (self.limbs.len(), (n / 32) as usize);
        if k < len {
            self.limbs.copy_within(..len - k, k);
        }
        self.limbs[..k.min(len)].fill(0);
        self.mul_small(1 << (n % 32));
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

    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        self.limbs.iter().rev().cmp(other.limbs.iter().rev())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_powers_of_ten_are_the_literals() {
        for (k, &p) in EXACT_POW10.iter().enumerate() {
            let literal: f64 = format!("1e{k}").parse().unwrap_or(f64::NAN);
            assert_eq!(p.to_bits(), literal.to_bits(), "1e{k}");
            assert_eq!(p as u128, 10u128.pow(k as u32), "1e{k} is exact");
        }
    }
}
