//! The HTTP API: one axum [`Router`] over the store, run by `lambda_http` in Lambda
//! (`bin/jobs-api.rs`) and by hyper locally (`jobsctl serve`). No second routing table.
//!
//! - [`handlers`]: the endpoints, and the extractors that turn a request into typed, checked
//!   input (identity, JSON body, If-Match, ids) or an [`ApiError`];
//! - [`auth`]: identity from authorizer claims or HS256 bearer tokens, and token minting;
//! - [`error`]: the one error type and its HTTP mapping;
//! - [`openapi`]: the OpenAPI 3.1 document (`lambda/openapi.json`), served at `/v1/openapi.json`;
//! - [`lambda`] and [`sync_fn`]: the two Lambda functions' plumbing; [`config`]: their
//!   environment; [`runtime_api`]: a local Lambda Runtime API for tests and benchmarks;
//! - [`web`]: the demo page's static files (`jobsctl serve` only).

pub mod auth;
pub mod config;
pub mod error;
pub mod handlers;
pub mod lambda;
pub mod openapi;
pub mod runtime_api;
pub mod sync_fn;
pub mod web;

use crate::db::Executor;
pub use crate::search::{Page, Searcher, Source};
use crate::store::Item;
use crate::store::{Scope, Store};
use crate::sync_run::{self, PushOutcome};
use auth::{Auth, Identity};
use axum::Router;
use axum::routing::get;
pub use error::ApiError;
use jobs_core::model::Job;
use jobs_core::query::SearchRequest;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Bodies larger than this are refused with 413. The largest valid job with every character
/// escaped as JSON allows (an error message of 65,536 characters outside the BMP, `\uD83D\uDE00`,
/// 12 bytes each; 32 KiB of metadata written the same way) is ~0.9 MB: it fits.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most bytes of jobs one page of `GET /v1/jobs` holds; a page cut there continues with its
/// `next_cursor`. A Lambda response holds at most 6 MB, and API Gateway's event wraps the body
/// as a JSON string, which can double it (every `"` and `\` escaped again).
pub const PAGE_BYTES: usize = 2_500_000;
/// Identities remembered as already recorded (users row, memberships) before the memory is reset.
const KNOWN_IDENTITIES: usize = 10_000;

/// The `ETag` of a job version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// How the API runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Search: the engine first (when one is configured), Postgres when it is down or slow.
    /// Its client also carries the write-through.
    pub searcher: Searcher,
    /// The longest a write waits for its write-through to search.
    pub write_through_timeout: Duration,
    /// The demo page's files (`jobsctl serve`); `None` in Lambda.
    pub site: Option<web::Site>,
    /// The longest a request may take before it is answered 503 (`None`: no limit). Set below
    /// the function's timeout in Lambda, where a request still running at the timeout is killed
    /// (API Gateway answers a bare 500, nothing is logged, and a cold start follows).
    pub request_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            searcher: Searcher::database_only(),
            write_through_timeout: Duration::from_millis(500),
            site: None,
            request_timeout: None,
        }
    }
}

/// How long `GET /v1/health` waits for the search engine.
const HEALTH_SEARCH_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything a request needs: the store, how to identify callers, and the options. Built once
/// per process (per Lambda instance) and shared.
pub struct Api<E> {
    store: Arc<Store<E>>,
    auth: Auth,
    options: Options,
    /// Identities whose users row and memberships are known to be recorded.
    known: Mutex<HashMap<Uuid, Identity>>,
    /// The last health answer and when it was made ([`HEALTH_REUSE`]).
    pub(crate) health: tokio::sync::Mutex<Option<(std::time::Instant, axum::http::StatusCode, serde_json::Value)>>,
}

/// `/v1/health` needs no identity: one answer serves every check within this time (the others
/// wait for the one being made), so no rate of probes makes more than one database and one
/// engine check a second per instance.
pub(crate) const HEALTH_REUSE: Duration = Duration::from_secs(1);

