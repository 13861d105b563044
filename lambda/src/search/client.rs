//! The search engine client: one `reqwest::Client` (rustls) built once and shared (cloning a
//! [`SearchClient`] is cheap), a time limit on every request, and the operations the sync,
//! the API, `reindex` and `verify` need.
//!
//! Index layout: readers and writers use the alias (`jobs`), which points at exactly one
//! `jobs-v{N}` index. While `reindex` backfills `jobs-v{N+1}`, that index carries the alias
//! `jobs-reindex`, and every write (sync, write-through) goes to both; see [`Targets`].

use super::SearchError;
use super::auth::Signer;
use super::config::SearchConfig;
use jobs_core::model::Job;
use jobs_core::query::{Scope, SearchRequest};
use jobs_core::search::{self, Change, Outcome};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

/// Which engine answers: the one API that differs (point in time) depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Elasticsearch,
    OpenSearch,
}

/// The cluster's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `green`, `yellow` or `red`.
    pub status: String,
    #[serde(default)]
    pub number_of_nodes: u64,
    #[serde(skip_deserializing)]
    pub flavor: Option<Flavor>,
}

/// Where writes go right now: the index behind the alias, plus the index a reindex is
/// backfilling (if any). Resolve it after reading what to send, never before: a change read
/// before a reindex started is then either sent to both indexes or read again by the backfill
/// (which starts after the reindex alias exists). Send with [`SearchClient::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub current: String,
    pub reindexing: Option<String>,
}

impl Targets {
    /// The distinct indexes to write to.
    pub fn indices(&self) -> Vec<String> {
        let mut v = vec![self.current.clone()];
        if let Some(r) = &self.reindexing
            && r != &self.current
        {
            v.push(r.clone());
        }
        v
    }
}

/// The result of sending changes with `_bulk`.
#[derive(Debug, Clone, Default)]
pub struct BulkReport {
    /// One per change, in order. `None` where the request carrying the change failed as a whole
    /// (engine down, timeout, 5xx, auth) or was not sent after such a failure: the change itself
    /// is not at fault, and nothing about it is known.
    pub outcomes: Vec<Option<Outcome>>,
    /// The first whole-request failure.
    pub error: Option<SearchError>,
    /// HTTP requests made and bytes sent.
    pub requests: usize,
    pub bytes: usize,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub items: Vec<Job>,
    /// Present when there are more results: pass it back as `cursor`.
    pub next_cursor: Option<String>,
}

/// A document as `verify` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    /// The `id` field (the document id for our documents).
    pub id: String,
    /// The external version the engine holds (`_version`).
    pub version: i64,
    pub user_id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
}

/// A page of a [`Scanner`].
pub type ScanPage = Vec<DocRef>;

/// A cheap-to-clone handle on one engine and alias.
#[derive(Clone)]
pub struct SearchClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: SearchConfig,
    /// The URL without a trailing slash; paths are appended.
    base: String,
    signer: Signer,
    flavor: tokio::sync::OnceCell<Flavor>,
}

impl std::fmt::Debug for SearchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchClient")
            .field("url", &self.inner.base)
            .field("alias", &self.inner.cfg.alias)
            .field("auth", &self.inner.cfg.auth)
            .finish()
    }
}

struct Response {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

enum Body {
    None,
    Json(Vec<u8>),
    Ndjson(Vec<u8>),
}

impl SearchClient {
    /// Builds the client (and, for SigV4, loads the AWS configuration). Do this once per
    /// process and clone the result.
    pub async fn new(cfg: SearchConfig) -> Result<SearchClient, SearchError> {
        let signer = Signer::new(&cfg.auth).await?;
        Self::with_signer(cfg, signer)
    }

    fn with_signer(cfg: SearchConfig, signer: Signer) -> Result<SearchClient, SearchError> {
        cfg.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| SearchError::Config(format!("building the HTTP client: {e}")))?;
        let base = cfg.url.as_str().trim_end_matches('/').to_owned();
        Ok(SearchClient { inner: Arc::new(Inner { http, cfg, base, signer, flavor: tokio::sync::OnceCell::new() }) })
    }

    /// From `SEARCH_URL` and friends (see [`SearchConfig::from_env`]); `Ok(None)` without an
    /// engine.
    pub async fn from_env() -> Result<Option<SearchClient>, SearchError> {
        match SearchConfig::from_env()? {
            Some(cfg) => Ok(Some(SearchClient::new(cfg).await?)),
            None => Ok(None),
        }
    }

    pub fn config(&self) -> &SearchConfig {
        &self.inner.cfg
    }

    pub fn alias(&self) -> &str {
        &self.inner.cfg.alias
    }

    /// The alias marking the index a reindex is filling.
    pub fn reindex_alias(&self) -> String {
        format!("{}-reindex", self.alias())
    }

    /// `{alias}-v{n}`.
    pub fn index_name(&self, n: u32) -> String {
        format!("{}-v{n}", self.alias())
    }

    /// The `N` of `{alias}-v{N}`.
    pub fn index_version(&self, name: &str) -> Option<u32> {
        name.strip_prefix(self.alias())?.strip_prefix("-v")?.parse().ok()
    }

