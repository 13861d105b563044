//! Moving values across the JS boundary in bulk. Text in: a JS string is encoded straight into
//! a reused buffer in linear memory (`TextEncoder.encodeInto`, one call). Values out: a
//! [`ToTape`] value is written to a tape (ops, numbers, and all string bytes in one run) that
//! `tape.js` turns into plain JS objects with one UTF-8 decode for the whole value.
//!
//! Why not serde-wasm-bindgen: it builds the object with one `Reflect.set` and one string
//! decode per field, a boundary crossing each; with it the whole `validateJob` ran at about half
//! the speed (BENCHMARKS.md "## WASM"). The output is the same: plain objects, arrays, strings,
//! numbers, booleans and null, as `JSON.parse` of serde_json's text would give.

use jobs_core::issue::{Code, Issue};
use jobs_core::metadata::KnownKey;
use jobs_core::model::{Job, JobStatus, JobType};
use jobs_core::time::Timestamp;
use jobs_core::tree::{Json, Object};
use jobs_core::validate::Validated;
use std::cell::Cell;
use std::fmt;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/tape.js")]
extern "C" {
    /// Encodes `text` into the `len` bytes of linear memory at `ptr`; returns the bytes
    /// written, -1 if they were too few, or [`NOT_A_STRING`]. An address, not a `&mut [u8]`:
    /// JS keeps its view of the reused buffer between calls instead of making one per call (a
    /// `subarray` cost ~0.15 µs of Chromium's ~1 µs `encodeInto`).
    #[wasm_bindgen(js_name = encodeInto)]
    fn encode_into(text: &JsString, ptr: usize, len: usize) -> i32;
    /// The UTF-16 length of `text`.
    #[wasm_bindgen(js_name = stringLength)]
    fn string_length(text: &JsString) -> u32;
    /// Once: the known strings (joined by newlines), and the memory the tapes live in.
    #[wasm_bindgen(js_name = setup)]
    fn setup(strings: &JsValue, memory: JsValue);
    /// The index in KNOWN of a JS value that is one of those strings, or -1. A Map lookup in JS:
    /// reading a short argument through `encodeInto` cost ~5% of `validateJob` in Chromium.
    #[wasm_bindgen(js_name = knownIndex)]
    fn known_index(value: &JsValue) -> i32;
    /// Reads a tape at these addresses in linear memory (views made once per memory buffer,
    /// not three per call as slice arguments would).
    #[wasm_bindgen(js_name = decodeTape)]
    fn decode_tape(ops: usize, ops_len: usize, nums: usize, nums_len: usize, text: usize, text_len: usize) -> JsValue;
    /// `Number` of the ASCII text at this address in linear memory.
    #[wasm_bindgen(js_name = number)]
    fn number(ptr: usize, len: usize) -> f64;
}

use js_sys::JsString;
use uuid::Uuid;

/// Buffers above this are given back after use instead of being kept for the next call.
const KEEP_BYTES: usize = 1 << 20;

