//! The conformance corpus and the exports, run as WASM in headless Chromium
//! (`CHROMEDRIVER=/usr/bin/chromedriver cargo test -p jobs-wasm --target wasm32-unknown-unknown`):
//! verdicts, (path, code) sets and outputs must be what the native run checks.
#![cfg(target_arch = "wasm32")]

use js_sys::JsString;
use serde_json::Value;
use std::collections::BTreeSet;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const CORPUS: &str = include_str!("../../core/tests/data/corpus.ndjson");

/// 2024-06-01T00:00:00Z, the clock the corpus was written for.
const NOW_MS: f64 = 1_717_200_000_000.0;

/// A JS value back as JSON, the way a page would see it.
fn json(v: &JsValue) -> Value {
    let text = js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()).expect("stringifiable");
    serde_json::from_str(&text).expect("JSON")
}

fn pairs(errors: &Value) -> BTreeSet<(String, String)> {
    errors
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| match e {
            Value::Array(pc) => (pc[0].as_str().unwrap_or("?").to_owned(), pc[1].as_str().unwrap_or("?").to_owned()),
            obj => (obj["path"].as_str().unwrap_or("?").to_owned(), obj["code"].as_str().unwrap_or("?").to_owned()),
        })
        .collect()
}

#[wasm_bindgen_test]
fn corpus_verdicts_codes_and_outputs() {
    let mut failures = Vec::new();
    let mut n = 0;
    for line in CORPUS.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).expect("corpus line");
        let name = case["name"].as_str().unwrap_or("?");
        let kind = case["kind"].as_str().expect("kind");
        let text = match case.get("raw") {
            Some(Value::String(raw)) => raw.clone(),
            _ => case["input"].to_string(),
        };
        let got =
            jobs_wasm::validate_job(&JsString::from(text.as_str()), &kind.into(), Some(NOW_MS)).expect("a known kind");
        let got = json(&got);
        let want_ok = case["ok"].as_bool().expect("ok");
        match (got["ok"].as_bool(), want_ok) {
            (Some(true), true) => {
                if let Some(want) = case.get("output")
                    && &got["job"] != want
                {
                    failures.push(format!("{name}: output\n  got  {}\n  want {want}", got["job"]));
                }
            }
            (Some(false), false) => {
                let (g, w) = (pairs(&got["errors"]), pairs(&case["errors"]));
                if g != w {
                    failures.push(format!("{name}: errors\n  got  {g:?}\n  want {w:?}"));
                }
            }
            _ => failures.push(format!("{name}: verdict {} (want ok={want_ok})", got)),
        }
        n += 1;
    }
    assert!(n >= 80, "only {n} corpus cases");
    assert!(failures.is_empty(), "{} corpus failures:\n{}", failures.len(), failures.join("\n"));
}

#[wasm_bindgen_test]
fn results_are_plain_objects() {
    let r = jobs_wasm::validate_job(&JsString::from("{}"), &"create".into(), None).expect("known kind");
    assert!(r.is_object());
    let proto = js_sys::Object::get_prototype_of(&r);
    assert!(js_sys::Object::is(&proto, &js_sys::Object::get_prototype_of(&js_sys::Object::new())), "not a Map");
    let errors = js_sys::Reflect::get(&r, &"errors".into()).expect("errors");
    assert!(js_sys::Array::is_array(&errors));
    assert!(jobs_wasm::validate_job(&JsString::from("{}"), &"nope".into(), None).is_err());
    assert!(jobs_wasm::validate_job(&JsString::from("{}"), &JsValue::from(1), None).is_err(), "not a string");
}

#[wasm_bindgen_test]
fn state_machine_ids_and_lists() {
    let can = |from: &str, to: &str| jobs_wasm::can_transition(&from.into(), &to.into());
    assert!(can("QUEUED", "RUNNING"));
    assert!(!can("SUCCEEDED", "RUNNING"));
    assert!(!can("queued", "RUNNING"));
    assert!(!jobs_wasm::can_transition(&JsValue::NULL, &"RUNNING".into()));
    let next = jobs_wasm::next_states(&"RUNNING".into()).expect("a list");
    assert_eq!(json(&next), serde_json::json!(["SUCCEEDED", "FAILED", "CANCELLED"]));
    let a = jobs_wasm::new_job_id().expect("crypto is there").as_string().expect("a string");
    let b = jobs_wasm::new_job_id().expect("crypto is there").as_string().expect("a string");
    assert_ne!(a, b);
    assert!(jobs_core::text::parse_uuid(&a).is_ok_and(|u| u.get_version_num() == 7), "{a}");
    let codes = json(&jobs_wasm::error_codes().expect("a list"));
    assert_eq!(codes.as_array().map(Vec::len), Some(jobs_core::Code::ALL.len()));
}
