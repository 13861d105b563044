//! `_bulk` surgery and the engines' error bodies. Items chosen to fail are taken out of the
//! request before it is forwarded (so the engine really does not apply them, as with a real
//! rejection) and their errors are spliced back into the engine's answer at their positions,
//! under the top-level 200 with `errors: true`.

use crate::control::Flavor;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// One action of a `_bulk` body and its source line, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// Byte range of the action (and source) lines in the body, newlines included.
    pub start: usize,
    pub end: usize,
    pub op: String,
    pub index: Option<String>,
    pub id: Option<String>,
}

/// Splits an NDJSON `_bulk` body into its actions; `None` when it is not one we understand (it
/// then passes untouched).
pub(crate) fn split(body: &[u8]) -> Option<Vec<Item>> {
    let mut lines = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let end = body[at..].iter().position(|b| *b == b'\n').map_or(body.len(), |p| at + p + 1);
        if !body[at..end].iter().all(u8::is_ascii_whitespace) {
            lines.push((at, end));
        }
        at = end;
    }
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (start, mut end) = lines[i];
        let action: Value = serde_json::from_slice(&body[start..end]).ok()?;
        let (op, meta) = action.as_object().filter(|o| o.len() == 1)?.iter().next()?;
        let with_source = match op.as_str() {
            "index" | "create" | "update" => true,
            "delete" => false,
            _ => return None,
        };
        if with_source {
            i += 1;
            end = lines.get(i)?.1;
        }
        let text = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_owned);
        items.push(Item { start, end, op: op.clone(), index: text("_index"), id: text("_id") });
        i += 1;
    }
    Some(items)
}