// Buffers kept between calls: taken out for a call and put back after it (a call that
// re-enters finds none and makes its own). `try_with`, not `with`: no panic path (message and
// formatting) for thread-local destruction, which does not happen on wasm32.
thread_local! {
    static INPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static TAPE: Cell<Tape> = const { Cell::new(Tape::new()) };
    static KNOWN_SENT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the UTF-8 bytes of a JS string (lone surrogates become U+FFFD, as everywhere
/// a JS string is encoded); `None`, without calling `f`, when `text` is not a string after all
/// (a `&JsString` parameter is not checked on the way in).
pub fn with_string<R>(text: &JsString, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    with_input(text, |bytes| bytes.map(f))
}

/// [`with_string`] for text that is a string by construction (`JSON.stringify`'s); were it not
/// one, `f` would read no bytes (and report empty input) rather than anything trapping.
pub fn with_utf8<R>(text: &JsString, f: impl FnOnce(&[u8]) -> R) -> R {
    with_input(text, |bytes| f(bytes.unwrap_or_default()))
}

fn with_input<R>(text: &JsString, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    let mut buf = INPUT.try_with(Cell::take).unwrap_or_default();
    let r = f(encode(text, &mut buf));
    if buf.capacity() <= KEEP_BYTES {
        let _ = INPUT.try_with(|cell| cell.set(buf));
    }
    r
}

/// What `encodeInto` answers for a value that is not a string. It must not throw: an exception
/// unwinding through the module skips the epilogues that give back the shadow stack and the
/// borrowed-reference slots of wasm-bindgen's table, and a few thousand of them broke the
/// module for good ("table index is out of bounds").
const NOT_A_STRING: i32 = -2;

fn encode<'b>(text: &JsString, buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    ensure_setup();
    if buf.is_empty() {
        buf.resize(4096, 0);
    }
    // Most inputs fit the buffer kept from the last call: one crossing.
    let written = encode_into(text, buf.as_mut_ptr() as usize, buf.len());
    if written == NOT_A_STRING {
        return None;
    }
    if let Ok(n) = usize::try_from(written) {
        return Some(&buf[..n]);
    }
    // Every UTF-16 unit is at most 3 bytes of UTF-8.
    let need = string_length(text) as usize * 3;
    buf.resize(need.max(buf.len()), 0);
    let n = usize::try_from(encode_into(text, buf.as_mut_ptr() as usize, buf.len())).unwrap_or(0);
    Some(&buf[..n])
}

fn ensure_setup() {
    if !KNOWN_SENT.try_with(|sent| sent.replace(true)).unwrap_or(false) {
        setup(&JsValue::from_str(&KNOWN.join("\n")), wasm_bindgen::memory());
        #[cfg(target_arch = "wasm32")]
        jobs_core::use_host_numbers(host_number);
    }
}

/// The core's JSON reader hands numbers off its fast path (more than 2^53 in the significand, or
/// beyond 10^±22) to JavaScript's `Number`: the conversion `JSON.parse` uses, correctly rounded
/// in V8, SpiderMonkey and JavaScriptCore, so `validateJob` reads every number as `JSON.parse`
/// does by construction. The core's own `float::nearest` (what the server uses) stays out of the
/// package: 1.1 KB gzipped. Every input the core reads passes `encode` first, which installs this.
#[cfg(target_arch = "wasm32")]
fn host_number(text: &[u8]) -> Option<f64> {
    Some(number(text.as_ptr() as usize, text.len())).filter(|f| f.is_finite())
}

/// The known string a JS value is (a kind, a status), if it is one.
pub fn known_str(value: &JsValue) -> Option<&'static str> {
    ensure_setup();
    KNOWN.get(usize::try_from(known_index(value)).ok()?).copied()
}

/// A value as a plain JS object (or array, string, number, boolean, null).
pub fn to_js(value: &dyn ToTape) -> JsResult {
    ensure_setup();
    let mut tape = TAPE.try_with(Cell::take).unwrap_or_default();
    tape.clear();
    let r = write(&mut tape, value);
    if tape.text.capacity() <= KEEP_BYTES && tape.ops.capacity() <= KEEP_BYTES / 4 {
        let _ = TAPE.try_with(|cell| cell.set(tape));
    }
    r
}

