//! A local Lambda Runtime API (the `2018-06-01` contract the real service speaks to a
//! function's runtime), so tests and benchmarks can drive the *built* function binaries the way
//! Lambda does: the binary long-polls `GET /runtime/invocation/next`, gets the event with its
//! request id and deadline, and posts the result to `.../{id}/response` or `.../{id}/error`.
//!
//! Start the function with `AWS_LAMBDA_RUNTIME_API` set to [`RuntimeApi::host`] (and
//! `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`,
//! `AWS_LAMBDA_FUNCTION_VERSION`), then [`RuntimeApi::invoke`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST .../response`: the function's result.
    Response(Bytes),
    /// `POST .../error`: `Lambda-Runtime-Function-Error-Type` and the error document.
    Error { error_type: Option<String>, body: Bytes },
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the runtime API is shut down")]
    Closed,
}

struct Invocation {
    id: String,
    deadline_ms: u64,
    event: Bytes,
    done: oneshot::Sender<Outcome>,
}

struct Inner {
    queue: mpsc::UnboundedSender<Invocation>,
    next: AsyncMutex<mpsc::UnboundedReceiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    ids: AtomicU64,
    first_poll: OnceLock<Instant>,
    init_error: Mutex<Option<Bytes>>,
}

/// A running local Runtime API on 127.0.0.1.
pub struct RuntimeApi {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            queue: tx,
            next: AsyncMutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            ids: AtomicU64::new(1),
            first_poll: OnceLock::new(),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            // Read whole, so a response over Lambda's limit is refused as Lambda refuses it
            // rather than by axum's 2 MB default.
            .layer(DefaultBodyLimit::disable())
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi { addr, inner, server })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (`127.0.0.1:PORT`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for an event (its initialisation was over).
    pub fn first_poll(&self) -> Option<Instant> {
        self.inner.first_poll.get().copied()
    }

    /// What the function reported through `/runtime/init/error`, if it did.
    pub fn init_error(&self) -> Option<Bytes> {
        self.inner.init_error.lock().ok().and_then(|e| e.clone())
    }

    /// Hands `event` to the function with `timeout` as its deadline and waits for the outcome
    /// until that deadline, as Lambda does: an answer after it is a timeout (in AWS the
    /// invocation fails with `Sandbox.Timedout` and the sandbox is reset).
    pub async fn invoke(&self, event: impl Into<Bytes>, timeout: Duration) -> Result<Outcome, InvokeError> {
        let id = format!("req-{:08}", self.inner.ids.fetch_add(1, Ordering::Relaxed));
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let deadline_ms = u64::try_from(now_ms + timeout.as_millis()).unwrap_or(u64::MAX);
        let (done, wait) = oneshot::channel();
        self.inner
            .queue
            .send(Invocation { id, deadline_ms, event: event.into(), done })
            .map_err(|_| InvokeError::Closed)?;
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(InvokeError::Closed),
            Err(_) => Err(InvokeError::Timeout(timeout)),
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    let _ = inner.first_poll.set(Instant::now());
    let invocation = inner.next.lock().await.recv().await;
    let Some(inv) = invocation else { return StatusCode::GONE.into_response() };
    if let Ok(mut pending) = inner.pending.lock() {
        pending.insert(inv.id.clone(), inv.done);
    }
    let mut headers = HeaderMap::new();
    let put = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put(&mut headers, "lambda-runtime-aws-request-id", &inv.id);
    put(&mut headers, "lambda-runtime-deadline-ms", &inv.deadline_ms.to_string());
    put(&mut headers, "lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:local");
    put(&mut headers, "lambda-runtime-trace-id", &format!("Root=1-00000000-{}", inv.id));
    put(&mut headers, "content-type", "application/json");
    (StatusCode::OK, headers, inv.event).into_response()
}

fn finish(inner: &Inner, id: &str, outcome: Outcome) -> StatusCode {
    let sender = inner.pending.lock().ok().and_then(|mut p| p.remove(id));
    match sender {
        Some(s) => {
            let _ = s.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

/// The most a synchronous invocation's response may be (6 MB): Lambda refuses a larger one
/// (413 to the runtime) and the invocation fails with `Function.ResponseSizeTooLarge`.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

async fn response(State(inner): State<Arc<Inner>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    if body.len() > MAX_RESPONSE_BYTES {
        let message = format!(
            r#"{{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size ({} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."}}"#,
            body.len()
        );
        let error_type = Some("Function.ResponseSizeTooLarge".to_owned());
        finish(&inner, &id, Outcome::Error { error_type, body: Bytes::from(message) });
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    finish(&inner, &id, Outcome::Response(body))
}

async fn error(State(inner): State<Arc<Inner>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let error_type = headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    finish(&inner, &id, Outcome::Error { error_type, body })
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    if let Ok(mut e) = inner.init_error.lock() {
        *e = Some(body);
    }
    StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function's answers as Lambda takes them: up to 6 MB a response; past that the runtime
    /// is told 413 and the invocation fails with `Function.ResponseSizeTooLarge`.
    #[tokio::test]
    async fn responses_over_six_megabytes_fail_the_invocation() {
        let api = RuntimeApi::start().await.expect("runtime api");
        let base = format!("http://{}/2018-06-01/runtime/invocation", api.host());
        let http = reqwest::Client::new();
        for (size, accepted) in [(MAX_RESPONSE_BYTES, true), (MAX_RESPONSE_BYTES + 1, false)] {
            let function = async {
                let next = http.get(format!("{base}/next")).send().await.expect("next");
                let id = next.headers()["lambda-runtime-aws-request-id"].to_str().expect("id").to_owned();
                http.post(format!("{base}/{id}/response")).body(vec![b'x'; size]).send().await.expect("post").status()
            };
            let (outcome, status) = tokio::join!(api.invoke("{}", Duration::from_secs(10)), function);
            match outcome.expect("invoke") {
                Outcome::Response(body) => assert!(accepted && body.len() == size && status == 202, "{size}"),
                Outcome::Error { error_type, .. } => {
                    assert!(!accepted && status == 413, "{size}");
                    assert_eq!(error_type.as_deref(), Some("Function.ResponseSizeTooLarge"));
                }
            }
        }
    }
}
