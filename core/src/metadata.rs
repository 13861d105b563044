//! Shaping of the JSONB `metadata` column: known keys typed and normalised, unknown keys kept
//! as given, bounded size and depth; RFC 7396 merge patch for updates.

use crate::issue::{Code, Issues};
use crate::json_len;
use crate::msg;
use crate::text::{char_len_exceeds, has_nul};
use crate::tree::{Json, Object};
use crate::validate::json::{NumberText, number_text};
use serde_json::Number;
use std::cmp::Ordering;

pub const MAX_BYTES: usize = 32 * 1024;
/// The metadata object itself is depth 1.
pub const MAX_DEPTH: usize = 8;
pub const KEY_MAX: usize = 128;
/// The key rule in words (a test holds it to [`KEY_MAX`]).
const KEY_RULE: &str = "metadata keys must be 1 to 128 characters without NUL";

/// The keys with a known meaning, typed in the search mapping and normalised on write.
pub const DOCKER_IMAGE_ID: &str = "dockerImageId";
pub const CPU_CORES: &str = "cpuCores";
pub const MEMORY_GB: &str = "memoryGb";
pub const BUILD_DURATION_MS: &str = "buildDurationMs";

/// The numeric known keys and their search/SQL types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownKey {
    DockerImageId,
    CpuCores,
    MemoryGb,
    BuildDurationMs,
}

impl KnownKey {
    pub const ALL: &'static [KnownKey] =
        &[KnownKey::DockerImageId, KnownKey::CpuCores, KnownKey::MemoryGb, KnownKey::BuildDurationMs];

    pub fn name(self) -> &'static str {
        match self {
            KnownKey::DockerImageId => DOCKER_IMAGE_ID,
            KnownKey::CpuCores => CPU_CORES,
            KnownKey::MemoryGb => MEMORY_GB,
            KnownKey::BuildDurationMs => BUILD_DURATION_MS,
        }
    }

    pub fn parse(name: &str) -> Option<KnownKey> {
        KnownKey::ALL.iter().copied().find(|k| k.name() == name)
    }

    pub fn is_numeric(self) -> bool {
        !matches!(self, KnownKey::DockerImageId)
    }

    /// This key's value in `metadata` when it has the key's type (a number, or a string for
    /// `dockerImageId`): what the search document's typed `known_metadata` holds.
    pub fn typed_value(self, metadata: &Object) -> Option<&Json> {
        metadata.get(self.name()).filter(|v| match v {
            Json::Number(_) => self.is_numeric(),
            Json::String(_) => !self.is_numeric(),
            _ => false,
        })
    }
}

const MAX_SAFE_INT: i64 = 1 << 53;

/// Shapes a metadata value in place of `path` (normally `metadata`): reports every problem in
/// `issues` and returns the normalised object (meaningful only when nothing was reported).
pub fn shape(value: Json, path: &str, issues: &mut Issues) -> Object {
    match value {
        Json::Object(map) => shape_map(map, path, issues),
        Json::Null => Object::new(),
        _ => {
            issues.push(path, Code::MetadataNotObject, "metadata must be a JSON object");
            Object::new()
        }
    }
}

/// Shapes a metadata object; see [`shape`].
pub fn shape_map(mut map: Object, path: &str, issues: &mut Issues) -> Object {
    let before = issues.len();
    let mut walk = Walk { deep: false, size_bound: 2, root: path, issues, listed: 0, unlisted: 0, unlisted_code: None };
    for (k, v) in &map {
        walk.member(k, v, 2, None);
    }
    let (deep, size_bound, unlisted, unlisted_code) = (walk.deep, walk.size_bound, walk.unlisted, walk.unlisted_code);
    if let Some(code) = unlisted_code {
        issues.push(path, code, msg!(unlisted, crate::issue::NOT_LISTED));
    }
    if deep {
        issues.push(path, Code::MetadataTooDeep, msg!("metadata nests deeper than ", MAX_DEPTH, " levels"));
    }
    for key in KnownKey::ALL {
        if let Some(v) = map.get_mut(key.name()) {
            match normalise_known(*key, v) {
                Ok(Some(n)) => *v = n,
                Ok(None) => {}
                Err((code, msg)) => issues.push(join(path, key.name()), code, msg),
            }
        }
    }
    // The exact size needs a serialisation pass; skip it when even the worst case fits.
    if issues.len() == before && size_bound > MAX_BYTES {
        let size = serialized_len(&map);
        if size > MAX_BYTES {
            issues.push(
                path,
                Code::MetadataTooLarge,
                msg!("metadata is ", size, " bytes as JSON; the limit is ", MAX_BYTES),
            );
        }
    }
    map
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { msg!(path, ".", key) }
}

