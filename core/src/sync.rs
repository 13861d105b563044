//! Sync decisions as data: what is dirty, and from a batch of rows and their bulk outcomes,
//! which rows to mark synced (and at which version), which to retry when, which to dead-letter.
//! The shell executes the [`Plan`]; the same function runs in tests, the CLI and the browser.

use crate::search::Outcome;
use crate::time::Timestamp;
use serde::Serialize;
use uuid::Uuid;

/// A row is dirty when it was never synced or search holds an older version. (Not a timestamp
/// comparison: clocks differ and transactions commit out of order. Not version alone: a new
/// row has version 0 and es_sync_version 0.)
pub fn is_dirty(es_synced_at: Option<Timestamp>, es_sync_version: i64, version: i64) -> bool {
    es_synced_at.is_none() || es_sync_version < version
}

/// Where a job stands with search, as `GET /v1/jobs?include=sync` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Search holds the job's current version.
    Synced,
    /// A change is waiting for the sync (or being retried).
    Pending,
    /// The sync gave up on the current version; an operator requeues it (`jobsctl dead-letters`).
    DeadLettered,
    /// Postgres no longer has the job; search drops it when the sync sends its delete.
    Deleted,
}

/// A job's sync state read from its row and queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobSync {
    pub state: SyncState,
    /// The job's version in Postgres (`null` once deleted).
    pub version: Option<i64>,
    /// The last version search acknowledged (`null` before the first, and after a repair
    /// queued the job again: `verify --repair`, `reindex --allow-rejected`).
    pub synced_version: Option<i64>,
    pub synced_at: Option<Timestamp>,
}

impl JobSync {
    /// From the row's columns (`None` for a job Postgres does not have) and whether its queue
    /// entry is dead-lettered. The dirty rule is [`is_dirty`]'s.
    pub fn of(row: Option<(i64, i64, Option<Timestamp>)>, dead_lettered: bool) -> JobSync {
        let Some((version, es_sync_version, es_synced_at)) = row else {
            return JobSync { state: SyncState::Deleted, version: None, synced_version: None, synced_at: None };
        };
        let state = if !is_dirty(es_synced_at, es_sync_version, version) {
            SyncState::Synced
        } else if dead_lettered {
            SyncState::DeadLettered
        } else {
            SyncState::Pending
        };
        JobSync {
            state,
            version: Some(version),
            synced_version: es_synced_at.map(|_| es_sync_version),
            synced_at: es_synced_at,
        }
    }
}

/// Whether a pending change is a job's state or its deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingKind {
    Upsert,
    Tombstone,
}

/// One row of a dirty batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: Uuid,
    /// The version that was read and sent (for a tombstone, the deleted row's last version).
    pub version: i64,
    pub kind: PendingKind,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Retry and dead-letter rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// A rejected document (4xx other than 409/429) is dead-lettered after this many attempts.
    pub max_rejected_attempts: u32,
    /// A document that keeps failing transiently is dead-lettered after this many attempts.
    pub max_retry_attempts: u32,
    pub base_backoff_ms: i64,
    pub max_backoff_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { max_rejected_attempts: 3, max_retry_attempts: 50, base_backoff_ms: 1_000, max_backoff_ms: 300_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub id: Uuid,
    /// Mark synced at exactly this version, and only if the row's es_sync_version is lower.
    pub version: i64,
    pub kind: PendingKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retry {
    pub id: Uuid,
    pub kind: PendingKind,
    /// The version that was sent: the retry applies only while the entry is still at it.
    pub version: i64,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub id: Uuid,
    pub kind: PendingKind,
    pub version: i64,
    pub attempts: u32,
    pub error: String,
}

/// Counts per outcome, for logs and the sync summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub indexed: u64,
    pub stale: u64,
    pub retried: u64,
    pub rejected: u64,
    pub dead_lettered: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.indexed += other.indexed;
        self.stale += other.stale;
        self.retried += other.retried;
        self.rejected += other.rejected;
        self.dead_lettered += other.dead_lettered;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub mark: Vec<Mark>,
    pub retry: Vec<Retry>,
    pub dead_letter: Vec<DeadLetter>,
    pub counts: Counts,
}

/// Decides what to do with each row after a bulk request. `outcomes[i]` belongs to `rows[i]`;
/// a row without an outcome is retried. `random` seeds the jitter (pass in fresh randomness).
pub fn plan(rows: &[Pending], outcomes: &[Outcome], now: Timestamp, random: u64, policy: &Policy) -> Plan {
    let mut p = Plan::default();
    let mut rng = SplitMix(random);
    let missing = Outcome::Retry { status: 0, reason: "no outcome for this row".into() };
    for (i, row) in rows.iter().enumerate() {
        let outcome = outcomes.get(i).unwrap_or(&missing);
        let attempts = row.attempts.saturating_add(1);
        let (error, limit) = match outcome {
            Outcome::Indexed | Outcome::Stale => {
                if matches!(outcome, Outcome::Stale) {
                    p.counts.stale += 1;
                } else {
                    p.counts.indexed += 1;
                }
                // A 409 means the engine holds this version or a newer one: this version is done.
                p.mark.push(Mark { id: row.id, version: row.version, kind: row.kind });
                continue;
            }
            Outcome::Retry { status, reason } => {
                p.counts.retried += 1;
                (format!("{status}: {reason}"), policy.max_retry_attempts)
            }
            Outcome::Rejected { status, reason } => {
                p.counts.rejected += 1;
                (format!("{status}: {reason}"), policy.max_rejected_attempts)
            }
        };
        if attempts >= limit {
            p.counts.dead_lettered += 1;
            p.dead_letter.push(DeadLetter { id: row.id, kind: row.kind, version: row.version, attempts, error });
        } else {
            let delay = backoff_ms(attempts, rng.next(), policy);
            let at = Timestamp::from_micros(now.as_micros().saturating_add(delay.saturating_mul(1000)))
                .unwrap_or(Timestamp::MAX);
            p.retry.push(Retry {
                id: row.id,
                kind: row.kind,
                version: row.version,
                attempts,
                next_attempt_at: at,
                error,
            });
        }
    }
    p
}

