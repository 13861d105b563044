//! Runs the conformance corpus (`data/corpus.ndjson`) against the native build. The same file
//! is run against the WASM build in Node and in Chromium: verdicts and codes must be identical.

use jobs_core::validate::{Kind, validate_json};
use jobs_core::{Code, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    kind: Kind,
    input: Option<Value>,
    raw: Option<String>,
    ok: bool,
    #[serde(default)]
    errors: Vec<(String, Code)>,
    output: Option<Value>,
}

const CORPUS: &str = include_str!("data/corpus.ndjson");
/// The clock the corpus was written for (patches that end a job without completed_at use it).
const NOW: &str = "2024-06-01T00:00:00Z";

fn cases() -> Vec<Case> {
    CORPUS
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1)))
        .collect()
}

fn input_bytes(case: &Case) -> Vec<u8> {
    match (&case.raw, &case.input) {
        (Some(raw), _) => raw.as_bytes().to_vec(),
        (None, Some(v)) => serde_json::to_vec(v).expect("serialisable"),
        (None, None) => panic!("{}: no input", case.name),
    }
}

#[test]
fn corpus_verdicts_codes_and_outputs() {
    let now = Timestamp::parse(NOW).expect("valid clock");
    let mut failures = Vec::new();
    for case in cases() {
        let got = validate_json(case.kind, &input_bytes(&case), now);
        match (&got, case.ok) {
            (Ok(out), true) => {
                if let Some(want) = &case.output
                    && out != want
                {
                    failures.push(format!("{}: output\n  got  {out}\n  want {want}", case.name));
                }
            }
            (Err(issues), false) => {
                let got: BTreeSet<(String, Code)> = issues.iter().map(|i| (i.path.clone(), i.code)).collect();
                let want: BTreeSet<(String, Code)> = case.errors.iter().cloned().collect();
                if got != want {
                    failures.push(format!("{}: errors\n  got  {got:?}\n  want {want:?}", case.name));
                }
                if issues.iter().any(|i| i.message.is_empty() || i.message.ends_with('.')) {
                    failures.push(format!("{}: messages must be non-empty without a trailing period", case.name));
                }
            }
            (Ok(out), false) => failures.push(format!("{}: accepted, expected errors; output {out}", case.name)),
            (Err(issues), true) => failures.push(format!("{}: rejected: {issues:?}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{} corpus failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn corpus_outputs_are_fixed_points() {
    // Shaping is idempotent: a normalised record validates to itself.
    let now = Timestamp::parse(NOW).expect("valid clock");
    for case in cases().into_iter().filter(|c| c.ok && c.kind != Kind::Create) {
        let out = validate_json(case.kind, &input_bytes(&case), now).expect("valid");
        let again = validate_json(Kind::Record, &serde_json::to_vec(&out).expect("json"), now);
        assert_eq!(again.as_ref(), Ok(&out), "{}", case.name);
    }
}

#[test]
fn corpus_covers_every_input_code() {
    let seen: BTreeSet<Code> = cases().iter().flat_map(|c| c.errors.iter().map(|(_, code)| *code)).collect();
    // Query codes are covered by the query module's tests.
    let elsewhere = [Code::InvalidQuery, Code::InvalidCursor];
    let missing: Vec<&Code> = Code::ALL.iter().filter(|c| !seen.contains(c) && !elsewhere.contains(c)).collect();
    assert!(missing.is_empty(), "codes without a corpus case: {missing:?}");
}
