//! Timestamps: RFC 3339 in, UTC with microsecond precision out (what Postgres TIMESTAMPTZ keeps).
//!
//! The core defines the format itself rather than borrowing a library's leniency, so the
//! browser, the API and the database agree. Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`
//! with `T`/`Z` in either case (RFC 3339 §5.6 allows it), years 0001-9999, real calendar days,
//! 1-9 fraction digits (rounded to microseconds, a half up: Postgres rounds a half to even, so
//! text with a 7th digit of exactly 5 given to Postgres by another writer may differ by 1 µs;
//! our writers send microseconds, never text). Rejected: a missing
//! offset, `+0200`, a space instead of `T`, leap second `:60` (JavaScript's `Date` rejects it
//! and Postgres would silently roll it over), offsets beyond ±23:59.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An instant, as microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
const MIN_MICROS: i64 = -62_135_596_800 * MICROS_PER_SEC;
const MAX_MICROS: i64 = 253_402_300_800 * MICROS_PER_SEC - 1;

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(MIN_MICROS);
    pub const MAX: Timestamp = Timestamp(MAX_MICROS);

    /// From microseconds since the epoch; `None` outside years 0001-9999.
    pub fn from_micros(micros: i64) -> Option<Timestamp> {
        (MIN_MICROS..=MAX_MICROS).contains(&micros).then_some(Timestamp(micros))
    }

    /// From milliseconds since the epoch (a JavaScript clock), clamped into range.
    pub fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis.saturating_mul(1000).clamp(MIN_MICROS, MAX_MICROS))
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Parses RFC 3339 as described in the module docs.
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let year = digits(b, 0, 4)?;
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        let hour = digits(b, 11, 2)?;
        let minute = digits(b, 14, 2)?;
        let second = digits(b, 17, 2)?;
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let mut i = 19;
        let mut micros: i64 = 0;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = i - start;
            if n == 0 || n > 9 {
                return None;
            }
            let mut nanos: i64 = 0;
            for k in 0..9 {
                let d = if k < n { i64::from(b[start + k] - b'0') } else { 0 };
                nanos = nanos * 10 + d;
            }
            micros = (nanos + 500) / 1000;
        }
        let offset_secs = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
                let oh = digits(b, i + 1, 2)?;
                let om = digits(b, i + 4, 2)?;
                if b[i + 3] != b':' || oh > 23 || om > 59 {
                    return None;
                }
                let secs = (oh * 3600 + om * 60) as i64;
                if sign == b'-' { -secs } else { secs }
            }
            _ => return None,
        };
        let days = days_from_civil(year as i64, month, day);
        let secs = days * SECS_PER_DAY + (hour * 3600 + minute * 60 + second) as i64 - offset_secs;
        Timestamp::from_micros(secs * MICROS_PER_SEC + micros)
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Timestamp {
    /// The text [`Display`](fmt::Display) writes, as bytes (for writers that copy it
    /// somewhere without `core::fmt`). Every constructor keeps a `Timestamp` within years
    /// 0001-9999, so four year digits always suffice.
    pub fn to_text(&self) -> [u8; 27] {
        let (y, m, d, sod, micros) = self.civil();
        let year = y.clamp(0, 9999) as u32;
        // Every field fits 32 bits: no 64-bit divisions per digit.
        let (sod, micros) = (sod as u32, micros as u32);
        // Digits by hand: `write!` with padded fields cost several times more, and every job
        // serialised (API responses, search documents, the WASM package) writes three of these.
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut b[0..4], year);
        put_digits(&mut b[5..7], m);
        put_digits(&mut b[8..10], d);
        put_digits(&mut b[11..13], sod / 3600);
        put_digits(&mut b[14..16], sod % 3600 / 60);
        put_digits(&mut b[17..19], sod % 60);
        put_digits(&mut b[20..26], micros);
        b
    }

    /// Year, month, day, second of the day and microseconds, in UTC.
    fn civil(&self) -> (i64, u32, u32, i64, i64) {
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let (y, m, d) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
        (y, m, d, secs.rem_euclid(SECS_PER_DAY), self.0.rem_euclid(MICROS_PER_SEC))
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: always UTC, always six fraction digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ASCII digits and separators: always UTF-8.
        f.write_str(std::str::from_utf8(&self.to_text()).map_err(|_| fmt::Error)?)
    }
}

/// Writes `v` as decimal digits filling `dst`, zero-padded (the caller sizes `dst`).
fn put_digits(dst: &mut [u8], mut v: u32) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom("invalid RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Option<&str>) {
        let got = Timestamp::parse(input).map(|t| t.to_string());
        assert_eq!(got.as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn display_matches_the_padded_format() {
        // The hand-written digits against `write!`'s padding, across the whole range.
        let step = (MAX_MICROS - MIN_MICROS) / 100_003;
        let mut micros = MIN_MICROS;
        while micros <= MAX_MICROS {
            let t = Timestamp(micros);
            let secs = micros.div_euclid(MICROS_PER_SEC);
            let (y, m, d) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
            let sod = secs.rem_euclid(SECS_PER_DAY);
            let (h, mi, s, us) = (sod / 3600, sod % 3600 / 60, sod % 60, micros.rem_euclid(MICROS_PER_SEC));
            assert_eq!(t.to_string(), format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z"));
            micros += step + 7_919;
        }
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(Timestamp::MIN.to_string(), "0001-01-01T00:00:00.000000Z");
    }

    #[test]
    fn parses_and_normalises() {
        check("2024-01-02T03:04:05Z", Some("2024-01-02T03:04:05.000000Z"));
        check("2024-01-02t03:04:05z", Some("2024-01-02T03:04:05.000000Z"));
        check("2024-01-02T03:04:05.5Z", Some("2024-01-02T03:04:05.500000Z"));
        check("2024-01-02T03:04:05.123456789Z", Some("2024-01-02T03:04:05.123457Z"));
        check("2024-01-02T03:04:05.9999995Z", Some("2024-01-02T03:04:06.000000Z"));
        check("2024-01-02T03:04:05+02:00", Some("2024-01-02T01:04:05.000000Z"));
        check("2024-01-01T00:30:00-01:00", Some("2024-01-01T01:30:00.000000Z"));
        check("2024-02-29T00:00:00Z", Some("2024-02-29T00:00:00.000000Z"));
        check("1969-12-31T23:59:59.999999Z", Some("1969-12-31T23:59:59.999999Z"));
        check("0001-01-01T00:00:00Z", Some("0001-01-01T00:00:00.000000Z"));
        check("9999-12-31T23:59:59.999999Z", Some("9999-12-31T23:59:59.999999Z"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "2024-01-02",
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05+0200",
            "2024-01-02T03:04:05+24:00",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T23:60:00Z",
            "0000-01-01T00:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00ZZ",
            "+2024-01-01T00:00:00Z",
            "２０２４-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999Z",
            "0001-01-01T00:00:00+00:01",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn round_trips_every_day_boundary() {
        for days in (-719_162..2_932_896).step_by(997) {
            let t = Timestamp(days * SECS_PER_DAY * MICROS_PER_SEC + 123_456);
            assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        }
    }
}
