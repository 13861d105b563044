//! The `jobs-api` function's plumbing: the router built once per instance from the environment,
//! and the one adjustment Lambda events need before routing.
//!
//! `lambda_http` turns API Gateway REST (v1), HTTP API (v2) and Function URL events into
//! `http::Request`s and prefixes the path with the stage name for named stages (REST APIs
//! always have one). The router's paths are stage-less, so [`strip_stage`] takes it off again.
//! Identity comes from the authorizer's claims the event carries (see [`super::auth`]).

use super::auth::{Auth, Hs256Key};
use super::config::{self, ConfigError, Db};
use super::{Api, router};
use crate::data_api::client::ResumeRetry;
use crate::store::Store;
use axum::Router;
use http::Uri;
use http::uri::PathAndQuery;
use lambda_http::RequestExt as _;
use lambda_http::request::RequestContext;
use lambda_http::tower::ServiceExt as _;
use lambda_http::tower::util::MapRequest;
use std::sync::Arc;

/// The service `lambda_http::run` drives: [`strip_stage`], then the router.
pub type Service = MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request>;

/// Wraps the router for Lambda.
pub fn service(router: Router) -> Service {
    router.map_request(strip_stage as fn(lambda_http::Request) -> lambda_http::Request)
}

/// Everything built once per instance: the store over the configured driver, the identity
/// sources and the options.
pub async fn api_from_env() -> Result<Arc<Api<Db>>, ConfigError> {
    let db = match config::db_from_env().await? {
        // A request waits for a resuming cluster only as long as the function may run.
        Db::DataApi(e) => Db::DataApi(e.with_resume_retry(ResumeRetry::FOR_REQUESTS)),
        db => db,
    };
    let auth = Auth { key: Hs256Key::from_env().map_err(ConfigError)? };
    let options = config::api_options_from_env().await?;
    Ok(Arc::new(Api::new(Arc::new(Store::new(db)), auth, options)))
}

/// The router over [`api_from_env`], ready for `lambda_http::run`.
pub async fn service_from_env() -> Result<Service, ConfigError> {
    Ok(service(router(api_from_env().await?)))
}

/// The path the router sees. A REST (v1) event's route is its resource path with the path
/// parameters put in (`/{proxy+}` with `proxy` = `v1/jobs` is `/v1/jobs`): the event's own path
/// carries a custom domain's base path (`/api/v1/jobs` for a mapping `api`), which the function
/// could not tell from a route. Otherwise the `/{stage}` prefix `lambda_http` puts in front of a
/// REST path, and that HTTP API events carry for named stages (not `$default`), is removed; for
/// a REST event only when `lambda_http` did put it there (a stage named `v1` in front of
/// `/v1/jobs` is no prefix to take off).
pub fn strip_stage<B>(mut req: http::Request<B>) -> http::Request<B> {
    let (stage, rest_api, route) = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(c)) => {
            // A path (an HTTP API's payload 1.0 names its `$default` route "$default").
            let resource = c.resource_path.as_deref().filter(|r| r.starts_with('/'));
            let route = resource.and_then(|r| rest_route(r, &req.path_parameters()));
            (c.stage.clone(), true, route)
        }
        Some(RequestContext::ApiGatewayV2(c)) => (c.stage.clone(), false, None),
        _ => (None, false, None),
    };
    if let Some(route) = route {
        set_path(&mut req, &route);
        return req;
    }
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else { return req };
    if rest_api && req.extensions().raw_http_path() == req.uri().path() {
        return req;
    }
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(stage.as_str())) else { return req };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return req;
    }
    let rest = if rest.is_empty() { "/" } else { rest }.to_owned();
    set_path(&mut req, &rest);
    req
}