/// How long the health check waits for the database.
pub(crate) const HEALTH_DATABASE_TIMEOUT: Duration = Duration::from_secs(3);

impl<E: Executor + 'static> Api<E> {
    pub fn new(store: Arc<Store<E>>, auth: Auth, options: Options) -> Api<E> {
        Api { store, auth, options, known: Mutex::new(HashMap::new()), health: tokio::sync::Mutex::new(None) }
    }

    pub fn store(&self) -> &Arc<Store<E>> {
        &self.store
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Records the caller on first sight: their users row (email from the claims) and their
    /// membership of each claimed workspace (creating the workspace, named by its id, if it is
    /// new; an existing workspace keeps its name).
    pub async fn ensure_identity(&self, id: &Identity) -> Result<(), ApiError> {
        if self.known.lock().is_ok_and(|k| k.get(&id.user_id) == Some(id)) {
            return Ok(());
        }
        self.store.ensure_user(id.user_id, id.email.as_deref()).await?;
        self.store.ensure_memberships(id.user_id, &id.workspaces).await?;
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= KNOWN_IDENTITIES {
                known.clear();
            }
            known.insert(id.user_id, id.clone());
        }
        Ok(())
    }

    /// Forgets that `id` was recorded (its users row or a workspace vanished since), so the
    /// next [`Api::ensure_identity`] writes it again.
    pub fn forget_identity(&self, id: &Identity) {
        if let Ok(mut known) = self.known.lock() {
            known.remove(&id.user_id);
        }
    }

    /// One page of jobs matching `req` within `scope`: from the engine, or from Postgres when
    /// the engine is down, slow or not configured (the page says which).
    pub async fn search(&self, scope: &Scope, req: &SearchRequest) -> Result<Page, ApiError> {
        Ok(self.options.searcher.search(&self.store, scope, req).await?)
    }

    /// Pushes a committed write to search right away (externally versioned, marked synced with
    /// the sync's version guard), within the write-through timeout. Never fails the request:
    /// what it misses stays dirty and the scheduled sync delivers it.
    pub async fn write_through(&self, written: Written<'_>) {
        let Some(client) = self.options.searcher.client() else { return };
        // Searches found the engine down: a write would only wait its timeout out.
        if self.options.searcher.breaker_state() == crate::search::BreakerState::Open {
            tracing::debug!("write-through skipped: the search circuit breaker is open; the sync will deliver it");
            return;
        }
        let timeout = self.options.write_through_timeout;
        let outcome = match written {
            Written::Job(job) => {
                let item = Item::Job(job.clone());
                tokio::time::timeout(timeout, sync_run::push_item(&self.store, client, &item, timeout))
                    .await
                    .unwrap_or_else(|_| PushOutcome::Failed { reason: format!("no answer within {timeout:?}") })
            }
            Written::Deleted(id) => sync_run::push_one(&self.store, client, id, timeout).await,
        };
        if let PushOutcome::Failed { reason } = outcome {
            tracing::info!(%reason, "write-through missed; the sync will deliver it");
        }
    }

    /// The search engine's state for `/v1/health`.
    pub async fn search_health(&self) -> serde_json::Value {
        let Some(client) = self.options.searcher.client() else { return json!({"status": "disabled"}) };
        let breaker = self.options.searcher.breaker_state();
        match tokio::time::timeout(HEALTH_SEARCH_TIMEOUT, client.health()).await {
            Ok(Ok(h)) => json!({"status": "up", "cluster": h.status, "engine": h.flavor, "breaker": breaker}),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "health: search check failed");
                json!({"status": "down", "error": e.summary(), "breaker": breaker})
            }
            Err(_) => {
                json!({"status": "down", "error": format!("no answer within {HEALTH_SEARCH_TIMEOUT:?}"), "breaker": breaker})
            }
        }
    }
}