fn write(tape: &mut Tape, value: &dyn ToTape) -> JsResult {
    value.to_tape(tape).map_err(|e| JsValue::from(js_sys::Error::new(&e.0)))?;
    // Addresses only: nothing is read through them on this side.
    Ok(decode_tape(
        tape.ops.as_ptr() as usize,
        tape.ops.len(),
        tape.nums.as_ptr() as usize,
        tape.nums.len(),
        tape.text.as_ptr() as usize,
        tape.text.len(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Strings JS holds once (keys, enum values, codes): sent as an index, not as text.

/// Every field name, enum value and code the exports produce. Order is the contract with
/// `tape.js` (sent to it once); a test checks it covers the core's lists.
pub const KNOWN: &[&str] = &[
    // Result wrappers and issues.
    "ok",
    "job",
    "errors",
    "metadata",
    "path",
    "code",
    "message",
    "",
    // Job fields (jobs_core::spec::JOB_FIELDS) and the search document's extras.
    "id",
    "workspace_id",
    "user_id",
    "status",
    "type",
    "project_name",
    "hostname",
    "arch",
    "user_email",
    "error_message",
    "created_at",
    "updated_at",
    "completed_at",
    "version",
    "created_at_us",
    "updated_at_us",
    "completed_at_us",
    // Known metadata keys.
    "dockerImageId",
    "cpuCores",
    "memoryGb",
    "buildDurationMs",
    // Statuses and types.
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
    "BUILD",
    "TEST",
    "DEPLOY",
    "SCAN",
    // Kinds (read from the arguments, never written).
    "record",
    "create",
    "patch",
    // Canonical architectures.
    "x86_64",
    "arm64",
    "armv7",
    "i386",
    "ppc64le",
    "s390x",
    "riscv64",
    // Codes.
    "required",
    "invalid_type",
    "unknown_field",
    "too_long",
    "blank",
    "control_chars",
    "invalid_uuid",
    "nil_uuid",
    "unknown_status",
    "unknown_type",
    "invalid_hostname",
    "invalid_arch",
    "invalid_email",
    "invalid_timestamp",
    "completed_at_required",
    "completed_at_not_allowed",
    "completed_before_created",
    "updated_before_created",
    "error_message_not_allowed",
    "bad_transition",
    "metadata_not_object",
    "metadata_too_large",
    "metadata_too_deep",
    "invalid_metadata_key",
    "invalid_digest",
    "out_of_range",
    "not_integer",
    "not_number",
    "invalid_json",
    "invalid_query",
    "invalid_cursor",
];

/// Open addressing at load 0.63 (80 strings): the same speed as 512 slots in `ab.js`, 0.15 KB
/// less gzipped.
const SLOTS: usize = 128;
const fn longest() -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < KNOWN.len() {
        if KNOWN[i].len() > n {
            n = KNOWN[i].len();
        }
        i += 1;
    }
    n
}
const LONGEST: usize = longest();

const fn hash(b: &[u8]) -> usize {
    // Length and three bytes: cheap for every string written, and spread enough for KNOWN
    // (the probe below settles collisions; `tests::known_covers_the_core_lists_once`).
    if b.is_empty() {
        return 0;
    }
    let n = b.len();
    let h = (n as u32).wrapping_mul(0x9e37_79b1)
        ^ (b[0] as u32).wrapping_mul(0x85eb_ca77)
        ^ (b[n - 1] as u32).wrapping_mul(0xc2b2_ae3d)
        ^ (b[n / 2] as u32).wrapping_mul(0x27d4_eb2f);
    (h ^ (h >> 15)) as usize % SLOTS
}

/// Open addressing: slot -> index + 1 into KNOWN (0 = empty). Built at compile time.
const TABLE: [u16; SLOTS] = {
    let mut t = [0u16; SLOTS];
    let mut i = 0;
    while i < KNOWN.len() {
        let mut slot = hash(KNOWN[i].as_bytes());
        while t[slot] != 0 {
            slot = (slot + 1) % SLOTS;
        }
        t[slot] = i as u16 + 1;
        i += 1;
    }
    t
};

fn known(s: &str) -> Option<u32> {
    if s.len() > LONGEST {
        return None;
    }
    let mut slot = hash(s.as_bytes());
    loop {
        let i = TABLE[slot] as usize;
        if i == 0 {
            return None;
        }
        if KNOWN[i - 1] == s {
            return Some(i as u32 - 1);
        }
        slot = (slot + 1) % SLOTS;
    }
}

// ---------------------------------------------------------------------------------------------
// The tape. Each op is tag (low 4 bits) | payload << 4.

const NULL: u32 = 0;
const TRUE: u32 = 1;
const FALSE: u32 = 2;
/// The next number in `nums`.
const NUM: u32 = 3;
/// The next string in `text`; payload: its end, in UTF-16 units from the start of `text`.
const STR: u32 = 4;
/// payload: index into KNOWN.
const KNOWN_STR: u32 = 5;
/// payload: number of entries; each entry is a key (STR or KNOWN_STR) then a value.
pub const OBJ: u32 = 6;
/// payload: number of items.
const ARR: u32 = 7;
/// An object of a fixed shape (payload: its index in [`SHAPES`]): only its values follow, in
/// the shape's key order. `tape.js` builds it with an object literal, about 6x faster in V8
/// than the same keys stored one by one (BENCHMARKS.md "## WASM").
const SHAPED: u32 = 8;
const MAX_PAYLOAD: usize = (u32::MAX >> 4) as usize;

/// The fixed shapes, by index; `tape.js` has one object literal per entry, with these keys
/// in this order (a test reads them there).
pub const SHAPES: &[&[&str]] = &[
    // The job: the `job` table's columns, which are `Job`'s serde fields in order.
    &JOB_KEYS,
    &["path", "code", "message"],
    &["ok", "job"],
    &["ok", "errors"],
    &["ok", "metadata"],
];
const JOB_KEYS: [&str; jobs_core::spec::JOB_FIELDS.len()] = {
    let mut keys = [""; jobs_core::spec::JOB_FIELDS.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = jobs_core::spec::JOB_FIELDS[i].name;
        i += 1;
    }
    keys
};
const JOB: usize = 0;
const ISSUE: usize = 1;
pub const OK_JOB: usize = 2;
pub const OK_ERRORS: usize = 3;
pub const OK_METADATA: usize = 4;

#[derive(Default)]
pub struct Tape {
    ops: Vec<u32>,
    nums: Vec<f64>,
    text: Vec<u8>,
    utf16: usize,
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T = ()> = std::result::Result<T, Error>;
type JsResult = std::result::Result<JsValue, JsValue>;

impl Tape {
    pub const fn new() -> Tape {
        Tape { ops: Vec::new(), nums: Vec::new(), text: Vec::new(), utf16: 0 }
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.nums.clear();
        self.text.clear();
        self.utf16 = 0;
    }

    pub fn op(&mut self, tag: u32, payload: usize) -> Result {
        if payload > MAX_PAYLOAD {
            return Err(Error("value too large to hand to JS".into()));
        }
        self.ops.push(tag | (payload as u32) << 4);
        Ok(())
    }

    fn str(&mut self, s: &str) -> Result {
        match known(s) {
            Some(i) => self.op(KNOWN_STR, i as usize),
            None => self.text(s),
        }
    }

    /// Free text, never one of KNOWN's strings (ids, names, addresses): no lookup.
    fn text(&mut self, s: &str) -> Result {
        self.text.extend_from_slice(s.as_bytes());
        self.utf16 += if s.is_ascii() { s.len() } else { s.encode_utf16().count() };
        self.op(STR, self.utf16)
    }

    fn num(&mut self, v: f64) -> Result {
        self.nums.push(v);
        self.op(NUM, 0)
    }

    /// Opens a container whose count is patched in by `Compound::end`.
    pub fn open(&mut self, tag: u32) -> Compound<'_> {
        let at = self.ops.len();
        self.ops.push(tag);
        Compound { tape: self, at, count: 0, shape: None }
    }

    /// Opens an object of shape `index` in [`SHAPES`]: its fields must come in the shape's key
    /// order, and only their values are written.
    pub fn shaped(&mut self, index: usize) -> Compound<'_> {
        let at = self.ops.len();
        self.ops.push(SHAPED | (index as u32) << 4);
        Compound { tape: self, at, count: 0, shape: SHAPES.get(index).copied() }
    }
}

pub struct Compound<'a> {
    tape: &'a mut Tape,
    at: usize,
    count: usize,
    /// The keys of a SHAPED object.
    shape: Option<&'static [&'static str]>,
}

