//! Moving values across the JS boundary in bulk. Text in: a JS string is encoded straight into
//! a reused buffer in linear memory (`TextEncoder.encodeInto`, one call). Values out: any
//! `Serialize` is written to a tape (ops, numbers, and all string bytes in one run) that
//! `tape.js` turns into plain JS objects with one UTF-8 decode for the whole value.
//!
//! Why not serde-wasm-bindgen: it builds the object with one `Reflect.set` and one string
//! decode per field, a boundary crossing each; with it the whole `validateJob` ran at about half
//! the speed (BENCHMARKS.md "## WASM"). The output is the same: plain objects, arrays, strings,
//! numbers, booleans and null, as `JSON.parse` of serde_json's text would give.

use serde::ser::{self, Serialize};
use std::cell::{Cell, RefCell};
use std::fmt;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/tape.js")]
extern "C" {
    /// Encodes `text` into `dest`; returns the bytes written, or -1 if `dest` was too small.
    #[wasm_bindgen(js_name = encodeInto)]
    fn encode_into(text: &JsString, dest: &mut [u8]) -> i32;
    /// The UTF-16 length of `text`.
    #[wasm_bindgen(js_name = stringLength)]
    fn string_length(text: &JsString) -> u32;
    /// Once: the known strings, and the memory the tapes live in.
    #[wasm_bindgen(js_name = setup)]
    fn setup(strings: Vec<JsValue>, memory: JsValue);
    /// Reads a tape at these addresses in linear memory (views made once per memory buffer,
    /// not three per call as slice arguments would).
    #[wasm_bindgen(js_name = decodeTape)]
    fn decode_tape(ops: usize, ops_len: usize, nums: usize, nums_len: usize, text: usize, text_len: usize) -> JsValue;
}

use js_sys::JsString;

/// Buffers above this are given back after use instead of being kept for the next call.
const KEEP_BYTES: usize = 1 << 20;

thread_local! {
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static TAPE: RefCell<Tape> = const { RefCell::new(Tape::new()) };
    static KNOWN_SENT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the UTF-8 bytes of a JS string (lone surrogates become U+FFFD, as everywhere
/// a JS string is encoded).
pub fn with_utf8<R>(text: &JsString, f: impl FnOnce(&[u8]) -> R) -> R {
    INPUT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let r = f(encode(text, &mut buf));
            if buf.capacity() > KEEP_BYTES {
                *buf = Vec::new();
            }
            r
        }
        // Re-entered (not done by any export today): use a buffer of its own.
        Err(_) => f(encode(text, &mut Vec::new())),
    })
}

fn encode<'b>(text: &JsString, buf: &'b mut Vec<u8>) -> &'b [u8] {
    if buf.is_empty() {
        buf.resize(4096, 0);
    }
    // Most inputs fit the buffer kept from the last call: one crossing.
    let written = encode_into(text, buf);
    if let Ok(n) = usize::try_from(written) {
        return &buf[..n];
    }
    // Every UTF-16 unit is at most 3 bytes of UTF-8.
    let need = string_length(text) as usize * 3;
    buf.resize(need.max(buf.len()), 0);
    let n = usize::try_from(encode_into(text, buf)).unwrap_or(0);
    &buf[..n]
}

/// A value as a plain JS object (or array, string, number, boolean, null).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> JsResult {
    if !KNOWN_SENT.with(Cell::get) {
        setup(KNOWN.iter().map(|s| JsValue::from_str(s)).collect(), wasm_bindgen::memory());
        KNOWN_SENT.with(|k| k.set(true));
    }
    TAPE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut tape) => {
            tape.clear();
            let r = write(&mut tape, value);
            if tape.text.capacity() > KEEP_BYTES || tape.ops.capacity() > KEEP_BYTES / 4 {
                *tape = Tape::new();
            }
            r
        }
        Err(_) => write(&mut Tape::new(), value),
    })
}

fn write<T: Serialize + ?Sized>(tape: &mut Tape, value: &T) -> JsResult {
    value.serialize(&mut *tape).map_err(|e| JsValue::from(js_sys::Error::new(&e.0)))?;
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

const SLOTS: usize = 512;
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
// The tape. Each op is tag (low 3 bits) | payload << 3.

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
const OBJ: u32 = 6;
/// payload: number of items.
const ARR: u32 = 7;
const MAX_PAYLOAD: usize = (u32::MAX >> 3) as usize;

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

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, Error>;
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

    fn op(&mut self, tag: u32, payload: usize) -> Result {
        if payload > MAX_PAYLOAD {
            return Err(Error("value too large to hand to JS".into()));
        }
        self.ops.push(tag | (payload as u32) << 3);
        Ok(())
    }

    fn str(&mut self, s: &str) -> Result {
        if let Some(i) = known(s) {
            return self.op(KNOWN_STR, i as usize);
        }
        self.text.extend_from_slice(s.as_bytes());
        self.utf16 += if s.is_ascii() { s.len() } else { s.encode_utf16().count() };
        self.op(STR, self.utf16)
    }

    fn num(&mut self, v: f64) -> Result {
        self.nums.push(v);
        self.op(NUM, 0)
    }

    /// Opens a container whose count is patched in by `Compound::end`.
    fn open(&mut self, tag: u32) -> Compound<'_> {
        let at = self.ops.len();
        self.ops.push(tag);
        Compound { tape: self, at, count: 0 }
    }
}

pub struct Compound<'a> {
    tape: &'a mut Tape,
    at: usize,
    count: usize,
}

