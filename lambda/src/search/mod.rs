//! The search half of the shell: a client for Elasticsearch 8.x and OpenSearch 2.x (index,
//! alias and template from the core's mapping, bounded `_bulk`, search with the core's DSL and
//! keyset cursors, point-in-time scans), its configuration and request signing, and the
//! [`Searcher`] the HTTP API uses (engine first, Postgres fallback behind a circuit breaker).
//!
//! Both engines are spoken to in the dialect they share: plain `application/json` and
//! `application/x-ndjson` (OpenSearch answers 406 to Elasticsearch 8's `compatible-with`
//! header), errors classified by HTTP status (429 has different type names in each), and the
//! one API that differs (point in time) chosen by the flavour the cluster reports.

mod auth;
mod client;
mod config;
mod searcher;

pub use client::{BulkReport, DocRef, Flavor, Health, ScanPage, Scanner, SearchClient, SearchPage, Targets};
pub use config::{Auth, SearchConfig, redact};
pub use searcher::{BreakerState, Page, Searcher, SearcherOptions, Source};

use std::time::Duration;

/// What can go wrong talking to the search engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SearchError {
    /// No connection (refused, reset, DNS): the engine is down or unreachable.
    #[error("search engine unreachable: {0}")]
    Transport(String),
    /// No answer within the request's time limit.
    #[error("search engine did not answer within {0:?}")]
    Timeout(Duration),
    /// The engine answered with an error status. `kind` is its error type
    /// (`index_not_found_exception`, ...), empty when the body had none.
    #[error("search engine answered {status} {kind}: {reason}")]
    Status { status: u16, kind: String, reason: String },
    /// The engine answered 2xx with a body we could not read.
    #[error("unexpected search engine response: {0}")]
    Decode(String),
    /// The configuration is unusable (bad URL, missing credentials, alias clash).
    #[error("search configuration: {0}")]
    Config(String),
    /// Signing the request failed (SigV4 credentials unavailable).
    #[error("signing the search request: {0}")]
    Auth(String),
}

impl SearchError {
    /// The HTTP status, or 0 when there was no answer.
    pub fn status(&self) -> u16 {
        match self {
            SearchError::Status { status, .. } => *status,
            _ => 0,
        }
    }

    /// Worth trying again later: no answer, throttled (429, whatever the engine calls it) or a
    /// server error. Classified by status, never by error type name.
    pub fn is_transient(&self) -> bool {
        match self {
            SearchError::Transport(_) | SearchError::Timeout(_) | SearchError::Auth(_) => true,
            SearchError::Status { status, .. } => *status == 429 || *status >= 500,
            SearchError::Decode(_) | SearchError::Config(_) => false,
        }
    }

    /// What went wrong without the details (no address, no engine message): for answers that
    /// leave the service (`/v1/health` needs no identity, `fallback_reason`). The details go to
    /// the log.
    pub fn summary(&self) -> String {
        match self {
            SearchError::Transport(_) => "search engine unreachable".into(),
            SearchError::Timeout(d) => format!("search engine did not answer within {d:?}"),
            SearchError::Status { status, kind, .. } if kind.is_empty() => format!("search engine answered {status}"),
            SearchError::Status { status, kind, .. } => format!("search engine answered {status} {kind}"),
            SearchError::Decode(_) => "unexpected search engine response".into(),
            SearchError::Config(_) => "search configuration error".into(),
            SearchError::Auth(_) => "signing the search request failed".into(),
        }
    }

    /// The error's type name as the engine reported it (`resource_already_exists_exception`).
    pub fn kind(&self) -> &str {
        match self {
            SearchError::Status { kind, .. } => kind,
            _ => "",
        }
    }
}