/// One pass over the tree: key rules, NUL in strings (Postgres JSONB cannot hold `\u0000`),
/// depth, and an upper bound of the serialised size. Paths are only built for problems.
struct Walk<'i> {
    deep: bool,
    size_bound: usize,
    root: &'i str,
    issues: &'i mut Issues,
    listed: usize,
    /// Problems past [`MAX_REPORTED`]: counted, not listed, and the first one's code.
    unlisted: usize,
    unlisted_code: Option<Code>,
}

/// The most metadata problems listed one by one. Each names its path, which repeats the keys
/// above it: a 500 KB key over 75,000 bad values was 75,000 paths of 500 KB (~39 GB).
const MAX_REPORTED: usize = crate::issue::MAX_LISTED;

/// Where the walk is, as a chain up to the metadata object on the call stack (nothing is
/// allocated on the way down; a path is spelled out only for a problem).
struct At<'p, 'a> {
    up: Option<&'p At<'p, 'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl Walk<'_> {
    fn path(&self, at: &At<'_, '_>) -> String {
        let mut segs = Vec::new();
        let mut next = Some(at);
        while let Some(a) = next {
            segs.push(a.seg);
            next = a.up;
        }
        let mut p = self.root.to_owned();
        for seg in segs.iter().rev() {
            if !p.is_empty() {
                p.push('.');
            }
            match *seg {
                // A key past the limit is a problem of its own: its first characters name it.
                Seg::Key(k) => {
                    // The byte where the character after the first KEY_MAX starts, if any.
                    let mut chars = 0;
                    let cut = k.bytes().position(|b| {
                        chars += usize::from(b & 0xC0 != 0x80);
                        chars > KEY_MAX
                    });
                    match cut {
                        Some(cut) => {
                            p.push_str(k.get(..cut).unwrap_or(k));
                            p.push('…');
                        }
                        None => p.push_str(k),
                    }
                }
                Seg::Index(i) => msg::push_u64(&mut p, i as u64),
            }
        }
        p
    }

    /// Lists a problem at `at`, or counts it past [`MAX_REPORTED`].
    fn report(&mut self, at: &At<'_, '_>, code: Code, message: &'static str) {
        if self.listed < MAX_REPORTED {
            self.listed += 1;
            let p = self.path(at);
            self.issues.push(p, code, message);
        } else {
            self.unlisted += 1;
            self.unlisted_code.get_or_insert(code);
        }
    }

    /// An object's member `k` (below `up`; none for the metadata object's own): the key's
    /// rules, then its value at `depth`.
    fn member(&mut self, k: &str, v: &Json, depth: usize, up: Option<&At<'_, '_>>) {
        let at = At { up, seg: Seg::Key(k) };
        // Worst case: every byte escaped as \u00XX, plus quotes, colon and comma.
        self.size_bound += k.len() * 6 + 4;
        if k.is_empty() || char_len_exceeds(k, KEY_MAX) || has_nul(k) {
            self.report(&at, Code::InvalidMetadataKey, KEY_RULE);
        }
        self.tree(v, depth, &at);
    }

    fn tree(&mut self, v: &Json, depth: usize, at: &At<'_, '_>) {
        match v {
            Json::String(s) => {
                self.size_bound += s.len() * 6 + 3;
                if has_nul(s) {
                    self.report(at, Code::ControlChars, "text must not contain NUL (\\u0000)");
                }
            }
            Json::Array(_) | Json::Object(_) if depth > MAX_DEPTH => self.deep = true,
            Json::Array(items) => {
                self.size_bound += 2;
                for (i, item) in items.iter().enumerate() {
                    self.size_bound += 1;
                    self.tree(item, depth + 1, &At { up: Some(at), seg: Seg::Index(i) });
                }
            }
            Json::Object(map) => {
                self.size_bound += 2;
                for (k, item) in map {
                    self.member(k, item, depth + 1, Some(at));
                }
            }
            _ => self.size_bound += 26,
        }
    }
}

pub type KnownResult = Result<Option<Json>, (Code, String)>;

/// Checks one known key's value: `Ok(None)` when it is already normalised, `Ok(Some(v))` with
/// the normalised value, or the problem.
pub fn normalise_known(key: KnownKey, v: &Json) -> KnownResult {
    match key {
        KnownKey::DockerImageId => {
            let Json::String(s) = v else {
                return Err((Code::InvalidType, "dockerImageId must be a string".into()));
            };
            let hex = s.strip_prefix("sha256:").unwrap_or("");
            // One pass: every byte a hex digit, and whether any is uppercase.
            let (all_hex, upper) =
                hex.bytes().fold((true, false), |(h, u), c| (h && c.is_ascii_hexdigit(), u || c.is_ascii_uppercase()));
            if hex.len() != 64 || !all_hex {
                return Err((Code::InvalidDigest, "dockerImageId must be sha256: followed by 64 hex digits".into()));
            }
            Ok(upper.then(|| Json::String(s.to_ascii_lowercase())))
        }
        KnownKey::CpuCores => integer(v, key, 1, 1024),
        KnownKey::BuildDurationMs => integer(v, key, 0, MAX_SAFE_INT),
        KnownKey::MemoryGb => {
            let n = number(v, key)?;
            let f = n.as_f64().unwrap_or(f64::NAN);
            if !(f > 0.0 && f <= 65_536.0) {
                return Err((Code::OutOfRange, "memoryGb must be greater than 0 and at most 65536".into()));
            }
            let canonical = if f.fract() == 0.0 {
                Number::from(f as i64)
            } else {
                Number::from_f64(f).ok_or((Code::NotNumber, "memoryGb must be a number".to_owned()))?
            };
            Ok((v != &Json::Number(canonical.clone())).then_some(Json::Number(canonical)))
        }
    }
}

fn integer(v: &Json, key: KnownKey, min: i64, max: i64) -> KnownResult {
    let name = key.name();
    let n = number(v, key)?;
    let i = if let Some(i) = n.as_i64() {
        i
    } else if n.as_u64().is_some() {
        i64::MAX
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() != 0.0 || !f.is_finite() {
            return Err((Code::NotInteger, msg!(name, " must be a whole number")));
        }
        if f < i64::MIN as f64 || f > i64::MAX as f64 { i64::MAX } else { f as i64 }
    };
    if i < min || i > max {
        return Err((Code::OutOfRange, msg!(name, " must be between ", min, " and ", max)));
    }
    let canonical = Json::Number(Number::from(i));
    Ok((v != &canonical).then_some(canonical))
}

/// A JSON number, or a string holding one in JSON number syntax ("4" -> 4).
fn number(v: &Json, key: KnownKey) -> Result<Number, (Code, String)> {
    let name = key.name();
    match v {
        Json::Number(n) => Ok(n.clone()),
        Json::String(s) => parse_json_number(s)
            .ok_or_else(|| (Code::NotNumber, msg!(name, " must be a number (or a string holding one)"))),
        _ => Err((Code::InvalidType, msg!(name, " must be a number"))),
    }
}

/// A string holding exactly one JSON number (strict grammar, nothing around it), converted
/// as the same digits are inside JSON text (`json::number_text`: the nearest double), so
/// `"4.5"` and `4.5` are the same value. Too large for a double: the largest one, which every
/// known key reports as out of range.
fn parse_json_number(s: &str) -> Option<Number> {
    match number_text(s) {
        NumberText::Number(n) => Some(n),
        NumberText::TooLarge(negative) => Number::from_f64(if negative { f64::MIN } else { f64::MAX }),
        NumberText::NotANumber => None,
    }
}

/// Length of the compact JSON serialisation (`serde_json::to_string(map).len()`), without
/// building the string ([`json_len`]).
pub fn serialized_len(map: &Object) -> usize {
    json_len::map_len(map)
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` removes, anything else replaces.
/// The patch is taken by value: its parts move into the target, nothing is copied.
pub fn merge_patch(target: &mut Json, patch: Json) {
    *target = match (std::mem::take(target), patch) {
        (Json::Object(current), Json::Object(patch)) => Json::Object(merge_objects(current, patch)),
        (_, Json::Object(patch)) => Json::Object(merge_objects(Object::new(), patch)),
        (_, patch) => patch,
    };
}

/// [`merge_patch`] of two objects, in one pass over both sorted member lists: a large patch
/// costs O(n + m), not a vector shift per added or removed key.
pub fn merge_objects(current: Object, patch: Object) -> Object {
    let mut merged = Vec::with_capacity(current.len() + patch.len());
    let (mut t, mut p) = (current.into_iter().peekable(), patch.into_iter().peekable());
    loop {
        let order = match (t.peek(), p.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        // A member of the target only stays; one of the patch only, or of both, is merged
        // (into null when new) unless the patch says null.
        let (key, mut slot, change) = match order {
            Ordering::Less => {
                merged.extend(t.next());
                continue;
            }
            Ordering::Greater => match p.next() {
                Some((k, v)) => (k, Json::Null, v),
                None => break,
            },
            Ordering::Equal => match (t.next(), p.next()) {
                (Some((k, old)), Some((_, v))) => (k, old, v),
                _ => break,
            },
        };
        if !change.is_null() {
            merge_patch(&mut slot, change);
            merged.push((key, slot));
        }
    }
    Object::from_members(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    /// `expected` is the normalised metadata, or the (path, code) pairs reported.
    #[track_caller]
    fn check(input: Value, expected: Result<Value, &[(&str, &str)]>) {
        let mut issues = Issues::default();
        let out = shape(input.clone().into(), "metadata", &mut issues);
        let got: Result<Value, Vec<(String, String)>> = if issues.is_empty() {
            Ok(Json::Object(out).into())
        } else {
            Err(issues.into_vec().into_iter().map(|i| (i.path, i.code.to_string())).collect())
        };
        let want = expected.map_err(|e| e.iter().map(|(p, c)| ((*p).to_owned(), (*c).to_owned())).collect());
        assert_eq!(got, want, "input {input}");
    }

    #[test]
    fn known_keys() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        check(json!({"cpuCores": 4}), Ok(json!({"cpuCores": 4})));
        check(json!({"cpuCores": "4"}), Ok(json!({"cpuCores": 4})));
        check(json!({"cpuCores": 4.0}), Ok(json!({"cpuCores": 4})));
        check(json!({"cpuCores": "4.0"}), Ok(json!({"cpuCores": 4})));
        check(json!({"cpuCores": 4.5}), Err(&[("metadata.cpuCores", "not_integer")]));
        check(json!({"cpuCores": "four"}), Err(&[("metadata.cpuCores", "not_number")]));
        check(json!({"cpuCores": " 4"}), Err(&[("metadata.cpuCores", "not_number")]));
        check(json!({"cpuCores": "04"}), Err(&[("metadata.cpuCores", "not_number")]));
        check(json!({"cpuCores": 0}), Err(&[("metadata.cpuCores", "out_of_range")]));
        check(json!({"cpuCores": 1025}), Err(&[("metadata.cpuCores", "out_of_range")]));
        check(json!({"cpuCores": 18446744073709551615u64}), Err(&[("metadata.cpuCores", "out_of_range")]));
        check(json!({"cpuCores": true}), Err(&[("metadata.cpuCores", "invalid_type")]));
        check(json!({"cpuCores": null}), Err(&[("metadata.cpuCores", "invalid_type")]));
        check(json!({"memoryGb": "1.5"}), Ok(json!({"memoryGb": 1.5})));
        check(json!({"memoryGb": 16.0}), Ok(json!({"memoryGb": 16})));
        check(json!({"memoryGb": 0}), Err(&[("metadata.memoryGb", "out_of_range")]));
        check(json!({"memoryGb": 65536.5}), Err(&[("metadata.memoryGb", "out_of_range")]));
        check(json!({"memoryGb": "1e999"}), Err(&[("metadata.memoryGb", "out_of_range")]));
        check(json!({"buildDurationMs": 0}), Ok(json!({"buildDurationMs": 0})));
        check(json!({"buildDurationMs": 9007199254740992u64}), Ok(json!({"buildDurationMs": 9007199254740992u64})));
        check(json!({"buildDurationMs": 9007199254740993u64}), Err(&[("metadata.buildDurationMs", "out_of_range")]));
        check(json!({"buildDurationMs": -1}), Err(&[("metadata.buildDurationMs", "out_of_range")]));
        check(json!({"dockerImageId": digest}), Ok(json!({"dockerImageId": digest})));
        check(
            json!({"dockerImageId": digest.to_uppercase().replace("SHA256", "sha256")}),
            Ok(json!({"dockerImageId": digest})),
        );
        check(json!({"dockerImageId": "sha256:abc"}), Err(&[("metadata.dockerImageId", "invalid_digest")]));
        check(
            json!({"dockerImageId": format!("sha512:{}", "ab".repeat(32))}),
            Err(&[("metadata.dockerImageId", "invalid_digest")]),
        );
        check(json!({"dockerImageId": 7}), Err(&[("metadata.dockerImageId", "invalid_type")]));
    }

    /// A long bad key over many bad values: problems stay few and short (the listing was
    /// quadratic in memory: each path repeated the key).
    #[test]
    fn problems_are_bounded_in_number_and_size() {
        assert!(KEY_RULE.contains(&format!(" {KEY_MAX} ")));
        let key = "k".repeat(50_000);
        let items: Vec<Value> = (0..1_000).map(|_| json!({"": 0})).collect();
        let mut issues = Issues::default();
        shape(json!({ key.clone(): items }).into(), "metadata", &mut issues);
        let issues = issues.into_vec();
        assert_eq!(issues.len(), MAX_REPORTED + 1, "{:?}", &issues[..3]);
        let short = format!("metadata.{}…", &key[..KEY_MAX]);
        assert_eq!((issues[0].path.as_str(), issues[0].code), (short.as_str(), Code::InvalidMetadataKey));
        assert_eq!(issues[1].path, format!("{short}.0."));
        let last = &issues[MAX_REPORTED];
        assert_eq!((last.path.as_str(), last.code), ("metadata", Code::InvalidMetadataKey));
        assert_eq!(last.message, "981 more not listed");
        assert!(issues.iter().map(|i| i.path.len() + i.message.len()).sum::<usize>() < 4_000);
        // Under the bound, every problem is listed as before.
        check(
            json!({"": 1, "a": {"": "x\u{0}"}}),
            Err(&[
                ("metadata.", "invalid_metadata_key"),
                ("metadata.a.", "invalid_metadata_key"),
                ("metadata.a.", "control_chars"),
            ]),
        );
    }

    #[test]
    fn shape_bounds_and_unknown_keys() {
        check(
            json!({"team": "core", "nested": {"cpuCores": "x"}}),
            Ok(json!({"team": "core", "nested": {"cpuCores": "x"}})),
        );
        check(json!(null), Ok(json!({})));
        check(json!([1]), Err(&[("metadata", "metadata_not_object")]));
        check(json!("x"), Err(&[("metadata", "metadata_not_object")]));
        check(json!({"": 1}), Err(&[("metadata.", "invalid_metadata_key")]));
        let long_key = "k".repeat(129);
        let named = format!("metadata.{}…", &long_key[..128]);
        check(json!({ long_key.clone(): 1 }), Err(&[(&named, "invalid_metadata_key")]));
        check(json!({"a": {"b\u{0}": 1}}), Err(&[("metadata.a.b\u{0}", "invalid_metadata_key")]));
        check(json!({"a": ["x\u{0}"]}), Err(&[("metadata.a.0", "control_chars")]));
        // Paths through arrays and objects, several problems in one walk.
        check(
            json!({"a": [1, {"b": ["x", "y\u{0}"], "": 2}], "z": {"k": [[0, "\u{0}"]]}}),
            Err(&[
                ("metadata.a.1.", "invalid_metadata_key"),
                ("metadata.a.1.b.1", "control_chars"),
                ("metadata.z.k.0.1", "control_chars"),
            ]),
        );
        // depth: the metadata object is level 1; seven more levels are fine, eight are not.
        check(
            json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}}),
            Ok(json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}})),
        );
        check(json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}), Err(&[("metadata", "metadata_too_deep")]));
        check(json!({"a":[[[[[[[1]]]]]]]}), Ok(json!({"a":[[[[[[[1]]]]]]]})));
        check(json!({"a":[[[[[[[[1]]]]]]]]}), Err(&[("metadata", "metadata_too_deep")]));
        let big = "x".repeat(MAX_BYTES);
        check(json!({ "blob": big }), Err(&[("metadata", "metadata_too_large")]));
        let fits = "x".repeat(MAX_BYTES - 12);
        check(json!({ "blob": fits.clone() }), Ok(json!({ "blob": fits })));
    }

    /// RFC 7396 as written (with `remove`), to hold `merge_patch` to.
    fn reference_merge_patch(target: &mut Value, patch: &Value) {
        let Value::Object(p) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        if let Value::Object(t) = target {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    reference_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
    }

    fn arb_tree() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), "[ab]".prop_map(Value::String)];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-e]", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn merge_patch_same_as_reference(target in arb_tree(), patch in arb_tree()) {
            let (mut ours, mut theirs) = (Json::from(target.clone()), target);
            merge_patch(&mut ours, patch.clone().into());
            reference_merge_patch(&mut theirs, &patch);
            proptest::prop_assert_eq!(Value::from(ours), theirs);
        }
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        // The examples of RFC 7396 appendix A, one per line.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (target, patch, want) in cases {
            let mut target = Json::from(target);
            merge_patch(&mut target, patch.clone().into());
            assert_eq!(Value::from(target), want, "patch {patch}");
        }
    }

    /// Numeric strings read as the same digits do in JSON text (serde_json's `Value`), to the
    /// bit; where serde_json says out of range, the largest double of that sign.
    fn same_as_json_text(s: &str) {
        let ours = parse_json_number(s);
        match serde_json::from_str::<Value>(s) {
            Ok(Value::Number(n)) => {
                let same = ours.as_ref().is_some_and(|o| {
                    o.as_u64() == n.as_u64()
                        && o.as_i64() == n.as_i64()
                        && o.as_f64().map(f64::to_bits) == n.as_f64().map(f64::to_bits)
                });
                assert!(same, "{s}: ours {ours:?}, serde_json {n:?}");
            }
            Ok(other) => panic!("{s} read as {other}"),
            Err(e) if e.to_string().starts_with("number out of range") => {
                let max = if s.starts_with('-') { f64::MIN } else { f64::MAX };
                assert_eq!(ours.and_then(|n| n.as_f64()), Some(max), "{s}");
            }
            Err(_) => assert!(ours.is_none() || s.trim() != s, "{s}: ours {ours:?}, serde_json rejects it"),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn numeric_strings_read_as_json_numbers(
            s in "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,4})?",
        ) {
            same_as_json_text(&s);
        }

        #[test]
        fn numeric_strings_of_any_double(bits in proptest::prelude::any::<u64>()) {
            let f = f64::from_bits(bits);
            if f.is_finite() {
                same_as_json_text(&format!("{f:e}"));
                same_as_json_text(&format!("{f}"));
            }
        }
    }

    #[test]
    fn json_number_grammar() {
        for ok in ["0", "-0", "4", "-12", "1.5", "1e3", "1E+3", "1.5e-3"] {
            assert!(parse_json_number(ok).is_some(), "{ok}");
        }
        for bad in ["", "-", "+1", "01", "1.", ".5", "1e", "0x10", "1_000", " 1", "1 ", "NaN", "Infinity", "1e5x"] {
            assert!(parse_json_number(bad).is_none(), "{bad}");
        }
    }
}
