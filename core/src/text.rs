//! Text formats the core defines itself (no regex crate: it bloats the WASM): UUIDs, hostnames,
//! architectures and e-mail addresses.

use uuid::Uuid;

/// Why a UUID string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UuidError {
    Invalid,
    Nil,
}

/// Canonical hyphenated UUID text (8-4-4-4-12 hex digits, any case). No braces, no `urn:uuid:`,
/// no simple (unhyphenated) form: a single spelling keeps keys comparable everywhere.
pub fn parse_uuid(s: &str) -> Result<Uuid, UuidError> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return Err(UuidError::Invalid);
    }
    let mut bytes = [0u8; 16];
    // Where each byte's two hex digits start: a table lookup per digit, no per-character
    // branching on the position (every job has up to three of these).
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut bad = 0u8;
    for (out, &i) in bytes.iter_mut().zip(&AT) {
        let (hi, lo) = (HEX[usize::from(b[i])], HEX[usize::from(b[i + 1])]);
        bad |= hi | lo;
        *out = (hi << 4) | (lo & 0x0f);
    }
    if bad & 0x80 != 0 {
        return Err(UuidError::Invalid);
    }
    let id = Uuid::from_bytes(bytes);
    if id.is_nil() { Err(UuidError::Nil) } else { Ok(id) }
}

/// The value of a hex digit (either case), or 0x80 for any other byte.
const HEX: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A time-ordered UUIDv7 from a Unix time in milliseconds and 10 random bytes, both passed in.
pub fn new_uuid_v7(unix_millis: u64, random: [u8; 10]) -> Uuid {
    uuid::Builder::from_unix_timestamp_millis(unix_millis, &random).into_uuid()
}

pub const HOSTNAME_MAX: usize = 253;