impl Compound<'_> {
    pub fn end(self) -> Result {
        if let Some(keys) = self.shape {
            return if self.count == keys.len() { Ok(()) } else { Err(Error("incomplete shaped object".into())) };
        }
        if self.count > MAX_PAYLOAD {
            return Err(Error("value too large to hand to JS".into()));
        }
        self.tape.ops[self.at] |= (self.count as u32) << 4;
        Ok(())
    }

    /// One function for every field of every shape (not one copy per value type).
    #[inline(never)]
    pub fn field(&mut self, key: &str, value: &dyn ToTape) -> Result {
        match self.shape {
            // The writers' key order is fixed code, held to SHAPES by `same_values_as_serde`
            // (which decodes shaped objects with SHAPES' keys); checked again in debug builds,
            // not per value in the package.
            Some(keys) if self.count < keys.len() => debug_assert_eq!(keys[self.count], key, "shape key order"),
            Some(_) => return Err(Error("more fields than the shape has".into())),
            None => self.tape.str(key)?,
        }
        self.count += 1;
        value.to_tape(self.tape)
    }
}

// ---------------------------------------------------------------------------------------------
// What the exports hand back, written by hand: a generic serde `Serializer` here was
// monomorphised for every output type (~10 KB raw of the wasm, BENCHMARKS.md "## WASM").
// The shapes are serde's derived ones for the same types (field order, `type` for `job_type`,
// Display for timestamps, hyphenated lowercase uuids, `null` for `None` and non-finite numbers);
// `tests::same_values_as_serde` holds them to `serde_json::to_value` on the corpus.

