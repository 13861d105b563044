//! A concurrent job workload for the convergence test: writers that create jobs, update them
//! with optimistic locking (re-reading and retrying on a version conflict), delete them with an
//! expected version, and write as a foreign service would (plain SQL, the trigger bumps the
//! version). Writers share one pool of live ids with a hot end, so they really collide.
//!
//! Bounded: each writer stops after `max_ops` operations or when told to stop.

use crate::search_env::Rng;
use crate::store_suite::{new_id, now};
use jobs_core::model::Job;
use jobs_core::sql::Param;
use jobs_core::validate;
use jobs_lambda::db::Executor;
use jobs_lambda::store::{Scope, Store, StoreError};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Attempts of one logical update or delete before it gives up on conflicts.
const MAX_CONFLICT_RETRIES: u32 = 8;

/// Operations done, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    pub creates: u64,
    pub updates: u64,
    pub deletes: u64,
    pub foreign_updates: u64,
    /// Version conflicts met (each followed by a re-read and another attempt).
    pub conflicts: u64,
    /// Updates or deletes abandoned after [`MAX_CONFLICT_RETRIES`] conflicts, or because the
    /// job was deleted meanwhile.
    pub gave_up: u64,
    /// Unexpected store errors (the test fails on any).
    pub errors: u64,
}

impl OpCounts {
    /// Writes that changed a row.
    pub fn writes(&self) -> u64 {
        self.creates + self.updates + self.deletes + self.foreign_updates
    }
}

impl std::fmt::Display for OpCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "creates={} updates={} deletes={} foreign_updates={} (writes={}) version_conflicts_retried={} gave_up={} errors={}",
            self.creates,
            self.updates,
            self.deletes,
            self.foreign_updates,
            self.writes(),
            self.conflicts,
            self.gave_up,
            self.errors
        )
    }
}

#[derive(Default)]
struct Counters {
    creates: AtomicU64,
    updates: AtomicU64,
    deletes: AtomicU64,
    foreign_updates: AtomicU64,
    conflicts: AtomicU64,
    gave_up: AtomicU64,
    errors: AtomicU64,
}

/// State shared by the writers: the live ids, the deleted ids, the counts and the stop flag.
#[derive(Default)]
pub struct Workload {
    live: Mutex<Vec<Uuid>>,
    deleted: Mutex<Vec<Uuid>>,
    counters: Counters,
    stop: AtomicBool,
    first_error: Mutex<Option<String>>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Workload {
    pub fn new() -> Arc<Workload> {
        Arc::new(Workload::default())
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn counts(&self) -> OpCounts {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OpCounts {
            creates: l(&c.creates),
            updates: l(&c.updates),
            deletes: l(&c.deletes),
            foreign_updates: l(&c.foreign_updates),
            conflicts: l(&c.conflicts),
            gave_up: l(&c.gave_up),
            errors: l(&c.errors),
        }
    }

    /// Ids deleted by the workload.
    pub fn deleted(&self) -> Vec<Uuid> {
        self.deleted.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        bump(&self.counters.errors);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(format!("{what}: {e}"));
        }
    }

    /// An id to work on: half the time one of the 8 newest (where writers collide).
    fn pick(&self, rng: &mut Rng) -> Option<Uuid> {
        let live = self.live.lock().ok()?;
        if live.is_empty() {
            return None;
        }
        let n = live.len() as u64;
        let i = if rng.chance(50) { n - 1 - rng.below(n.min(8)) } else { rng.below(n) };
        live.get(i as usize).copied()
    }

    fn forget(&self, id: Uuid, deleted: bool) {
        if let Ok(mut live) = self.live.lock()
            && let Some(pos) = live.iter().position(|x| *x == id)
        {
            live.swap_remove(pos);
        }
        if deleted && let Ok(mut d) = self.deleted.lock() {
            d.push(id);
        }
    }
}

/// What one writer does. `scope` must see every job of the workload (a shared workspace).
pub struct Writer<E: Executor> {
    pub store: Arc<Store<E>>,
    pub scope: Scope,
    pub workspace: Uuid,
    pub seed: u64,
    pub max_ops: u64,
    /// Percentages of creates, deletes and foreign updates; the rest are store updates.
    pub mix: Mix,
    /// Pause between operations (spreads them over the test's phases).
    pub pace: std::time::Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub create: u64,
    pub delete: u64,
    pub foreign: u64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { create: 25, delete: 12, foreign: 5 }
    }
}

