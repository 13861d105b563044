//! jobs-faultproxy: a fault-injecting HTTP proxy that sits, on loopback, in front of a real
//! Elasticsearch or OpenSearch and passes requests through, except when told to fail them.
//!
//! What it can do (see [`Faults`]), decided per request from a seed and the request's number so
//! a run can be replayed, and bounded by a budget:
//! - turn chosen `_bulk` items into per-item 429/503 under the top-level 200 with `errors: true`
//!   and the engine's own error types (the items are taken out of the request, so the engine
//!   really does not apply them);
//! - close the connection without an answer, before forwarding or after the engine handled it;
//! - hold answers back (slow responses);
//! - answer a whole request 429 or 503 without forwarding;
//! - put the engine "down" ([`Control::set_down`]): the listening socket closes, so connections
//!   are refused, and open ones are cut; "up" listens on the same port again.
//!
//! Tests share the [`Control`] handle (`Arc`) to flip faults at run time and read [`Counts`].
//! It listens on loopback only and forwards to loopback only.

mod bulk;
mod control;

pub use control::{Control, Counts, FaultScope, Faults, Flavor};

use bytes::Bytes;
use control::bump;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// How to start a proxy.
#[derive(Debug, Clone)]
pub struct Options {
    /// The engine, `http://127.0.0.1:PORT` (loopback only).
    pub upstream: String,
    /// Where to listen (loopback only). `None`: a free port below the ephemeral range, so that
    /// no outgoing connection can take it while the engine is "down".
    pub listen: Option<SocketAddr>,
    pub seed: u64,
    /// The engine the injected answers mimic; `None`: asked from the engine at start.
    pub flavor: Option<Flavor>,
    /// Largest request or response body handled (larger requests get 413).
    pub max_body: usize,
}

impl Options {
    pub fn new(upstream: &str, seed: u64) -> Options {
        Options { upstream: upstream.to_owned(), listen: None, seed, flavor: None, max_body: 256 * 1024 * 1024 }
    }
}

/// A running proxy. Dropping it stops it and cuts its connections.
pub struct FaultProxy {
    addr: SocketAddr,
    control: Arc<Control>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).field("control", &self.control).finish()
    }
}

impl FaultProxy {
    /// A proxy in front of `upstream` with nothing injected yet.
    pub async fn start(upstream: &str, seed: u64) -> io::Result<FaultProxy> {
        FaultProxy::start_with(Options::new(upstream, seed)).await
    }