/// A value the tape can hold.
pub trait ToTape {
    fn to_tape(&self, tape: &mut Tape) -> Result;
}

impl<T: ToTape + ?Sized> ToTape for &T {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        (**self).to_tape(tape)
    }
}

impl<T: ToTape> ToTape for Option<T> {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        match self {
            Some(v) => v.to_tape(tape),
            None => tape.op(NULL, 0),
        }
    }
}

impl<T: ToTape> ToTape for [T] {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.op(ARR, self.len())?;
        self.iter().try_for_each(|v| v.to_tape(tape))
    }
}

impl<T: ToTape> ToTape for Vec<T> {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        self.as_slice().to_tape(tape)
    }
}

impl ToTape for bool {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.op(if *self { TRUE } else { FALSE }, 0)
    }
}

impl ToTape for f64 {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        // JSON has no NaN or infinity: serde_json writes null.
        if self.is_finite() { tape.num(*self) } else { tape.op(NULL, 0) }
    }
}

impl ToTape for i64 {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        // Beyond 2^53 this rounds, exactly as JSON.parse of the same number would.
        tape.num(*self as f64)
    }
}

impl ToTape for str {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.str(self)
    }
}

impl ToTape for String {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.str(self)
    }
}

impl ToTape for Uuid {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.text(self.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }
}

impl ToTape for Timestamp {
    /// The Display text straight into the tape (no `core::fmt` on the way).
    fn to_tape(&self, tape: &mut Tape) -> Result {
        let text = self.to_text();
        tape.text.extend_from_slice(&text);
        // Always ASCII (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
        tape.utf16 += text.len();
        tape.op(STR, tape.utf16)
    }
}

/// The index in KNOWN of a string that is there (at compile time; a missing one fails the build).
const fn known_at(s: &str) -> usize {
    let mut i = 0;
    while i < KNOWN.len() {
        let k = KNOWN[i].as_bytes();
        if k.len() == s.len() {
            let mut j = 0;
            while j < k.len() && k[j] == s.as_bytes()[j] {
                j += 1;
            }
            if j == k.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not in KNOWN")
}

/// Where each status and type is in KNOWN, by the enums' declaration order (no lookup per value).
const STATUS_AT: [usize; 5] =
    [known_at("QUEUED"), known_at("RUNNING"), known_at("SUCCEEDED"), known_at("FAILED"), known_at("CANCELLED")];
const TYPE_AT: [usize; 4] = [known_at("BUILD"), known_at("TEST"), known_at("DEPLOY"), known_at("SCAN")];
/// The codes are in KNOWN in `Code`'s declaration order, from the first one: no lookup, and no
/// second copy of their names in the package.
const CODE_AT: usize = known_at("required");

impl ToTape for JobStatus {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.op(KNOWN_STR, STATUS_AT[*self as usize])
    }
}

impl ToTape for Code {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.op(KNOWN_STR, CODE_AT + *self as usize)
    }
}

impl ToTape for JobType {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.op(KNOWN_STR, TYPE_AT[*self as usize])
    }
}

/// Free text in a job (names, addresses, messages): written without the KNOWN lookup.
struct Text<'a>(&'a str);

impl ToTape for Text<'_> {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.text(self.0)
    }
}

fn free(s: &Option<String>) -> Option<Text<'_>> {
    s.as_deref().map(Text)
}

