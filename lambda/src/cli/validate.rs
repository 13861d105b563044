//! `jobsctl validate`: NDJSON in, one NDJSON verdict per input line out.
//!
//! `{"line":N,"ok":true,"job":{...}}` or `{"line":N,"ok":false,"errors":[{path,code,message}]}`.
//! Blank lines are skipped (their numbers still count). Lines need not be valid UTF-8: a line
//! that is not JSON is reported with code `invalid_json`.

use jobs_core::Issue;
use jobs_core::Timestamp;
use jobs_core::validate::{Kind, validate_json};
use serde::Serialize;
use serde_json::Value;
use std::io::{self, BufRead, Write};

/// One output line; fields in this order.
#[derive(Serialize)]
struct Verdict {
    line: usize,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<Issue>>,
}

/// What a run found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub valid: u64,
    pub invalid: u64,
}

/// Validates every line of `input`, writing one verdict line per non-blank line to `out`.
pub fn run(kind: Kind, input: impl BufRead, mut out: impl Write, now: Timestamp) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for (i, line) in input.split(b'\n').enumerate() {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = i + 1;
        let verdict = match validate_json(kind, &line, now) {
            Ok(job) => {
                summary.valid += 1;
                Verdict { line: n, ok: true, job: Some(job), errors: None }
            }
            Err(errors) => {
                summary.invalid += 1;
                Verdict { line: n, ok: false, job: None, errors: Some(errors) }
            }
        };
        serde_json::to_writer(&mut out, &verdict)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_verdict_per_line() {
        let input = b"{\"type\":\"BUILD\",\"project_name\":\"a\"}\n\n{\"type\":1}\r\nnot json\n\xff\xfe\n";
        let mut out = Vec::new();
        let s = run(Kind::Create, &input[..], &mut out, Timestamp::from_millis(0)).expect("io");
        assert_eq!(s, Summary { valid: 1, invalid: 3 });
        let lines: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["line"], 1);
        assert_eq!(lines[0]["job"]["status"], "QUEUED");
        assert_eq!(lines[1]["line"], 3);
        assert_eq!(lines[1]["errors"][0]["code"], "invalid_type");
        assert_eq!(lines[2]["errors"][0]["code"], "invalid_json");
        assert_eq!(lines[3]["line"], 5);
        assert_eq!(lines[3]["errors"][0]["code"], "invalid_json");
    }
}
