//! Plain HTTP to an engine, bypassing the project's search client: an independent second
//! opinion for the convergence test (what versions does the engine really hold?) and the
//! probes of the sync benchmarks (when is a change visible to search?).

use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// A bare client of one engine.
#[derive(Clone)]
pub struct Direct {
    http: reqwest::Client,
    base: String,
}

impl Direct {
    pub fn new(url: &str) -> Direct {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap_or_default();
        Direct { http, base: url.trim_end_matches('/').to_owned() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {}", text.chars().take(300).collect::<String>()));
        }
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
    }

    pub async fn refresh(&self, index: &str) -> Result<(), String> {
        self.call(reqwest::Method::POST, &format!("/{index}/_refresh"), None).await.map(drop)
    }

    /// Documents in `index` (or alias) as of the last refresh.
    pub async fn count(&self, index: &str) -> Result<u64, String> {
        let v = self.call(reqwest::Method::GET, &format!("/{index}/_count"), None).await?;
        v["count"].as_u64().ok_or_else(|| format!("_count without a count: {v}"))
    }

    /// The external version the engine holds for each id found (real time: `_mget`).
    pub async fn versions(&self, index: &str, ids: &[Uuid]) -> Result<HashMap<Uuid, i64>, String> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(1_000) {
            let body = json!({"ids": chunk.iter().map(Uuid::to_string).collect::<Vec<_>>()});
            let v = self.call(reqwest::Method::POST, &format!("/{index}/_mget?_source=false"), Some(body)).await?;
            let docs = v["docs"].as_array().ok_or_else(|| format!("_mget without docs: {v}"))?;
            for d in docs {
                if d["found"].as_bool() == Some(true)
                    && let (Some(id), Some(version)) =
                        (d["_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()), d["_version"].as_i64())
                {
                    out.insert(id, version);
                }
            }
        }
        Ok(out)
    }

    /// The version each id has in what *search* sees (after a refresh, unlike `_mget`).
    pub async fn searchable_versions(&self, index: &str, ids: &[Uuid]) -> Result<HashMap<Uuid, i64>, String> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(1_000) {
            let body = json!({
                "size": chunk.len(),
                "version": true,
                "_source": false,
                "track_total_hits": false,
                "query": {"ids": {"values": chunk.iter().map(Uuid::to_string).collect::<Vec<_>>()}}
            });
            let v = self.call(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await?;
            for hit in v["hits"]["hits"].as_array().into_iter().flatten() {
                if let (Some(id), Some(version)) =
                    (hit["_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()), hit["_version"].as_i64())
                {
                    out.insert(id, version);
                }
            }
        }
        Ok(out)
    }

    /// `POST /_bulk` with a prebuilt NDJSON body; the number of items that failed.
    pub async fn bulk(&self, body: Vec<u8>) -> Result<usize, String> {
        let resp = self
            .http
            .post(format!("{}/_bulk", self.base))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("_bulk: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| format!("_bulk: {e}"))?;
        if !status.is_success() {
            return Err(format!("_bulk: {status} {v}"));
        }
        Ok(v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|i| i.as_object().and_then(|o| o.values().next()).is_some_and(|b| b.get("error").is_some()))
                    .count()
            })
            .unwrap_or(0))
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }
}