impl ToTape for Json {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        match self {
            Json::Null => tape.op(NULL, 0),
            Json::Bool(b) => b.to_tape(tape),
            // u64 and i64 as f64 round as JSON.parse would; a serde_json float is finite.
            Json::Number(n) => n.as_f64().to_tape(tape),
            Json::String(s) => tape.str(s),
            Json::Array(items) => items.to_tape(tape),
            Json::Object(map) => map.to_tape(tape),
        }
    }
}

impl ToTape for Object {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        tape.op(OBJ, self.len())?;
        self.iter().try_for_each(|(k, v)| {
            tape.str(k)?;
            v.to_tape(tape)
        })
    }
}

impl ToTape for Issue {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        let mut o = tape.shaped(ISSUE);
        o.field("path", &self.path)?;
        o.field("code", &self.code)?;
        o.field("message", &self.message)?;
        o.end()
    }
}

impl ToTape for Job {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        job(self, tape, false)
    }
}

/// The search engine's document for a job (`jobs_core::search::document`'s fields, in order).
pub struct SearchDocument<'a>(pub &'a Job);

impl ToTape for SearchDocument<'_> {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        job(self.0, tape, true)
    }
}

/// A job's fields; with `document`, `known_metadata` after `metadata` and the microsecond keys
/// at the end, as `search::Document` has them.
fn job(job: &Job, tape: &mut Tape, document: bool) -> Result {
    // A document has more keys than the job's shape.
    let mut o = if document { tape.open(OBJ) } else { tape.shaped(JOB) };
    o.field("id", &job.id)?;
    o.field("workspace_id", &job.workspace_id)?;
    o.field("user_id", &job.user_id)?;
    o.field("status", &job.status)?;
    o.field("type", &job.job_type)?;
    o.field("project_name", &Text(&job.project_name))?;
    o.field("hostname", &free(&job.hostname))?;
    // The arch is often a canonical name, which KNOWN holds.
    o.field("arch", &job.arch)?;
    o.field("user_email", &free(&job.user_email))?;
    o.field("error_message", &free(&job.error_message))?;
    o.field("metadata", &job.metadata)?;
    if document {
        o.field("known_metadata", &KnownMetadata(&job.metadata))?;
    }
    o.field("created_at", &job.created_at)?;
    o.field("updated_at", &job.updated_at)?;
    o.field("completed_at", &job.completed_at)?;
    o.field("version", &job.version)?;
    if document {
        o.field("created_at_us", &job.created_at.as_micros())?;
        o.field("updated_at_us", &job.updated_at.as_micros())?;
        o.field("completed_at_us", &job.completed_at.map(Timestamp::as_micros))?;
    }
    o.end()
}

/// The known metadata keys whose values have their field's type ([`KnownKey::typed_value`]).
struct KnownMetadata<'a>(&'a Object);

impl ToTape for KnownMetadata<'_> {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        let mut o = tape.open(OBJ);
        for key in KnownKey::ALL {
            if let Some(v) = key.typed_value(self.0) {
                o.field(key.name(), v)?;
            }
        }
        o.end()
    }
}