/// RFC 1123 hostname: dot-separated labels of 1-63 ASCII letters, digits and hyphens, not
/// starting or ending with a hyphen; at most 253 characters. Returns the lowercase form.
pub fn normalise_hostname(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > HOSTNAME_MAX || !labels_ok(s) {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

/// Dot-separated labels of 1-63 ASCII letters, digits and hyphens, not starting or ending with a
/// hyphen (a hostname, an e-mail domain). Split as bytes: `str::split('.')` brought the `char`
/// searcher and `memchr` into the WASM package for strings this short.
fn labels_ok(s: &str) -> bool {
    s.as_bytes().split(|&b| b == b'.').all(|l| match (l.first(), l.last()) {
        (Some(&first), Some(&last)) => {
            l.len() <= 63 && first != b'-' && last != b'-' && l.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        _ => false,
    })
}

/// Canonical architecture names.
pub const ARCHES: &[&str] = &["x86_64", "arm64", "armv7", "i386", "ppc64le", "s390x", "riscv64"];

/// Common spellings of the canonical names (matched case-insensitively).
const ARCH_ALIASES: &[(&str, &str)] = &[
    ("amd64", "x86_64"),
    ("x64", "x86_64"),
    ("x86-64", "x86_64"),
    ("x86_64", "x86_64"),
    ("aarch64", "arm64"),
    ("arm64", "arm64"),
    ("arm64v8", "arm64"),
    ("armv8", "arm64"),
    ("armv7", "armv7"),
    ("armv7l", "armv7"),
    ("armhf", "armv7"),
    ("arm32v7", "armv7"),
    ("i386", "i386"),
    ("i486", "i386"),
    ("i586", "i386"),
    ("i686", "i386"),
    ("x86", "i386"),
    ("386", "i386"),
    ("ppc64le", "ppc64le"),
    ("ppc64el", "ppc64le"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
    ("riscv64gc", "riscv64"),
];

pub const ARCH_MAX: usize = 50;

/// Maps aliases to canonical names; anything else must already be a lowercase token
/// `[a-z0-9_]{1,50}` and is kept as given.
pub fn normalise_arch(s: &str) -> Option<String> {
    if s.len() <= 16 {
        for (alias, canonical) in ARCH_ALIASES {
            if s.eq_ignore_ascii_case(alias) {
                return Some((*canonical).to_owned());
            }
        }
    }
    let ok = !s.is_empty()
        && s.len() <= ARCH_MAX
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    ok.then(|| s.to_owned())
}

/// A "valid e-mail address" as the WHATWG HTML spec defines it for `<input type=email>`:
/// `local@domain` where local is 1+ of `A-Za-z0-9.!#$%&'*+/=?^_`{|}~-` and domain is
/// dot-separated labels of 1-63 letters, digits and hyphens, not starting or ending with a
/// hyphen, at most [`EMAIL_MAX`](crate::spec::EMAIL_MAX) characters (what `user_email` holds;
/// an address from a token is checked here only). Returns the address with its domain
/// lowercased.
pub fn normalise_email(s: &str) -> Option<String> {
    // Every address that passes is ASCII, so bytes count its characters.
    if s.len() > crate::spec::EMAIL_MAX {
        return None;
    }
    let at = s.bytes().position(|b| b == b'@')?;
    let (local, domain) = (s.get(..at)?, s.get(at + 1..)?);
    let local_ok =
        !local.is_empty() && local.bytes().all(|c| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&c));
    if !local_ok || domain.is_empty() || !labels_ok(domain) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    out.push_str(local);
    out.push('@');
    out.push_str(&domain.to_ascii_lowercase());
    Some(out)
}

/// True when `s` holds a NUL (Postgres text and JSONB cannot hold `\u0000`). A byte loop, not
/// the `char` searcher, which costs more than the short strings it is asked about.
pub fn has_nul(s: &str) -> bool {
    s.bytes().any(|b| b == 0)
}

/// True when `s` holds a control character (Unicode general category Cc).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Length in characters, as SQL VARCHAR(n) counts; stops counting past `limit`.
pub fn char_len_exceeds(s: &str, limit: usize) -> bool {
    s.len() > limit && s.chars().nth(limit).is_some()
}

/// A name quoted for a message: `"..."` with `"`, `\\`, `\t`, `\r`, `\n`, `\0` and
/// other control characters (`\u{1b}`) escaped, the same text as `{:?}` gives for every name
/// without invisible characters. Why not `{:?}`: str's Debug carries the Unicode printable and
/// grapheme-extend tables and their code into the WASM package (~5 KB) to escape those too.
pub struct Quoted<'a>(pub &'a str);

impl crate::msg::Piece for Quoted<'_> {
    fn push_to(&self, out: &mut String) {
        use crate::msg::push;
        push(out, "\"");
        let mut run = 0;
        for (i, c) in self.0.char_indices() {
            let esc = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\t' => "\\t",
                '\r' => "\\r",
                '\n' => "\\n",
                '\0' => "\\0",
                c if c.is_control() => "",
                _ => continue,
            };
            push(out, self.0.get(run..i).unwrap_or_default());
            run = i + c.len_utf8();
            if esc.is_empty() {
                // `\u{1b}`: lowercase hex without leading zeros, as `{:?}` writes it.
                let (mut code, mut hex, mut at) = (u32::from(c), *b"\\u{000000}", 9);
                loop {
                    at -= 1;
                    hex[at] = b"0123456789abcdef"[(code & 0xf) as usize];
                    code >>= 4;
                    if code == 0 {
                        break;
                    }
                }
                hex.copy_within(at..10, 3);
                push(out, std::str::from_utf8(&hex[..3 + 10 - at]).unwrap_or_default());
            } else {
                push(out, esc);
            }
        }
        push(out, self.0.get(run..).unwrap_or_default());
        push(out, "\"");
    }
}

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::msg::display(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The same text as `{:?}` for names of letters, digits, symbols, emoji, quotes,
        /// backslashes and control characters (what differs: invisible characters, which
        /// Debug escapes and this does not).
        #[test]
        fn quoted_is_debug_for_visible_text(s in "[a-zA-Z0-9 _.:/\"'\\\\\u{0}-\u{1f}\u{7f}-\u{9f}é€漢字😀-]{0,24}") {
            proptest::prop_assert_eq!(Quoted(&s).to_string(), format!("{s:?}"));
        }

        /// The hyphenated form exactly as the uuid crate reads it (which also takes other
        /// forms, so only 36-character text with the four dashes in place is compared), over
        /// hex digits of both cases with some other bytes mixed in.
        #[test]
        fn parse_uuid_is_the_uuid_crates_hyphenated_form(s in "[0-9a-fA-F]{8}-[0-9a-fA-FgG:\\- é]{4}-[0-9a-fA-F]{4}-[0-9a-fA-Fx]{4}-[0-9a-fA-F\\x00]{12}") {
            let theirs = (s.len() == 36).then(|| Uuid::try_parse(&s).ok()).flatten();
            let ours = parse_uuid(&s).ok().or_else(|| (parse_uuid(&s) == Err(UuidError::Nil)).then(Uuid::nil));
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn uuids() {
        let ok = "0190a1b2-C3D4-7e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(parse_uuid(ok).map(|u| u.to_string()).as_deref(), Ok("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        for bad in [
            "",
            "urn:uuid:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
            "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g",
            "0190a1b2-c3d4-7e5f-8a9b_0c1d2e3f4a5b",
            " 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",
        ] {
            assert_eq!(parse_uuid(bad), Err(UuidError::Invalid), "{bad}");
        }
        assert_eq!(parse_uuid("00000000-0000-0000-0000-000000000000"), Err(UuidError::Nil));
    }

    #[test]
    fn uuid_v7_is_time_ordered() {
        let a = new_uuid_v7(1_700_000_000_000, [0xff; 10]);
        let b = new_uuid_v7(1_700_000_000_001, [0; 10]);
        assert!(a < b);
        assert_eq!(a.get_version_num(), 7);
        assert!(parse_uuid(&a.to_string()).is_ok());
    }

    #[test]
    fn hostnames() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Build-01.Example.COM", Some("build-01.example.com")),
            ("a", Some("a")),
            ("1.2.3.4", Some("1.2.3.4")),
            ("-a.example", None),
            ("a-.example", None),
            ("a..b", None),
            ("a.", None),
            (".a", None),
            (".", None),
            ("", None),
            ("under_score", None),
            ("bücher.de", None),
            ("a b", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_hostname(input).as_deref(), *want, "{input}");
        }
        assert!(normalise_hostname(&"a".repeat(63)).is_some());
        assert!(normalise_hostname(&"a".repeat(64)).is_none());
        let long = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(long.len(), 253);
        assert!(normalise_hostname(&long).is_some());
        assert!(normalise_hostname(&format!("{long}e")).is_none());
    }

    #[test]
    fn arches() {
        let cases: &[(&str, Option<&str>)] = &[
            ("amd64", Some("x86_64")),
            ("AMD64", Some("x86_64")),
            ("x64", Some("x86_64")),
            ("aarch64", Some("arm64")),
            ("armhf", Some("armv7")),
            ("i686", Some("i386")),
            ("ppc64el", Some("ppc64le")),
            ("loongarch64", Some("loongarch64")),
            ("mips_le", Some("mips_le")),
            ("MIPS", None),
            ("arm-v9", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_arch(input).as_deref(), *want, "{input}");
        }
        assert!(normalise_arch(&"a".repeat(50)).is_some());
        assert!(normalise_arch(&"a".repeat(51)).is_none());
        for a in ARCHES {
            assert_eq!(normalise_arch(a).as_deref(), Some(*a));
        }
    }

    #[test]
    fn emails() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Dev.Ops+ci@Example.COM", Some("Dev.Ops+ci@example.com")),
            ("a@b", Some("a@b")),
            ("x!#$%&'*+/=?^_`{|}~-@host", Some("x!#$%&'*+/=?^_`{|}~-@host")),
            ("@example.com", None),
            ("a@", None),
            ("a@@b", None),
            ("a b@c", None),
            ("a@-b.com", None),
            ("a@b-.com", None),
            ("a@b..com", None),
            ("a@b.com.", None),
            ("a@.b", None),
            ("a@b@c", None),
            ("\"quoted\"@example.com", None),
            ("ü@example.com", None),
            ("a@bü.com", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_email(input).as_deref(), *want, "{input}");
        }
        // As long as user_email holds, and one character more.
        let longest = format!("{}@example.com", "a".repeat(255 - 12));
        assert_eq!(normalise_email(&longest).as_deref(), Some(longest.as_str()));
        assert_eq!(normalise_email(&format!("a{longest}")), None);
    }

    #[test]
    fn char_counting() {
        assert!(!char_len_exceeds("ééé", 3));
        assert!(char_len_exceeds("éééé", 3));
        assert!(!char_len_exceeds("abc", 3));
    }
}