/// The body with only the items not chosen to fail (each ends with a newline).
pub(crate) fn keep(body: &[u8], items: &[Item], injected: &[Option<u16>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for (item, inj) in items.iter().zip(injected) {
        if inj.is_none() {
            out.extend_from_slice(&body[item.start..item.end]);
            if out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
        }
    }
    out
}

/// The answer the client gets: the engine's items for what was forwarded (`upstream`, `None`
/// when nothing was) with the injected failures spliced in. `None` when the engine's answer
/// does not fit (not JSON, another item count): pass it through as it is.
pub(crate) fn merge(
    upstream: Option<&[u8]>,
    items: &[Item],
    injected: &[Option<u16>],
    flavor: Flavor,
    path_index: Option<&str>,
) -> Option<Vec<u8>> {
    let forwarded = injected.iter().filter(|i| i.is_none()).count();
    let mut top: Map<String, Value> = match upstream {
        Some(body) => serde_json::from_slice::<Value>(body).ok()?.as_object()?.clone(),
        None => {
            let mut m = Map::new();
            m.insert("took".into(), json!(0));
            m.insert("errors".into(), json!(false));
            m.insert("items".into(), json!([]));
            m
        }
    };
    let real: Vec<Value> = top.get("items")?.as_array()?.clone();
    if real.len() != forwarded {
        return None;
    }
    // The concrete index an alias resolved to, as the engine reported it for other items.
    let mut concrete: HashMap<Option<&str>, String> = HashMap::new();
    let mut real_iter = real.iter();
    for (item, inj) in items.iter().zip(injected) {
        if inj.is_none()
            && let Some(r) = real_iter.next()
            && let Some(idx) = r.as_object().and_then(|o| o.values().next()).and_then(|v| v["_index"].as_str())
        {
            concrete.entry(item.index.as_deref()).or_insert_with(|| idx.to_owned());
        }
    }
    let mut real_iter = real.into_iter();
    let mut out = Vec::with_capacity(items.len());
    let mut any = false;
    for (item, inj) in items.iter().zip(injected) {
        match inj {
            None => out.push(real_iter.next()?),
            Some(status) => {
                any = true;
                let index = concrete
                    .get(&item.index.as_deref())
                    .cloned()
                    .or_else(|| item.index.clone())
                    .or_else(|| path_index.map(str::to_owned))
                    .unwrap_or_else(|| "_unknown".to_owned());
                let mut body = Map::new();
                body.insert("_index".into(), json!(index));
                if let Some(id) = &item.id {
                    body.insert("_id".into(), json!(id));
                }
                body.insert("status".into(), json!(status));
                body.insert("error".into(), item_error(*status, flavor, &index));
                out.push(json!({ item.op.clone(): body }));
            }
        }
    }
    let errors = top.get("errors").and_then(Value::as_bool).unwrap_or(false) || any;
    top.insert("errors".into(), json!(errors));
    top.insert("items".into(), Value::Array(out));
    serde_json::to_vec(&Value::Object(top)).ok()
}

/// A per-item error as each engine writes it.
pub(crate) fn item_error(status: u16, flavor: Flavor, index: &str) -> Value {
    match status {
        429 => {
            let (kind, pool, pkg) = match flavor {
                Flavor::Elasticsearch => ("es_rejected_execution_exception", "EsThreadPoolExecutor", "elasticsearch"),
                Flavor::OpenSearch => ("rejected_execution_exception", "OpenSearchThreadPoolExecutor", "opensearch"),
            };
            json!({
                "type": kind,
                "reason": format!(
                    "rejected execution of org.{pkg}.action.support.replication.TransportWriteAction$1/WrappedActionListener\
                     {{org.{pkg}.action.bulk.TransportShardBulkAction$2@5f1c2a}} on {pool}[name = node-1/write, queue capacity \
                     = 10000, org.{pkg}.common.util.concurrent.{pool}@3b9d7e[Running, pool size = 2, active threads = 2, \
                     queued tasks = 10000, completed tasks = 48213]]"
                )
            })
        }
        _ => json!({
            "type": "unavailable_shards_exception",
            "reason": format!(
                "[{index}][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[{index}][0]] \
                 containing [1] requests]"
            )
        }),
    }
}

/// A whole-request error body (`{"error": {...}, "status": N}`) as each engine writes it.
pub(crate) fn request_error(status: u16, flavor: Flavor) -> Vec<u8> {
    let (kind, reason) = match (status, flavor) {
        (429, Flavor::Elasticsearch) => ("es_rejected_execution_exception", PRESSURE),
        (429, Flavor::OpenSearch) => ("rejected_execution_exception", PRESSURE),
        _ => ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"),
    };
    let err = json!({"type": kind, "reason": reason});
    let body = json!({"error": {"root_cause": [err.clone()], "type": kind, "reason": reason}, "status": status});
    serde_json::to_vec(&body).unwrap_or_default()
}

const PRESSURE: &str = "rejected execution of coordinating operation [coordinating_and_primary_bytes=52428800, \
     replica_bytes=0, all_bytes=52428800, coordinating_operation_bytes=1048576, max_coordinating_and_primary_bytes=53687091]";

/// The index in `/{index}/_bulk`, if the path names one.
pub(crate) fn path_index(path: &str) -> Option<&str> {
    let p = path.strip_suffix("/_bulk")?.trim_start_matches('/');
    (!p.is_empty() && !p.contains('/')).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = concat!(
        "{\"index\":{\"_index\":\"jobs\",\"_id\":\"a\",\"version\":3,\"version_type\":\"external\"}}\n",
        "{\"id\":\"a\"}\n",
        "{\"delete\":{\"_index\":\"jobs\",\"_id\":\"b\",\"version\":5,\"version_type\":\"external\"}}\n",
        "\n",
        "{\"index\":{\"_index\":\"jobs\",\"_id\":\"c\"}}\n",
        "{\"id\":\"c\"}"
    );

    #[test]
    fn splits_actions_with_and_without_sources() {
        let items = split(BODY.as_bytes()).expect("a bulk body");
        assert_eq!(
            items.iter().map(|i| (i.op.as_str(), i.id.as_deref())).collect::<Vec<_>>(),
            vec![("index", Some("a")), ("delete", Some("b")), ("index", Some("c"))]
        );
        let kept = keep(BODY.as_bytes(), &items, &[None, Some(429), None]);
        let kept = String::from_utf8(kept).expect("utf8");
        assert_eq!(kept.lines().count(), 4);
        assert!(kept.ends_with("{\"id\":\"c\"}\n") && !kept.contains("\"b\""));
        assert!(split(b"{\"index\":{}}\n").is_none(), "an action without its source");
        assert!(split(b"{\"frobnicate\":{}}\n").is_none());
        assert_eq!(split(b"").map(|v| v.len()), Some(0));
    }

    #[test]
    fn merges_injected_items_at_their_positions() {
        let items = split(BODY.as_bytes()).expect("a bulk body");
        let upstream = br#"{"took":3,"errors":false,"items":[
            {"index":{"_index":"jobs-v1","_id":"a","_version":3,"result":"created","status":201}},
            {"index":{"_index":"jobs-v1","_id":"c","_version":1,"result":"created","status":201}}]}"#;
        let out = merge(Some(upstream), &items, &[None, Some(503), None], Flavor::OpenSearch, None).expect("merged");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["errors"], json!(true));
        assert_eq!(v["took"], json!(3));
        let its = v["items"].as_array().expect("items");
        assert_eq!(its.len(), 3);
        assert_eq!(its[1]["delete"]["status"], json!(503));
        assert_eq!(its[1]["delete"]["_index"], json!("jobs-v1"), "the alias's concrete index");
        assert_eq!(its[1]["delete"]["error"]["type"], json!("unavailable_shards_exception"));
        assert_eq!(its[2]["index"]["_id"], json!("c"));
        // Nothing forwarded: an answer made up entirely.
        let out = merge(None, &items, &[Some(429), Some(429), Some(429)], Flavor::Elasticsearch, None).expect("merged");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["items"][0]["index"]["error"]["type"], json!("es_rejected_execution_exception"));
        assert_eq!(v["items"][0]["index"]["_index"], json!("jobs"));
        // An answer that does not fit is left alone.
        assert!(merge(Some(b"{\"items\":[]}"), &items, &[None, Some(429), None], Flavor::OpenSearch, None).is_none());
        assert!(merge(Some(b"<html>"), &items, &[None, None, None], Flavor::OpenSearch, None).is_none());
    }

    #[test]
    fn error_bodies_name_each_engines_types() {
        let os: Value = serde_json::from_slice(&request_error(429, Flavor::OpenSearch)).expect("json");
        assert_eq!(os["error"]["type"], json!("rejected_execution_exception"));
        assert_eq!(os["status"], json!(429));
        let es: Value = serde_json::from_slice(&request_error(429, Flavor::Elasticsearch)).expect("json");
        assert_eq!(es["error"]["root_cause"][0]["type"], json!("es_rejected_execution_exception"));
        let down: Value = serde_json::from_slice(&request_error(503, Flavor::Elasticsearch)).expect("json");
        assert_eq!(down["error"]["type"], json!("cluster_block_exception"));
        assert_eq!(item_error(429, Flavor::OpenSearch, "i")["type"], json!("rejected_execution_exception"));
        assert_eq!(path_index("/jobs/_bulk"), Some("jobs"));
        assert_eq!(path_index("/_bulk"), None);
    }
}
