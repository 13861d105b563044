//! The JSON values the core keeps: a job's `metadata` and the parts of a patch.
//!
//! [`Json`] is `serde_json::Value` with one difference: an [`Object`] is a vector of members
//! sorted by key instead of a `BTreeMap`. It serialises to the same text (keys in the same byte
//! order; duplicate keys in input keep the last, as serde_json's map does), and converts to and
//! from `serde_json::Value` for shells that hold those. Why its own type: the B-tree's insert,
//! drop and iterator code was ~6 KB of the WASM package for maps that hold a handful of keys
//! (BENCHMARKS.md "## WASM"); a sorted vector does the same job with a binary search.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::Number;
use std::fmt;

/// A JSON value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Json {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

/// A JSON object: members sorted by key (bytewise, as `String`'s `Ord`), each key once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object(Vec<(String, Json)>);

impl Json {
    /// How problem messages name the type: "null", "a boolean", "a number", ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }
}

impl Object {
    pub fn new() -> Object {
        Object(Vec::new())
    }

    /// Members in any order, duplicate keys allowed (the last one wins): what a JSON object's
    /// text gives. Sorted once at the end rather than inserted one by one, so a large object
    /// with keys in random order costs O(n log n), not O(n²).
    pub fn from_members(mut members: Vec<(String, Json)>) -> Object {
        if !members.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable: equal keys keep their input order, and of each run the last is kept.
            members.sort_by(|a, b| a.0.cmp(&b.0));
            members.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
        }
        Object(members)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`, returning the value it replaced.
    pub fn insert(&mut self, key: String, value: Json) -> Option<Json> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Json> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The members in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &Json)> {
        self.into_iter()
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = (&'a String, &'a Json);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (String, Json)>, fn(&(String, Json)) -> (&String, &Json)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl IntoIterator for Object {
    type Item = (String, Json);
    type IntoIter = std::vec::IntoIter<(String, Json)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(String, Json)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Json)>>(iter: I) -> Object {
        Object::from_members(iter.into_iter().collect())
    }
}

// ---------------------------------------------------------------------------------------------
// serde: the same data model as serde_json's `Value`.

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(t) => s.serialize_str(t),
            Json::Array(items) => s.collect_seq(items),
            Json::Object(o) => o.serialize(s),
        }
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Json, E> {
        Ok(Json::Number(i.into()))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Json, E> {
        Ok(Json::Number(u.into()))
    }

    /// As serde_json: a float JSON cannot hold (NaN, infinity) becomes null.
    fn visit_f64<E>(self, f: f64) -> Result<Json, E> {
        Ok(Number::from_f64(f).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Json, A::Error> {
        ObjectVisitor.visit_map(map).map(Json::Object)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(member) = map.next_entry::<String, Json>()? {
            members.push(member);
        }
        Ok(Object::from_members(members))
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions to and from serde_json's values, for shells and tests that hold those.

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Json {
        use serde_json::Value;
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Number(n),
            Value::String(s) => Json::String(s),
            Value::Array(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            Value::Object(map) => Json::Object(map.into()),
        }
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Object {
    /// Already sorted and unique: serde_json's map is a `BTreeMap` in this workspace.
    fn from(map: serde_json::Map<String, serde_json::Value>) -> Object {
        Object::from_members(map.into_iter().map(|(k, v)| (k, Json::from(v))).collect())
    }
}

impl From<Json> for serde_json::Value {
    fn from(v: Json) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => Value::Number(n),
            Json::String(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(o) => Value::Object(o.into()),
        }
    }
}

impl From<Object> for serde_json::Map<String, serde_json::Value> {
    fn from(o: Object) -> serde_json::Map<String, serde_json::Value> {
        o.into_iter().map(|(k, v)| (k, serde_json::Value::from(v))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(pairs: &[(&str, i64)]) -> Object {
        Object::from_members(pairs.iter().map(|(k, v)| ((*k).to_owned(), Json::Number((*v).into()))).collect())
    }

    #[test]
    fn members_sorted_and_the_last_duplicate_kept() {
        let o = object(&[("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5), ("b", 6)]);
        let keys: Vec<_> = o.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(o.get("a"), Some(&Json::Number(5.into())));
        assert_eq!(o.get("b"), Some(&Json::Number(6.into())));
        // The same as serde_json's map reading the same text.
        let text = r#"{"b":1,"a":2,"b":3,"c":4,"a":5,"b":6}"#;
        let theirs: serde_json::Value = serde_json::from_str(text).expect("json");
        let ours: Json = serde_json::from_str(text).expect("json");
        assert_eq!(serde_json::Value::from(ours.clone()), theirs);
        assert_eq!(serde_json::to_string(&ours).expect("json"), serde_json::to_string(&theirs).expect("json"));
    }

    #[test]
    fn insert_get_remove_keep_the_order() {
        let mut o = Object::new();
        for (i, k) in ["m", "z", "a", "é", "A", "", "m"].iter().enumerate() {
            o.insert((*k).to_owned(), Json::Number((i as u64).into()));
        }
        let keys: Vec<_> = o.keys().map(String::as_str).collect();
        assert_eq!(keys, ["", "A", "a", "m", "z", "é"]);
        assert_eq!(o.get("m"), Some(&Json::Number(6u64.into())));
        assert_eq!(o.remove("A"), Some(Json::Number(4u64.into())));
        assert_eq!(o.remove("A"), None);
        assert!(!o.contains_key("A") && o.contains_key(""));
        assert_eq!(o.len(), 5);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any members, duplicates and all: the same object as serde_json's map inserting them
        /// one by one (sorted, the last of each key kept).
        #[test]
        fn from_members_same_as_serde_json_map(members in proptest::collection::vec(("[a-d]{0,2}", 0i64..9), 0..40)) {
            let ours = Object::from_members(
                members.iter().map(|(k, v)| (k.clone(), Json::Number((*v).into()))).collect(),
            );
            let mut theirs = serde_json::Map::new();
            for (k, v) in &members {
                theirs.insert(k.clone(), json!(v));
            }
            proptest::prop_assert_eq!(serde_json::Map::from(ours.clone()), theirs);
            proptest::prop_assert!(ours.keys().zip(ours.keys().skip(1)).all(|(a, b)| a < b));
        }
    }

    #[test]
    fn round_trips_through_serde_json_values() {
        let v = json!({"z": [1, -2, 2.5, null, true, "x"], "a": {"y": {}, "b": []}, "": 18446744073709551615u64});
        let ours = Json::from(v.clone());
        assert_eq!(serde_json::Value::from(ours.clone()), v);
        assert_eq!(serde_json::to_string(&ours).expect("json"), v.to_string());
        let back: Json = serde_json::from_value(v.clone()).expect("from a Value");
        assert_eq!(back, ours);
        assert_eq!(
            serde_json::from_str::<Object>("[]").map_err(|e| e.classify()),
            Err(serde_json::error::Category::Data)
        );
        // Numbers are numbers (serde_json's `arbitrary_precision` would hand them over as
        // one-member maps, which this type does not expect).
        assert_eq!(serde_json::from_str::<Json>("1").ok(), Some(Json::Number(1.into())));
        assert_eq!(serde_json::from_str::<Json>("-1.5").ok(), Number::from_f64(-1.5).map(Json::Number));
    }
}
