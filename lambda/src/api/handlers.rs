//! The endpoints, and the extractors that turn a request into checked input or an [`ApiError`]
//! (never axum's plain-text rejections): [`Caller`] (401), [`JobId`] (404), [`IfMatch`]
//! (428/412), [`JsonBody`] (415/413). Extractors run in argument order, the body last, so a
//! request is authenticated before anything else is looked at.
//!
//! Rejected requests write nothing: every check happens before the one store call that writes,
//! and that call is itself conditional (scope, version).

use super::{Api, ApiError, Written, etag};
use crate::clock;
use crate::db::{DbError, Executor};
use crate::store::{Scope, StoreError};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobs_core::issue::{Code, Issues};
use jobs_core::model::Job;
use jobs_core::query::SearchRequest;
use jobs_core::validate;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

type Result<T, E = ApiError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Extractors

/// The authenticated caller and the scope every read and write of theirs is limited to. Their
/// users row and workspace memberships are recorded on first sight.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: super::auth::Identity,
    pub scope: Scope,
}

impl<E: Executor + 'static> FromRequestParts<Arc<Api<E>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api<E>>) -> Result<Self> {
        let now = clock::now().as_millis() / 1000;
        let identity = api.auth.identify(parts, now).map_err(ApiError::Unauthorized)?;
        api.ensure_identity(&identity).await?;
        let scope = Scope { user_id: identity.user_id, workspace_ids: identity.workspaces.clone() };
        Ok(Caller { identity, scope })
    }
}

/// A job id from the path. Text that is not a UUID names no job: 404.
#[derive(Debug, Clone, Copy)]
pub struct JobId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let Path(text) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::NotFound)?;
        jobs_core::text::parse_uuid(&text).map(JobId).map_err(|_| ApiError::NotFound)
    }
}

/// An `If-Match` precondition (RFC 9110 13.1.1, strong comparison): `*`, or a list of entity
/// tags of which one must be the job's current `"<version>"`. Weak or malformed tags match
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Versions(Vec<i64>),
}

impl IfMatch {
    /// `None` when the request has no If-Match.
    pub fn from_headers(headers: &HeaderMap) -> Option<IfMatch> {
        let mut versions = Vec::new();
        let mut seen = false;
        for value in headers.get_all(header::IF_MATCH) {
            seen = true;
            let Ok(text) = value.to_str() else { continue };
            for tag in text.split(',').map(str::trim) {
                if tag == "*" {
                    return Some(IfMatch::Any);
                }
                // Strong comparison is of the tag's characters: `"+3"` or `"03"` is not `"3"`.
                let version = tag
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .and_then(|t| t.parse::<i64>().ok().filter(|v| v.to_string() == t));
                versions.extend(version);
            }
        }
        seen.then_some(IfMatch::Versions(versions))
    }

    pub fn matches(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(v) => v.contains(&version),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        IfMatch::from_headers(&parts.headers).ok_or(ApiError::PreconditionRequired)
    }
}

/// A JSON request body: `application/json` or another `application/*+json` type (415
/// otherwise), at most [`super::MAX_BODY_BYTES`] (413). The JSON itself is read by the core.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self> {
        check_json_content_type(req.headers())?;
        let limit = super::MAX_BODY_BYTES;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(bytes) => Ok(JsonBody(bytes)),
            Err(e) => {
                let e = e.into_inner();
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    Err(ApiError::PayloadTooLarge(limit))
                } else {
                    Err(ApiError::InvalidJson(format!("the body could not be read: {e}")))
                }
            }
        }
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<()> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType("send the body as Content-Type: application/json".into()));
    };
    let essence = value.to_str().ok().and_then(|v| v.split(';').next()).map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(t) if t.starts_with("application/") && t.ends_with("+json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "the body must be application/json, not {}",
            String::from_utf8_lossy(value.as_bytes())
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
        }
        Err(e) => ApiError::Internal(format!("serialising a response: {e}")).into_response(),
    }
}

