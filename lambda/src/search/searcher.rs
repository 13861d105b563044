//! Search for the HTTP API: the engine first, within a deadline; the store's SQL (the core's
//! `to_sql`) when the engine is down, erroring or slow, or when none is configured. A circuit
//! breaker keeps a dead engine from being asked on every request: after `failure_threshold`
//! consecutive failures it is skipped for `cool_down`, then one trial request is let through
//! (half-open) and its result closes or reopens the breaker. Every page says which source
//! answered.

use super::{SearchClient, SearchError};
use crate::db::Executor;
use crate::store::{Store, StoreError};
use jobs_core::model::Job;
use jobs_core::query::{Scope, SearchRequest};
use jobs_core::sql;
use jobs_core::sync::JobSync;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Which source answered a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Search,
    Database,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub items: Vec<Job>,
    /// Pass back as `cursor` for the next page; absent on the last page. Cursors are the
    /// core's, so a page from one source continues on the other.
    pub next_cursor: Option<String>,
    pub source: Source,
    /// Why the database answered when an engine is configured (`engine skipped: breaker
    /// open`, the engine's error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Each item's sync state by id, read from Postgres when asked for (`include=sync`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<BTreeMap<Uuid, JobSync>>,
}

impl Page {
    /// Cuts the page after the items whose JSON fits in `budget` bytes (at least one item
    /// stays), the next page continuing at the cut. A Lambda response holds at most 6 MB, and
    /// the rules allow a job of ~300 KB (a 65,536-character error message): 500 of them would
    /// be 150 MB.
    pub fn fit(&mut self, req: &SearchRequest, budget: usize) {
        let mut total = 0usize;
        for (i, job) in self.items.iter().enumerate() {
            total = total.saturating_add(json_len(job) + 1);
            if total > budget && i > 0 {
                self.items.truncate(i);
                self.next_cursor = self.items.last().map(|last| req.cursor_after(last));
                return;
            }
        }
    }
}

/// The length of a value's compact JSON, written nowhere.
fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail, and a job always serialises.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearcherOptions {
    /// How long the engine may take before the database answers instead.
    pub deadline: Duration,
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker skips the engine before letting one trial through.
    pub cool_down: Duration,
}

