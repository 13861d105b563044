//! jobs-wasm: jobs-core's rules for browsers and Node. Each export reads its input, calls the
//! core and hands the answer back as plain JS objects; nothing here decides anything.
//!
//! Inputs cross the boundary as JSON text, encoded straight into linear memory (reading a JS
//! object field by field measured about 2x slower, shared/NOTES.md); results come back as plain
//! JS objects (never `Map`s) through [`tape`]: the whole `validateJob` ran about 2x faster than
//! with serde-wasm-bindgen's JSON-compatible serializer (BENCHMARKS.md "## WASM").

mod tape;

use jobs_core::issue::{Code, Issue, Issues};
use jobs_core::model::{JobStatus, JobType};
use jobs_core::msg::Piece;
use jobs_core::validate::{self, Kind, Validated};
use jobs_core::{Timestamp, metadata, msg, status, text};
use js_sys::JsString;
use tape::{ToTape, to_js};
use wasm_bindgen::prelude::*;

/// rlsf's TLSF allocator in its small form instead of the std default dlmalloc: constant-time
/// allocation and free, 2.5 KB less gzipped. It replaced lol_alloc's address-ordered free list,
/// whose free walks that list: freeing many blocks in an order other than their addresses (the
/// keys of a large object, sorted) was quadratic: 16 s for a 4 MB create with 400,000 metadata
/// keys (rlsf 0.27 s, dlmalloc 0.18; `node wasm/bench/big.js`). rlsf is also 0.4 KB smaller, ~4%
/// slower on the usual small jobs in Node, the same in Chromium (BENCHMARKS.md "## WASM"). No
/// `unsafe` of ours.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: rlsf::SmallGlobalTlsf = rlsf::SmallGlobalTlsf::new();

/// The hand-written TypeScript (results, codes, overloads), appended to the generated `.d.ts`.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = include_str!("types.d.ts");

#[wasm_bindgen]
extern "C" {
    /// Web Crypto: in every browser and in Node >= 19 as `globalThis.crypto`.
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// `{ok, job}`, `{ok, errors}` or `{ok, metadata}`: `shape` is one of the tape's `OK_*`
/// shapes, whose second key names the value.
struct Outcome<'a> {
    ok: bool,
    shape: usize,
    value: &'a dyn ToTape,
}

impl ToTape for Outcome<'_> {
    fn to_tape(&self, tape: &mut tape::Tape) -> tape::Result {
        let key = tape::SHAPES.get(self.shape).and_then(|keys| keys.get(1)).copied().unwrap_or_default();
        let mut o = tape.shaped(self.shape);
        o.field("ok", &self.ok)?;
        o.field(key, self.value)?;
        o.end()
    }
}

fn invalid(errors: &[Issue]) -> Result<JsValue, JsValue> {
    to_js(&Outcome { ok: false, shape: tape::OK_ERRORS, value: &errors })
}

fn outcome(result: Result<Validated, Vec<Issue>>) -> Result<JsValue, JsValue> {
    match result {
        Ok(job) => to_js(&Outcome { ok: true, shape: tape::OK_JOB, value: &job }),
        Err(errors) => invalid(&errors),
    }
}

/// A string argument read as UTF-8 through the same buffer as the inputs (a `&str` parameter
/// would bring wasm-bindgen's own string-passing glue); `None` when it is not a string.
fn read_str<R>(value: &JsValue, f: impl FnOnce(&str) -> R) -> Option<R> {
    let text = value.dyn_ref::<JsString>()?;
    tape::with_string(text, |bytes| std::str::from_utf8(bytes).ok().map(f)).flatten()
}

fn kind(kind: &JsValue) -> Result<Kind, JsValue> {
    if let Some(kind) = tape::known_str(kind).and_then(Kind::parse) {
        return Ok(kind);
    }
    const WANT: &str = "kind must be \"record\", \"create\" or \"patch\"";
    match read_str(kind, |name| Kind::parse(name).ok_or_else(|| msg!(WANT, ", not ", text::Quoted(name)))) {
        Some(Ok(kind)) => Ok(kind),
        Some(Err(message)) => Err(js_sys::TypeError::new(&message).into()),
        None => Err(js_sys::TypeError::new(WANT).into()),
    }
}

fn status(value: &JsValue) -> Option<JobStatus> {
    tape::known_str(value).and_then(JobStatus::parse)
}