impl<E: Executor + 'static> Writer<E> {
    /// Creates `n` jobs to start from.
    pub async fn seed_jobs(&self, w: &Workload, n: usize) {
        let mut rng = Rng::new(self.seed ^ 0xC0FFEE);
        for _ in 0..n {
            self.create(w, &mut rng).await;
        }
    }

    /// Runs until `max_ops` or [`Workload::stop`].
    pub async fn run(self, w: Arc<Workload>) {
        let mut rng = Rng::new(self.seed);
        for _ in 0..self.max_ops {
            if w.stop.load(Ordering::SeqCst) {
                return;
            }
            if !self.pace.is_zero() {
                tokio::time::sleep(self.pace).await;
            }
            let roll = rng.below(100);
            if roll < self.mix.create {
                self.create(&w, &mut rng).await;
            } else if roll < self.mix.create + self.mix.delete {
                self.delete(&w, &mut rng).await;
            } else if roll < self.mix.create + self.mix.delete + self.mix.foreign {
                self.foreign_update(&w, &mut rng).await;
            } else {
                self.update(&w, &mut rng).await;
            }
        }
    }

    async fn create(&self, w: &Workload, rng: &mut Rng) {
        let kinds = ["BUILD", "TEST", "DEPLOY", "SCAN"];
        let body = json!({
            "type": rng.pick(&kinds),
            "project_name": format!("proj-{}", rng.below(13)),
            "workspace_id": self.workspace,
            "hostname": format!("host-{}.example.com", rng.below(7)),
            "metadata": {"cpuCores": rng.below(16) + 1, "memoryGb": 4},
        });
        let valid = match validate::create(&body) {
            Ok(v) => v,
            Err(issues) => return w.error("create", &format!("{issues:?}")),
        };
        match self.store.create(&self.scope, &valid, new_id()).await {
            Ok(job) => {
                bump(&w.counters.creates);
                if let Ok(mut live) = w.live.lock() {
                    live.push(job.id);
                }
            }
            Err(e) => w.error("create", &e),
        }
    }

    /// The next state of a job: advance its status while it can, else touch its metadata.
    fn next_body(current: &Job, rng: &mut Rng) -> Value {
        use jobs_core::model::JobStatus::*;
        match current.status {
            Queued if rng.chance(85) => json!({"status": "RUNNING"}),
            Queued => json!({"status": "CANCELLED"}),
            Running => match rng.below(10) {
                0..=5 => json!({"metadata": {"progress": rng.below(100)}}),
                6 | 7 => json!({"status": "SUCCEEDED", "metadata": {"buildDurationMs": rng.below(600_000)}}),
                8 => json!({"status": "FAILED", "error_message": "exit status 1"}),
                _ => json!({"status": "CANCELLED"}),
            },
            _ => json!({"metadata": {"note": format!("touched-{}", rng.below(1_000))}}),
        }
    }

    async fn update(&self, w: &Workload, rng: &mut Rng) {
        let Some(id) = w.pick(rng) else { return };
        let mut current = match self.store.get(&self.scope, id).await {
            Ok(j) => j,
            Err(StoreError::NotFound) => {
                bump(&w.counters.gave_up);
                return;
            }
            Err(e) => return w.error("get", &e),
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            // A moment between reading and writing, as a client would take: others get in.
            tokio::time::sleep(std::time::Duration::from_millis(rng.below(4))).await;
            let body = Self::next_body(&current, rng);
            let Ok(patch) = validate::patch(&current, &body, now()) else {
                bump(&w.counters.gave_up);
                return;
            };
            match self.store.update(&self.scope, &patch).await {
                Ok(_) => {
                    bump(&w.counters.updates);
                    return;
                }
                Err(StoreError::VersionConflict { current: now_is }) => {
                    bump(&w.counters.conflicts);
                    current = *now_is;
                }
                Err(StoreError::NotFound) => break,
                Err(e) => return w.error("update", &e),
            }
        }
        bump(&w.counters.gave_up);
    }

    async fn delete(&self, w: &Workload, rng: &mut Rng) {
        let Some(id) = w.pick(rng) else { return };
        let mut version = match self.store.get(&self.scope, id).await {
            Ok(j) => j.version,
            Err(StoreError::NotFound) => {
                bump(&w.counters.gave_up);
                return;
            }
            Err(e) => return w.error("get", &e),
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            match self.store.delete(&self.scope, id, Some(version)).await {
                Ok(_) => {
                    bump(&w.counters.deletes);
                    w.forget(id, true);
                    return;
                }
                Err(StoreError::VersionConflict { current }) => {
                    bump(&w.counters.conflicts);
                    version = current.version;
                }
                Err(StoreError::NotFound) => break,
                Err(e) => return w.error("delete", &e),
            }
        }
        bump(&w.counters.gave_up);
    }

    /// Another service changing a column without touching `version`: the database's trigger
    /// bumps it, so search and optimistic lockers see the change.
    async fn foreign_update(&self, w: &Workload, rng: &mut Rng) {
        let Some(id) = w.pick(rng) else { return };
        let host = format!("foreign-{}.example.com", rng.below(1_000));
        match self
            .store
            .executor()
            .execute("UPDATE job SET hostname = $2 WHERE id = $1::uuid", &[Param::Uuid(id), Param::Text(host)])
            .await
        {
            Ok(1) => bump(&w.counters.foreign_updates),
            Ok(_) => bump(&w.counters.gave_up),
            Err(e) => w.error("foreign update", &e),
        }
    }
}