/// Exponential backoff with "equal jitter": half the capped exponential delay plus a random
/// part of the other half, so retries spread out but never come back immediately.
pub fn backoff_ms(attempts: u32, random: u64, policy: &Policy) -> i64 {
    let exp = policy.base_backoff_ms.saturating_mul(1i64 << attempts.saturating_sub(1).min(30));
    let capped = exp.min(policy.max_backoff_ms).max(1);
    let half = capped / 2;
    half + (random % (capped - half + 1) as u64) as i64
}

/// A tiny deterministic generator for jitter (randomness itself is passed in).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u128, version: i64, attempts: u32) -> Pending {
        Pending { id: Uuid::from_u128(n), version, kind: PendingKind::Upsert, attempts }
    }

    #[test]
    fn job_sync_state_follows_the_dirty_rule() {
        let t = Some(Timestamp::from_millis(0));
        let state = |row, dead| JobSync::of(row, dead).state;
        assert_eq!(state(Some((3, 3, t)), false), SyncState::Synced);
        assert_eq!(state(Some((3, 3, t)), true), SyncState::Synced, "an old dead letter of a synced row");
        assert_eq!(state(Some((3, 2, t)), false), SyncState::Pending);
        assert_eq!(state(Some((0, 0, None)), false), SyncState::Pending, "never synced");
        assert_eq!(state(Some((3, 2, t)), true), SyncState::DeadLettered);
        assert_eq!(state(None, true), SyncState::Deleted);
        let s = JobSync::of(Some((4, 0, None)), false);
        assert_eq!((s.version, s.synced_version), (Some(4), None), "no acknowledged version before the first");
        assert_eq!(
            serde_json::to_string(&JobSync::of(Some((2, 2, t)), false)).expect("serialises"),
            r#"{"state":"synced","version":2,"synced_version":2,"synced_at":"1970-01-01T00:00:00.000000Z"}"#
        );
    }

    #[test]
    fn dirty_rule() {
        let t = Timestamp::from_millis(0);
        assert!(is_dirty(None, 0, 0), "a new row (version 0) is dirty");
        assert!(!is_dirty(Some(t), 0, 0));
        assert!(is_dirty(Some(t), 2, 3));
        assert!(!is_dirty(Some(t), 3, 3));
        assert!(!is_dirty(Some(t), 4, 3), "search ahead of the row is not dirty");
    }

    #[test]
    fn plan_per_outcome() {
        let now = Timestamp::from_millis(1_000_000);
        let policy = Policy::default();
        let rows = [row(1, 5, 0), row(2, 6, 0), row(3, 7, 0), row(4, 8, 2), row(5, 9, 49), row(6, 1, 0)];
        let outcomes = [
            Outcome::Indexed,
            Outcome::Stale,
            Outcome::Retry { status: 429, reason: "busy".into() },
            Outcome::Rejected { status: 400, reason: "mapper_parsing_exception".into() },
            Outcome::Retry { status: 503, reason: "down".into() },
        ];
        let p = plan(&rows, &outcomes, now, 42, &policy);
        assert_eq!(p.mark.iter().map(|m| (m.id.as_u128(), m.version)).collect::<Vec<_>>(), vec![(1, 5), (2, 6)]);
        let retried: Vec<u128> = p.retry.iter().map(|r| r.id.as_u128()).collect();
        assert_eq!(retried, vec![3, 6], "429 and a missing outcome are retried");
        assert!(p.retry.iter().all(|r| r.next_attempt_at > now && r.attempts == 1));
        let dead: Vec<(u128, u32)> = p.dead_letter.iter().map(|d| (d.id.as_u128(), d.attempts)).collect();
        assert_eq!(dead, vec![(4, 3), (5, 50)], "rejected after 3 attempts, transient after 50");
        assert!(p.dead_letter[0].error.contains("mapper_parsing_exception"));
        assert_eq!(p.counts, Counts { indexed: 1, stale: 1, retried: 3, rejected: 1, dead_lettered: 2 });
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = Policy::default();
        for attempts in 1..40 {
            for r in [0, 1, u64::MAX, 12345] {
                let d = backoff_ms(attempts, r, &policy);
                let exp = (1000i64 << (attempts - 1).min(30)).min(300_000);
                assert!(d >= exp / 2 && d <= exp, "attempt {attempts}: {d} not in [{}, {exp}]", exp / 2);
            }
        }
        assert_ne!(backoff_ms(5, 1, &policy), backoff_ms(5, 2, &policy));
    }
}