impl ToTape for Validated {
    fn to_tape(&self, tape: &mut Tape) -> Result {
        match self {
            Validated::Record(valid) => valid.job().to_tape(tape),
            Validated::Patched(job) => job.to_tape(tape),
            Validated::Create(new) => {
                let mut o = tape.open(OBJ);
                o.field("id", &new.id())?;
                o.field("workspace_id", &new.workspace_id())?;
                o.field("status", &new.status())?;
                o.field("type", &new.job_type())?;
                o.field("project_name", &new.project_name())?;
                o.field("hostname", &new.hostname())?;
                o.field("arch", &new.arch())?;
                o.field("metadata", new.metadata())?;
                o.end()
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use jobs_core::issue::Code;
    use jobs_core::model::{JobStatus, JobType};
    use serde_json::Value;

    #[test]
    fn known_covers_the_core_lists_once() {
        let mut all: Vec<&str> = KNOWN.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), KNOWN.len(), "duplicates in KNOWN");
        let want = Code::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(JobStatus::ALL.iter().map(|s| s.as_str()))
            .chain(JobType::ALL.iter().map(|t| t.as_str()))
            .chain(jobs_core::text::ARCHES.iter().copied())
            .chain(jobs_core::spec::JOB_FIELDS.iter().map(|f| f.name))
            .chain(jobs_core::metadata::KnownKey::ALL.iter().map(|k| k.name()));
        for s in want {
            assert_eq!(known(s).map(|i| KNOWN[i as usize]), Some(s), "{s} missing from KNOWN");
        }
        assert_eq!(known("nope"), None);
        for status in JobStatus::ALL {
            assert_eq!(KNOWN[STATUS_AT[*status as usize]], status.as_str());
        }
        for t in JobType::ALL {
            assert_eq!(KNOWN[TYPE_AT[*t as usize]], t.as_str());
        }
        for code in Code::ALL {
            assert_eq!(KNOWN.get(CODE_AT + *code as usize).copied(), Some(code.as_str()));
        }
        assert_eq!(known(&"x".repeat(LONGEST + 1)), None);
    }

    #[test]
    fn tape_shape() {
        let mut tape = Tape::new();
        let v = Json::from(serde_json::json!({"ok": true, "job": {"id": "abc", "n": [1, 2.5, null], "é": "ü"}}));
        v.to_tape(&mut tape).expect("written");
        let k = |s: &str| KNOWN_STR | known(s).expect("known") << 4;
        // An object's members are sorted: "job" before "ok".
        let ops = [OBJ | 2 << 4, k("job"), OBJ | 3 << 4, k("id"), STR | 3 << 4, STR | 4 << 4, ARR | 3 << 4];
        assert_eq!(&tape.ops[..7], &ops);
        assert_eq!(&tape.ops[7..], &[NUM, NUM, NULL, STR | 5 << 4, STR | 6 << 4, k("ok"), TRUE]);
        assert_eq!(tape.nums, [1.0, 2.5]);
        assert_eq!(tape.text, "abcnéü".as_bytes());
        // A shaped object: the shape's index, then only values.
        let mut tape = Tape::new();
        let issue = Issue::new("a", Code::Required, "is required");
        issue.to_tape(&mut tape).expect("written");
        assert_eq!(tape.ops, [SHAPED | (ISSUE as u32) << 4, STR | 1 << 4, k("required"), STR | 12 << 4]);
    }

    /// `tape.js` builds each shape with a literal of the same keys in the same order.
    #[test]
    fn shapes_match_tape_js() {
        let js = include_str!("tape.js");
        let start = js.find("const shapes = [").expect("shapes in tape.js");
        let body = &js[start..start + js[start..].find("\n];").expect("end of shapes")];
        let literals: Vec<Vec<&str>> = body
            .split("() => ({")
            .skip(1)
            .map(|lit| {
                lit.split(": value()")
                    .filter_map(|k| k.rsplit([' ', '\n', ',']).next())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .collect();
        let want: Vec<Vec<&str>> = SHAPES.iter().map(|keys| keys.to_vec()).collect();
        assert_eq!(literals, want);
        // More values than the shape has is an error, not a wrong object.
        let mut tape = Tape::new();
        let mut o = tape.shaped(OK_JOB);
        assert!(o.field("ok", &true).is_ok() && o.field("job", &true).is_ok());
        assert!(o.field("job", &true).is_err());
    }

    /// A writer that strays from its shape's key order is caught in debug builds (tests).
    #[test]
    #[should_panic(expected = "shape key order")]
    fn shape_order_is_checked_in_debug_builds() {
        let mut tape = Tape::new();
        let _ = tape.shaped(ISSUE).field("code", &Code::Required);
    }

    /// What `tape.js` makes of a tape, as a `serde_json::Value` (numbers as f64).
    fn decode(tape: &Tape) -> Value {
        struct R<'t> {
            tape: &'t Tape,
            text: Vec<u16>,
            at: usize,
            num: usize,
            cut: usize,
        }
        impl R<'_> {
            fn string(&mut self, op: u32) -> String {
                let end = (op >> 4) as usize;
                let s = String::from_utf16(&self.text[self.cut..end]).expect("utf-16");
                self.cut = end;
                s
            }
            fn key(&mut self) -> String {
                let op = self.tape.ops[self.at];
                self.at += 1;
                if op & 15 == KNOWN_STR { KNOWN[(op >> 4) as usize].to_owned() } else { self.string(op) }
            }
            fn value(&mut self) -> Value {
                let op = self.tape.ops[self.at];
                self.at += 1;
                match op & 15 {
                    NULL => Value::Null,
                    TRUE => Value::Bool(true),
                    FALSE => Value::Bool(false),
                    NUM => {
                        self.num += 1;
                        serde_json::Number::from_f64(self.tape.nums[self.num - 1]).map_or(Value::Null, Value::Number)
                    }
                    STR => Value::String(self.string(op)),
                    KNOWN_STR => Value::String(KNOWN[(op >> 4) as usize].to_owned()),
                    OBJ => (0..op >> 4).map(|_| (self.key(), self.value())).collect(),
                    SHAPED => SHAPES[(op >> 4) as usize].iter().map(|k| ((*k).to_owned(), self.value())).collect(),
                    _ => (0..op >> 4).map(|_| self.value()).collect(),
                }
            }
        }
        let text = std::str::from_utf8(&tape.text).expect("utf-8").encode_utf16().collect();
        R { tape, text, at: 0, num: 0, cut: 0 }.value()
    }

    /// serde_json's value with every number as the f64 JS would hold.
    fn as_js(v: Value) -> Value {
        match v {
            Value::Number(n) => n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number),
            Value::Array(a) => a.into_iter().map(as_js).collect(),
            Value::Object(o) => o.into_iter().map(|(k, v)| (k, as_js(v))).collect(),
            v => v,
        }
    }

