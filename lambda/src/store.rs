//! The job store: every read and write of jobs, identities and sync bookkeeping, written once
//! over the [`Executor`] seam (so the direct Postgres driver and the RDS Data API driver run the
//! same statements, from `jobs_core::sql`).
//!
//! Reads and writes are scoped to the caller ([`Scope`]): their own jobs and their workspaces'.
//! Writes use optimistic locking on `version`. Sync state lives in `job_sync_queue`, kept by
//! triggers (see `migrations/V1__init.sql` and `docs/sync-storage.md`): the store claims batches
//! from it, and executes a `jobs_core::sync::Plan` against it.

use crate::db::{Cell, DbError, Executor, Row};
use jobs_core::model::{Job, JobStatus, JobType};
use jobs_core::search::Change;
use jobs_core::sql::{self, Param};
use jobs_core::sync::{DeadLetter, JobSync, Mark, Pending, PendingKind, Retry};
use jobs_core::time::Timestamp;
use jobs_core::tree::Object;
use jobs_core::validate::{ValidNewJob, ValidPatch};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// Errors get longer than anyone reads; the queue keeps this many characters of one.
const MAX_ERROR_CHARS: usize = 2_000;

/// Who is asking (the core's tenancy scope): every scoped read and write sees only jobs owned
/// by the user or in one of their workspaces.
pub use jobs_core::query::Scope;

fn workspaces_param(scope: &Scope) -> Param {
    Param::Json(json!(scope.workspace_ids).to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such job, or not one the caller may see.
    #[error("job not found")]
    NotFound,
    /// The job changed since the caller read it; `current` is what it is now.
    #[error("version conflict: the job is at version {}", current.version)]
    VersionConflict { current: Box<Job> },
    /// A row with this key exists already (SQLSTATE 23505).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A referenced row does not exist (SQLSTATE 23503), e.g. an unknown workspace or a user
    /// that was never ensured.
    #[error("unknown reference: {0}")]
    UnknownReference(String),
    /// The caller may not write into this workspace.
    #[error("workspace {0} is outside the caller's scope")]
    OutOfScope(Uuid),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl StoreError {
    fn from_db(e: DbError) -> StoreError {
        match e.sqlstate() {
            Some("23505") => StoreError::AlreadyExists(e.to_string()),
            Some("23503") => StoreError::UnknownReference(e.to_string()),
            _ => StoreError::Db(e),
        }
    }

    /// Worth retrying as is (the database was unreachable, or a serialization failure/deadlock).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(DbError::Unavailable(_)) => true,
            StoreError::Db(e) => matches!(e.sqlstate(), Some("40001" | "40P01")),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A deleted job, as its tombstone records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub id: Uuid,
    /// The row's last version (the search delete is sent at `version + 1`).
    pub version: i64,
    pub user_id: Uuid,
    pub workspace_id: Option<Uuid>,
    pub deleted_at: Timestamp,
    /// When the delete reached search; `None` while it is pending.
    pub es_synced_at: Option<Timestamp>,
}

/// What a deleted row was, as [`Store::delete`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub id: Uuid,
    pub version: i64,
}

/// One claimed entry of the sync queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// What the sync plan needs: id, the version read (and to be indexed), kind, attempts.
    pub pending: Pending,
    pub item: Item,
}

/// The state to send to search.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Job(Job),
    Tombstone(Tombstone),
}

impl Claimed {
    /// The bulk change for this entry.
    pub fn change(&self) -> Change<'_> {
        match &self.item {
            Item::Job(job) => Change::Upsert(job),
            Item::Tombstone(t) => Change::Delete { id: t.id, version: t.version },
        }
    }
}

/// How far search is behind Postgres.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLag {
    /// Entries waiting to be indexed (dirty jobs and unsynced tombstones, not dead-lettered).
    pub dirty: i64,
    /// Entries given up on until their row changes or an operator requeues them.
    pub dead_lettered: i64,
    /// The first unsynced change among the waiting entries.
    pub oldest_dirty_since: Option<Timestamp>,
    /// Its age by the database clock, in milliseconds.
    pub oldest_age_ms: Option<i64>,
}

/// A dead-lettered queue entry: the sync gave up on this version until the row changes again or
/// an operator requeues it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLettered {
    pub id: Uuid,
    pub version: i64,
    /// A delete (tombstone) rather than a job.
    pub deleted: bool,
    pub attempts: i64,
    pub error: Option<String>,
    pub dead_lettered_at: Timestamp,
}

/// The sync queue entry of one id (operators and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub version: i64,
    pub deleted: bool,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub dead_lettered_at: Option<Timestamp>,
    pub claimed_until: Option<Timestamp>,
    pub dirty_since: Timestamp,
}

/// A job's sync columns (what operators look at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncColumns {
    pub version: i64,
    pub es_sync_version: i64,
    pub es_synced_at: Option<Timestamp>,
}

/// The store over one executor. Cheap to share behind an `Arc`; the executor pools.
#[derive(Debug, Clone)]
pub struct Store<E> {
    db: E,
}

impl<E: Executor> Store<E> {
    pub fn new(db: E) -> Store<E> {
        Store { db }
    }

    pub fn executor(&self) -> &E {
        &self.db
    }