    pub async fn start_with(opts: Options) -> io::Result<FaultProxy> {
        let authority = loopback_authority(&opts.upstream)?;
        let listener = match opts.listen {
            Some(addr) if addr.ip().is_loopback() => TcpListener::bind(addr).await?,
            Some(addr) => return Err(invalid(format!("{addr} is not a loopback address"))),
            None => bind_outside_ephemeral_range(opts.seed).await?,
        };
        let addr = listener.local_addr()?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build::<_, Full<Bytes>>(HttpConnector::new());
        let control = Arc::new(Control::new(opts.seed, opts.flavor));
        let (stop, stop_rx) = watch::channel(false);
        let shared =
            Arc::new(Shared { control: control.clone(), client, authority, max_body: opts.max_body, stop: stop_rx });
        if control.flavor().is_none() {
            probe_flavor(&shared).await;
        }
        let task = tokio::spawn(accept_loop(listener, addr, shared));
        Ok(FaultProxy { addr, control, stop, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared handle: faults, down/up, counts.
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.control.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.abort();
    }
}

struct Shared {
    control: Arc<Control>,
    client: Client<HttpConnector, Full<Bytes>>,
    authority: String,
    max_body: usize,
    stop: watch::Receiver<bool>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `host:port` of a plain-HTTP loopback URL.
fn loopback_authority(url: &str) -> io::Result<String> {
    let uri: Uri = url.parse().map_err(|e| invalid(format!("{url}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid(format!("{url}: only plain http upstreams")));
    }
    let auth = uri.authority().ok_or_else(|| invalid(format!("{url}: no host")))?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(invalid(format!("{url}: the upstream must be on loopback")));
    }
    Ok(auth.as_str().to_owned())
}

/// A port in 12000..20000: below the ephemeral range (so the kernel never hands it to an
/// outgoing connection while the listener is closed) and below the range the project's
/// services script picks from.
async fn bind_outside_ephemeral_range(seed: u64) -> io::Result<TcpListener> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut rng = control_rng(seed ^ nanos ^ u64::from(std::process::id()).rotate_left(32));
    for _ in 0..200 {
        let port = 12_000 + (rng() % 8_000) as u16;
        if let Ok(l) = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await {
            return Ok(l);
        }
    }
    TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await
}

fn control_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Asks the engine which it is (Elasticsearch marks its answers with `X-Elastic-Product`).
async fn probe_flavor(shared: &Shared) {
    let Ok(req) = Request::get(format!("http://{}/_cluster/health", shared.authority)).body(Full::new(Bytes::new()))
    else {
        return;
    };
    if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), shared.client.request(req)).await {
        note_flavor(&shared.control, resp.headers());
    }
}

fn note_flavor(control: &Control, headers: &HeaderMap) {
    let f = if headers.contains_key("x-elastic-product") { Flavor::Elasticsearch } else { Flavor::OpenSearch };
    let _ = control.flavor.set(f);
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    let mut down = shared.control.watch_down();
    let mut stop = shared.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        if *down.borrow_and_update() {
            // Closing the socket is what makes connections be refused.
            listener = None;
            tokio::select! {
                r = down.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
            continue;
        }
        let Some(l) = listener.as_ref() else {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    eprintln!("faultproxy: cannot listen on {addr} again ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        tokio::select! {
            r = l.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, shared.clone()));
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            r = down.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Serves one client connection until it ends, a fault kills it, the engine goes down or the
/// proxy stops. Killing is dropping: the socket closes without an answer.
async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let svc = {
        let shared = shared.clone();
        let kill = kill.clone();
        service_fn(move |req| handle(req, shared.clone(), kill.clone()))
    };
    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc);
    let mut down = shared.control.watch_down();
    let mut stop = shared.stop.clone();
    tokio::select! {
        _ = conn => {}
        () = kill.notified() => {}
        r = down.wait_for(|d| *d) => {
            if r.is_ok() {
                bump(&shared.control.counters.cut_connections, 1);
            }
        }
        _ = stop.wait_for(|s| *s) => {}
    }
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// Kills the connection and never answers.
async fn hang_up(kill: &Notify) -> Answer {
    kill.notify_one();
    std::future::pending().await
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>, kill: Arc<Notify>) -> Answer {
    let c = &shared.control;
    let n = &c.counters;
    bump(&n.requests, 1);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let is_bulk = parts.method == Method::POST && (path == "/_bulk" || path.ends_with("/_bulk"));
    let body = match Limited::new(body, shared.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large for the fault proxy")),
    };
    if c.is_down() {
        return hang_up(&kill).await;
    }
    let decision = c.decide(is_bulk);
    let flavor = c.flavor().unwrap_or(Flavor::OpenSearch);

    if let Some(status) = decision.reject
        && c.take_budget()
    {
        bump(if status == 429 { &n.reject_429 } else { &n.reject_503 }, 1);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Ok(engine_answer(status, flavor, bulk::request_error(status.as_u16(), flavor)));
    }
    if decision.drop_before && c.take_budget() {
        bump(&n.drop_before, 1);
        return hang_up(&kill).await;
    }

    // Per-item faults: choose the items, forward the others.
    let mut plan: Option<(Vec<bulk::Item>, Vec<Option<u16>>)> = None;
    let mut forward_body = body.clone();
    if is_bulk {
        bump(&n.bulk_requests, 1);
        if let Some(items) = bulk::split(&body) {
            bump(&n.bulk_items, items.len() as u64);
            if let Some(mut f) = decision.items {
                let injected: Vec<Option<u16>> = items.iter().map(|_| f.next().filter(|_| c.take_budget())).collect();
                if injected.iter().any(Option::is_some) {
                    forward_body = Bytes::from(bulk::keep(&body, &items, &injected));
                    plan = Some((items, injected));
                }
            }
        }
    }
    let nothing_left = plan.as_ref().is_some_and(|(_, inj)| inj.iter().all(Option::is_some));

    let upstream = if nothing_left {
        None
    } else {
        match forward(&shared, &parts, forward_body).await {
            Ok(r) => Some(r),
            Err(()) => {
                // As without the proxy: the client sees its connection fail.
                bump(&n.upstream_errors, 1);
                return hang_up(&kill).await;
            }
        }
    };
    if upstream.is_some() {
        bump(&n.forwarded, 1);
    }
    if decision.drop_after && c.take_budget() {
        bump(&n.drop_after, 1);
        return hang_up(&kill).await;
    }

    let mut answer = match (&plan, upstream) {
        (Some((items, injected)), None) => {
            let body = bulk::merge(None, items, injected, flavor, bulk::path_index(&path)).unwrap_or_default();
            count_items(c, injected);
            engine_answer(StatusCode::OK, flavor, body)
        }
        (Some((items, injected)), Some((status, headers, body))) => {
            let merged = (status == StatusCode::OK)
                .then(|| bulk::merge(Some(&body), items, injected, flavor, bulk::path_index(&path)))
                .flatten();
            match merged {
                Some(m) => {
                    count_items(c, injected);
                    passed_on(status, &headers, Bytes::from(m))
                }
                None => {
                    c.give_back(injected.iter().filter(|i| i.is_some()).count() as u64);
                    passed_on(status, &headers, body)
                }
            }
        }
        (None, Some((status, headers, body))) => passed_on(status, &headers, body),
        (None, None) => plain(StatusCode::BAD_GATEWAY, "nothing to answer"),
    };

    if let Some(delay) = decision.delay
        && c.take_budget()
    {
        bump(&n.slowed, 1);
        bump(&n.slow_ms, u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        tokio::time::sleep(delay).await;
    }
    if c.is_down() {
        return hang_up(&kill).await;
    }
    answer.headers_mut().remove(CONTENT_LENGTH);
    Ok(answer)
}

fn count_items(c: &Control, injected: &[Option<u16>]) {
    let n429 = injected.iter().filter(|i| **i == Some(429)).count() as u64;
    let n503 = injected.iter().filter(|i| **i == Some(503)).count() as u64;
    bump(&c.counters.item_429, n429);
    bump(&c.counters.item_503, n503);
}

/// Headers that belong to one connection, not to the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te" | "trailer" | "upgrade"
    )
}

async fn forward(
    shared: &Shared,
    parts: &http::request::Parts,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), ()> {
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Request::builder().method(parts.method.clone()).uri(format!("http://{}{pq}", shared.authority));
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) && k != HOST && k != CONTENT_LENGTH {
            b = b.header(k, v);
        }
    }
    let req = b.body(Full::new(body)).map_err(drop)?;
    let resp = shared.client.request(req).await.map_err(drop)?;
    note_flavor(&shared.control, resp.headers());
    let (rparts, rbody) = resp.into_parts();
    let bytes = Limited::new(rbody, shared.max_body).collect().await.map_err(drop)?.to_bytes();
    Ok((rparts.status, rparts.headers, bytes))
}

fn passed_on(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    for (k, v) in headers {
        if !hop_by_hop(k) && k != CONTENT_LENGTH {
            resp.headers_mut().append(k, v.clone());
        }
    }
    resp
}

/// An answer made up here, with the headers the engine would send.
fn engine_answer(status: StatusCode, flavor: Flavor, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    if flavor == Flavor::Elasticsearch {
        h.insert("x-elastic-product", HeaderValue::from_static("Elasticsearch"));
    }
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_must_be_loopback_http() {
        assert_eq!(loopback_authority("http://127.0.0.1:9200").ok().as_deref(), Some("127.0.0.1:9200"));
        assert_eq!(loopback_authority("http://localhost:9200/").ok().as_deref(), Some("localhost:9200"));
        assert_eq!(loopback_authority("http://[::1]:9200").ok().as_deref(), Some("[::1]:9200"));
        assert!(loopback_authority("http://10.0.0.1:9200").is_err());
        assert!(loopback_authority("https://127.0.0.1:9200").is_err());
        assert!(loopback_authority("not a url").is_err());
    }
}
