//! A strict RFC 8259 JSON reader for the validate path: the top level of an object read into
//! borrowed fields (only containers become [`Json`] values), or a whole [`Json`].
//!
//! It accepts and rejects exactly what `serde_json::from_slice::<Value>` does, with the same
//! values: numbers converted by serde_json's rules with `float_roundtrip` (u64, then i64, then
//! the nearest double, ties to even, as `str::parse` gives it; a number that rounds to infinity
//! is an error), 128 nested containers rejected, duplicate keys in a map keeping the last, lone
//! surrogates rejected, trailing text rejected.
//! Differential tests (`core/tests/json.rs`) and a fuzz target (`fuzz/fuzz_targets/json.rs`)
//! hold it to that. Why not serde_json itself: on the WASM path its reader was ~20% of
//! `validateJob` and pulled in float formatting for error messages (BENCHMARKS.md "## WASM").

use crate::tree::{Json, Object};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

/// serde_json's recursion limit: this many open containers is an error.
const MAX_NESTING: u32 = 128;

const OUT_OF_RANGE: &str = "number out of range";

/// Where and why the text is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub what: &'static str,
}

/// `what at byte N`.
impl crate::msg::Piece for Error {
    fn push_to(&self, out: &mut String) {
        crate::msg::push(out, self.what);
        crate::msg::push(out, " at byte ");
        crate::msg::push_u64(out, self.offset as u64);
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::msg::display(self, f)
    }
}

impl std::error::Error for Error {}

/// A top-level field's value; containers are [`Json`] values (only metadata has any).
#[derive(Debug, Clone)]
pub(crate) enum Loose<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Arr(Vec<Json>),
    Obj(Object),
}

/// The top level of an input: an object's fields in order (duplicates kept), or what it was.
pub(crate) enum Top<'a> {
    Object(Vec<(Cow<'a, str>, Loose<'a>)>),
    Other(&'static str),
}

/// Parses a whole JSON text, as `serde_json::from_slice::<Value>` would.
pub fn parse_value(bytes: &[u8]) -> Result<Json, Error> {
    let mut r = Reader::new(bytes)?;
    let v = r.value()?;
    r.end()?;
    Ok(v)
}

/// Reads a JSON text whose top level should be an object, keeping every field in order.
pub(crate) fn parse_top(bytes: &[u8]) -> Result<Top<'_>, Error> {
    let mut r = Reader::new(bytes)?;
    let top = r.top()?;
    r.end()?;
    Ok(top)
}

/// Two objects in one text, each read as [`parse_top`] reads one: `{"<a>": .., "<b>": ..}`
/// (each name at most once, no other) or `[.., ..]`.
pub(crate) enum Pair<'a> {
    /// The halves found (both, from an array).
    Halves(Option<Top<'a>>, Option<Top<'a>>),
    /// The first member named neither `a` nor `b`.
    UnknownField(Cow<'a, str>),
    /// The first member named a second time.
    DuplicateField(Cow<'a, str>),
    /// An array of other than two items.
    NotTwo,
    /// Neither an object nor an array.
    Other,
}

/// Reads a [`Pair`]. A text that is not JSON is an error wherever the fault is, before any
/// problem of shape: the whole text is read either way.
pub(crate) fn parse_pair<'a>(bytes: &'a [u8], names: [&str; 2]) -> Result<Pair<'a>, Error> {
    let mut r = Reader::new(bytes)?;
    r.ws();
    let (mut a, mut b) = (None, None);
    let mut problem = None;
    match r.peek() {
        Some(b'{') => r.members(|r, key| {
            let slot = if *key == *names[0] {
                &mut a
            } else if *key == *names[1] {
                &mut b
            } else {
                problem.get_or_insert(Pair::UnknownField(key));
                return r.value().map(drop);
            };
            if slot.replace(r.top()?).is_some() {
                problem.get_or_insert(Pair::DuplicateField(key));
            }
            Ok(())
        })?,
        Some(b'[') => {
            let mut n = 0;
            r.items(|r| {
                match n {
                    0 => a = Some(r.top()?),
                    1 => b = Some(r.top()?),
                    _ => drop(r.value()?),
                }
                n += 1;
                Ok(())
            })?;
            if n != 2 {
                problem = Some(Pair::NotTwo);
            }
        }
        _ => {
            r.value()?;
            problem = Some(Pair::Other);
        }
    }
    r.end()?;
    Ok(problem.unwrap_or(Pair::Halves(a, b)))
}

/// What a string holding one JSON number (nothing around it) reads as.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NumberText {
    /// The value the same digits have as a JSON number.
    Number(Number),
    /// Number syntax, but beyond the largest double; `true` when negative.
    TooLarge(bool),
    NotANumber,
}