/// A committed write, for [`Api::write_through`].
#[derive(Debug, Clone, Copy)]
pub enum Written<'a> {
    Job(&'a Job),
    Deleted(Uuid),
}

/// The whole API (and, when [`Options::site`] is set, the demo page) over `api`.
pub fn router<E: Executor + 'static>(api: Arc<Api<E>>) -> Router {
    use handlers::*;
    let limit = api.options.request_timeout;
    Router::new()
        .route("/v1/health", get(health::<E>))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/jobs", get(list_jobs::<E>).post(create_job::<E>))
        .route("/v1/jobs/{id}", get(get_job::<E>).patch(patch_job::<E>).delete(delete_job::<E>))
        .fallback(fallback::<E>)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |req, next| within(limit, req, next)))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(api)
}

/// Answers 503 when the request is not done within `limit`. The work in flight is dropped: the
/// direct driver cancels its statement; a Data API statement already sent runs to its end (the
/// API's writes are single statements). Either may have been applied, which the message says.
async fn within(
    limit: Option<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(limit) = limit else { return next.run(req).await };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX), "request timed out");
            ApiError::Unavailable(format!(
                "the request did not finish within {} ms; a write may have been applied: read before sending it again",
                limit.as_millis()
            ))
            .into_response()
        }
    }
}