    #[track_caller]
    fn same(written: &dyn ToTape, serde: Value) {
        let mut tape = Tape::new();
        written.to_tape(&mut tape).expect("written");
        assert_eq!(decode(&tape), as_js(serde));
    }

    /// The hand-written shapes are serde's derived ones: every corpus case's result (jobs, new
    /// jobs, patched jobs, issue lists), and the search document of every valid record.
    #[test]
    fn same_values_as_serde() {
        let corpus = include_str!("../../core/tests/data/corpus.ndjson");
        let now = Timestamp::parse("2024-06-01T00:00:00Z").expect("clock");
        let mut documents = 0;
        for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
            let case: Value = serde_json::from_str(line).expect("corpus line");
            let kind = jobs_core::validate::Kind::parse(case["kind"].as_str().expect("kind")).expect("a kind");
            let text = match case.get("raw") {
                Some(Value::String(raw)) => raw.clone(),
                _ => case["input"].to_string(),
            };
            match jobs_core::validate::validate_any(kind, text.as_bytes(), now) {
                Ok(v) => {
                    same(&v, serde_json::to_value(&v).expect("serde"));
                    let job = match &v {
                        Validated::Record(valid) => Some(valid.job()),
                        Validated::Patched(job) => Some(job),
                        Validated::Create(_) => None,
                    };
                    if let Some(job) = job {
                        let doc = jobs_core::search::document(job);
                        same(&SearchDocument(job), serde_json::to_value(doc).expect("serde"));
                        documents += 1;
                    }
                }
                Err(issues) => same(&issues, serde_json::to_value(&issues).expect("serde")),
            }
        }
        assert!(documents >= 10, "only {documents} jobs");
        let odd = serde_json::json!({"a": [1e300, -0.0, 18446744073709551615u64, -9007199254740993i64, "\u{1F600}x"], "": {}});
        same(&Json::from(odd.clone()), odd);
        let mut metadata = Object::new();
        for (k, v) in
            [("cpuCores", "4"), ("memoryGb", "4.5"), ("dockerImageId", "sha256:x"), ("buildDurationMs", "true")]
        {
            metadata.insert(k.to_owned(), serde_json::from_str(v).unwrap_or(Json::String(v.to_owned())));
        }
        let mut job: Job = serde_json::from_str(
            corpus
                .lines()
                .next()
                .and_then(|l| {
                    let case: Value = serde_json::from_str(l).ok()?;
                    Some(case["input"].to_string())
                })
                .as_deref()
                .expect("first case"),
        )
        .expect("a job");
        job.metadata = metadata;
        job.completed_at = None;
        same(&SearchDocument(&job), serde_json::to_value(jobs_core::search::document(&job)).expect("serde"));
    }
}