/// Reads `s` as exactly one JSON number: the strict grammar, no whitespace, and the same value
/// the reader gives the same digits inside JSON text.
pub(crate) fn number_text(s: &str) -> NumberText {
    let mut r = Reader { text: s, b: s.as_bytes(), i: 0, depth: 0, number_at: 0 };
    match r.number() {
        Ok(n) if r.i == s.len() => NumberText::Number(n),
        Err(e) if e.what == OUT_OF_RANGE => NumberText::TooLarge(s.starts_with('-')),
        _ => NumberText::NotANumber,
    }
}

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    /// Where the digits of the number being read begin (after its sign).
    number_at: usize,
}

type R<T> = Result<T, Error>;

impl<'a> Reader<'a> {
    /// UTF-8 is checked once for the whole text: invalid bytes are an error wherever they are
    /// (serde_json rejects them inside strings, and anywhere else they are not JSON).
    fn new(bytes: &'a [u8]) -> R<Self> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Reader { text, b: bytes, i: 0, depth: 0, number_at: 0 }),
            Err(e) => Err(Error { offset: e.valid_up_to(), what: "invalid UTF-8" }),
        }
    }

    fn err<T>(&self, what: &'static str) -> R<T> {
        Err(Error { offset: self.i, what })
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> R<u8> {
        match self.b.get(self.i) {
            Some(&c) => {
                self.i += 1;
                Ok(c)
            }
            None => self.err("unexpected end of input"),
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn end(&mut self) -> R<()> {
        self.ws();
        if self.i < self.b.len() { self.err("trailing characters") } else { Ok(()) }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth >= MAX_NESTING { self.err("nested too deeply") } else { Ok(()) }
    }

    fn ident(&mut self, rest: &[u8]) -> R<()> {
        self.i += 1;
        for &c in rest {
            if self.next()? != c {
                return self.err("expected a value");
            }
        }
        Ok(())
    }

    /// Any value.
    fn value(&mut self) -> R<Json> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Json::String(self.string()?.into_owned())),
            Some(b'{') => {
                let mut members = Vec::new();
                self.members(|r, key| {
                    let v = r.value()?;
                    members.push((key.into_owned(), v));
                    Ok(())
                })?;
                Ok(Json::Object(Object::from_members(members)))
            }
            Some(b'[') => Ok(Json::Array(self.array()?)),
            _ => Ok(match self.scalar()? {
                Loose::Null => Json::Null,
                Loose::Bool(b) => Json::Bool(b),
                Loose::Num(n) => Json::Number(n),
                // scalar() returns only the three above.
                _ => Json::Null,
            }),
        }
    }

    /// A top-level field's value: strings stay borrowed when they have no escapes.
    fn loose(&mut self) -> R<Loose<'a>> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Loose::Str(self.string()?)),
            Some(b'{' | b'[') => Ok(match self.value()? {
                Json::Object(m) => Loose::Obj(m),
                Json::Array(a) => Loose::Arr(a),
                _ => Loose::Null,
            }),
            _ => self.scalar(),
        }
    }

    /// null, true, false or a number.
    fn scalar(&mut self) -> R<Loose<'a>> {
        match self.peek() {
            Some(b'n') => self.ident(b"ull").map(|()| Loose::Null),
            Some(b't') => self.ident(b"rue").map(|()| Loose::Bool(true)),
            Some(b'f') => self.ident(b"alse").map(|()| Loose::Bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number().map(Loose::Num),
            Some(_) => self.err("expected a value"),
            None => self.err("unexpected end of input"),
        }
    }

    fn array(&mut self) -> R<Vec<Json>> {
        let mut items = Vec::new();
        self.items(|r| {
            items.push(r.value()?);
            Ok(())
        })?;
        Ok(items)
    }

    /// An array's items, each handed to `f` with the reader placed before it.
    fn items(&mut self, mut f: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        self.enter()?;
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                f(self)?;
                self.ws();
                match self.next()? {
                    b',' => {}
                    b']' => break,
                    _ => return self.err("expected ',' or ']'"),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// A value that should be an object: its fields in order (duplicates kept), or what it was.
    fn top(&mut self) -> R<Top<'a>> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Ok(Top::Other(self.value()?.type_name()));
        }
        let mut fields = Vec::with_capacity(16);
        self.members(|r, key| {
            let v = r.loose()?;
            fields.push((key, v));
            Ok(())
        })?;
        Ok(Top::Object(fields))
    }

    /// An object's members, each handed to `f` with the reader placed before its value.
    fn members(&mut self, mut f: impl FnMut(&mut Self, Cow<'a, str>) -> R<()>) -> R<()> {
        self.enter()?;
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return self.err("expected a key");
                }
                let key = self.string()?;
                self.ws();
                if self.next()? != b':' {
                    return self.err("expected ':'");
                }
                f(self, key)?;
                self.ws();
                match self.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return self.err("expected ',' or '}'"),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// A string (the reader is on its opening quote): borrowed from the text unless escaped.
    fn string(&mut self) -> R<Cow<'a, str>> {
        self.i += 1;
        let start = self.i;
        self.skip_plain();
        loop {
            match self.b.get(self.i) {
                Some(b'"') => {
                    let s = self.slice(start)?;
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => return self.escaped(start).map(Cow::Owned),
                Some(c) if *c < 0x20 => return self.err("control character in a string"),
                Some(_) => self.i += 1,
                None => return self.err("unexpected end of input in a string"),
            }
        }
    }

    /// Skips string bytes that need no attention eight at a time (no quote, backslash or
    /// control character in the word); the byte loop after it finds the exact stop.
    #[inline]
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            let quote = x ^ (ONES * u64::from(b'"'));
            let backslash = x ^ (ONES * u64::from(b'\\'));
            // A zero byte in `quote`/`backslash`, or a byte below 0x20 in `x` (exact when no
            // byte of `x` has its high bit set; with one set it may stop early, never late).
            let stop = (quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (x.wrapping_sub(ONES * 0x20) & !x);
            if stop & HIGH != 0 {
                return;
            }
            self.i += 8;
        }
    }

    /// Text from `start` to the reader; both ends are at ASCII bytes, so on char boundaries.
    fn slice(&self, start: usize) -> R<&'a str> {
        match self.text.get(start..self.i) {
            Some(s) => Ok(s),
            None => self.err("invalid UTF-8"),
        }
    }

    fn escaped(&mut self, start: usize) -> R<String> {
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(self.slice(start)?);
        loop {
            let run = self.i;
            self.skip_plain();
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(self.slice(run)?);
            match self.next()? {
                b'"' => return Ok(out),
                b'\\' => {}
                _ => {
                    self.i -= 1;
                    return self.err("control character in a string");
                }
            }
            let c = match self.next()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => return self.err("invalid escape"),
            };
            out.push(c);
        }
    }

    /// After `\u`: a BMP character, or a surrogate pair (a lone surrogate is an error).
    fn unicode_escape(&mut self) -> R<char> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => return self.err("lone trailing surrogate"),
            0xD800..=0xDBFF => {
                if self.next()? != b'\\' || self.next()? != b'u' {
                    return self.err("lone leading surrogate");
                }
                let n2 = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&n2) {
                    return self.err("lone leading surrogate");
                }
                0x10000 + ((u32::from(n) - 0xD800) << 10) + (u32::from(n2) - 0xDC00)
            }
            _ => u32::from(n),
        };
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => self.err("invalid escape"),
        }
    }

    fn hex4(&mut self) -> R<u16> {
        let mut n = 0u16;
        for _ in 0..4 {
            let d = match self.next()? {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => return self.err("invalid escape"),
            };
            n = (n << 4) | u16::from(d);
        }
        Ok(n)
    }

    // -----------------------------------------------------------------------------------------
    // Numbers, step for step as serde_json 1.x reads them (de.rs: parse_integer, parse_number,
    // parse_decimal, parse_exponent, ...): the same syntax errors and integer kinds; a double is
    // the nearest one (`scaled`), as serde_json gives with `float_roundtrip`.

    fn digit(&self) -> Option<u8> {
        match self.peek() {
            Some(c @ b'0'..=b'9') => Some(c - b'0'),
            _ => None,
        }
    }

    fn number(&mut self) -> R<Number> {
        let positive = if self.peek() == Some(b'-') {
            self.i += 1;
            false
        } else {
            true
        };
        self.number_at = self.i;
        let significand = match self.next()? {
            b'0' => {
                if self.digit().is_some() {
                    return self.err("invalid number");
                }
                0
            }
            c @ b'1'..=b'9' => {
                let mut s = u64::from(c - b'0');
                while let Some(d) = self.digit() {
                    let d = u64::from(d);
                    if overflows(s, d, u64::MAX) {
                        let f = self.long_integer(positive, s)?;
                        return self.float(f);
                    }
                    self.i += 1;
                    s = s * 10 + d;
                }
                s
            }
            _ => {
                self.i -= 1;
                return self.err("invalid number");
            }
        };
        match self.peek() {
            Some(b'.') => {
                let f = self.decimal(positive, significand, 0)?;
                self.float(f)
            }
            Some(b'e' | b'E') => {
                let f = self.exponent(positive, significand, 0)?;
                self.float(f)
            }
            _ if positive => Ok(Number::from(significand)),
            _ => {
                // Like serde_json: `-0` and anything below i64::MIN become floats.
                let neg = (significand as i64).wrapping_neg();
                if neg >= 0 { self.float(-(significand as f64)) } else { Ok(Number::from(neg)) }
            }
        }
    }

    fn float(&self, f: f64) -> R<Number> {
        match Number::from_f64(f) {
            Some(n) => Ok(n),
            None => self.err(OUT_OF_RANGE),
        }
    }

    fn decimal(&mut self, positive: bool, mut significand: u64, exponent_before: i32) -> R<f64> {
        self.i += 1;
        let mut exponent_after = 0i32;
        while let Some(d) = self.digit() {
            let d = u64::from(d);
            if overflows(significand, d, u64::MAX) {
                // Further digits are only skipped here: a significand this long is off the
                // fast path, and `scaled` reads the whole number again.
                while self.digit().is_some() {
                    self.i += 1;
                }
                return self.after_digits(positive, significand, exponent_before + exponent_after);
            }
            self.i += 1;
            significand = significand * 10 + d;
            exponent_after -= 1;
        }
        if exponent_after == 0 {
            return if self.peek().is_some() {
                self.err("invalid number")
            } else {
                self.err("unexpected end of input")
            };
        }
        self.after_digits(positive, significand, exponent_before + exponent_after)
    }

    fn after_digits(&mut self, positive: bool, significand: u64, exponent: i32) -> R<f64> {
        match self.peek() {
            Some(b'e' | b'E') => self.exponent(positive, significand, exponent),
            _ => self.scaled(positive, significand, exponent),
        }
    }

    fn exponent(&mut self, positive: bool, significand: u64, starting: i32) -> R<f64> {
        self.i += 1;
        let positive_exp = match self.peek() {
            Some(b'+') => {
                self.i += 1;
                true
            }
            Some(b'-') => {
                self.i += 1;
                false
            }
            _ => true,
        };
        let mut exp = match self.next()? {
            c @ b'0'..=b'9' => i32::from(c - b'0'),
            _ => {
                self.i -= 1;
                return self.err("invalid number");
            }
        };
        while let Some(d) = self.digit() {
            self.i += 1;
            let d = i32::from(d);
            if overflows(exp as u64, d as u64, i32::MAX as u64) {
                // An exponent beyond i32: infinity is an error, anything else is zero.
                if significand != 0 && positive_exp {
                    return self.err(OUT_OF_RANGE);
                }
                while self.digit().is_some() {
                    self.i += 1;
                }
                return Ok(if positive { 0.0 } else { -0.0 });
            }
            exp = exp * 10 + d;
        }
        let exponent = if positive_exp { starting.saturating_add(exp) } else { starting.saturating_sub(exp) };
        self.scaled(positive, significand, exponent)
    }

    /// An integer part longer than u64: its further digits are only counted here (`scaled`
    /// reads the whole number again).
    fn long_integer(&mut self, positive: bool, significand: u64) -> R<f64> {
        let mut exponent = 0i32;
        while self.digit().is_some() {
            self.i += 1;
            exponent = exponent.saturating_add(1);
        }
        match self.peek() {
            Some(b'.') => self.decimal(positive, significand, exponent),
            Some(b'e' | b'E') => self.exponent(positive, significand, exponent),
            _ => self.scaled(positive, significand, exponent),
        }
    }

    /// The number read so far, `significand × 10^exponent` (its first digits, and the exponent
    /// that scales them), as the nearest double, ties to even: one rounding when both are
    /// exact (Clinger's fast path: up to 2^53, and 10^22); otherwise the number's text is read
    /// again, all of it, by [`crate::float::nearest`] (or the embedding: `float::read`).
    fn scaled(&self, positive: bool, significand: u64, exponent: i32) -> R<f64> {
        let f = match crate::float::EXACT_POW10.get(exponent.unsigned_abs() as usize) {
            Some(&pow) if significand <= 1 << 53 => {
                let s = significand as f64;
                if exponent >= 0 { s * pow } else { s / pow }
            }
            _ => match crate::float::read(self.b.get(self.number_at..self.i).unwrap_or_default()) {
                Some(f) => f,
                None => return self.err(OUT_OF_RANGE),
            },
        };
        Ok(if positive { f } else { -f })
    }
}

/// serde_json's `overflow!(a * 10 + b, c)`.
#[inline]
fn overflows(a: u64, b: u64, c: u64) -> bool {
    a >= c / 10 && (a > c / 10 || b > c % 10)
}
