//! Fuzzes the search-request parser and both renderings over arbitrary query strings.
#![no_main]

use jobs_core::query::{Scope, SearchRequest};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let pairs: Vec<(&str, &str)> = s.split('&').map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    if let Ok(req) = SearchRequest::from_params(pairs) {
        let scope = Scope { user_id: Uuid::from_u128(1), workspace_ids: vec![Uuid::from_u128(2)] };
        let _ = req.to_es(&scope);
        let (sql, params) = req.to_sql(&scope, "id");
        assert!(sql.matches('$').count() >= params.len());
    }
});
