//! The RDS Data API, both ends: [`client`] runs the store's SQL through aws-sdk-rdsdata
//! (production), [`server`] is a local Data API that runs the same wire protocol on real
//! PostgreSQL (development and tests).
//!
//! Both ends rewrite placeholders, so the SQL lexing they share lives here: a placeholder is only
//! a placeholder in SQL code, never inside a string literal, a quoted identifier, a dollar-quoted
//! body or a comment.

pub mod client;
pub mod server;

/// A piece of SQL text: `Code` may hold placeholders, `Other` (literals, quoted identifiers,
/// comments) is copied through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Code(&'a str),
    Other(&'a str),
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// Splits `sql` into code and non-code segments, following PostgreSQL's lexer for the constructs
/// that can hide a `:name` or `$n`: `'...'` (with `''`), `E'...'` (with backslash escapes),
/// `"..."`, `$tag$...$tag$`, `-- ...` and nested `/* ... */`. An unterminated construct runs to
/// the end of the text (PostgreSQL will reject the statement itself).
pub(crate) fn segments(sql: &str) -> Vec<Segment<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut code_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let end = match b {
            b'\'' => {
                let escapes =
                    i > 0 && matches!(bytes[i - 1], b'e' | b'E') && (i < 2 || !is_ident_char(char::from(bytes[i - 2])));
                Some(quoted_end(bytes, i, b'\'', escapes))
            }
            b'"' => Some(quoted_end(bytes, i, b'"', false)),
            b'-' if bytes.get(i + 1) == Some(&b'-') => Some(sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1)),
            b'/' if bytes.get(i + 1) == Some(&b'*') => Some(block_comment_end(bytes, i)),
            b'$' if i == 0 || !is_ident_char(prev_char(sql, i)) => dollar_quote_end(sql, i),
            _ => None,
        };
        match end {
            Some(end) => {
                if code_start < i {
                    out.push(Segment::Code(&sql[code_start..i]));
                }
                out.push(Segment::Other(&sql[i..end]));
                i = end;
                code_start = end;
            }
            None => i += 1,
        }
    }
    if code_start < bytes.len() {
        out.push(Segment::Code(&sql[code_start..]));
    }
    out
}

fn prev_char(sql: &str, i: usize) -> char {
    sql[..i].chars().next_back().unwrap_or(' ')
}

/// End (exclusive) of a quoted run starting at `start`; a doubled quote is an escaped quote.
fn quoted_end(bytes: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash_escapes && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// If a dollar quote opens at `start` (`$$` or `$tag$`, the tag not starting with a digit),
/// returns the end of its closing delimiter.
fn dollar_quote_end(sql: &str, start: usize) -> Option<usize> {
    let rest = &sql[start + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    let mut chars = tag.chars();
    if let Some(first) = chars.next()
        && (!is_ident_start(first) || !chars.all(|c| is_ident_start(c) || c.is_ascii_digit()))
    {
        return None;
    }
    let delimiter = &sql[start..start + tag_len + 2];
    let body_start = start + delimiter.len();
    Some(sql[body_start..].find(delimiter).map_or(sql.len(), |n| body_start + n + delimiter.len()))
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

/// The inverse of [`civil_from_days`].
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::Segment::{Code, Other};
    use super::*;

    fn check(sql: &str, expected: &[Segment<'_>]) {
        assert_eq!(segments(sql), expected, "{sql}");
    }

    #[test]
    fn splits_literals_identifiers_comments_and_dollar_quotes() {
        check("select 1", &[Code("select 1")]);
        check("a 'b:c' d", &[Code("a "), Other("'b:c'"), Code(" d")]);
        check("'it''s' x", &[Other("'it''s'"), Code(" x")]);
        check(r"E'a\'b' x", &[Code("E"), Other(r"'a\'b'"), Code(" x")]);
        check(r"'a\' x", &[Other(r"'a\'"), Code(" x")]);
        check(r#"a "x""y" b"#, &[Code("a "), Other(r#""x""y""#), Code(" b")]);
        check("a -- :x\nb", &[Code("a "), Other("-- :x\n"), Code("b")]);
        check("a /* /* :x */ */ b", &[Code("a "), Other("/* /* :x */ */"), Code(" b")]);
        check("a $$ :x $$ b", &[Code("a "), Other("$$ :x $$"), Code(" b")]);
        check("a $f$ $$ $f$ b", &[Code("a "), Other("$f$ $$ $f$"), Code(" b")]);
        check("a = $1 and b = $2", &[Code("a = $1 and b = $2")]);
        check("foo$1$ x", &[Code("foo$1$ x")]);
        check("'unterminated", &[Other("'unterminated")]);
        check("é 'x'", &[Code("é "), Other("'x'")]);
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468 - 366, -1, 0, 10_957, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