/// One line per request (target `jobs::access`: INFO, health checks at DEBUG): method, route
/// (the template, not the ids in it), status, latency and the API Gateway request id a client
/// can quote. 4xx answers were logged nowhere; causes are still logged where they happen.
async fn access_log(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use lambda_http::request::RequestContext;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let request_id = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        _ => None,
    };
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let route = route.as_deref().unwrap_or("-");
    let request_id = request_id.as_deref().unwrap_or("-");
    if route == "/v1/health" && status == 200 {
        tracing::debug!(target: "jobs::access", %method, route, status, latency_ms, request_id, "request");
    } else {
        tracing::info!(target: "jobs::access", %method, route, status, latency_ms, request_id, "request");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Cell, DbError, Executor, Transaction};
    use async_trait::async_trait;
    use jobs_core::sql::Param;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the statements it is given; answers each with nothing.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    struct NoTx;

    #[async_trait]
    impl Transaction for NoTx {
        async fn query(&mut self, _: &str, _: &[Param]) -> Result<Vec<Vec<Cell>>, DbError> {
            Err(DbError::Unavailable("no transactions here".into()))
        }
        async fn execute(&mut self, _: &str, _: &[Param]) -> Result<u64, DbError> {
            Err(DbError::Unavailable("no transactions here".into()))
        }
        async fn commit(self) -> Result<(), DbError> {
            Ok(())
        }
        async fn rollback(self) -> Result<(), DbError> {
            Ok(())
        }
    }

    #[async_trait]
    impl Executor for Counting {
        type Tx<'a> = NoTx;
        async fn query(&self, _: &str, _: &[Param]) -> Result<Vec<Vec<Cell>>, DbError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        async fn execute(&self, _: &str, _: &[Param]) -> Result<u64, DbError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(0)
        }
        async fn begin(&self) -> Result<NoTx, DbError> {
            Ok(NoTx)
        }
    }

    /// Every answer gets one access line, 4xx included, with the route's template and the
    /// API Gateway request id.
    #[tokio::test]
    async fn each_request_gets_an_access_line() {
        use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
        use lambda_http::request::RequestContext;
        use tower::ServiceExt;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let api = Api::new(Arc::new(Store::new(Counting::default())), Auth { key: None }, Options::default());
        let mut req = axum::http::Request::get("/v1/jobs/0190a0b1-0000-7000-8000-000000000001")
            .body(axum::body::Body::empty())
            .expect("request");
        let mut ctx = ApiGatewayV2httpRequestContext::default();
        ctx.request_id = Some("req-42".into());
        req.extensions_mut().insert(RequestContext::ApiGatewayV2(ctx));
        let resp = router(Arc::new(api)).oneshot(req).await.expect("answer");
        assert_eq!(resp.status(), axum::http::StatusCode::UNAUTHORIZED);
        let text = String::from_utf8(buf.0.lock().expect("buf").clone()).expect("utf-8");
        let line =
            text.lines().find(|l| l.contains("jobs::access")).unwrap_or_else(|| panic!("no access line: {text}"));
        for part in ["method=GET", "route=\"/v1/jobs/{id}\"", "status=401", "request_id=\"req-42\"", "latency_ms="] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }

    /// `/v1/health` needs no identity: however many checks arrive, one database check a
    /// second is made (each check was a count over the sync queue, and a free load for anyone).
    #[tokio::test]
    async fn health_checks_share_one_answer_a_second() {
        use tower::ServiceExt;
        let store = Arc::new(Store::new(Counting::default()));
        let app = router(Arc::new(Api::new(store.clone(), Auth { key: None }, Options::default())));
        let probe = || {
            let app = app.clone();
            async move {
                let req = axum::http::Request::get("/v1/health").body(axum::body::Body::empty()).expect("request");
                app.oneshot(req).await.expect("answer").status()
            }
        };
        let statuses = futures_util::future::join_all((0..20).map(|_| probe())).await;
        assert!(statuses.windows(2).all(|w| w[0] == w[1]), "{statuses:?}");
        let once = store.executor().0.load(Ordering::SeqCst);
        assert!(once >= 1, "the database was asked");
        probe().await;
        assert_eq!(store.executor().0.load(Ordering::SeqCst), once, "the answer is reused");
        tokio::time::sleep(HEALTH_REUSE + Duration::from_millis(50)).await;
        probe().await;
        assert_eq!(store.executor().0.load(Ordering::SeqCst), once * 2, "and made again a second later");
    }

    /// A request over the time limit is answered 503 when the limit is reached, its work
    /// dropped; without the limit it runs on (in Lambda, until the function is killed).
    #[tokio::test]
    async fn a_request_over_the_limit_is_a_503() {
        use tower::ServiceExt;
        struct Slow;
        #[async_trait]
        impl Executor for Slow {
            type Tx<'a> = NoTx;
            async fn query(&self, _: &str, _: &[Param]) -> Result<Vec<Vec<Cell>>, DbError> {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Vec::new())
            }
            async fn execute(&self, _: &str, _: &[Param]) -> Result<u64, DbError> {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(0)
            }
            async fn begin(&self) -> Result<NoTx, DbError> {
                Ok(NoTx)
            }
        }
        let options = Options { request_timeout: Some(Duration::from_millis(200)), ..Options::default() };
        let app = router(Arc::new(Api::new(Arc::new(Store::new(Slow)), Auth { key: None }, options)));
        let started = std::time::Instant::now();
        let req = axum::http::Request::get("/v1/health").body(axum::body::Body::empty()).expect("request");
        let resp = app.oneshot(req).await.expect("answer");
        assert_eq!(resp.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("within 200 ms")), "{body}");
    }

    /// A token may claim hundreds of workspaces: recording the caller costs three statements
    /// however many (one each was seconds through the Data API on every cold instance), and
    /// none the second time.
    #[tokio::test]
    async fn recording_a_caller_is_a_constant_number_of_statements() {
        let store = Arc::new(Store::new(Counting::default()));
        let api = Api::new(store.clone(), Auth { key: None }, Options::default());
        let mut workspaces: Vec<Uuid> = (0..500).map(|i| Uuid::from_u128(1000 + i)).collect();
        workspaces.sort_unstable();
        let id = Identity { user_id: Uuid::from_u128(1), email: Some("a@example.com".into()), workspaces };
        api.ensure_identity(&id).await.expect("recorded");
        assert_eq!(store.executor().0.load(Ordering::SeqCst), 3);
        api.ensure_identity(&id).await.expect("known");
        assert_eq!(store.executor().0.load(Ordering::SeqCst), 3);
    }
}