impl Default for SearcherOptions {
    fn default() -> Self {
        SearcherOptions {
            deadline: Duration::from_millis(1_500),
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The breaker's state, for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// Engine-then-database search. Cheap to clone; clones share the breaker.
#[derive(Debug, Clone)]
pub struct Searcher {
    client: Option<SearchClient>,
    opts: SearcherOptions,
    breaker: Arc<Breaker>,
}

impl Searcher {
    /// `client: None` searches the database only.
    pub fn new(client: Option<SearchClient>, opts: SearcherOptions) -> Searcher {
        Searcher { client, opts, breaker: Arc::new(Breaker::new(opts)) }
    }

    pub fn database_only() -> Searcher {
        Searcher::new(None, SearcherOptions::default())
    }

    pub fn client(&self) -> Option<&SearchClient> {
        self.client.as_ref()
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// One page of `req` for `scope`. Fails only if the database fails too (or is the only
    /// source).
    pub async fn search<E: Executor>(
        &self,
        store: &Store<E>,
        scope: &Scope,
        req: &SearchRequest,
    ) -> Result<Page, StoreError> {
        let reason = match &self.client {
            None => None,
            Some(client) => match self.breaker.admit() {
                Admit::Skip => Some("engine skipped: circuit breaker open".to_owned()),
                Admit::Ask => {
                    let started = Instant::now();
                    let res =
                        tokio::time::timeout(self.opts.deadline, client.search(scope, req, Some(self.opts.deadline)))
                            .await;
                    match res {
                        Ok(Ok(page)) => {
                            self.breaker.record(true);
                            return Ok(Page {
                                items: page.items,
                                next_cursor: page.next_cursor,
                                source: Source::Search,
                                fallback_reason: None,
                                sync: None,
                            });
                        }
                        Ok(Err(SearchError::Timeout(_))) | Err(_) => {
                            self.breaker.record(false);
                            tracing::warn!(
                                deadline_ms = self.opts.deadline.as_millis() as u64,
                                "search engine too slow: answering from the database"
                            );
                            Some(format!("engine slower than {} ms", self.opts.deadline.as_millis()))
                        }
                        // A request the engine refuses (400: too complex, past a limit) is
                        // the caller's: it neither counts toward opening the breaker (one
                        // caller's odd queries sent everyone's to Postgres) nor clears the
                        // failures others' searches met; it does end a trial (the engine is up).
                        Ok(Err(e @ SearchError::Status { status: 400, .. })) => {
                            self.breaker.record_refusal();
                            tracing::info!(error = %e, "the engine refused the search: answering from the database");
                            Some(e.summary())
                        }
                        Ok(Err(e)) => {
                            self.breaker.record(false);
                            tracing::warn!(error = %e, elapsed_ms = started.elapsed().as_millis() as u64, "search engine failed: answering from the database");
                            Some(e.summary())
                        }
                    }
                }
            },
        };
        let (items, next_cursor) = database_page(store, scope, req).await?;
        Ok(Page { items, next_cursor, source: Source::Database, fallback_reason: reason, sync: None })
    }
}

/// One page from Postgres by the core's SQL rendering.
pub(crate) async fn database_page<E: Executor>(
    store: &Store<E>,
    scope: &Scope,
    req: &SearchRequest,
) -> Result<(Vec<Job>, Option<String>), StoreError> {
    let (text, params) = req.to_sql(scope, sql::JOB_SELECT);
    let listed = store.list_counted(&text, &params).await?;
    // Still the caller's: a row read in parts is read as it is then (the store reads a page
    // again when a row changed, three times at most).
    let mut items: Vec<Job> = listed.jobs.into_iter().filter(|j| scope.allows(j)).collect();
    let limit = req.limit as usize;
    // Another page follows when the statement matched more than a page, whatever came back.
    let next = if listed.matched > limit {
        items.truncate(limit);
        match items.last() {
            Some(last) => Some(req.cursor_after(last)),
            // A page of nothing but rows another writer left unreadable: no cursor can follow
            // them, and a page without one would end the listing early.
            None if !listed.unreadable.is_empty() => {
                let why = format!("all {} rows of the page cannot be read", listed.unreadable.len());
                return Err(crate::db::DbError::Unreadable(why).into());
            }
            None => None,
        }
    } else {
        None
    };
    Ok((items, next))
}

enum Admit {
    Ask,
    Skip,
}

#[derive(Debug)]
struct Breaker {
    opts: SearcherOptions,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial request is in flight since `since`; the others keep using the database.
    HalfOpen {
        since: Instant,
    },
}

impl Breaker {
    fn new(opts: SearcherOptions) -> Breaker {
        Breaker { opts, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (plain copies).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn admit(&self) -> Admit {
        let mut s = self.lock();
        let now = Instant::now();
        match *s {
            State::Closed { .. } => Admit::Ask,
            State::Open { until } if now >= until => {
                *s = State::HalfOpen { since: now };
                Admit::Ask
            }
            State::Open { .. } => Admit::Skip,
            // A trial that never reported back (its request was dropped) gives way to another.
            State::HalfOpen { since } if now.duration_since(since) > self.opts.deadline * 2 => {
                *s = State::HalfOpen { since: now };
                Admit::Ask
            }
            State::HalfOpen { .. } => Admit::Skip,
        }
    }

    /// The engine answered, refusing the request: a half-open trial ends closed; otherwise
    /// nothing changes.
    fn record_refusal(&self) {
        let mut s = self.lock();
        if let State::HalfOpen { .. } = *s {
            tracing::info!("search circuit breaker closed: the engine answers again");
            *s = State::Closed { failures: 0 };
        }
    }

    fn record(&self, ok: bool) {
        let mut s = self.lock();
        *s = match (*s, ok) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (_, true) => {
                tracing::info!("search circuit breaker closed: the engine answers again");
                State::Closed { failures: 0 }
            }
            (State::Closed { failures }, false) if failures + 1 < self.opts.failure_threshold => {
                State::Closed { failures: failures + 1 }
            }
            (_, false) => {
                tracing::warn!(cool_down_ms = self.opts.cool_down.as_millis() as u64, "search circuit breaker open");
                State::Open { until: Instant::now() + self.opts.cool_down }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_cut_where_its_jobs_fill_the_budget() {
        let req = SearchRequest::from_params([("limit", "10")]).expect("valid");
        let job = |i: u128, size: usize| {
            let mut j: Job = serde_json::from_value(serde_json::json!({
                "id": uuid::Uuid::from_u128(i), "workspace_id": null, "user_id": uuid::Uuid::from_u128(1),
                "status": "FAILED", "type": "BUILD", "project_name": "p", "hostname": null, "arch": null,
                "user_email": null, "error_message": "x", "metadata": {}, "created_at": "2024-01-01T00:00:00.000000Z",
                "updated_at": "2024-01-01T00:00:00.000000Z", "completed_at": null, "version": 0
            }))
            .expect("a job");
            j.error_message = Some("\"".repeat(size));
            j
        };
        let page = |sizes: &[usize]| Page {
            items: sizes.iter().enumerate().map(|(i, &n)| job(i as u128 + 10, n)).collect(),
            next_cursor: None,
            source: Source::Database,
            fallback_reason: None,
            sync: None,
        };
        // Each job is ~2 x 1000 bytes of JSON (its quotes escaped): two fit in 5,000, not three.
        let mut p = page(&[1000, 1000, 1000, 1000]);
        p.fit(&req, 5_000);
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.next_cursor, Some(req.cursor_after(&p.items[1])));
        // One job alone over the budget still makes a page; a page that fits is left alone.
        let mut p = page(&[10_000, 10]);
        p.fit(&req, 5_000);
        assert_eq!((p.items.len(), p.next_cursor.is_some()), (1, true));
        let mut p = page(&[10, 10]);
        p.fit(&req, 5_000);
        assert_eq!((p.items.len(), p.next_cursor), (2, None));
    }

    /// Two failures open it; 40 ms of cool-down.
    const QUICK: SearcherOptions = SearcherOptions {
        deadline: Duration::from_millis(20),
        failure_threshold: 2,
        cool_down: Duration::from_millis(40),
    };

    #[test]
    fn breaker_opens_cools_down_and_half_opens() {
        let b = Breaker::new(QUICK);
        assert!(matches!(b.admit(), Admit::Ask));
        b.record(false);
        assert_eq!(b.state(), BreakerState::Closed, "one failure is not enough");
        b.record(true);
        b.record(false);
        assert_eq!(b.state(), BreakerState::Closed, "a success resets the count");
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.admit(), Admit::Skip));
        std::thread::sleep(Duration::from_millis(45));
        assert!(matches!(b.admit(), Admit::Ask), "after the cool-down one trial goes through");
        assert!(matches!(b.admit(), Admit::Skip), "only one");
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open, "a failed trial reopens");
        std::thread::sleep(Duration::from_millis(45));
        assert!(matches!(b.admit(), Admit::Ask));
        std::thread::sleep(Duration::from_millis(45));
        assert!(matches!(b.admit(), Admit::Ask), "a trial that never reported gives way");
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    /// A refusal (the caller's 400) leaves the count of others' failures as it is, and an open
    /// breaker open; it ends a trial closed, the engine having answered.
    #[test]
    fn a_refusal_neither_counts_nor_clears() {
        let b = Breaker::new(QUICK);
        b.record(false);
        b.record_refusal();
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open, "the refusal between two failures did not reset them");
        b.record_refusal();
        assert_eq!(b.state(), BreakerState::Open, "nor closed the breaker");
        std::thread::sleep(Duration::from_millis(45));
        assert!(matches!(b.admit(), Admit::Ask));
        b.record_refusal();
        assert_eq!(b.state(), BreakerState::Closed, "a refused trial shows the engine up");
    }
}