/// The caller's clock, or the page's; only a patch reads it.
fn clock(kind: Kind, now: Option<f64>) -> Timestamp {
    if kind != Kind::Patch {
        return Timestamp::MIN;
    }
    // `as` saturates (and maps NaN to 0); from_millis clamps into years 0001-9999.
    Timestamp::from_millis(now.unwrap_or_else(js_sys::Date::now) as i64)
}

/// `JSON.stringify(value)`; what JSON cannot hold (a cycle, a BigInt) is an `invalid_json` issue.
fn json_text(value: &JsValue) -> Result<JsString, Issue> {
    match js_sys::JSON::stringify(value) {
        // `undefined` and functions stringify to `undefined`: as absent as `null`.
        Ok(text) if text.is_string() => Ok(text),
        Ok(_) => Ok(JsString::from("null")),
        Err(e) => {
            // Reflect.get, not the `message` getter binding: a getter that throws would unwind
            // through the module (see tape::NOT_A_STRING); Reflect.get's throw comes back as Err.
            let why = e
                .dyn_ref::<js_sys::Error>()
                .and_then(|e| js_sys::Reflect::get(e, &JsValue::from_str("message")).ok())
                .and_then(|m| read_str(&m, str::to_owned))
                .unwrap_or_else(|| "not representable".to_owned());
            Err(Issue::new("", Code::InvalidJson, msg!("not representable as JSON: ", why)))
        }
    }
}

/// Validates JSON text as `kind` ("record", "create" or "patch"); see the TypeScript overloads.
#[wasm_bindgen(js_name = validateJob, skip_typescript)]
pub fn validate_job(json: &JsString, kind_name: &JsValue, now: Option<f64>) -> Result<JsValue, JsValue> {
    let kind = kind(kind_name)?;
    let now = clock(kind, now);
    match tape::with_string(json, |bytes| validate::validate_any(kind, bytes, now)) {
        Some(result) => outcome(result),
        None => Err(js_sys::TypeError::new("json must be a string").into()),
    }
}

/// `validateJob(JSON.stringify(input), kind, now)`.
#[wasm_bindgen(js_name = validateJobObject, skip_typescript)]
pub fn validate_job_object(input: &JsValue, kind_name: &JsValue, now: Option<f64>) -> Result<JsValue, JsValue> {
    let kind = kind(kind_name)?;
    let now = clock(kind, now);
    match json_text(input) {
        Ok(text) => outcome(tape::with_utf8(&text, |bytes| validate::validate_any(kind, bytes, now))),
        Err(issue) => outcome(Err(vec![issue])),
    }
}

/// Shapes a metadata object on its own: known keys typed and normalised, size and depth
/// bounded. Problems carry the same paths (`metadata.cpuCores`) and codes as `validateJob`.
#[wasm_bindgen(js_name = shapeMetadata, unchecked_return_type = "MetadataValidation")]
pub fn shape_metadata(#[wasm_bindgen(unchecked_param_type = "unknown")] input: &JsValue) -> Result<JsValue, JsValue> {
    let parsed = json_text(input).and_then(|text| {
        tape::with_utf8(&text, validate::json::parse_value).map_err(|e| Issue::new("", Code::InvalidJson, msg!(e)))
    });
    let value = match parsed {
        Ok(v) => v,
        Err(issue) => return invalid(&[issue]),
    };
    let mut issues = Issues::default();
    let shaped = metadata::shape(value, "metadata", &mut issues);
    if issues.is_empty() {
        to_js(&Outcome { ok: true, shape: tape::OK_METADATA, value: &shaped })
    } else {
        invalid(&issues.into_vec())
    }
}

/// Whether a job may move from `from` to `to` (false for an unknown status or a non-string).
/// Staying in the same status is not a transition.
#[wasm_bindgen(js_name = canTransition)]
pub fn can_transition(
    #[wasm_bindgen(unchecked_param_type = "JobStatus")] from: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "JobStatus")] to: &JsValue,
) -> bool {
    match (status(from), status(to)) {
        (Some(from), Some(to)) => status::can_transition(from, to),
        _ => false,
    }
}