fn job_response(status: StatusCode, job: &Job) -> Response {
    let mut resp = json_response(status, job);
    if let Ok(v) = HeaderValue::from_str(&etag(job.version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// Endpoints

/// `POST /v1/jobs`: 201 with the job, its ETag and Location.
pub async fn create_job<E: Executor + 'static>(
    State(api): State<Arc<Api<E>>>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let new = validate::create_from_json(&body).map_err(ApiError::from_issues)?;
    let id = clock::new_job_id();
    let job = match api.store.create(&caller.scope, &new, id).await {
        // The caller's users row or workspace was deleted after this process recorded it:
        // record it again and retry once.
        Err(StoreError::UnknownReference(_)) => {
            api.forget_identity(&caller.identity);
            api.ensure_identity(&caller.identity).await?;
            api.store.create(&caller.scope, &new, id).await?
        }
        other => other?,
    };
    api.write_through(Written::Job(&job)).await;
    let mut resp = job_response(StatusCode::CREATED, &job);
    // Relative to the URL the caller posted to (RFC 9110: `…/v1/jobs` + `jobs/{id}` is
    // `…/v1/jobs/{id}`), so it is right behind any stage, custom domain or mapping key, which
    // the function cannot all see: an absolute path named `/prod/…` on a domain that maps
    // `/jobs` to the stage.
    if let Ok(v) = HeaderValue::from_str(&format!("jobs/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /v1/jobs/{id}`.
pub async fn get_job<E: Executor + 'static>(
    State(api): State<Arc<Api<E>>>,
    caller: Caller,
    JobId(id): JobId,
) -> Result<Response> {
    let job = api.store.get(&caller.scope, id).await?;
    Ok(job_response(StatusCode::OK, &job))
}

/// Patch problems that depend on the job's current state rather than on the patch alone.
const STATE_CODES: &[Code] = &[
    Code::BadTransition,
    Code::CompletedAtRequired,
    Code::CompletedAtNotAllowed,
    Code::CompletedBeforeCreated,
    Code::ErrorMessageNotAllowed,
    // The patch is merged into the current metadata: another writer's keys can push the
    // result over the size or depth limit.
    Code::MetadataTooLarge,
    Code::MetadataTooDeep,
];

/// `PATCH /v1/jobs/{id}` with `If-Match`: 200, 412 with the current job when the version moved
/// on, 400 for a patch the core refuses (bad transition, ...).
pub async fn patch_job<E: Executor + 'static>(
    State(api): State<Arc<Api<E>>>,
    caller: Caller,
    JobId(id): JobId,
    if_match: IfMatch,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    // `If-Match: *` holds whatever the version (RFC 9110): a writer that got in between the
    // read and the update is not the caller's precondition failing, so the patch is checked
    // again against the job as it is then, a few times.
    const ANY_ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let current = api.store.get(&caller.scope, id).await?;
        let checked = validate::patch_from_json(&current, &body, clock::now());
        if !if_match.matches(current.version) {
            // A stale caller gets 412 (and the job as it is now) unless the patch is malformed
            // whatever the job's state: rules that depend on the state are judged against the
            // state the caller had in mind, after they refetch.
            match checked {
                Err(issues) if !issues.iter().all(|i| STATE_CODES.contains(&i.code)) => {
                    return Err(ApiError::from_issues(issues));
                }
                _ => return Err(ApiError::PreconditionFailed(Box::new(current))),
            }
        }
        let patch = checked.map_err(ApiError::from_issues)?;
        // The update is conditional on the version the patch was checked against: a concurrent
        // writer that got there first makes this a 412, never a lost update.
        let job = match api.store.update(&caller.scope, &patch).await {
            Err(StoreError::VersionConflict { .. }) if if_match == IfMatch::Any && attempt < ANY_ATTEMPTS => {
                attempt += 1;
                continue;
            }
            other => other?,
        };
        api.write_through(Written::Job(&job)).await;
        return Ok(job_response(StatusCode::OK, &job));
    }
}

/// `DELETE /v1/jobs/{id}` (If-Match optional): 204.
pub async fn delete_job<E: Executor + 'static>(
    State(api): State<Arc<Api<E>>>,
    caller: Caller,
    JobId(id): JobId,
    headers: HeaderMap,
) -> Result<Response> {
    let expected = match IfMatch::from_headers(&headers) {
        None | Some(IfMatch::Any) => None,
        Some(IfMatch::Versions(v)) if v.len() == 1 => Some(v[0]),
        Some(tags) => {
            let current = api.store.get(&caller.scope, id).await?;
            if !tags.matches(current.version) {
                return Err(ApiError::PreconditionFailed(Box::new(current)));
            }
            Some(current.version)
        }
    };
    api.store.delete(&caller.scope, id, expected).await?;
    api.write_through(Written::Deleted(id)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/jobs?...`: `{items, next_cursor, source}`, and `sync` (each item's sync state by
/// id, read from Postgres: one more statement) with `include=sync`.
pub async fn list_jobs<E: Executor + 'static>(
    State(api): State<Arc<Api<E>>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let (includes, filters): (Vec<_>, Vec<_>) = pairs.iter().partition(|(k, _)| k == "include");
    let mut issues = Issues::default();
    let with_sync = includes.iter().any(|(_, v)| v == "sync");
    // Exactly the documented value (the OpenAPI enum): `include=` or `include=x` is refused,
    // once however often it is given (each one listed made a query string's worth of problems).
    if includes.iter().any(|(_, v)| v != "sync") {
        issues.push("include", Code::InvalidQuery, "include takes \"sync\"");
    }
    let req = SearchRequest::from_params(filters.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let req = match req {
        Ok(req) if issues.is_empty() => req,
        Ok(_) => return Err(ApiError::InvalidQuery(issues.into_vec())),
        Err(found) => {
            issues.extend(found);
            return Err(ApiError::InvalidQuery(issues.into_vec()));
        }
    };
    let mut page = api.search(&caller.scope, &req).await?;
    page.fit(&req, super::PAGE_BYTES);
    if with_sync {
        let ids: Vec<Uuid> = page.items.iter().map(|j| j.id).collect();
        page.sync = Some(api.store.sync_of(&caller.scope, &ids).await?.into_iter().collect());
    }
    Ok(json_response(StatusCode::OK, &page))
}

/// `GET /v1/health` (no identity needed): the database, search and the sync's backlog. 503 when
/// the database cannot be reached.
pub async fn health<E: Executor + 'static>(State(api): State<Arc<Api<E>>>) -> Response {
    let mut last = api.health.lock().await;
    if let Some((at, status, body)) = last.as_ref()
        && at.elapsed() < super::HEALTH_REUSE
    {
        return json_response(*status, body);
    }
    let (status, body) = check_health(&api).await;
    *last = Some((std::time::Instant::now(), status, body.clone()));
    json_response(status, &body)
}

async fn check_health<E: Executor + 'static>(api: &Api<E>) -> (StatusCode, Value) {
    let started = std::time::Instant::now();
    let timed_lag = async {
        let lag = tokio::time::timeout(super::HEALTH_DATABASE_TIMEOUT, api.store.sync_lag()).await;
        (lag, u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
    };
    let ((lag, db_ms), search) = tokio::join!(timed_lag, api.search_health());
    let lag = lag.unwrap_or_else(|_| {
        Err(StoreError::Db(DbError::Unavailable(format!("no answer within {:?}", super::HEALTH_DATABASE_TIMEOUT))))
    });
    match lag {
        Ok(lag) => (
            StatusCode::OK,
            json!({
                "status": "ok",
                "database": {"status": "up", "latency_ms": db_ms},
                "search": search,
                "sync": {
                    "dirty": lag.dirty,
                    "dead_lettered": lag.dead_lettered,
                    "oldest_dirty_since": lag.oldest_dirty_since,
                    "lag_ms": lag.oldest_age_ms.unwrap_or(0),
                },
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health: database check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "status": "unavailable",
                    "database": {"status": "down", "latency_ms": db_ms, "error": match e {
                        StoreError::Db(DbError::Unavailable(_)) => "unavailable",
                        _ => "the check failed",
                    }},
                    "search": search,
                    "sync": null,
                }),
            )
        }
    }
}

/// Anything unrouted: the demo page's files when configured (GET/HEAD outside `/v1/`), else 404.
pub async fn fallback<E: Executor + 'static>(State(api): State<Arc<Api<E>>>, req: Request<Body>) -> Response {
    let path = req.uri().path();
    if let Some(site) = &api.options.site
        && (req.method() == Method::GET || req.method() == Method::HEAD)
        && path != "/v1"
        && !path.starts_with("/v1/")
    {
        let if_none_match = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
        return site.serve(path, req.method() == Method::HEAD, if_none_match).await;
    }
    ApiError::NoRoute.into_response()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_MATCH, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn if_match_forms() {
        let check = |values: &[&str], expected: Option<IfMatch>| {
            assert_eq!(IfMatch::from_headers(&headers(values)), expected, "{values:?}")
        };
        check(&[], None);
        check(&["\"3\""], Some(IfMatch::Versions(vec![3])));
        check(&["\"1\", \"2\""], Some(IfMatch::Versions(vec![1, 2])));
        check(&["\"1\"", "\"2\""], Some(IfMatch::Versions(vec![1, 2])));
        check(&["*"], Some(IfMatch::Any));
        check(&["W/\"3\""], Some(IfMatch::Versions(vec![])));
        check(&["3"], Some(IfMatch::Versions(vec![])));
        check(&["\"x\""], Some(IfMatch::Versions(vec![])));
        check(&["\"+3\", \"03\", \"-0\", \" 3\""], Some(IfMatch::Versions(vec![])));
        check(&["\"0\", \"-1\""], Some(IfMatch::Versions(vec![0, -1])));
        assert!(!IfMatch::Versions(vec![]).matches(0));
        assert!(IfMatch::Any.matches(7));
    }

    #[test]
    fn content_types() {
        let check = |ct: Option<&str>, ok: bool| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).expect("header"));
            }
            assert_eq!(check_json_content_type(&h).is_ok(), ok, "{ct:?}");
        };
        check(Some("application/json"), true);
        check(Some("Application/JSON; charset=utf-8"), true);
        check(Some("application/merge-patch+json"), true);
        check(Some("text/plain"), false);
        check(Some("application/jsonx"), false);
        check(Some("multipart/form-data; boundary=x"), false);
        check(None, false);
    }
}
