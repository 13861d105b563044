//! Problem messages built from pieces (text, integers, quoted names) without `core::fmt`.
//!
//! Why not `format!`: the formatting machinery (`Formatter`, `write_fmt`, padding, integer
//! `Display`) was ~1.4 KB of the gzipped WASM package, and a message needs none of it. The
//! `Display` impls of the types below print the same text through [`Piece`], so a message and
//! `to_string()` never differ.

use std::fmt;

/// Something a message can hold, appended as text.
pub trait Piece {
    fn push_to(&self, out: &mut String);
}

/// `msg!("at most ", limit, " characters")`: the pieces' text one after another. Like
/// `format_args!`, a call site only lists its pieces; one function writes them.
#[macro_export]
macro_rules! msg {
    ($($piece:expr),+ $(,)?) => {
        $crate::msg::build(&[$(&$piece as &dyn $crate::msg::Piece),+])
    };
}

/// The text of `pieces`, one after another.
#[inline(never)]
pub fn build(pieces: &[&dyn Piece]) -> String {
    let mut out = String::new();
    for piece in pieces {
        piece.push_to(&mut out);
    }
    out
}

/// `out.push_str(s)` kept out of line: inlined, each call site grew by its own copy of the
/// reserve-and-copy code.
#[inline(never)]
pub fn push(out: &mut String, s: &str) {
    out.push_str(s);
}

impl Piece for str {
    fn push_to(&self, out: &mut String) {
        push(out, self);
    }
}

impl Piece for String {
    fn push_to(&self, out: &mut String) {
        push(out, self);
    }
}

impl<T: Piece + ?Sized> Piece for &T {
    fn push_to(&self, out: &mut String) {
        (**self).push_to(out);
    }
}

/// Decimal digits of `n`.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    push(out, std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Piece for $t {
            fn push_to(&self, out: &mut String) {
                push_u64(out, *self as u64);
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, usize);

impl Piece for i64 {
    fn push_to(&self, out: &mut String) {
        if *self < 0 {
            push(out, "-");
        }
        push_u64(out, self.unsigned_abs());
    }
}

impl Piece for i32 {
    fn push_to(&self, out: &mut String) {
        i64::from(*self).push_to(out);
    }
}

/// `Display` for a type whose text is its [`Piece`].
pub(crate) fn display(piece: &dyn Piece, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut text = String::new();
    piece.push_to(&mut text);
    f.write_str(&text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn integers_read_as_display_prints_them() {
        for n in [0u64, 1, 9, 10, 99, 100, 65_536, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(msg!(n), n.to_string());
        }
        for n in [0i64, -1, 7, -10, i64::MIN, i64::MAX] {
            assert_eq!(msg!(n), n.to_string());
        }
        assert_eq!(msg!(usize::MAX), usize::MAX.to_string());
        assert_eq!(msg!(-5i32, " and ", 255u8), "-5 and 255");
    }

    #[test]
    fn pieces_follow_one_another() {
        let owned = String::from("b");
        assert_eq!(msg!("a", owned, &"c", 1usize), "abc1");
    }

    proptest::proptest! {
        #[test]
        fn any_integer_as_display(n: i64, u: u64) {
            proptest::prop_assert_eq!(msg!(n), n.to_string());
            proptest::prop_assert_eq!(msg!(u), u.to_string());
        }
    }
}