impl Compound<'_> {
    fn end(self) -> Result {
        if self.count > MAX_PAYLOAD {
            return Err(Error("value too large to hand to JS".into()));
        }
        self.tape.ops[self.at] |= (self.count as u32) << 3;
        Ok(())
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.count += 1;
        value.serialize(&mut *self.tape)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result {
        self.count += 1;
        self.tape.str(key)?;
        value.serialize(&mut *self.tape)
    }
}

/// `{ variant: ... }`, the way serde_json writes an enum variant with data.
fn variant_wrapper<'a>(tape: &'a mut Tape, variant: &str) -> Result<Compound<'a>> {
    tape.ops.push(OBJ | 1 << 3);
    tape.str(variant)?;
    Ok(tape.open(ARR))
}

impl<'a> ser::Serializer for &'a mut Tape {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result {
        self.op(if v { TRUE } else { FALSE }, 0)
    }
    fn serialize_i8(self, v: i8) -> Result {
        self.num(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result {
        self.num(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result {
        self.num(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result {
        // Beyond 2^53 this rounds, exactly as JSON.parse of the same number would.
        self.num(v as f64)
    }
    fn serialize_i128(self, v: i128) -> Result {
        self.num(v as f64)
    }
    fn serialize_u8(self, v: u8) -> Result {
        self.num(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result {
        self.num(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result {
        self.num(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result {
        self.num(v as f64)
    }
    fn serialize_u128(self, v: u128) -> Result {
        self.num(v as f64)
    }
    fn serialize_f32(self, v: f32) -> Result {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result {
        // JSON has no NaN or infinity: serde_json writes null.
        if v.is_finite() { self.num(v) } else { self.op(NULL, 0) }
    }
    fn serialize_char(self, v: char) -> Result {
        self.str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result {
        self.str(v)
    }
    /// Display output (timestamps) straight into the text, without a String per value.
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result {
        struct Text<'t>(&'t mut Vec<u8>);
        impl fmt::Write for Text<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.extend_from_slice(s.as_bytes());
                Ok(())
            }
        }
        let start = self.text.len();
        fmt::write(&mut Text(&mut self.text), format_args!("{value}"))
            .map_err(|_| Error("formatting failed".into()))?;
        let added = &self.text[start..];
        self.utf16 += if added.is_ascii() {
            added.len()
        } else {
            std::str::from_utf8(added).map_or(added.len(), |s| s.encode_utf16().count())
        };
        self.op(STR, self.utf16)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result {
        let mut seq = self.open(ARR);
        for b in v {
            seq.item(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result {
        self.op(NULL, 0)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        self.op(NULL, 0)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        self.op(NULL, 0)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        self.ops.push(OBJ | 1 << 3);
        self.str(variant)?;
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>> {
        Ok(self.open(ARR))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>> {
        Ok(self.open(ARR))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>> {
        Ok(self.open(ARR))
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, variant: &'static str, _: usize) -> Result<Compound<'a>> {
        variant_wrapper(self, variant)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>> {
        Ok(self.open(OBJ))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>> {
        Ok(self.open(OBJ))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>> {
        self.ops.push(OBJ | 1 << 3);
        self.str(variant)?;
        Ok(self.open(OBJ))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.item(value)
    }
    fn end(self) -> Result {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.item(value)
    }
    fn end(self) -> Result {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.item(value)
    }
    fn end(self) -> Result {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.item(value)
    }
    fn end(self) -> Result {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.count += 1;
        key.serialize(MapKey(&mut *self.tape))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut *self.tape)
    }
    fn end(self) -> Result {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.field(key, value)
    }
    fn end(self) -> Result {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.field(key, value)
    }
    fn end(self) -> Result {
        Compound::end(self)
    }
}

/// Map keys: strings, and the scalars serde_json also writes as strings.
struct MapKey<'a>(&'a mut Tape);

impl MapKey<'_> {
    fn display(self, v: impl fmt::Display) -> Result {
        self.0.str(&v.to_string())
    }
}

fn key_error() -> Error {
    Error("a map key must be a string".into())
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result {
        self.0.str(v)
    }
    fn serialize_char(self, v: char) -> Result {
        self.0.str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.0.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_bool(self, v: bool) -> Result {
        self.display(v)
    }
    fn serialize_i8(self, v: i8) -> Result {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> Result {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> Result {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> Result {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> Result {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> Result {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> Result {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> Result {
        self.display(v)
    }
    fn serialize_f32(self, _: f32) -> Result {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result {
        Err(key_error())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result {
        Err(key_error())
    }
    fn serialize_none(self) -> Result {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(key_error())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(key_error())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use jobs_core::issue::Code;
    use jobs_core::model::{JobStatus, JobType};

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
        assert_eq!(known(&"x".repeat(LONGEST + 1)), None);
    }

    #[test]
    fn tape_shape() {
        let mut tape = Tape::new();
        let v = serde_json::json!({"ok": true, "job": {"id": "abc", "n": [1, 2.5, null], "é": "ü"}});
        v.serialize(&mut tape).expect("serialises");
        let k = |s: &str| KNOWN_STR | known(s).expect("known") << 3;
        // serde_json's map (without preserve_order) is sorted: "job" before "ok".
        let ops = [OBJ | 2 << 3, k("job"), OBJ | 3 << 3, k("id"), STR | 3 << 3, STR | 4 << 3, ARR | 3 << 3];
        assert_eq!(&tape.ops[..7], &ops);
        assert_eq!(&tape.ops[7..], &[NUM, NUM, NULL, STR | 5 << 3, STR | 6 << 3, k("ok"), TRUE]);
        assert_eq!(tape.nums, [1.0, 2.5]);
        assert_eq!(tape.text, "abcnéü".as_bytes());
    }
}