/// The statuses a job in `from` may move to (none for a terminal or unknown status).
#[wasm_bindgen(js_name = nextStates, unchecked_return_type = "JobStatus[]")]
pub fn next_states(#[wasm_bindgen(unchecked_param_type = "JobStatus")] from: &JsValue) -> Result<JsValue, JsValue> {
    to_js(&status(from).map_or_else(Vec::new, status::next_states))
}

/// The search engine's document for a valid job record. Throws an `InvalidJobError` (an
/// `Error` with `errors`) when the value is not one.
#[wasm_bindgen(js_name = toSearchDocument, unchecked_return_type = "SearchDocument")]
pub fn to_search_document(#[wasm_bindgen(unchecked_param_type = "Job")] job: &JsValue) -> Result<JsValue, JsValue> {
    let checked =
        json_text(job).map_err(|issue| vec![issue]).and_then(|t| tape::with_utf8(&t, validate::record_from_json));
    match checked {
        Ok(valid) => to_js(&tape::SearchDocument(valid.job())),
        Err(issues) => {
            let mut summary = String::from("not a valid job: ");
            for (i, issue) in issues.iter().enumerate() {
                if i > 0 {
                    summary.push_str("; ");
                }
                issue.push_to(&mut summary);
            }
            let error = js_sys::Error::new(&summary);
            js_sys::Reflect::set(&error, &JsValue::from_str("errors"), &to_js(&issues)?)?;
            Err(error.into())
        }
    }
}

/// A new job id (UUIDv7) from `crypto.getRandomValues` and `Date.now()`: ordered by the
/// millisecond it was made in; ids of the same millisecond (74 random bits each) are in no
/// order, as the server's are.
#[wasm_bindgen(js_name = newJobId, unchecked_return_type = "string")]
pub fn new_job_id() -> Result<JsValue, JsValue> {
    let mut random = [0u8; 10];
    get_random_values(&mut random)?;
    let millis = js_sys::Date::now();
    // A clock before 1970 (or NaN) saturates to 0: still a valid, if early, v7 id.
    let id = text::new_uuid_v7(millis as u64, random);
    Ok(JsValue::from_str(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer())))
}

// The lists below come back through the tape, not as `Vec<String>` (whose glue and
// per-string copies cost more bytes than the lists themselves).

/// Every job status, in the order of the state machine.
#[wasm_bindgen(js_name = jobStatuses, unchecked_return_type = "JobStatus[]")]
pub fn job_statuses() -> Result<JsValue, JsValue> {
    to_js(&JobStatus::ALL)
}

/// Every job type.
#[wasm_bindgen(js_name = jobTypes, unchecked_return_type = "JobType[]")]
pub fn job_types() -> Result<JsValue, JsValue> {
    to_js(&JobType::ALL)
}

/// Every problem code the rules can report.
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "ErrorCode[]")]
pub fn error_codes() -> Result<JsValue, JsValue> {
    to_js(&Code::ALL)
}

/// The canonical architecture names (aliases such as `amd64` normalise to these; any other
/// lowercase token is kept as given).
#[wasm_bindgen(js_name = canonicalArches, unchecked_return_type = "string[]")]
pub fn canonical_arches() -> Result<JsValue, JsValue> {
    to_js(&text::ARCHES)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    //! Native checks of what does not need a JS engine: the TypeScript unions match the core.

    use super::*;

    const TYPES: &str = include_str!("types.d.ts");

    /// The quoted members of `export type NAME = "a" | "b" ...;` in the TypeScript section.
    fn union(name: &str) -> Vec<String> {
        let start = TYPES.find(&format!("export type {name} =")).unwrap_or_else(|| panic!("no type {name}"));
        let rest = &TYPES[start..];
        let body = &rest[..rest.find(';').unwrap_or(rest.len())];
        body.split('"').skip(1).step_by(2).map(str::to_owned).collect()
    }

    #[test]
    fn typescript_unions_match_the_core() {
        let codes: Vec<String> = Code::ALL.iter().map(|c| c.as_str().to_owned()).collect();
        assert_eq!(union("ErrorCode"), codes);
        let statuses: Vec<String> = JobStatus::ALL.iter().map(|s| s.as_str().to_owned()).collect();
        assert_eq!(union("JobStatus"), statuses);
        let types: Vec<String> = JobType::ALL.iter().map(|t| t.as_str().to_owned()).collect();
        assert_eq!(union("JobType"), types);
        assert_eq!(union("Kind"), ["record", "create", "patch"]);
    }
}