    async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        self.db.query(sql, params).await.map_err(StoreError::from_db)
    }

    async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64> {
        self.db.execute(sql, params).await.map_err(StoreError::from_db)
    }

    // -----------------------------------------------------------------------------------------
    // Identity and tenancy

    /// Records the caller (from the authorizer's claims) so jobs can copy their email. Writes
    /// nothing when the user is known with the same email. An invalid email is stored as NULL.
    pub async fn ensure_user(&self, user_id: Uuid, email: Option<&str>) -> Result<()> {
        let email = email.and_then(jobs_core::text::normalise_email);
        self.execute(sql::UPSERT_USER, &[Param::Uuid(user_id), opt_text(email.as_deref())]).await?;
        Ok(())
    }

    pub async fn ensure_workspace(&self, workspace_id: Uuid, name: &str) -> Result<()> {
        self.execute(sql::UPSERT_WORKSPACE, &[Param::Uuid(workspace_id), Param::Text(name.to_owned())]).await?;
        Ok(())
    }

    pub async fn add_member(&self, workspace_id: Uuid, user_id: Uuid) -> Result<()> {
        self.execute(sql::UPSERT_MEMBER, &[Param::Uuid(workspace_id), Param::Uuid(user_id)]).await?;
        Ok(())
    }

    /// Makes the user a member of each workspace, creating those that do not exist (named by
    /// their id; an existing one keeps its name): two statements however many workspaces (a
    /// token may claim hundreds; one statement each was seconds through the Data API).
    pub async fn ensure_memberships(&self, user_id: Uuid, workspaces: &[Uuid]) -> Result<()> {
        if workspaces.is_empty() {
            return Ok(());
        }
        let mut ids = workspaces.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let list = Param::Json(json!(ids).to_string());
        self.execute(sql::ENSURE_WORKSPACES, std::slice::from_ref(&list)).await?;
        match self.execute(sql::ENSURE_MEMBERSHIPS, &[list.clone(), Param::Uuid(user_id)]).await {
            // A workspace deleted between the two: create it again, once.
            Err(StoreError::UnknownReference(_)) => {
                self.execute(sql::ENSURE_WORKSPACES, std::slice::from_ref(&list)).await?;
                self.execute(sql::ENSURE_MEMBERSHIPS, &[list, Param::Uuid(user_id)]).await.map(drop)
            }
            r => r.map(drop),
        }
    }

    /// The workspaces the user belongs to (to build a [`Scope`] from membership).
    pub async fn workspaces_of(&self, user_id: Uuid) -> Result<Vec<Uuid>> {
        let rows = self.query(sql::SELECT_MEMBER_WORKSPACES, &[Param::Uuid(user_id)]).await?;
        rows.iter().map(|r| Cols::new(r).uuid("workspace_id")).collect::<Result<_, _>>().map_err(Into::into)
    }

    /// The caller's scope from workspace membership.
    pub async fn scope_of(&self, user_id: Uuid) -> Result<Scope> {
        Ok(Scope { user_id, workspace_ids: self.workspaces_of(user_id).await? })
    }

    // -----------------------------------------------------------------------------------------
    // Jobs

    /// Inserts a validated job owned by the caller at version 0; `default_id` is used when the
    /// request named none. `user_email` is copied from `users` (see [`Store::ensure_user`]);
    /// the timestamps are the database's. An existing id is [`StoreError::AlreadyExists`].
    pub async fn create(&self, scope: &Scope, new: &ValidNewJob, default_id: Uuid) -> Result<Job> {
        if let Some(ws) = new.workspace_id()
            && !scope.workspace_ids.contains(&ws)
        {
            return Err(StoreError::OutOfScope(ws));
        }
        let params = [
            Param::Uuid(new.id().unwrap_or(default_id)),
            opt_uuid(new.workspace_id()),
            Param::Uuid(scope.user_id),
            Param::Text(new.status().as_str().to_owned()),
            Param::Text(new.job_type().as_str().to_owned()),
            Param::Text(new.project_name().to_owned()),
            opt_text(new.hostname()),
            opt_text(new.arch()),
            json_param(new.metadata()),
        ];
        let rows = self.query(sql::INSERT_JOB, &params).await?;
        self.one_job(&rows).await?.ok_or_else(|| DbError::Decode("insert returned no row".into()).into())
    }

    /// The job, if the caller may see it.
    pub async fn get(&self, scope: &Scope, id: Uuid) -> Result<Job> {
        let rows = self
            .query(sql::SELECT_JOB_SCOPED, &[Param::Uuid(id), Param::Uuid(scope.user_id), workspaces_param(scope)])
            .await?;
        // A cut row is completed as it is then, which may be a newer state: still the caller's?
        self.one_job(&rows).await?.filter(|job| scope.allows(job)).ok_or(StoreError::NotFound)
    }

    /// The job, whoever owns it (sync, operators, tests).
    pub async fn get_unscoped(&self, id: Uuid) -> Result<Option<Job>> {
        let rows = self.query(sql::SELECT_JOB, &[Param::Uuid(id)]).await?;
        self.one_job(&rows).await
    }

    /// Applies a validated patch if the job is still at the version it was checked against:
    /// version + 1, `updated_at = now()`. A lost race is [`StoreError::VersionConflict`] with the
    /// current job; a job the caller cannot see is [`StoreError::NotFound`].
    pub async fn update(&self, scope: &Scope, patch: &ValidPatch) -> Result<Job> {
        let params = [
            Param::Uuid(patch.id()),
            Param::Int(patch.expected_version()),
            Param::Uuid(scope.user_id),
            workspaces_param(scope),
            Param::Text(patch.status().as_str().to_owned()),
            opt_text(patch.error_message()),
            opt_text(patch.hostname()),
            opt_text(patch.arch()),
            json_param(patch.metadata()),
            patch.completed_at().map_or(Param::Null, |t| Param::Timestamp(t.as_micros())),
        ];
        let rows = self.query(sql::UPDATE_JOB, &params).await?;
        match self.one_job(&rows).await? {
            Some(job) => Ok(job),
            None => Err(self.explain_miss(scope, patch.id()).await),
        }
    }

    /// Deletes the job (if at `expected_version`, when given). The tombstone that carries the
    /// delete to search is written by trigger in the same transaction.
    pub async fn delete(&self, scope: &Scope, id: Uuid, expected_version: Option<i64>) -> Result<Deleted> {
        let params = [
            Param::Uuid(id),
            Param::Uuid(scope.user_id),
            workspaces_param(scope),
            expected_version.map_or(Param::Null, Param::Int),
        ];
        let rows = self.query(sql::DELETE_JOB, &params).await?;
        match rows.first() {
            Some(row) => {
                let mut c = Cols::new(row);
                Ok(Deleted { id: c.uuid("id")?, version: c.int("version")? })
            }
            None => Err(self.explain_miss(scope, id).await),
        }
    }

    /// Why a scoped, version-checked write matched no row.
    async fn explain_miss(&self, scope: &Scope, id: Uuid) -> StoreError {
        match self.get(scope, id).await {
            Ok(current) => StoreError::VersionConflict { current: Box::new(current) },
            Err(e) => e,
        }
    }

    /// Runs a query that selects [`sql::JOB_COLUMNS`] first (the core's SQL fallback for
    /// search, already scoped by it) and reads the jobs. Further columns (sort keys) are ignored.
    /// See [`Store::list_counted`].
    pub async fn list(&self, sql: &str, params: &[Param]) -> Result<Vec<Job>> {
        Ok(self.list_counted(sql, params).await?.jobs)
    }

    /// [`Store::list`], with what the statement matched: callers that page by count (is there
    /// another page? where does it continue?) read that, not the jobs returned, which can be
    /// fewer (a job deleted while its row was being read in parts).
    ///
    /// A result too large for one response (the RDS Data API returns at most 1 MiB; a page of
    /// 500 jobs with long error messages is far more) is read in two steps: the ids in order,
    /// then the rows by id in chunks that halve until each fits. Rows read in more than one
    /// statement (those two steps, or a row completed in pieces) can meet a concurrent write in
    /// between: a page that did is read again (three times at most), so it is one state of the
    /// rows in their order.
    ///
    /// A row this code cannot read (another writer stored a status it does not know, a number
    /// past a double in the metadata) is left out and named in [`Listed::unreadable`], as the
    /// sync leaves it out of search (it dead-letters it): one such row no longer fails every
    /// page of the fallback and every backfill that meets it.
    pub async fn list_counted(&self, sql: &str, params: &[Param]) -> Result<Listed> {
        let mut listed = Listed::default();
        for _ in 0..3 {
            let (keys, read) = match self.db.query(sql, params).await {
                Ok(rows) => {
                    let mut keys = Vec::with_capacity(rows.len());
                    let mut read = Read::default();
                    for row in &rows {
                        keys.push(self.read_row(row, &mut read).await?);
                    }
                    (keys, read)
                }
                Err(e) if e.sqlstate() == Some(crate::db::RESPONSE_TOO_LARGE) => self.list_paged(sql, params).await?,
                Err(e) => return Err(StoreError::from_db(e)),
            };
            let Read { jobs, unreadable } = read;
            let mut readable = keys.iter().filter(|(id, _)| !unreadable.iter().any(|u| u.id == *id));
            let same = jobs.len() + unreadable.len() == keys.len()
                && jobs.iter().all(|j| readable.next().is_some_and(|(id, v)| *id == j.id && *v == j.version));
            listed = Listed { matched: keys.len(), last_id: keys.last().map(|(id, _)| *id), jobs, unreadable };
            if same {
                break;
            }
        }
        for u in &listed.unreadable {
            tracing::warn!(id = %u.id, reason = %u.reason, "a job row cannot be read: left out of the listing");
        }
        Ok(listed)
    }

    /// The two steps of [`Store::list_counted`]: the keys the statement matched, in order, and
    /// the jobs of those still there.
    async fn list_paged(&self, sql: &str, params: &[Param]) -> Result<(Vec<(Uuid, i64)>, Read)> {
        // A plain projection over the subquery keeps its order.
        let keys_sql = format!("SELECT q.id, q.version FROM ({sql}) q");
        let keys: Vec<(Uuid, i64)> = self
            .db
            .query(&keys_sql, params)
            .await
            .map_err(StoreError::from_db)?
            .iter()
            .map(|r| {
                let mut c = Cols::new(r);
                Ok((c.uuid("id")?, c.int("version")?))
            })
            .collect::<std::result::Result<_, DbError>>()?;
        let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
        let mut read = Read::default();
        for row in self.rows_by_ids(&ids).await? {
            self.read_row(&row, &mut read).await?;
        }
        // The rows came in no order: the jobs go back into the keys'.
        let mut by_id: std::collections::HashMap<Uuid, Job> = read.jobs.into_iter().map(|j| (j.id, j)).collect();
        let jobs = ids.iter().filter_map(|id| by_id.remove(id)).collect();
        Ok((keys, Read { jobs, unreadable: read.unreadable }))
    }

    /// Reads one row of [`sql::JOB_COLUMNS`] into `read` (completed if cut) and returns its
    /// key; a row without a readable id and version ends the listing.
    async fn read_row(&self, row: &[Cell], read: &mut Read) -> Result<(Uuid, i64)> {
        let Some(key) = key_of(row) else { return Err(read_head(row).err().unwrap_or_else(short_row).into()) };
        read.push(key, self.whole(row).await)?;
        Ok(key)
    }

    /// Rows of [`sql::JOB_COLUMNS`] by id (in no particular order; ids without a row are left
    /// out), in requests whose size halves until each answer fits one response: the RDS Data
    /// API returns at most 1 MiB, about a thousand ordinary jobs.
    async fn rows_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Row>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut chunk = 500usize;
        let mut at = 0;
        while at < ids.len() {
            let part = &ids[at..(at + chunk).min(ids.len())];
            let list = Param::Json(serde_json::to_string(part).unwrap_or_else(|_| "[]".to_owned()));
            match self.db.query(sql::SELECT_JOBS_BY_IDS, &[list]).await {
                Ok(rows) => {
                    out.extend(rows);
                    at += part.len();
                }
                Err(e) if e.sqlstate() == Some(crate::db::RESPONSE_TOO_LARGE) && chunk > 1 => chunk /= 2,
                Err(e) => return Err(StoreError::from_db(e)),
            }
        }
        Ok(out)
    }

    /// The job of one row of [`sql::JOB_COLUMNS`], completed if cut (see [`Store::complete`]).
    async fn whole(&self, row: &[Cell]) -> Result<Option<Job>> {
        self.complete(read_head(row)?).await
    }

    /// The job of the first row, if any (see [`Store::complete`]).
    async fn one_job(&self, rows: &[Row]) -> Result<Option<Job>> {
        match rows.first() {
            Some(row) => self.whole(row).await,
            None => Ok(None),
        }
    }

    /// The job of a row as read; for a row cut to fit an RDS Data API row (64 KB at most: the
    /// error message may be 65,536 characters, the metadata 32 KiB), the row read again with
    /// its error message and metadata in pieces ([`sql::SELECT_JOB_PIECES`]: one statement
    /// usually; more, each under the Data API's 1 MiB, for metadata that PostgreSQL writes much
    /// longer than it came, all of one version). Possibly newer than the cut row. `None`:
    /// deleted meanwhile.
    async fn complete(&self, head: Head) -> Result<Option<Job>> {
        if !head.cut {
            return Ok(Some(head.job));
        }
        // A write between two statements makes them disagree on the version: read again.
        for _ in 0..5 {
            if let Some(job) = self.read_pieces(head.job.id).await? {
                return Ok(job);
            }
        }
        Err(DbError::Decode(format!("job {} changed on every read of its pieces", head.job.id)).into())
    }

    /// A cut row read in pieces: `Some(None)` when it is gone, `None` when it changed between
    /// two statements.
    async fn read_pieces(&self, id: Uuid) -> Result<Option<Option<Job>>> {
        const P: i64 = sql::PIECE_CHARS as i64;
        const BUDGET: i64 = sql::PIECES_PER_STATEMENT as i64;
        // The first statement: the whole error message as the API allows it (16 pieces) and the
        // rest of the budget of metadata; then what is left, a budget at a time, the error
        // message first.
        let (mut error_to, mut meta_to) = (1 + 16 * P, 1 + (BUDGET - 16) * P);
        let (mut error, mut error_null, mut error_chars) = (String::new(), false, 0i64);
        let (mut metadata, mut meta_chars) = (String::new(), 0i64);
        let mut first: Option<Job> = None;
        loop {
            let (error_from, meta_from) = (1 + error_chars, 1 + meta_chars);
            let params = [
                Param::Uuid(id),
                Param::Int(error_from),
                Param::Int(error_to),
                Param::Int(meta_from),
                Param::Int(meta_to),
            ];
            let rows = self.query(sql::SELECT_JOB_PIECES, &params).await?;
            // No row: gone, or (after the first statement) a field now shorter than what was
            // read, so that the ranges asked for hold no piece: changed, read again.
            let Some(row) = rows.first() else { return Ok(first.is_none().then_some(None)) };
            let Head { job, cut } = read_head(row)?;
            match &first {
                None if !cut => return Ok(Some(Some(job))),
                Some(f) if f.version != job.version || !cut => return Ok(None),
                _ => {}
            }
            let (mut error_len, mut meta_len) = (0, 0);
            let progress = (error_chars, meta_chars, error_null);
            for row in &rows {
                let mut c = Cols { row, at: sql::JOB_COLUMN_COUNT };
                let (field, at, piece) = (c.int("field")?, c.int("at")?, c.opt_text("piece")?);
                (error_len, meta_len) = (c.opt_int("le")?.unwrap_or(0), c.int("lm")?);
                // Pieces come in order, each where the last one ended.
                let (text, chars) = match (field, &piece) {
                    (1, None) if at == 1 => {
                        error_null = true;
                        continue;
                    }
                    (1, Some(_)) if at == 1 + error_chars => (&mut error, &mut error_chars),
                    (2, Some(_)) if at == 1 + meta_chars => (&mut metadata, &mut meta_chars),
                    _ => {
                        let piece = piece.map(|p| p.chars().take(40).collect::<String>());
                        return Err(DbError::Decode(format!("job {id}: piece {field} at {at}: {piece:?}")).into());
                    }
                };
                let piece = piece.unwrap_or_default();
                *chars += i64::try_from(piece.chars().count()).unwrap_or(i64::MAX);
                text.push_str(&piece);
            }
            let job = first.get_or_insert(job);
            let error_done = error_null || error_chars >= error_len;
            if error_done && meta_chars >= meta_len {
                job.error_message = (!error_null).then_some(error);
                job.metadata = parse_metadata(&metadata)?;
                return Ok(Some(first));
            }
            if progress == (error_chars, meta_chars, error_null) {
                return Err(DbError::Decode(format!("job {id}: a statement read no piece")).into());
            }
            if error_done {
                (error_to, meta_to) = (1 + error_chars, 1 + meta_chars + BUDGET * P);
            } else {
                (error_to, meta_to) = (1 + error_chars + BUDGET * P, 1 + meta_chars);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sync bookkeeping

    /// Claims up to `limit` due entries for `lease` (other runs skip them until it passes or an
    /// outcome is recorded), in queue order, with the state to send. Entries that changed
    /// between the queue and the row in this very instant are given back and left for the next
    /// claim.
    ///
    /// A row that cannot be read (see [`Store::claim_once`]) is dead-lettered with the reason
    /// instead of failing the claim, so it never blocks the others.
    pub async fn claim_dirty(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>> {
        loop {
            let (claimed, unreadable) = self.claim_once(limit, lease).await?;
            // A batch of nothing but unreadable rows says nothing about what else is due.
            if !claimed.is_empty() || unreadable == 0 {
                return Ok(claimed);
            }
        }
    }

    /// One claim: the entries to send, and how many rows were dead-lettered as unreadable.
    async fn claim_once(&self, limit: usize, lease: Duration) -> Result<(Vec<Claimed>, usize)> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(sql::CLAIM_DIRTY, &[Param::Int(limit), millis(lease)]).await?;
        // The claimed jobs, read by id in responses that fit (see sql::CLAIM_DIRTY).
        let live: Vec<Uuid> = rows
            .iter()
            .filter(|r| matches!(r.get(1), Some(Cell::Bool(false))))
            .map(|r| Cols::new(r).uuid("job_id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut job_rows = std::collections::HashMap::with_capacity(live.len());
        for row in self.rows_by_ids(&live).await? {
            job_rows.insert(Cols::new(&row).uuid("id")?, row);
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut raced = Vec::new();
        let mut unreadable = Vec::new();
        let mut orphans = Vec::new();
        for row in &rows {
            let mut c = Cols::new(row);
            let id = c.uuid("job_id")?;
            let deleted = c.bool("deleted")?;
            let attempts = u32::try_from(c.int("attempts")?).unwrap_or(0);
            let t_version = c.opt_int("tombstone.version")?;
            let t_user = c.opt_uuid("tombstone.user_id")?;
            let t_ws = c.opt_uuid("tombstone.workspace_id")?;
            let t_deleted_at = c.opt_ts("tombstone.deleted_at")?;
            let entry_version = c.int("version")?;
            let kind = if deleted { PendingKind::Tombstone } else { PendingKind::Upsert };
            let entry = Pending { id, version: entry_version, kind, attempts };
            let job_row = if deleted { None } else { job_rows.remove(&id) };
            if !deleted && job_row.is_none() {
                // A live entry without its job: the row went without the delete trigger
                // (TRUNCATE, triggers disabled). Released, it would come first in every claim
                // and, enough of them, starve the queue. Dead-lettered instead, where operators
                // see it; should a real delete have come in between, the entry is a delete's now
                // and the dead letter does not apply to it (it is released below).
                orphans.push(entry);
                continue;
            }
            let item = match (deleted, t_version, t_user, t_deleted_at) {
                (true, Some(version), Some(user_id), Some(deleted_at)) => Item::Tombstone(Tombstone {
                    id,
                    version,
                    user_id,
                    workspace_id: t_ws,
                    deleted_at,
                    es_synced_at: None,
                }),
                // (A live entry without its row was taken care of above.)
                (false, ..) => match self.whole(job_row.as_deref().unwrap_or_default()).await {
                    // Only the version claimed: a job written since has released this claim
                    // (its own entry state, lease and retries belong to the new version).
                    Ok(Some(job)) if job.version == entry_version => Item::Job(job),
                    Ok(_) => {
                        raced.push(entry);
                        continue;
                    }
                    // A row this code cannot read (another writer stored a status or a type it
                    // does not know, or metadata that is not an object; a cut row whose pieces
                    // are too large for a response): retrying cannot help, and failing the claim
                    // would stop every run on this row. Dead-letter it with the reason; a later
                    // write requeues it.
                    Err(StoreError::Db(e))
                        if matches!(e, DbError::Decode(_) | DbError::Unreadable(_))
                            || e.sqlstate() == Some(crate::db::RESPONSE_TOO_LARGE) =>
                    {
                        unreadable.push(DeadLetter {
                            id,
                            kind: PendingKind::Upsert,
                            version: entry_version,
                            attempts: attempts.saturating_add(1),
                            error: format!("the row cannot be read: {e}"),
                        });
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                _ => {
                    raced.push(entry);
                    continue;
                }
            };
            let (version, kind) = match &item {
                Item::Job(j) => (j.version, PendingKind::Upsert),
                Item::Tombstone(t) => (t.version, PendingKind::Tombstone),
            };
            out.push(Claimed { pending: Pending { id, version, kind, attempts }, item });
        }
        let orphaned = orphans.len();
        if !orphans.is_empty() {
            let letters: Vec<DeadLetter> = orphans
                .iter()
                .map(|o| DeadLetter {
                    id: o.id,
                    kind: o.kind,
                    version: o.version,
                    attempts: o.attempts,
                    error: "the job row is gone and left no tombstone (TRUNCATE, or its triggers bypassed): \
                            `jobsctl verify --repair` removes it from search"
                        .to_owned(),
                })
                .collect();
            let gone = self.dead_letter(&letters).await?;
            tracing::warn!(count = gone.len(), "sync queue entries without a job row or a tombstone: dead-lettered");
            raced.extend(orphans.into_iter().filter(|o| !gone.contains(&o.id)));
        }
        if !raced.is_empty() {
            self.release(&raced).await?;
        }
        self.dead_letter(&unreadable).await?;
        Ok((out, unreadable.len() + orphaned))
    }

    /// Marks what was indexed, at exactly the indexed version. `es_sync_version` never moves
    /// backwards; a row written again meanwhile stays dirty. Returns the ids marked.
    pub async fn mark_synced(&self, marks: &[Mark]) -> Result<Vec<Uuid>> {
        let mut marked = Vec::with_capacity(marks.len());
        for (kind, statement) in
            [(PendingKind::Upsert, sql::MARK_JOBS_SYNCED), (PendingKind::Tombstone, sql::MARK_TOMBSTONES_SYNCED)]
        {
            let batch: Vec<Value> =
                marks.iter().filter(|m| m.kind == kind).map(|m| json!({"id": m.id, "v": m.version})).collect();
            if batch.is_empty() {
                continue;
            }
            let rows = self.query(statement, &[Param::Json(Value::Array(batch).to_string())]).await?;
            marked.extend(ids(&rows)?);
        }
        Ok(marked)
    }

    /// Records failed attempts (attempts, next attempt time, error) for entries still leased by
    /// this run. Returns the ids updated.
    pub async fn record_retries(&self, retries: &[Retry]) -> Result<Vec<Uuid>> {
        if retries.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<Value> = retries
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "deleted": r.kind == PendingKind::Tombstone,
                    "v": r.version,
                    "attempts": r.attempts,
                    "at": r.next_attempt_at.to_string(),
                    "error": truncate(&r.error),
                })
            })
            .collect();
        let rows = self.query(sql::RECORD_RETRY, &[Param::Json(Value::Array(batch).to_string())]).await?;
        ids(&rows)
    }

    /// Dead-letters entries (kept with their error until the row changes or an operator
    /// requeues them), each logged at warn. Returns the ids updated.
    pub async fn dead_letter(&self, dead: &[DeadLetter]) -> Result<Vec<Uuid>> {
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        for d in dead {
            tracing::warn!(id = %d.id, version = d.version, attempts = d.attempts, error = %d.error, "dead-lettered");
        }
        let batch: Vec<Value> = dead
            .iter()
            .map(|d| {
                json!({
                    "id": d.id,
                    "deleted": d.kind == PendingKind::Tombstone,
                    "v": d.version,
                    "attempts": d.attempts,
                    "error": truncate(&d.error),
                })
            })
            .collect();
        let rows = self.query(sql::DEAD_LETTER, &[Param::Json(Value::Array(batch).to_string())]).await?;
        ids(&rows)
    }

    /// Gives leased entries back without an outcome (a run that stops early).
    pub async fn release(&self, entries: &[Pending]) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let batch: Vec<Value> = entries
            .iter()
            .map(|e| json!({"id": e.id, "deleted": e.kind == PendingKind::Tombstone, "v": e.version}))
            .collect();
        self.execute(sql::RELEASE_CLAIMS, &[Param::Json(Value::Array(batch).to_string())]).await
    }

    /// Puts dead-lettered entries back in line: these ids, or all with `None`.
    pub async fn requeue_dead_letters(&self, ids: Option<&[Uuid]>) -> Result<Vec<Uuid>> {
        let param = ids.map_or(Param::Null, |ids| Param::Json(json!(ids).to_string()));
        let rows = self.query(sql::REQUEUE_DEAD_LETTERS, &[param]).await?;
        self::ids(&rows)
    }

    /// Up to `limit` dead-lettered entries, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLettered>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(sql::LIST_DEAD_LETTERS, &[Param::Int(limit)]).await?;
        rows.iter()
            .map(|row| {
                let mut c = Cols::new(row);
                Ok(DeadLettered {
                    id: c.uuid("job_id")?,
                    version: c.int("version")?,
                    deleted: c.bool("deleted")?,
                    attempts: c.int("attempts")?,
                    error: c.opt_text("last_error")?,
                    dead_lettered_at: c.ts("dead_lettered_at")?,
                })
            })
            .collect()
    }

    /// Dirty entries, dead-lettered entries and the age of the oldest waiting change.
    pub async fn sync_lag(&self) -> Result<SyncLag> {
        let rows = self.query(sql::SYNC_LAG, &[]).await?;
        let row = rows.first().ok_or_else(|| DbError::Decode("sync lag returned no row".into()))?;
        let mut c = Cols::new(row);
        Ok(SyncLag {
            dirty: c.int("dirty")?,
            dead_lettered: c.int("dead_lettered")?,
            oldest_dirty_since: c.opt_ts("oldest_dirty_since")?,
            oldest_age_ms: c.opt_int("oldest_age_ms")?,
        })
    }

    /// The queue entry of an id, if it is dirty.
    pub async fn queue_entry(&self, id: Uuid) -> Result<Option<QueueEntry>> {
        let rows = self.query(sql::SELECT_QUEUE_ENTRY, &[Param::Uuid(id)]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let mut c = Cols::new(row);
        Ok(Some(QueueEntry {
            version: c.int("version")?,
            deleted: c.bool("deleted")?,
            attempts: c.int("attempts")?,
            next_attempt_at: c.ts("next_attempt_at")?,
            last_error: c.opt_text("last_error")?,
            dead_lettered_at: c.opt_ts("dead_lettered_at")?,
            claimed_until: c.opt_ts("claimed_until")?,
            dirty_since: c.ts("dirty_since")?,
        }))
    }

    /// A job's sync columns.
    pub async fn sync_columns(&self, id: Uuid) -> Result<Option<SyncColumns>> {
        let rows = self.query(sql::SELECT_JOB_SYNC_STATE, &[Param::Uuid(id)]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let mut c = Cols::new(row);
        Ok(Some(SyncColumns {
            version: c.int("version")?,
            es_sync_version: c.int("es_sync_version")?,
            es_synced_at: c.opt_ts("es_synced_at")?,
        }))
    }

    pub async fn tombstone(&self, id: Uuid) -> Result<Option<Tombstone>> {
        let rows = self.query(sql::SELECT_TOMBSTONE, &[Param::Uuid(id)]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let mut c = Cols::new(row);
        Ok(Some(Tombstone {
            id,
            version: c.int("version")?,
            user_id: c.uuid("user_id")?,
            workspace_id: c.opt_uuid("workspace_id")?,
            deleted_at: c.ts("deleted_at")?,
            es_synced_at: c.opt_ts("es_synced_at")?,
        }))
    }

    /// Forgets tombstones synced longer ago than `older_than`. Returns how many.
    pub async fn purge_tombstones(&self, older_than: Duration) -> Result<u64> {
        self.execute(sql::PURGE_TOMBSTONES, &[millis(older_than)]).await
    }

    /// Puts back in line the entries dead-lettered within `window` of the database's now;
    /// returns how many.
    pub async fn requeue_recent_dead_letters(&self, window: Duration) -> Result<u64> {
        self.execute(sql::REQUEUE_RECENT_DEAD_LETTERS, &[millis(window)]).await
    }

    /// How many entries with an error that contains `needle` were dead-lettered within `window`
    /// of the database's now, or wait for a retry scheduled within it, and the first `examples`
    /// of them (at least one; id, error).
    pub async fn recent_dead_letters(
        &self,
        window: Duration,
        needle: &str,
        examples: usize,
    ) -> Result<(u64, Vec<(Uuid, String)>)> {
        let limit = Param::Int(i64::try_from(examples.max(1)).unwrap_or(i64::MAX));
        let params = [millis(window), Param::Text(needle.to_owned()), limit];
        let rows = self.query(sql::RECENT_DEAD_LETTERS, &params).await?;
        let mut total = 0;
        let mut listed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut c = Cols::new(row);
            listed.push((c.uuid("job_id")?, c.opt_text("last_error")?.unwrap_or_default()));
            total = u64::try_from(c.int("total")?).unwrap_or(0);
        }
        Ok((total, listed))
    }

    /// Queues again the deletes made within `window` of the database's now (their tombstones'
    /// `deleted_at`), synced or not; returns how many.
    pub async fn resend_recent_deletes(&self, window: Duration) -> Result<u64> {
        self.execute(sql::RESEND_RECENT_DELETES, &[millis(window)]).await
    }

    /// Re-derives missing queue entries from the sync columns (reads the whole table).
    pub async fn requeue_missing(&self) -> Result<u64> {
        self.execute(sql::REQUEUE_MISSING, &[]).await
    }
}

/// A duration as the whole milliseconds the statements' `$n::bigint * interval '1 millisecond'`
/// take.
fn millis(d: Duration) -> Param {
    Param::Int(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What Postgres says about an id's sync, for `verify`'s second look at a difference and the
/// API's `include=sync` ([`IdSyncState::sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSyncState {
    pub id: Uuid,
    /// The job's version; `None` when there is no such job.
    pub job_version: Option<i64>,
    /// The row's sync columns (`None` when there is no such job).
    pub es_sync_version: Option<i64>,
    pub es_synced_at: Option<Timestamp>,
    /// A change (dirty job or pending delete) is waiting for the sync.
    pub queued: bool,
    pub dead_lettered: bool,
    /// The job's user and workspace (`None` when there is no such job).
    pub owner: Option<(Uuid, Option<Uuid>)>,
}

impl IdSyncState {
    /// The job's state with search, by the core's dirty rule.
    pub fn sync(&self) -> JobSync {
        let row = self.job_version.map(|v| (v, self.es_sync_version.unwrap_or(0), self.es_synced_at));
        JobSync::of(row, self.dead_lettered)
    }
}

/// A document search holds for a job Postgres does not have (`verify`'s "extra").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraDoc {
    pub id: Uuid,
    /// The version search holds.
    pub version: i64,
    pub user_id: Uuid,
    pub workspace_id: Option<Uuid>,
}

// Backfill and drift checks: keyset scans in id order, and the repairs `verify` makes.
impl<E: Executor> Store<E> {
    /// Up to `limit` jobs after `after` (from the start with `None`), in id order.
    /// Read as [`Store::list`] reads: a page over the Data API's 1 MiB (a thousand jobs of
    /// 1 KB are about that) is read in two steps.
    /// The scan continues after [`Listed::last_id`] and ends when [`Listed::matched`] is under
    /// `limit` (the jobs returned can be fewer: one deleted while being read).
    pub async fn scan_jobs(&self, after: Option<Uuid>, limit: usize) -> Result<Listed> {
        let limit = Param::Int(i64::try_from(limit).unwrap_or(i64::MAX));
        match after {
            None => self.list_counted(sql::SCAN_JOBS_FIRST, &[limit]).await,
            Some(id) => self.list_counted(sql::SCAN_JOBS_AFTER, &[Param::Uuid(id), limit]).await,
        }
    }

    /// Up to `limit` (id, version) pairs after `after`, in id order.
    pub async fn scan_versions(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<(Uuid, i64)>> {
        let limit = Param::Int(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = match after {
            None => self.query(sql::SCAN_VERSIONS_FIRST, &[limit]).await?,
            Some(id) => self.query(sql::SCAN_VERSIONS_AFTER, &[Param::Uuid(id), limit]).await?,
        };
        rows.iter()
            .map(|r| {
                let mut c = Cols::new(r);
                Ok((c.uuid("id")?, c.int("version")?))
            })
            .collect()
    }

    pub async fn count_jobs(&self) -> Result<i64> {
        let rows = self.query(sql::COUNT_JOBS, &[]).await?;
        let row = rows.first().ok_or_else(|| DbError::Decode("count returned no row".into()))?;
        Ok(Cols::new(row).int("count")?)
    }

    /// The sync state of each id.
    pub async fn sync_state_of(&self, ids: &[Uuid]) -> Result<Vec<IdSyncState>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.query(sql::SYNC_STATE_OF, &[Param::Json(json!(ids).to_string())]).await?;
        rows.iter()
            .map(|r| {
                let mut c = Cols::new(r);
                Ok(IdSyncState {
                    id: c.uuid("id")?,
                    job_version: c.opt_int("version")?,
                    es_sync_version: c.opt_int("es_sync_version")?,
                    es_synced_at: c.opt_ts("es_synced_at")?,
                    queued: c.bool("queued")?,
                    dead_lettered: c.bool("dead_lettered")?,
                    owner: match (c.opt_uuid("user_id")?, c.opt_uuid("workspace_id")?) {
                        (Some(user), workspace) => Some((user, workspace)),
                        (None, _) => None,
                    },
                })
            })
            .collect()
    }

    /// Where each of these jobs stands with search (`GET /v1/jobs?include=sync`): the
    /// [`Store::sync_state_of`] statement, read by the core's rule; a job Postgres does not have
    /// is [`SyncState::Deleted`](jobs_core::sync::SyncState), and so is one outside `scope` (the
    /// caller's job was deleted and its id created again by someone else, whose row this is).
    pub async fn sync_of(&self, scope: &Scope, ids: &[Uuid]) -> Result<Vec<(Uuid, JobSync)>> {
        let states = self.sync_state_of(ids).await?;
        Ok(states
            .into_iter()
            .map(|s| match s.owner {
                Some((user, workspace)) if !scope.owns(user, workspace) => (s.id, JobSync::of(None, false)),
                _ => (s.id, s.sync()),
            })
            .collect())
    }

    /// Makes these jobs dirty again (and puts dead-lettered ones back in line) so the next sync
    /// re-sends them. Returns the ids queued.
    pub async fn resync_jobs(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.query(sql::RESYNC_JOBS, &[Param::Json(json!(ids).to_string())]).await?;
        let mut queued = self::ids(&rows)?;
        for id in self.requeue_dead_letters(Some(ids)).await? {
            if !queued.contains(&id) {
                queued.push(id);
            }
        }
        Ok(queued)
    }

    /// Queues deletes for documents search holds but Postgres does not. Returns the ids queued.
    pub async fn resync_deletes(&self, docs: &[ExtraDoc]) -> Result<Vec<Uuid>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<Value> = docs
            .iter()
            .map(|d| json!({"id": d.id, "v": d.version, "user_id": d.user_id, "workspace_id": d.workspace_id}))
            .collect();
        let rows = self.query(sql::RESYNC_DELETES, &[Param::Json(Value::Array(batch).to_string())]).await?;
        let mut queued = ids(&rows)?;
        let ids: Vec<Uuid> = docs.iter().map(|d| d.id).collect();
        for id in self.requeue_dead_letters(Some(&ids)).await? {
            if !queued.contains(&id) {
                queued.push(id);
            }
        }
        Ok(queued)
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn opt_text(v: Option<&str>) -> Param {
    v.map_or(Param::Null, |s| Param::Text(s.to_owned()))
}

fn opt_uuid(v: Option<Uuid>) -> Param {
    v.map_or(Param::Null, Param::Uuid)
}

fn json_param(map: &Object) -> Param {
    // Serialising a map of JSON values cannot fail (keys are strings).
    Param::Json(serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned()))
}

fn ids(rows: &[Row]) -> Result<Vec<Uuid>> {
    rows.iter().map(|r| Cols::new(r).uuid("id")).collect::<Result<_, _>>().map_err(Into::into)
}

/// Jobs as a listing statement read them ([`Store::list_counted`]).
#[derive(Debug, Default)]
pub struct Listed {
    /// The jobs, in the statement's order (those deleted while being read, and those that
    /// cannot be read, left out).
    pub jobs: Vec<Job>,
    /// How many rows the statement matched.
    pub matched: usize,
    /// The id of the last of them.
    pub last_id: Option<Uuid>,
    /// The rows left out because this code cannot read them.
    pub unreadable: Vec<Unreadable>,
}

/// A job row this code cannot read, and why.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub id: Uuid,
    pub reason: String,
}

/// Rows being read for a listing.
#[derive(Default)]
struct Read {
    jobs: Vec<Job>,
    unreadable: Vec<Unreadable>,
}

impl Read {
    /// The outcome of reading the row of `key`: a job, gone (deleted while read in parts), or
    /// unreadable (another writer's data, kept aside); other errors (ours, the driver's) end the
    /// listing.
    fn push(&mut self, key: (Uuid, i64), read: Result<Option<Job>>) -> Result<()> {
        match read {
            Ok(Some(job)) => self.jobs.push(job),
            Ok(None) => {}
            Err(StoreError::Db(DbError::Unreadable(reason))) => self.unreadable.push(Unreadable { id: key.0, reason }),
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// The (id, version) of a row of [`sql::JOB_COLUMNS`], read apart from the rest (which may be
/// what cannot be read).
fn key_of(row: &[Cell]) -> Option<(Uuid, i64)> {
    if row.len() < sql::JOB_COLUMN_COUNT {
        return None;
    }
    let id = Cols::new(row).uuid("id").ok()?;
    let version = Cols { row, at: sql::JOB_COLUMN_COUNT - 1 }.int("version").ok()?;
    Some((id, version))
}

fn short_row() -> DbError {
    DbError::Decode("a job row without its id and version".into())
}

/// A job as one row of [`sql::JOB_COLUMNS`] holds it: whole, or cut to fit an RDS Data API row
/// (`cut`: its error message and metadata were not read; [`Store::complete`] reads them).
struct Head {
    job: Job,
    cut: bool,
}

/// Reads a whole job from cells in [`sql::JOB_COLUMNS`] order (a cut row is an error: see
/// [`Store::complete`]).
pub fn read_job(row: &[Cell]) -> Result<Job, DbError> {
    let head = read_head(row)?;
    if head.cut {
        return Err(DbError::Decode(format!("job {}: its row was cut to fit a response", head.job.id)));
    }
    Ok(head.job)
}

fn read_head(row: &[Cell]) -> Result<Head, DbError> {
    if row.len() < sql::JOB_COLUMN_COUNT {
        return Err(DbError::Decode(format!("a job row needs {} columns, got {}", sql::JOB_COLUMN_COUNT, row.len())));
    }
    let mut c = Cols::new(row);
    let id = c.uuid("id")?;
    let workspace_id = c.opt_uuid("workspace_id")?;
    let user_id = c.uuid("user_id")?;
    let status = c.text("status")?;
    let status = JobStatus::parse(&status).ok_or_else(|| DbError::Unreadable(format!("unknown status {status:?}")))?;
    let job_type = c.text("type")?;
    let job_type =
        JobType::parse(&job_type).ok_or_else(|| DbError::Unreadable(format!("unknown type {job_type:?}")))?;
    let (project_name, hostname, arch, user_email) =
        (c.text("project_name")?, c.opt_text("hostname")?, c.opt_text("arch")?, c.opt_text("user_email")?);
    let error_message = c.opt_text("error_message")?;
    // The metadata column is NULL only in a cut row (it is NOT NULL in the table).
    let metadata = c.opt_text("metadata")?;
    let cut = metadata.is_none();
    let metadata = match metadata {
        Some(text) => parse_metadata(&text)?,
        None => Object::new(),
    };
    let job = Job {
        id,
        workspace_id,
        user_id,
        status,
        job_type,
        project_name,
        hostname,
        arch,
        user_email,
        error_message,
        metadata,
        created_at: job_ts(&mut c, "created_at")?.ok_or_else(|| infinite("created_at"))?,
        updated_at: job_ts(&mut c, "updated_at")?.ok_or_else(|| infinite("updated_at"))?,
        completed_at: job_ts(&mut c, "completed_at")?,
        version: c.int("version")?,
    };
    Ok(Head { job, cut })
}

/// A job's timestamp as [`sql::JOB_COLUMNS`] writes it. One that is not a time this code holds
/// is another writer's (a year past 9999): the row is unreadable, not the listing.
fn job_ts(c: &mut Cols<'_>, name: &str) -> Result<Option<Timestamp>, DbError> {
    c.opt_text(name)?
        .map(|s| {
            Timestamp::parse(&s).ok_or_else(|| DbError::Unreadable(format!("column {name}: {s:?} is out of range")))
        })
        .transpose()
}

/// A NULL in a NOT NULL timestamp column: `to_char` writes `infinity` so.
fn infinite(name: &str) -> DbError {
    DbError::Unreadable(format!("column {name}: infinite"))
}

fn parse_metadata(text: &str) -> Result<Object, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::Unreadable(format!("column metadata: {e}")))
}

/// Reads cells left to right, naming the column in errors.
struct Cols<'a> {
    row: &'a [Cell],
    at: usize,
}

impl<'a> Cols<'a> {
    fn new(row: &'a [Cell]) -> Cols<'a> {
        Cols { row, at: 0 }
    }

    fn next(&mut self, name: &str) -> Result<&'a Cell, DbError> {
        let cell = self.row.get(self.at).ok_or_else(|| DbError::Decode(format!("missing column {name}")))?;
        self.at += 1;
        Ok(cell)
    }

    fn bad(name: &str, want: &str, got: &Cell) -> DbError {
        DbError::Decode(format!("column {name}: expected {want}, got {got:?}"))
    }

    fn opt_text(&mut self, name: &str) -> Result<Option<String>, DbError> {
        match self.next(name)? {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s.clone())),
            other => Err(Self::bad(name, "text", other)),
        }
    }

    fn text(&mut self, name: &str) -> Result<String, DbError> {
        self.opt_text(name)?.ok_or_else(|| DbError::Decode(format!("column {name} is NULL")))
    }

    fn opt_uuid(&mut self, name: &str) -> Result<Option<Uuid>, DbError> {
        self.opt_text(name)?
            .map(|s| Uuid::parse_str(&s).map_err(|e| DbError::Decode(format!("column {name}: {e}"))))
            .transpose()
    }

    fn uuid(&mut self, name: &str) -> Result<Uuid, DbError> {
        self.opt_uuid(name)?.ok_or_else(|| DbError::Decode(format!("column {name} is NULL")))
    }

    fn opt_int(&mut self, name: &str) -> Result<Option<i64>, DbError> {
        match self.next(name)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            // The Data API may return numbers as text when results are formatted as JSON.
            Cell::Text(s) => s.parse().map(Some).map_err(|_| Self::bad(name, "an integer", &Cell::Text(s.clone()))),
            other => Err(Self::bad(name, "an integer", other)),
        }
    }

    fn int(&mut self, name: &str) -> Result<i64, DbError> {
        self.opt_int(name)?.ok_or_else(|| DbError::Decode(format!("column {name} is NULL")))
    }

    fn bool(&mut self, name: &str) -> Result<bool, DbError> {
        match self.next(name)? {
            Cell::Bool(b) => Ok(*b),
            other => Err(Self::bad(name, "a boolean", other)),
        }
    }

    fn opt_ts(&mut self, name: &str) -> Result<Option<Timestamp>, DbError> {
        self.opt_text(name)?
            .map(|s| Timestamp::parse(&s).ok_or_else(|| DbError::Decode(format!("column {name}: bad timestamp {s:?}"))))
            .transpose()
    }

    fn ts(&mut self, name: &str) -> Result<Timestamp, DbError> {
        self.opt_ts(name)?.ok_or_else(|| DbError::Decode(format!("column {name} is NULL")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_row() -> Vec<Cell> {
        let t = |s: &str| Cell::Text(s.to_owned());
        vec![
            t("00000000-0000-0000-0000-000000000001"),
            Cell::Null,
            t("00000000-0000-0000-0000-000000000002"),
            t("RUNNING"),
            t("BUILD"),
            t("p"),
            Cell::Null,
            t("arm64"),
            Cell::Null,
            Cell::Null,
            t(r#"{"a":[1,{"b":"ü"}]}"#),
            t("2024-01-02T03:04:05.123456Z"),
            t("2024-01-02T03:04:05.123457Z"),
            Cell::Null,
            Cell::Int(3),
        ]
    }

    #[test]
    fn reads_a_job_row() {
        let job = read_job(&job_row());
        let job = job.as_ref().map_err(ToString::to_string);
        assert_eq!(
            job.clone().map(|j| (j.status, j.version, j.arch.as_deref())),
            Ok((JobStatus::Running, 3, Some("arm64")))
        );
        assert_eq!(job.map(|j| j.updated_at.to_string()), Ok("2024-01-02T03:04:05.123457Z".to_owned()));
    }

    #[test]
    fn rejects_bad_rows_with_the_column_name() {
        for (i, cell, needle) in [
            (0, Cell::Text("nope".into()), "column id"),
            (3, Cell::Text("SLEEPING".into()), "unknown status"),
            (10, Cell::Text("[1]".into()), "column metadata"),
            (11, Cell::Text("2024-01-02 03:04:05".into()), "column created_at"),
            (14, Cell::Bool(true), "column version"),
            (2, Cell::Null, "column user_id is NULL"),
        ] {
            let mut row = job_row();
            row[i] = cell;
            let err = read_job(&row).map(|_| ()).map_err(|e| e.to_string());
            assert!(err.as_ref().is_err_and(|e| e.contains(needle)), "{needle}: {err:?}");
        }
        assert!(read_job(&job_row()[..14]).is_err());
    }

    #[test]
    fn a_cut_row_is_told_apart() {
        let mut row = job_row();
        row[10] = Cell::Null;
        let head = read_head(&row).map_err(|e| e.to_string());
        assert_eq!(head.as_ref().map(|h| (h.cut, h.job.metadata.len())), Ok((true, 0)));
        let err = read_job(&row).map(|_| ()).map_err(|e| e.to_string());
        assert!(err.as_ref().is_err_and(|e| e.contains("cut")), "{err:?}");
        assert_eq!(read_head(&job_row()).map(|h| h.cut).ok(), Some(false));
    }

    #[test]
    fn truncates_errors_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_CHARS + 10);
        assert_eq!(truncate(&long).chars().count(), MAX_ERROR_CHARS);
        assert_eq!(truncate("short"), "short");
    }
}