/// Replaces the request's path, keeping its query.
fn set_path<B>(req: &mut http::Request<B>, path: &str) {
    let new = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = new.parse::<PathAndQuery>() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// A REST resource path with its parameters put in, percent-encoded where a path needs it (an
/// escape already there is kept); `None` when a parameter is missing.
fn rest_route(resource: &str, params: &lambda_http::aws_lambda_events::query_map::QueryMap) -> Option<String> {
    let mut out = String::new();
    for segment in resource.split('/').skip(1) {
        out.push('/');
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            out.push_str(segment);
            continue;
        };
        let (name, greedy) = match name.strip_suffix('+') {
            Some(n) => (n, true),
            None => (name, false),
        };
        let value = params.first(name)?.as_bytes();
        for (i, &b) in value.iter().enumerate() {
            // A REST API may hand a parameter over as sent, escapes and all: one kept as is.
            let escape = b == b'%' && value.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if escape || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) || (greedy && b == b'/') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Some(if out.is_empty() { "/".to_owned() } else { out })
}

/// Logging as Lambda wants it (`AWS_LAMBDA_LOG_LEVEL`/`RUST_LOG`, JSON when
/// `AWS_LAMBDA_LOG_FORMAT=JSON`).
pub fn init_tracing() {
    lambda_http::tracing::init_default_subscriber();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rest_routes_come_from_the_resource_path() {
        let params = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> =
                pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            lambda_http::aws_lambda_events::query_map::QueryMap::from(map)
        };
        assert_eq!(rest_route("/{proxy+}", &params(&[("proxy", "v1/jobs")])).as_deref(), Some("/v1/jobs"));
        assert_eq!(rest_route("/v1/jobs/{id}", &params(&[("id", "abc")])).as_deref(), Some("/v1/jobs/abc"));
        assert_eq!(rest_route("/{proxy+}", &params(&[("proxy", "v1/a b%/c")])).as_deref(), Some("/v1/a%20b%25/c"));
        assert_eq!(
            rest_route("/{proxy+}", &params(&[("proxy", "v1/a%7Cb")])).as_deref(),
            Some("/v1/a%7Cb"),
            "sent as is"
        );
        assert_eq!(rest_route("/v1/jobs/{id}", &params(&[("id", "a/b")])).as_deref(), Some("/v1/jobs/a%2Fb"));
        assert_eq!(rest_route("/v1/jobs/{id}", &params(&[])), None);
        assert_eq!(rest_route("/", &params(&[])).as_deref(), Some("/"));
    }

    /// The `Timeout:` of a function in `template.yaml` (the first after its name).
    fn function_timeout(name: &str) -> Duration {
        let template = include_str!("../../../template.yaml");
        let at = template.find(&format!("\n  {name}:")).unwrap_or_else(|| panic!("{name} in template.yaml"));
        let secs = template[at..]
            .lines()
            .find_map(|l| l.trim().strip_prefix("Timeout:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}'s Timeout"));
        Duration::from_secs(secs)
    }

    /// A request that waits for a resuming cluster ends before the function's timeout, with
    /// time left for the calls themselves: a 503 the caller can retry, not API Gateway's 500.
    #[test]
    fn a_request_waits_for_the_database_within_the_api_timeout() {
        let api = function_timeout("ApiFunction");
        assert!(ResumeRetry::FOR_REQUESTS.total_wait() + Duration::from_secs(5) <= api, "{api:?}");
        assert_eq!(ResumeRetry::FOR_REQUESTS.total_wait(), Duration::from_millis(3_500));
        assert_eq!(ResumeRetry::default().total_wait(), Duration::from_millis(15_500));
        assert!(ResumeRetry::default().total_wait() * 2 < function_timeout("SyncFunction"));
    }

    /// The API's own time limit (`JOBS_REQUEST_TIMEOUT_MS` in template.yaml, and the default
    /// without it) ends a request with a logged 503 before the function's timeout kills it, with
    /// time to answer, and leaves room for the wait on a resuming cluster.
    #[tokio::test]
    async fn the_request_limit_is_within_the_api_timeout() {
        let default = config::api_options_from_env().await.expect("options").request_timeout.expect("a limit");
        let template = include_str!("../../../template.yaml");
        let set = template
            .lines()
            .find_map(|l| l.trim().strip_prefix("JOBS_REQUEST_TIMEOUT_MS:"))
            .and_then(|v| v.trim().trim_matches('"').parse().ok())
            .map(Duration::from_millis)
            .expect("JOBS_REQUEST_TIMEOUT_MS in template.yaml");
        for limit in [default, set] {
            assert!(limit + Duration::from_secs(2) <= function_timeout("ApiFunction"), "{limit:?}");
            assert!(limit > ResumeRetry::FOR_REQUESTS.total_wait() + Duration::from_secs(3), "{limit:?}");
        }
    }
}