    // -----------------------------------------------------------------------------------------
    // Transport

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Body,
        timeout: Option<Duration>,
    ) -> Result<Response, SearchError> {
        let url = format!("{}{path}", self.inner.base);
        let timeout = timeout.unwrap_or(self.inner.cfg.request_timeout);
        let mut b = self.inner.http.request(method, &url).timeout(timeout);
        b = match body {
            Body::None => b,
            Body::Json(bytes) => b.header(CONTENT_TYPE, HeaderValue::from_static(JSON)).body(bytes),
            Body::Ndjson(bytes) => b.header(CONTENT_TYPE, HeaderValue::from_static(NDJSON)).body(bytes),
        };
        let mut req = b.build().map_err(|e| SearchError::Config(format!("{url}: {e}")))?;
        self.inner.signer.apply(&mut req).await?;
        let resp = self.inner.http.execute(req).await.map_err(|e| transport(e, timeout))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| transport(e, timeout))?.to_vec();
        // From an answer of the engine itself: Elasticsearch leaves its header off a 401 or a
        // 413, and a proxy's 502 page has none, which read as OpenSearch for good.
        if self.inner.flavor.get().is_none() && (200..300).contains(&status) {
            let _ = self.inner.flavor.set(flavor_of(&headers));
        }
        Ok(Response { status, headers, body })
    }

    /// A request whose answer must be 2xx JSON.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, SearchError> {
        let body = match body {
            Some(v) => Body::Json(serde_json::to_vec(v).map_err(|e| SearchError::Decode(e.to_string()))?),
            None => Body::None,
        };
        let resp = self.request(method, path, body, timeout).await?;
        ok_json(resp)
    }

    // -----------------------------------------------------------------------------------------
    // Cluster

    /// `_cluster/health` (and which engine this is).
    pub async fn health(&self) -> Result<Health, SearchError> {
        let resp = self.request(Method::GET, "/_cluster/health", Body::None, None).await?;
        let flavor = flavor_of(&resp.headers);
        let v = ok_json(resp)?;
        let mut h: Health = serde_json::from_value(v).map_err(|e| SearchError::Decode(format!("health: {e}")))?;
        h.flavor = Some(flavor);
        Ok(h)
    }

    /// Which engine answers (asked once, then remembered). Elasticsearch marks every response
    /// with `X-Elastic-Product`; OpenSearch (and Amazon OpenSearch Service) does not.
    pub async fn flavor(&self) -> Result<Flavor, SearchError> {
        if let Some(f) = self.inner.flavor.get() {
            return Ok(*f);
        }
        let h = self.health().await?;
        Ok(h.flavor.unwrap_or(Flavor::OpenSearch))
    }

    // -----------------------------------------------------------------------------------------
    // Indexes and aliases

    /// The index body for a new index: the core's settings and mapping.
    pub fn index_body(&self) -> Value {
        search::index_body(self.inner.cfg.shards, self.inner.cfg.replicas)
    }

    /// Points the missing alias at the newest `{alias}-vN` that is not a reindex's unfinished
    /// target (which carries the reindex marker); `None` when there is no such index.
    async fn restore_alias(&self) -> Result<Option<String>, SearchError> {
        // The indexes first, then the marker: a reindex creates its index and the marker in one
        // call, so an unfinished index listed here has its marker when it is read next (read the
        // other way round, a reindex starting in between looked finished).
        let versions = self.versions().await?;
        let unfinished = self.alias_target(&self.reindex_alias()).await?;
        let Some(newest) = versions.into_iter().rev().map(|(_, name)| name).find(|n| Some(n) != unfinished.as_ref())
        else {
            return Ok(None);
        };
        let actions = json!({"actions": [{"add": {"index": newest, "alias": self.alias(), "is_write_index": true}}]});
        self.update_aliases(&actions).await?;
        tracing::warn!(index = %newest, alias = %self.alias(), "the alias was missing: restored it");
        Ok(Some(newest))
    }

    /// Makes sure the template, an index and the alias exist, and returns the index the alias
    /// points at. Idempotent, and safe when several processes race: the first index is created
    /// together with its alias in one cluster-state update, and losing that race is success.
    pub async fn ensure_index(&self) -> Result<String, SearchError> {
        if let Some(index) = self.alias_target(self.alias()).await? {
            return Ok(index);
        }
        self.put_template().await?;
        // Indexes but no alias (removed by hand, a snapshot restored without it): the alias goes
        // back on the newest. Creating `-v1` then, when reindexes had left `-v3` and an operator
        // deleted `-v1`, made the alias point at an empty index that answered every search.
        if let Some(index) = self.restore_alias().await? {
            return Ok(index);
        }
        let mut body = self.index_body();
        body["aliases"] = json!({ self.alias(): {"is_write_index": true} });
        let first = self.index_name(1);
        match self.call(Method::PUT, &format!("/{first}"), Some(&body), None).await {
            Ok(_) => {
                tracing::info!(index = %first, alias = %self.alias(), "created the search index");
                Ok(first)
            }
            Err(e) if e.kind() == "resource_already_exists_exception" => {
                if let Some(index) = self.alias_target(self.alias()).await? {
                    return Ok(index);
                }
                Ok(self.restore_alias().await?.unwrap_or(first))
            }
            Err(e) if e.kind() == "invalid_alias_name_exception" => Err(SearchError::Config(format!(
                "an index named {:?} exists where the alias should be (was something written before the alias \
                 existed?): delete or rename it, then run again",
                self.alias()
            ))),
            Err(e) => Err(e),
        }
    }

    /// `PUT _index_template/{alias}`: any `{alias}-v*` index gets the core's mapping, even one
    /// created by accident.
    pub async fn put_template(&self) -> Result<(), SearchError> {
        let idx = self.index_body();
        let body = json!({
            "index_patterns": [format!("{}-v*", self.alias())],
            "priority": 100,
            "template": {"settings": idx["settings"], "mappings": idx["mappings"]},
            "_meta": {"managed_by": "jobs-lambda"}
        });
        self.call(Method::PUT, &format!("/_index_template/{}", self.alias()), Some(&body), None).await.map(drop)
    }

    /// The index an alias points at (its write index when it has several); `None` if the alias
    /// does not exist.
    pub async fn alias_target(&self, alias: &str) -> Result<Option<String>, SearchError> {
        let resp = self.request(Method::GET, &format!("/_alias/{alias}"), Body::None, None).await?;
        if resp.status == 404 {
            return Ok(None);
        }
        let v = ok_json(resp)?;
        let Some(map) = v.as_object() else { return Err(SearchError::Decode("alias lookup: not an object".into())) };
        let mut indices: Vec<(&String, bool)> = map
            .iter()
            .map(|(index, body)| {
                let w = body["aliases"][alias]["is_write_index"].as_bool().unwrap_or(false);
                (index, w)
            })
            .collect();
        indices.sort();
        match indices.as_slice() {
            [] => Ok(None),
            [(one, _)] => Ok(Some((*one).clone())),
            many => many.iter().find(|(_, w)| *w).map(|(i, _)| Some((*i).clone())).ok_or_else(|| {
                SearchError::Config(format!("alias {alias} points at several indexes and none is its write index"))
            }),
        }
    }

    /// Where writes go now (one request). Fails if the alias does not exist.
    pub async fn targets(&self) -> Result<Targets, SearchError> {
        let reindex = self.reindex_alias();
        let path = format!("/_cat/aliases/{},{reindex}?format=json&h=alias,index,is_write_index", self.alias());
        let v = self.call(Method::GET, &path, None, None).await?;
        let rows = v.as_array().ok_or_else(|| SearchError::Decode("_cat/aliases: not an array".into()))?;
        let mut current: Option<(String, bool)> = None;
        let mut reindexing = None;
        for r in rows {
            let (Some(alias), Some(index)) = (r["alias"].as_str(), r["index"].as_str()) else { continue };
            if alias == self.alias() {
                let write = r["is_write_index"].as_str() == Some("true");
                if current.as_ref().is_none_or(|(_, w)| !*w && write) {
                    current = Some((index.to_owned(), write));
                }
            } else if alias == reindex {
                reindexing = Some(index.to_owned());
            }
        }
        let (current, _) = current.ok_or_else(|| {
            SearchError::Config(format!(
                "the alias {:?} does not exist (run `jobsctl sync` or `jobsctl reindex`)",
                self.alias()
            ))
        })?;
        Ok(Targets { current, reindexing })
    }

    /// The `{alias}-v{N}` indexes that exist, oldest first.
    pub async fn versions(&self) -> Result<Vec<(u32, String)>, SearchError> {
        let path = format!("/_cat/indices/{}-v*?format=json&h=index&expand_wildcards=all", self.alias());
        let v = self.call(Method::GET, &path, None, None).await?;
        let mut out: Vec<(u32, String)> = v
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["index"].as_str())
                    .filter_map(|name| self.index_version(name).map(|n| (n, name.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        Ok(out)
    }

    /// Creates an index with `body` (settings, mappings, aliases).
    pub async fn create_index(&self, name: &str, body: &Value) -> Result<(), SearchError> {
        self.call(Method::PUT, &format!("/{name}"), Some(body), None).await.map(drop)
    }

    /// Whether `name` is an index itself (not an alias of one, not missing).
    pub async fn is_index(&self, name: &str) -> Result<bool, SearchError> {
        let path = format!("/_cat/indices/{name}?format=json&h=index&expand_wildcards=all");
        let resp = self.request(Method::GET, &path, Body::None, None).await?;
        if resp.status == 404 {
            return Ok(false);
        }
        let v = ok_json(resp)?;
        Ok(v.as_array().is_some_and(|rows| rows.iter().any(|r| r["index"].as_str() == Some(name))))
    }

    pub async fn delete_index(&self, name: &str) -> Result<(), SearchError> {
        self.call(Method::DELETE, &format!("/{name}"), None, None).await.map(drop)
    }

    pub async fn delete_template(&self) -> Result<(), SearchError> {
        self.call(Method::DELETE, &format!("/_index_template/{}", self.alias()), None, None).await.map(drop)
    }

    /// `POST _aliases` (atomic: all actions or none).
    pub async fn update_aliases(&self, actions: &Value) -> Result<(), SearchError> {
        self.call(Method::POST, "/_aliases", Some(actions), None).await.map(drop)
    }

    /// An index's settings (`index.*`, flat).
    pub async fn index_settings(&self, name: &str) -> Result<Value, SearchError> {
        let v = self.call(Method::GET, &format!("/{name}/_settings?flat_settings=true"), None, None).await?;
        Ok(v[name]["settings"].clone())
    }

    /// The `_meta` of an index's mapping (`Null` when it has none).
    pub async fn index_meta(&self, name: &str) -> Result<Value, SearchError> {
        let v = self.call(Method::GET, &format!("/{name}/_mapping"), None, None).await?;
        Ok(v[name]["mappings"]["_meta"].clone())
    }

    /// Replaces the `_meta` of an index's mapping (a missing index stays missing: 404).
    pub async fn put_index_meta(&self, name: &str, meta: &Value, timeout: Option<Duration>) -> Result<(), SearchError> {
        let body = json!({ "_meta": meta });
        self.call(Method::PUT, &format!("/{name}/_mapping"), Some(&body), timeout).await.map(drop)
    }

    pub async fn put_settings(&self, name: &str, settings: &Value) -> Result<(), SearchError> {
        self.call(Method::PUT, &format!("/{name}/_settings"), Some(settings), None).await.map(drop)
    }

    pub async fn refresh(&self, name: &str) -> Result<(), SearchError> {
        self.call(Method::POST, &format!("/{name}/_refresh"), None, None).await.map(drop)
    }

    /// Waits (up to `timeout`) until the index's primaries are active.
    pub async fn wait_for_yellow(&self, name: &str, timeout: Duration) -> Result<(), SearchError> {
        let secs = timeout.as_secs().max(1);
        let path = format!("/_cluster/health/{name}?wait_for_status=yellow&timeout={secs}s");
        // Not yellow in time: both engines answer 408 with `"timed_out": true`.
        match self.call(Method::GET, &path, None, Some(timeout + Duration::from_secs(5))).await {
            Ok(v) if v["timed_out"].as_bool() == Some(true) => Err(SearchError::Timeout(timeout)),
            Ok(_) => Ok(()),
            Err(e) if e.status() == 408 => Err(SearchError::Timeout(timeout)),
            Err(e) => Err(e),
        }
    }

    /// How many documents an index (or the alias) holds, as of the last refresh.
    pub async fn count(&self, index: &str) -> Result<u64, SearchError> {
        let v = self.call(Method::GET, &format!("/{index}/_count"), None, None).await?;
        v["count"].as_u64().ok_or_else(|| SearchError::Decode("_count without a count".into()))
    }

    // -----------------------------------------------------------------------------------------
    // Writes

    /// Sends `changes` to every index in `indices` with external versioning, in requests of at
    /// most `bulk_max_docs` actions and about `bulk_max_bytes` bytes. A change is done only if
    /// every index took it (or already had it). Stops sending at the first request that fails
    /// as a whole; a 413 splits the request and tries again, and a change too large alone is
    /// rejected.
    pub async fn bulk(&self, indices: &[String], changes: &[Change<'_>], timeout: Option<Duration>) -> BulkReport {
        self.bulk_inner(indices, indices.len(), false, changes, timeout, None).await
    }

    /// Sends `changes` where writes go now (see [`Targets`]): through the alias, and through the
    /// reindex alias while a reindex runs. Addressed by alias names with `require_alias`, so a
    /// write can never create an index: when the reindex alias is gone by the time the request
    /// runs (the reindex swapped or gave up) its items are ignored, and a missing main alias is
    /// a reason to retry, not a rejected document.
    pub async fn write(&self, targets: &Targets, changes: &[Change<'_>], timeout: Option<Duration>) -> BulkReport {
        self.write_until(targets, changes, timeout, None).await
    }

    /// [`SearchClient::write`], every request also ending by `end` (a run's deadline): a batch
    /// split into several requests gets the time left, not `timeout` for each. Changes not sent
    /// by then have no outcome (the error is a [`SearchError::Timeout`]).
    pub async fn write_until(
        &self,
        targets: &Targets,
        changes: &[Change<'_>],
        timeout: Option<Duration>,
        end: Option<std::time::Instant>,
    ) -> BulkReport {
        let mut names = vec![self.alias().to_owned()];
        if targets.reindexing.is_some() {
            names.push(self.reindex_alias());
        }
        self.bulk_inner(&names, 1, true, changes, timeout, end).await
    }

    /// `indices[optional_from..]` may be missing (their 404s are ignored).
    async fn bulk_inner(
        &self,
        indices: &[String],
        optional_from: usize,
        require_alias: bool,
        changes: &[Change<'_>],
        timeout: Option<Duration>,
        end: Option<std::time::Instant>,
    ) -> BulkReport {
        let mut report = BulkReport { outcomes: vec![None; changes.len()], ..BulkReport::default() };
        if changes.is_empty() || indices.is_empty() {
            return report;
        }
        let cfg = &self.inner.cfg;
        let path = if require_alias { "/_bulk?require_alias=true" } else { "/_bulk" };
        let mut pending = chunks(indices, changes, cfg.bulk_max_bytes, cfg.bulk_max_docs);
        pending.reverse();
        // `timeout` is each request's; `end` bounds them all. Without it a batch split in seven
        // (1,000 jobs of 32 KB metadata) could run seven timeouts past the run's deadline.
        let per_request = timeout.unwrap_or(cfg.request_timeout);
        while let Some(chunk) = pending.pop() {
            let n = chunk.end - chunk.start;
            let left = end.map(|e| e.saturating_duration_since(std::time::Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                // The changes not sent have no outcome: the caller hands them back.
                report.error = Some(SearchError::Timeout(per_request));
                break;
            }
            let t = left.map_or(per_request, |l| l.min(per_request));
            report.requests += 1;
            report.bytes += chunk.body.len();
            let resp = self.request(Method::POST, path, Body::Ndjson(chunk.body), Some(t)).await;
            let failure = match resp {
                Ok(r) if (200..300).contains(&r.status) => {
                    let items = search::parse_bulk_response(&r.body, n * indices.len());
                    for (i, slot) in report.outcomes[chunk.start..chunk.end].iter_mut().enumerate() {
                        let per_index = (0..indices.len()).filter_map(|k| {
                            let o = &items[k * n + i];
                            let o = match (k < optional_from, is_missing_index(o)) {
                                (false, true) => return None,
                                (true, true) => Outcome::Retry { status: 404, reason: reason_of(o) },
                                _ => o.clone(),
                            };
                            // Which index said it, when there are several (a reindex tells the
                            // new index's refusals from the live one's by this).
                            Some(if indices.len() > 1 { on_index(&indices[k], o) } else { o })
                        });
                        *slot = Some(combine(per_index));
                    }
                    continue;
                }
                Ok(r) if r.status == 413 && n > 1 => {
                    // Too large for the engine's http.max_content_length: halve and resend.
                    let mid = chunk.start + n / 2;
                    let tail = build_chunk(indices, &changes[mid..chunk.end], mid);
                    let head = build_chunk(indices, &changes[chunk.start..mid], chunk.start);
                    pending.push(tail);
                    pending.push(head);
                    continue;
                }
                Ok(r) if r.status == 413 => {
                    // One change alone is over that limit: it cannot be indexed as it is, and
                    // stopping here would stop every later change behind it, run after run. It
                    // is rejected (dead-lettered as the policy says, its reason kept); the
                    // others go on.
                    let reason = error_of(r).to_string();
                    tracing::warn!(%reason, "a change alone is too large for the engine");
                    if let Some(slot) = report.outcomes.get_mut(chunk.start) {
                        *slot = Some(Outcome::Rejected { status: 413, reason });
                    }
                    continue;
                }
                Ok(r) => error_of(r),
                Err(e) => e,
            };
            tracing::warn!(error = %failure, docs = n, "bulk request failed as a whole");
            report.error = Some(failure);
            break;
        }
        report
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// Runs a validated search for `scope` (one page; `req.after` continues a previous page).
    /// Fails rather than return partial results (a timed-out or failed shard).
    pub async fn search(
        &self,
        scope: &Scope,
        req: &SearchRequest,
        timeout: Option<Duration>,
    ) -> Result<SearchPage, SearchError> {
        let body = req.to_es(scope);
        let path = format!("/{}/_search?allow_partial_search_results=false", self.alias());
        let v = self.call(Method::POST, &path, Some(&body), timeout).await?;
        let resp: SearchResponse =
            serde_json::from_value(v).map_err(|e| SearchError::Decode(format!("search: {e}")))?;
        resp.check_complete()?;
        let mut items = Vec::with_capacity(resp.hits.hits.len());
        for hit in resp.hits.hits {
            let source = hit.source.ok_or_else(|| SearchError::Decode(format!("hit {} without _source", hit.id)))?;
            let job: Job = serde_json::from_value(source)
                .map_err(|e| SearchError::Decode(format!("document {} is not a job: {e}", hit.id)))?;
            // The query holds the scope; checked again here, as the fallback checks its rows,
            // so no fault in the query (or the engine) can show another caller's job.
            if !scope.allows(&job) {
                return Err(SearchError::Decode(format!("document {} is outside the caller's scope", hit.id)));
            }
            items.push(job);
        }
        let limit = req.limit as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| req.cursor_after(last))
        } else {
            None
        };
        Ok(SearchPage { items, next_cursor })
    }

    /// The document of `id` through the alias (real time, not waiting for a refresh), with the
    /// external version the engine holds.
    pub async fn get(&self, id: Uuid, timeout: Option<Duration>) -> Result<Option<(Job, i64)>, SearchError> {
        let path = format!("/{}/_doc/{id}", self.alias());
        let resp = self.request(Method::GET, &path, Body::None, timeout).await?;
        if resp.status == 404 {
            let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            if v.get("found").is_some() {
                return Ok(None);
            }
        }
        let v = ok_json(resp)?;
        if v["found"].as_bool() != Some(true) {
            return Ok(None);
        }
        let version = v["_version"].as_i64().ok_or_else(|| SearchError::Decode("document without _version".into()))?;
        let job = serde_json::from_value(v["_source"].clone())
            .map_err(|e| SearchError::Decode(format!("document {id} is not a job: {e}")))?;
        Ok(Some((job, version)))
    }

    /// `_mget` of ids in one index: the external version of each one found (`None`: not found);
    /// ids the engine could not answer for are left out.
    pub async fn versions_of(&self, index: &str, ids: &[String]) -> Result<Vec<(String, Option<DocRef>)>, SearchError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({"ids": ids});
        let path = format!("/{index}/_mget?_source_includes=id,user_id,workspace_id");
        let v = self.call(Method::POST, &path, Some(&body), None).await?;
        let docs = v["docs"].as_array().ok_or_else(|| SearchError::Decode("_mget without docs".into()))?;
        Ok(docs
            .iter()
            // An item the engine could not answer (a shard failure: `error`, no `found`) is
            // left out: "not found" is an answer, that is not.
            .filter(|d| d.get("error").is_none())
            .map(|d| {
                let id = d["_id"].as_str().unwrap_or_default().to_owned();
                let found = d["found"].as_bool() == Some(true);
                let doc = found.then(|| doc_ref(&id, d["_version"].as_i64(), &d["_source"]));
                (id, doc)
            })
            .collect())
    }

    /// Starts a scan of every document of `index` in `id` order, under a point in time when the
    /// engine grants one (a consistent view), else with plain `search_after`.
    pub async fn scanner(&self, index: &str, page_size: usize) -> Result<Scanner, SearchError> {
        self.scanner_kept(index, page_size, PIT_KEEP_ALIVE).await
    }

    /// [`SearchClient::scanner`] with a point in time kept `keep_alive` after each use, and
    /// renewed by [`Scanner::keep_alive`] once a quarter of it has passed (tests shorten it).
    pub async fn scanner_kept(
        &self,
        index: &str,
        page_size: usize,
        keep_alive: Duration,
    ) -> Result<Scanner, SearchError> {
        let flavor = self.flavor().await?;
        let kept = format!("{}ms", keep_alive.as_millis().max(1));
        let path = match flavor {
            Flavor::Elasticsearch => format!("/{index}/_pit?keep_alive={kept}"),
            Flavor::OpenSearch => format!("/{index}/_search/point_in_time?keep_alive={kept}"),
        };
        let pit = match self.call(Method::POST, &path, None, None).await {
            Ok(v) => v["id"].as_str().or_else(|| v["pit_id"].as_str()).map(str::to_owned),
            Err(e) => {
                tracing::warn!(error = %e, "no point in time: scanning with search_after alone");
                None
            }
        };
        Ok(Scanner {
            client: self.clone(),
            index: index.to_owned(),
            flavor,
            pit,
            kept,
            renew_after: keep_alive / 4,
            after: None,
            size: page_size.clamp(1, 10_000),
            done: false,
            used: std::time::Instant::now(),
        })
    }
}

/// How long a scan's point in time lives after each use; [`Scanner::keep_alive`] renews it
/// once a quarter of that has passed.
const PIT_KEEP_ALIVE: Duration = Duration::from_secs(120);

/// Attempts of a scan's page on transient errors (a 429, a timeout), 0.5 s apart and doubling.
const SCAN_ATTEMPTS: u32 = 5;

/// Pages through an index in `id` order (see [`SearchClient::scanner`]). Call
/// [`Scanner::close`] when done to free the point in time early.
pub struct Scanner {
    client: SearchClient,
    index: String,
    flavor: Flavor,
    pit: Option<String>,
    /// The point in time's keep-alive, as the engine reads it (`120000ms`).
    kept: String,
    renew_after: Duration,
    after: Option<Vec<Value>>,
    size: usize,
    done: bool,
    /// The point in time's last use, which renewed it.
    used: std::time::Instant,
}

impl Scanner {
    /// Renews the point in time if a quarter of its keep-alive has passed since its last use
    /// (30 s of [`PIT_KEEP_ALIVE`]): a caller that
    /// spends long between pages (verify's second looks at a long run of differences) calls it
    /// as it goes, or the next page finds the snapshot gone. A failure is left for the next
    /// page to report.
    pub async fn keep_alive(&mut self) {
        let Some(pit) = &self.pit else { return };
        if self.used.elapsed() < self.renew_after {
            return;
        }
        let body = json!({"size": 0, "track_total_hits": false, "pit": {"id": pit, "keep_alive": self.kept}});
        match self.client.call(Method::POST, "/_search", Some(&body), None).await {
            Ok(v) => {
                if let Some(pit) = v["pit_id"].as_str() {
                    self.pit = Some(pit.to_owned());
                }
                self.used = std::time::Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the scan's point in time"),
        }
    }

    /// The next page, or `None` at the end. Transient errors are tried again, a few times.
    pub async fn next_page(&mut self) -> Result<Option<ScanPage>, SearchError> {
        crate::retry::reads("scan page", SCAN_ATTEMPTS, SearchError::is_transient, async || self.try_next_page().await)
            .await
    }

    async fn try_next_page(&mut self) -> Result<Option<ScanPage>, SearchError> {
        if self.done {
            return Ok(None);
        }
        let mut body = json!({
            "size": self.size,
            "version": true,
            "track_total_hits": false,
            "_source": ["id", "user_id", "workspace_id"],
            "sort": [{"id": {"order": "asc"}}],
            "query": {"match_all": {}}
        });
        if let Some(after) = &self.after {
            body["search_after"] = json!(after);
        }
        let path = match &self.pit {
            Some(pit) => {
                body["pit"] = json!({"id": pit, "keep_alive": self.kept});
                "/_search?allow_partial_search_results=false".to_owned()
            }
            None => format!("/{}/_search?allow_partial_search_results=false", self.index),
        };
        let v = self.client.call(Method::POST, &path, Some(&body), None).await?;
        self.used = std::time::Instant::now();
        let resp: SearchResponse = serde_json::from_value(v).map_err(|e| SearchError::Decode(format!("scan: {e}")))?;
        resp.check_complete()?;
        if let Some(pit) = resp.pit_id {
            self.pit = Some(pit);
        }
        if resp.hits.hits.len() < self.size {
            self.done = true;
        } else if resp.hits.hits.last().is_none_or(|h| h.sort.as_ref().is_none_or(Vec::is_empty)) {
            // Without the last hit's sort key the next page would start over from the first:
            // a scan that never ends (an engine always sends it; a broken proxy may not).
            return Err(SearchError::Decode("scan: a full page whose last hit has no sort key".into()));
        }
        let mut page = Vec::with_capacity(resp.hits.hits.len());
        for hit in resp.hits.hits {
            let source = hit.source.unwrap_or(Value::Null);
            let mut doc = doc_ref(&hit.id, hit.version, &source);
            // Order by the sort key: a document without an `id` field sorts last, by `_id`.
            if let Some(key) = hit.sort.as_ref().and_then(|s| s.first()).and_then(Value::as_str) {
                doc.id = key.to_owned();
            }
            page.push(doc);
            self.after = hit.sort;
        }
        if page.is_empty() {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(page))
    }

    /// Frees the point in time.
    pub async fn close(self) {
        let Some(pit) = self.pit else { return };
        let (path, body) = match self.flavor {
            Flavor::Elasticsearch => ("/_pit", json!({"id": pit})),
            Flavor::OpenSearch => ("/_search/point_in_time", json!({"pit_id": [pit]})),
        };
        if let Err(e) = self.client.call(Method::DELETE, path, Some(&body), None).await {
            tracing::debug!(error = %e, "closing the point in time");
        }
    }
}

fn doc_ref(id: &str, version: Option<i64>, source: &Value) -> DocRef {
    let uuid = |k: &str| source[k].as_str().and_then(|s| Uuid::parse_str(s).ok());
    DocRef {
        id: source["id"].as_str().unwrap_or(id).to_owned(),
        version: version.unwrap_or(0),
        user_id: uuid("user_id"),
        workspace_id: uuid("workspace_id"),
    }
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards", default)]
    shards: Option<Shards>,
    hits: Hits,
    #[serde(default)]
    pit_id: Option<String>,
}

impl SearchResponse {
    fn check_complete(&self) -> Result<(), SearchError> {
        if self.timed_out {
            return Err(SearchError::Timeout(Duration::ZERO));
        }
        if let Some(s) = &self.shards
            && s.failed > 0
        {
            return Err(SearchError::Status {
                status: 503,
                kind: "shard_failure".into(),
                reason: format!("{} of {} shards failed", s.failed, s.total),
            });
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Shards {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    failed: u64,
}

#[derive(Deserialize)]
struct Hits {
    #[serde(default)]
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_id", default)]
    id: String,
    #[serde(rename = "_version", default)]
    version: Option<i64>,
    #[serde(rename = "_source", default)]
    source: Option<Value>,
    #[serde(default)]
    sort: Option<Vec<Value>>,
}

/// One `_bulk` request: changes `start..end` for every index.
struct Chunk {
    start: usize,
    end: usize,
    body: Vec<u8>,
}

fn build_chunk(indices: &[String], changes: &[Change<'_>], start: usize) -> Chunk {
    let mut body = Vec::new();
    for index in indices {
        search::bulk_body_into(index, changes, &mut body);
    }
    Chunk { start, end: start + changes.len(), body }
}

/// Splits `changes` into requests of at most `max_docs` actions (changes x indexes) and about
/// `max_bytes` (a single larger change goes alone). Within a request the lines for index k come
/// after those for index k-1, so item `k * n + i` is change `i` in index `k`.
fn chunks(indices: &[String], changes: &[Change<'_>], max_bytes: usize, max_docs: usize) -> Vec<Chunk> {
    let per_change = indices.len().max(1);
    let max_changes = (max_docs / per_change).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    let mut one = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        one.clear();
        for index in indices {
            search::bulk_body_into(index, std::slice::from_ref(c), &mut one);
        }
        let full = i - start >= max_changes || (i > start && size + one.len() > max_bytes);
        if full {
            out.push(build_chunk(indices, &changes[start..i], start));
            start = i;
            size = 0;
        }
        size += one.len();
    }
    if start < changes.len() {
        out.push(build_chunk(indices, &changes[start..], start));
    }
    out
}

/// One change's outcome over several indexes: rejected if any index rejected it, else retry if
/// any asked for one, else done.
fn combine(per_index: impl Iterator<Item = Outcome>) -> Outcome {
    let mut worst: Option<Outcome> = None;
    for o in per_index {
        let rank = |o: &Outcome| match o {
            Outcome::Stale => 0,
            Outcome::Indexed => 1,
            Outcome::Retry { .. } => 2,
            Outcome::Rejected { .. } => 3,
        };
        if worst.as_ref().is_none_or(|w| rank(&o) > rank(w)) {
            worst = Some(o);
        }
    }
    // Every target was optional and missing: nothing to write, nothing lost.
    worst.unwrap_or(Outcome::Indexed)
}

/// A 404 for the index itself (`index_not_found_exception`: no such index or alias), not for
/// the document.
fn is_missing_index(o: &Outcome) -> bool {
    matches!(o, Outcome::Rejected { status: 404, reason } if reason.starts_with("index_not_found_exception"))
}

/// `o` with its reason prefixed by the index that gave it: `{index}: {reason}`.
fn on_index(index: &str, o: Outcome) -> Outcome {
    match o {
        Outcome::Retry { status, reason } => Outcome::Retry { status, reason: format!("{index}: {reason}") },
        Outcome::Rejected { status, reason } => Outcome::Rejected { status, reason: format!("{index}: {reason}") },
        done => done,
    }
}

fn reason_of(o: &Outcome) -> String {
    match o {
        Outcome::Retry { reason, .. } | Outcome::Rejected { reason, .. } => reason.clone(),
        Outcome::Indexed | Outcome::Stale => String::new(),
    }
}

fn transport(e: reqwest::Error, timeout: Duration) -> SearchError {
    if e.is_timeout() {
        SearchError::Timeout(timeout)
    } else {
        // The chain says why (connection refused, reset, ...).
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        SearchError::Transport(msg)
    }
}

fn flavor_of(headers: &HeaderMap) -> Flavor {
    if headers.contains_key("x-elastic-product") { Flavor::Elasticsearch } else { Flavor::OpenSearch }
}

fn ok_json(resp: Response) -> Result<Value, SearchError> {
    if !(200..300).contains(&resp.status) {
        return Err(error_of(resp));
    }
    serde_json::from_slice(&resp.body).map_err(|e| SearchError::Decode(format!("{e} in {}", snippet(&resp.body))))
}

/// The error of a non-2xx answer: `{"error": {"type", "reason"}}`, `{"error": "text"}` or
/// anything else (a proxy's HTML page).
fn error_of(resp: Response) -> SearchError {
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let (kind, reason) = match &v["error"] {
        Value::Object(e) => (
            e.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
            e.get("reason").and_then(Value::as_str).unwrap_or_default().to_owned(),
        ),
        Value::String(s) => (String::new(), s.clone()),
        _ => (String::new(), snippet(&resp.body)),
    };
    SearchError::Status { status: resp.status, kind, reason }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let mut s = s.into_owned();
    s.truncate(s.floor_char_boundary(300));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs_core::model::{JobStatus, JobType};
    use jobs_core::time::Timestamp;

    pub(super) fn job(n: u128, project: &str) -> Job {
        Job {
            id: Uuid::from_u128(n),
            workspace_id: None,
            user_id: Uuid::from_u128(1),
            status: JobStatus::Queued,
            job_type: JobType::Build,
            project_name: project.into(),
            hostname: None,
            arch: None,
            user_email: None,
            error_message: None,
            metadata: Default::default(),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            completed_at: None,
            version: 1,
        }
    }

    fn lines(c: &Chunk) -> usize {
        c.body.iter().filter(|b| **b == b'\n').count()
    }

    #[test]
    fn chunks_respect_doc_and_byte_limits() {
        let jobs: Vec<Job> = (0..25).map(|n| job(n, &"p".repeat(100))).collect();
        let changes: Vec<Change<'_>> = jobs.iter().map(Change::Upsert).collect();
        let one = vec!["i".to_owned()];
        let cs = chunks(&one, &changes, usize::MAX, 10);
        assert_eq!(cs.iter().map(|c| (c.start, c.end)).collect::<Vec<_>>(), vec![(0, 10), (10, 20), (20, 25)]);
        assert_eq!(lines(&cs[0]), 20);
        let two = vec!["a".to_owned(), "b".to_owned()];
        let cs = chunks(&two, &changes, usize::MAX, 10);
        assert_eq!(cs.len(), 5, "5 changes x 2 indexes per request");
        assert_eq!(lines(&cs[0]), 20);
        // a byte budget of ~3 documents
        let size = search::bulk_body("i", &changes[..1]).len();
        let cs = chunks(&one, &changes, size * 3, 1000);
        assert!(
            cs.iter().all(|c| c.end - c.start == 3 || c.end == 25),
            "{:?}",
            cs.iter().map(|c| c.end).collect::<Vec<_>>()
        );
        assert!(cs.iter().all(|c| c.body.len() <= size * 3));
        // a single change larger than the budget still goes, alone
        let cs = chunks(&one, &changes, 1, 1000);
        assert_eq!(cs.len(), 25);
        // every change is sent exactly once, in order
        let cs = chunks(&two, &changes, 5000, 7);
        let covered: Vec<usize> = cs.iter().flat_map(|c| c.start..c.end).collect();
        assert_eq!(covered, (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn combined_outcome_is_the_worst() {
        let retry = Outcome::Retry { status: 429, reason: "x".into() };
        let rejected = Outcome::Rejected { status: 400, reason: "y".into() };
        assert_eq!(combine([Outcome::Indexed, Outcome::Stale].into_iter()), Outcome::Indexed);
        assert_eq!(combine([Outcome::Stale, Outcome::Stale].into_iter()), Outcome::Stale);
        assert_eq!(combine([Outcome::Indexed, retry.clone()].into_iter()), retry);
        assert_eq!(combine([rejected.clone(), retry.clone()].into_iter()), rejected);
        let missing = Outcome::Rejected { status: 404, reason: "index_not_found_exception: no such index [x]".into() };
        assert!(is_missing_index(&missing));
        assert!(!is_missing_index(&rejected));
    }

    #[test]
    fn errors_are_read_from_any_shape() {
        let r = |status, body: &str| {
            error_of(Response { status, headers: HeaderMap::new(), body: body.as_bytes().to_vec() })
        };
        let e =
            r(400, r#"{"error":{"type":"resource_already_exists_exception","reason":"index exists"},"status":400}"#);
        assert_eq!(e.kind(), "resource_already_exists_exception");
        assert!(!e.is_transient());
        let e = r(429, r#"{"error":{"type":"rejected_execution_exception","reason":"busy"}}"#);
        assert!(e.is_transient(), "429 is transient whatever the type");
        let e = r(
            406,
            r#"{"error":"Content-Type header [application/vnd.elasticsearch+json] is not supported","status":406}"#,
        );
        assert!(e.to_string().contains("Content-Type header"));
        let e = r(502, "<html>bad gateway</html>");
        assert!(e.is_transient() && e.to_string().contains("bad gateway"));
    }

    #[test]
    fn names() {
        let client = SearchClient::with_signer(
            SearchConfig::new("http://127.0.0.1:9/").expect("cfg").alias("t_jobs"),
            Signer::none(),
        )
        .expect("client");
        assert_eq!(client.index_name(3), "t_jobs-v3");
        assert_eq!(client.index_version("t_jobs-v12"), Some(12));
        assert_eq!(client.index_version("jobs-v12"), None);
        assert_eq!(client.reindex_alias(), "t_jobs-reindex");
        let t = Targets { current: "a".into(), reindexing: Some("a".into()) };
        assert_eq!(t.indices(), vec!["a".to_owned()]);
    }
}

#[cfg(test)]
mod flavor_tests {
    use super::*;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The engine's kind is learnt from its own answers only: Elasticsearch leaves its header off
    /// a 401 or a 413 and a proxy's 502 page has none; one of those first made an Elasticsearch
    /// cluster "OpenSearch" for the life of the process (verify then scanned without a point in
    /// time).
    #[tokio::test]
    async fn the_engine_kind_is_not_read_from_a_proxy_error() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let app = axum::Router::new().fallback(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    return (axum::http::StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response();
                }
                let health = r#"{"cluster_name":"c","status":"green"}"#;
                ([("x-elastic-product", "Elasticsearch"), ("content-type", "application/json")], health).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        let cfg = SearchConfig::new(&format!("http://{addr}")).expect("url").request_timeout(Duration::from_secs(5));
        let client = SearchClient::new(cfg).await.expect("client");
        assert!(client.count("jobs").await.is_err(), "the proxy's 502");
        assert_eq!(client.flavor().await.expect("flavor"), Flavor::Elasticsearch);
    }

    /// A full page whose last hit has no sort key is an error: the next page, asked without
    /// `search_after`, started over, and the scan never ended.
    #[tokio::test]
    async fn a_scan_without_sort_keys_ends() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let seen = seen.clone();
            async move {
                let body = if uri.path().ends_with("point_in_time") {
                    json!({"pit_id": "p"})
                } else if !uri.path().ends_with("_search") {
                    json!({"cluster_name": "c", "status": "green"})
                } else {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let hit = |id: &str| json!({"_id": id, "_version": 1, "_source": {"id": id}});
                    json!({"timed_out": false, "hits": {"hits": [hit("a"), hit("b")]}})
                };
                ([("content-type", "application/json")], body.to_string()).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        let cfg = SearchConfig::new(&format!("http://{addr}")).expect("url").request_timeout(Duration::from_secs(5));
        let client = SearchClient::new(cfg).await.expect("client");
        let mut scan = client.scanner("jobs", 2).await.expect("scanner");
        let mut pages = 0;
        let end = loop {
            match scan.next_page().await {
                Ok(Some(_)) if pages < 10 => pages += 1,
                other => break other,
            }
        };
        assert!(
            matches!(end, Err(SearchError::Decode(_))),
            "{pages} pages, then {:?}",
            end.map(|p| p.map(|p| p.len()))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried: the same answer would come again");
    }

    /// A batch split into several requests: each has its own timeout, and all of them end by
    /// the run's deadline. Each used to get the whole timeout, so three slow chunks ran three
    /// times past the deadline; a slow but healthy engine is no failure.
    #[tokio::test]
    async fn a_split_bulk_keeps_to_the_deadline() {
        let app = axum::Router::new().fallback(|body: String| async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let n = body.lines().count() / 2;
            let items: Vec<Value> = (0..n).map(|_| json!({"index": {"status": 201}})).collect();
            ([("content-type", "application/json")], json!({"errors": false, "items": items}).to_string())
                .into_response()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        let cfg = SearchConfig::new(&format!("http://{addr}")).expect("url").bulk_limits(usize::MAX, 10);
        let client = SearchClient::new(cfg).await.expect("client");
        let jobs: Vec<Job> = (0..30).map(|n| super::tests::job(n, "p")).collect();
        let changes: Vec<Change<'_>> = jobs.iter().map(Change::Upsert).collect();
        let targets = Targets { current: "jobs-v1".into(), reindexing: None };
        let each = Some(Duration::from_millis(1000));

        let started = std::time::Instant::now();
        let end = started + Duration::from_millis(1000);
        let report = client.write_until(&targets, &changes, each, Some(end)).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1400), "took {took:?}");
        assert!(matches!(report.error, Some(SearchError::Timeout(_))), "{:?}", report.error);
        assert!(report.outcomes[..10].iter().all(|o| o == &Some(Outcome::Indexed)), "the first chunk answered");
        assert!(report.outcomes[20..].iter().all(Option::is_none), "the last was not sent: handed back");

        // No deadline near: three slow chunks, each within its timeout, are all answered.
        let report = client.write_until(&targets, &changes, each, None).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        assert!(report.outcomes.iter().all(|o| o == &Some(Outcome::Indexed)));
    }
}
