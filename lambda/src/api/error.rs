//! The API's one error type and its mapping to HTTP: a status, a stable top-level `code`, a
//! lowercase message and, for input problems, the core's `errors: [{path, code, message}]`.
//!
//! Store and database errors are mapped here and nowhere else, so a handler never decides a
//! status by itself. Input problems are 4xx; only an unexpected database or decode failure is a
//! 500, and its detail goes to the log, not to the caller.

use crate::db::DbError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobs_core::issue::{Code, Issue};
use jobs_core::model::Job;
use serde::Serialize;

/// Every top-level `code` the API answers with (the OpenAPI document lists the same).
pub const CODES: &[&str] = &[
    "invalid_json",
    "invalid_input",
    "invalid_query",
    "unauthorized",
    "workspace_forbidden",
    "not_found",
    "method_not_allowed",
    "already_exists",
    "precondition_failed",
    "payload_too_large",
    "unsupported_media_type",
    "precondition_required",
    "unavailable",
    "internal",
];

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("{0}")]
    InvalidJson(String),
    /// The body is JSON but breaks the rules; `errors` says where.
    #[error("the request has {} problem(s)", .0.len())]
    InvalidInput(Vec<Issue>),
    /// The search parameters break the rules.
    #[error("the search has {} problem(s)", .0.len())]
    InvalidQuery(Vec<Issue>),
    #[error("{0}")]
    Unauthorized(String),
    /// A write into a workspace the caller is not a member of.
    #[error("workspace {0} is not one of the caller's workspaces")]
    WorkspaceForbidden(uuid::Uuid),
    /// No such job, or not one the caller may see (the two are not told apart).
    #[error("no such job")]
    NotFound,
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("a job with this id exists already")]
    AlreadyExists,
    /// The job is no longer at the version the caller named; this is what it is now.
    #[error("the job is at version {}", .0.version)]
    PreconditionFailed(Box<Job>),
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("this request needs an If-Match header naming the version it changes (\"<version>\")")]
    PreconditionRequired,
    /// The database (or another dependency) cannot be reached; worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: logged in full, reported without detail.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [Issue]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<&'a Job>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::InvalidInput(_) | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::WorkspaceForbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::WorkspaceForbidden(_) => "workspace_forbidden",
            ApiError::NotFound | ApiError::NoRoute => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::AlreadyExists => "already_exists",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PreconditionRequired => "precondition_required",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The core's verdict on a body: malformed JSON is `invalid_json`, anything else about it
    /// `invalid_input` with every issue.
    pub fn from_issues(issues: Vec<Issue>) -> ApiError {
        match issues.as_slice() {
            [only] if only.code == Code::InvalidJson && only.path.is_empty() => {
                ApiError::InvalidJson(only.message.clone())
            }
            _ => ApiError::InvalidInput(issues),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::VersionConflict { current } => ApiError::PreconditionFailed(current),
            StoreError::AlreadyExists(_) => ApiError::AlreadyExists,
            StoreError::OutOfScope(ws) => ApiError::WorkspaceForbidden(ws),
            // Identity rows are ensured before any write, so a missing reference means a
            // concurrent delete of the workspace: the caller may retry.
            StoreError::UnknownReference(m) => {
                tracing::warn!(detail = %m, "a referenced row vanished");
                ApiError::Unavailable("a referenced row vanished: retry".into())
            }
            StoreError::Db(e) => e.into(),
        }
    }
}

/// The driver's words (a host, a statement, the SDK's dispatch error) go to the log; the caller
/// is told what happened and that a retry may work.
impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        match &e {
            DbError::Unavailable(_) => {
                tracing::warn!(error = %e, "the database is unavailable");
                ApiError::Unavailable("the database is unavailable".into())
            }
            DbError::Database { sqlstate: Some(s), .. } if matches!(s.as_str(), "40001" | "40P01" | "57014") => {
                tracing::warn!(error = %e, "the database could not finish the request");
                ApiError::Unavailable("the database could not finish the request, retry it".into())
            }
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // The detail goes to the log only. A 503's cause was logged where it was met, and the
        // access line has the status: logged here too, each was two warnings.
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let (errors, current) = match &self {
            ApiError::InvalidInput(i) | ApiError::InvalidQuery(i) => (Some(i.as_slice()), None),
            ApiError::PreconditionFailed(job) => (None, Some(job.as_ref())),
            _ => (None, None),
        };
        let body = Body { code: self.code(), message: self.to_string(), errors, current };
        let bytes =
            serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"code":"internal","message":"internal error"}"#.to_vec());
        let mut resp =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response();
        let headers = resp.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::PreconditionFailed(job) => {
                if let Ok(v) = HeaderValue::from_str(&super::etag(job.version)) {
                    headers.insert(header::ETAG, v);
                }
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
