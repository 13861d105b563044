//! The SQL text the store runs, in one place, and the parameter values it binds.
//!
//! Statements use positional `$n` placeholders (tokio-postgres); the RDS Data API driver rewrites
//! them to named `:pN` parameters. Values are never spliced into SQL text.
//!
//! Conventions, so that both drivers read back the same plain values:
//! - every placeholder carries an explicit cast (`$1::uuid`), so its type never depends on
//!   inference or on a driver's type hint;
//! - ids are selected as `::text`, JSONB as `::text`, timestamps as UTC text with six fraction
//!   digits (`2024-01-02T03:04:05.123456Z`, what [`crate::time::Timestamp`] parses and prints);
//! - lists (workspace ids, batches of sync outcomes) are bound as one JSON parameter and unpacked
//!   in SQL (`jsonb_array_elements_text`, `jsonb_to_recordset`): the Data API has no array
//!   parameters, and one statement per batch keeps round trips constant;
//! - job rows are read through [`JOB_COLUMNS`] from `job j`, in [`crate::spec::JOB_FIELDS`] order.
//!
//! The sync bookkeeping these statements rely on (the `job_sync_queue` kept by triggers, the
//! tombstones) is described in `migrations/V1__init.sql` and `docs/sync-storage.md`.

use serde::{Deserialize, Serialize};

/// A bound parameter. Each variant maps to one Postgres type and one Data API type hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Canonical lowercase UUID text; bound as `uuid` (Data API hint UUID).
    Uuid(uuid::Uuid),
    /// Microseconds since the Unix epoch, UTC; bound as `timestamptz` (Data API hint TIMESTAMP).
    Timestamp(i64),
    /// JSON text; bound as `jsonb` (Data API hint JSON).
    Json(String),
}

/// A `TIMESTAMPTZ` expression as UTC text with microseconds; `NULL` stays `NULL`. Takes
/// string literals (or macros expanding to them) that are concatenated into the expression.
#[macro_export]
macro_rules! sql_utc {
    ($($e:expr),+) => {
        concat!("to_char(", $($e,)+ " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    };
}

/// Whether a job's error message fits its row: up to [`INLINE_ERROR_BYTES`] (see
/// [`sql_job_fits!`]). 12 KB keeps most stack traces inline: a cut row costs one more statement.
#[macro_export]
macro_rules! sql_error_fits {
    ($p:literal) => {
        concat!("coalesce(octet_length(", $p, "error_message), 0) <= 12288")
    };
}

/// Whether a job row's wide columns fit one RDS Data API row, which may hold at most 64 KB
/// (larger rows fail the whole statement): the error message up to [`INLINE_ERROR_BYTES`] and
/// the metadata's text up to [`INLINE_METADATA_BYTES`] (38.5 KB at most with the other
/// columns: room left, should the service count its JSON escaping too). A row that does not fit
/// is read with its metadata NULL (never NULL otherwise; the error message too when it is the
/// long one) and completed by [`SELECT_JOB_PIECES`]. The test costs one more conversion of the
/// metadata to text per row (~0.2 µs for a small object).
#[macro_export]
macro_rules! sql_job_fits {
    ($p:literal) => {
        concat!("(", $crate::sql_error_fits!($p), " AND octet_length(", $p, "metadata::text) <= 24576)")
    };
}

/// The error message bytes a job row carries inline (see [`sql_job_fits!`]).
pub const INLINE_ERROR_BYTES: usize = 12288;

/// The metadata text bytes a job row carries inline (see [`sql_job_fits!`]).
pub const INLINE_METADATA_BYTES: usize = 24576;

/// The job columns as the store reads them (the order of [`crate::spec::JOB_FIELDS`]), each
/// qualified with the given prefix (`"j."`, or `""` for a single-table query). A macro so
/// statements can be built with `concat!`. A row too wide for the RDS Data API reads its error
/// message and metadata as NULL ([`sql_job_fits!`]); the store reads them again in pieces.
#[macro_export]
macro_rules! sql_job_columns {
    () => {
        $crate::sql_job_columns!("j.")
    };
    ($p:literal) => {
        concat!(
            $p,
            "id::text, ",
            $p,
            "workspace_id::text, ",
            $p,
            "user_id::text, ",
            $p,
            "status, ",
            $p,
            "type, ",
            $p,
            "project_name, ",
            $p,
            "hostname, ",
            $p,
            "arch, ",
            $p,
            "user_email, ",
            "CASE WHEN ",
            $crate::sql_error_fits!($p),
            " THEN ",
            $p,
            "error_message END, ",
            "CASE WHEN ",
            $crate::sql_job_fits!($p),
            " THEN ",
            $p,
            "metadata::text END, ",
            $crate::sql_utc!($p, "created_at"),
            ", ",
            $crate::sql_utc!($p, "updated_at"),
            ", ",
            $crate::sql_utc!($p, "completed_at"),
            ", ",
            $p,
            "version"
        )
    };
}

/// The select list of statements returning jobs, over `job j`.
pub const JOB_COLUMNS: &str = sql_job_columns!();

/// The same select list unqualified, for single-table queries over `job`: the core's search
/// fallback is rendered as `query.to_sql(scope, JOB_SELECT)` (`SELECT {JOB_SELECT} FROM job
/// WHERE ...`) and read by the store's `list`.
pub const JOB_SELECT: &str = sql_job_columns!("");

/// `$1` JSON array of ids -> those jobs (in no particular order; ids without a row are left
/// out), by primary key: for reading in parts what is too large for one response.
pub const SELECT_JOBS_BY_IDS: &str = concat!(
    "SELECT ",
    sql_job_columns!(),
    " FROM job j WHERE j.id = ANY (ARRAY(SELECT s.x::uuid FROM jsonb_array_elements_text($1::jsonb) AS s(x)))"
);

/// How many columns [`JOB_COLUMNS`] selects.
pub const JOB_COLUMN_COUNT: usize = 15;

/// The characters of one piece in [`SELECT_JOB_PIECES`]: at most 16 KB of UTF-8, escaped at
/// most twice that as JSON, beside a cut row's other columns.
pub const PIECE_CHARS: usize = 4096;

/// The pieces one [`SELECT_JOB_PIECES`] statement may return: 24 of at most 32 KB each, and
/// their rows' other columns, within the RDS Data API's 1 MiB response. A usual cut row (an
/// error message of up to 65,536 characters, metadata of 32 KiB) is read in one statement.
pub const PIECES_PER_STATEMENT: usize = 24;

/// `$1` id, `$2..$3` and `$4..$5` the ranges of characters (1-based, the end excluded) of the
/// error message and of the metadata's text to read -> the job as [`JOB_COLUMNS`] reads it
/// (possibly cut), then `field` (1: the error message, 2: the metadata's text), the piece's
/// start, the piece, and the lengths of the error message (NULL when it is) and of the
/// metadata's text. Each piece starts at `1 + k * PIECE_CHARS`; the error message always has a
/// piece at 1, NULL when it is, and the metadata one too. A job read in several statements is
/// one state of the row when every statement shows the same version (every write bumps it).
/// PostgreSQL writes a jsonb number's exact decimal: 32 KiB of metadata (`1e308` repeated) can
/// be 1.4 MB as text, which takes several statements.
pub const SELECT_JOB_PIECES: &str = concat!(
    "SELECT ",
    sql_job_columns!(),
    ", p.field, p.at, p.piece, t.le, t.lm FROM job j CROSS JOIN LATERAL (",
    // OFFSET 0: the metadata's text made once per statement, not once per piece.
    "SELECT x.e, length(x.e) AS le, x.m, length(x.m) AS lm ",
    "FROM (SELECT j.error_message AS e, j.metadata::text AS m OFFSET 0) x) t CROSS JOIN LATERAL (",
    "SELECT 1 AS field, s.at, substr(t.e, s.at, 4096) AS piece ",
    "FROM generate_series($2::int, least(greatest(t.le, 1), $3::int - 1), 4096) AS s(at) ",
    "UNION ALL ",
    "SELECT 2, s.at, substr(t.m, s.at, 4096) ",
    "FROM generate_series($4::int, least(greatest(t.lm, 1), $5::int - 1), 4096) AS s(at)",
    ") p WHERE j.id = $1::uuid ORDER BY p.field, p.at"
);

/// The tenancy predicate over `job j`: the caller's own jobs and their workspaces' jobs.
/// `$u` is the user id, `$w` a JSON array of workspace ids.
macro_rules! scoped {
    ($u:literal, $w:literal) => {
        concat!(
            "(j.user_id = $",
            $u,
            "::uuid OR j.workspace_id IN (SELECT w::uuid FROM jsonb_array_elements_text($",
            $w,
            "::jsonb) AS s(w)))"
        )
    };
}

// ---------------------------------------------------------------------------------------------
// Identity and tenancy

/// `$1` user id, `$2` email (may be NULL). Writes only when the email changed, so the common
/// case (a known user) leaves no dead tuple.
pub const UPSERT_USER: &str = "INSERT INTO users (id, email) VALUES ($1::uuid, $2::text) \
     ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email \
     WHERE users.email IS DISTINCT FROM EXCLUDED.email";

/// `$1` workspace id, `$2` name.
pub const UPSERT_WORKSPACE: &str = "INSERT INTO workspace (id, name) VALUES ($1::uuid, $2::text) \
     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name \
     WHERE workspace.name IS DISTINCT FROM EXCLUDED.name";

/// `$1` workspace id, `$2` user id.
pub const UPSERT_MEMBER: &str = "INSERT INTO workspace_member (workspace_id, user_id) \
     VALUES ($1::uuid, $2::uuid) ON CONFLICT DO NOTHING";

/// `$1` JSON array of workspace ids, sorted (concurrent callers insert in the same order): each
/// created, named by its id, unless it exists (an existing workspace keeps its name).
pub const ENSURE_WORKSPACES: &str = "INSERT INTO workspace (id, name) \
     SELECT s.w::uuid, s.w FROM jsonb_array_elements_text($1::jsonb) AS s(w) ON CONFLICT (id) DO NOTHING";

/// `$1` JSON array of workspace ids, sorted, `$2` user id: the user a member of each.
pub const ENSURE_MEMBERSHIPS: &str = "INSERT INTO workspace_member (workspace_id, user_id) \
     SELECT s.w::uuid, $2::uuid FROM jsonb_array_elements_text($1::jsonb) AS s(w) ON CONFLICT DO NOTHING";

/// `$1` user id -> workspace ids (text), ordered.
pub const SELECT_MEMBER_WORKSPACES: &str = "SELECT workspace_id::text FROM workspace_member \
     WHERE user_id = $1::uuid ORDER BY workspace_id";

// ---------------------------------------------------------------------------------------------
// Jobs

/// `$1` id, `$2` workspace id, `$3` user id, `$4` status, `$5` type, `$6` project name,
/// `$7` hostname, `$8` arch, `$9` metadata (JSON) -> the job. `user_email` is copied from
/// `users` at insert time; created_at = updated_at = the database's `now()`.
pub const INSERT_JOB: &str = concat!(
    "INSERT INTO job AS j (id, workspace_id, user_id, status, type, project_name, hostname, arch, ",
    "user_email, metadata, created_at, updated_at, version) ",
    "VALUES ($1::uuid, $2::uuid, $3::uuid, $4::text, $5::text, $6::text, $7::text, $8::text, ",
    "(SELECT u.email FROM users u WHERE u.id = $3::uuid), $9::jsonb, now(), now(), 0) ",
    "RETURNING ",
    sql_job_columns!()
);

/// `$1` id, `$2` user id, `$3` workspace ids (JSON array) -> the job if the caller may see it.
pub const SELECT_JOB_SCOPED: &str =
    concat!("SELECT ", sql_job_columns!(), " FROM job j WHERE j.id = $1::uuid AND ", scoped!("2", "3"));

/// `$1` id -> the job, whoever owns it (sync, operators, tests).
pub const SELECT_JOB: &str = concat!("SELECT ", sql_job_columns!(), " FROM job j WHERE j.id = $1::uuid");

/// Optimistic update. `$1` id, `$2` expected version, `$3` user id, `$4` workspace ids (JSON),
/// `$5` status, `$6` error message, `$7` hostname, `$8` arch, `$9` metadata (JSON),
/// `$10` completed_at -> the job at version + 1, or no row (not found, not visible, or a newer
/// version: the store tells them apart by reading the row).
pub const UPDATE_JOB: &str = concat!(
    "UPDATE job j SET status = $5::text, error_message = $6::text, hostname = $7::text, ",
    "arch = $8::text, metadata = $9::jsonb, completed_at = $10::timestamptz, ",
    "version = j.version + 1, updated_at = greatest(now(), j.created_at) ",
    "WHERE j.id = $1::uuid AND j.version = $2::bigint AND ",
    scoped!("3", "4"),
    " RETURNING ",
    sql_job_columns!()
);

/// `$1` id, `$2` user id, `$3` workspace ids (JSON), `$4` expected version or NULL -> the
/// deleted id and version. The tombstone is written by trigger in the same transaction.
pub const DELETE_JOB: &str = concat!(
    "DELETE FROM job j WHERE j.id = $1::uuid AND ($4::bigint IS NULL OR j.version = $4::bigint) ",
    "AND ",
    scoped!("2", "3"),
    " RETURNING j.id::text, j.version"
);

// ---------------------------------------------------------------------------------------------
// Sync bookkeeping

/// Claims up to `$1` due entries of the sync queue for `$2` milliseconds (a lease): skips
/// dead-lettered entries, entries waiting for a retry and entries leased by another run, and
/// rows another claim is locking right now (`SKIP LOCKED`), in queue order
/// (`next_attempt_at, job_id`, served by `idx_job_sync_queue_due`; the lease is written through
/// the primary key: `= ANY (ARRAY(...))` keeps the planner from hashing the whole queue). One
/// statement, no transaction to hold open while the search engine is called.
///
/// Columns: 0 job id, 1 deleted, 2 attempts, 3 tombstone version, 4 tombstone user id,
/// 5 tombstone workspace id, 6 tombstone deleted_at, 7 the entry's version. The jobs
/// themselves are read next, by id ([`SELECT_JOBS_BY_IDS`]), in responses the
/// RDS Data API can return (1 MiB): a thousand ordinary jobs are about that already, and the
/// leases taken here would be held for nothing were this statement's answer refused.
pub const CLAIM_DIRTY: &str = concat!(
    "WITH due AS (",
    "SELECT q.job_id FROM job_sync_queue q ",
    "WHERE q.dead_lettered_at IS NULL AND q.next_attempt_at <= now() ",
    "AND (q.claimed_until IS NULL OR q.claimed_until <= now()) ",
    "ORDER BY q.next_attempt_at, q.job_id LIMIT $1::bigint FOR UPDATE SKIP LOCKED), ",
    "claimed AS (",
    "UPDATE job_sync_queue q SET claimed_until = now() + $2::bigint * interval '1 millisecond' ",
    "WHERE q.job_id = ANY (ARRAY(SELECT due.job_id FROM due)) ",
    "RETURNING q.job_id, q.deleted, q.attempts, q.next_attempt_at, q.version) ",
    "SELECT c.job_id::text, c.deleted, c.attempts, t.version, t.user_id::text, ",
    "t.workspace_id::text, ",
    sql_utc!("t.deleted_at"),
    ", c.version",
    " FROM claimed c ",
    // LATERAL with LIMIT (which the planner cannot flatten into a join): one primary-key probe
    // per claimed entry, whatever it thinks of a small tombstone table (a hash join over all of
    // it was its choice now and then).
    "LEFT JOIN LATERAL (SELECT t.version, t.user_id, t.workspace_id, t.deleted_at FROM job_tombstone t ",
    "WHERE t.id = c.job_id AND c.deleted LIMIT 1) t ON true ",
    "ORDER BY c.next_attempt_at, c.job_id"
);

/// Marks jobs synced at the version that was indexed. `$1` JSON `[{"id": uuid, "v": version}]`
/// -> the ids marked. `es_sync_version` never moves backwards, and never beyond the row's
/// version; the first mark of a new row may equal its version (both start at 0). The trigger
/// drops the queue entry when the row is clean, or keeps it (lease released) when a newer
/// version was written meanwhile. The update is HOT: no index mentions a sync column.
pub const MARK_JOBS_SYNCED: &str = "UPDATE job j SET es_sync_version = x.v, es_synced_at = now() \
     FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, v bigint) \
     WHERE j.id = x.id AND x.v <= j.version \
     AND (j.es_sync_version < x.v OR (j.es_synced_at IS NULL AND j.es_sync_version <= x.v)) \
     RETURNING j.id::text";

/// Marks tombstones synced (the delete reached search). `$1` JSON `[{"id": uuid, "v": version}]`
/// -> the ids marked. A newer delete of the same id (re-created and deleted again) stays dirty.
pub const MARK_TOMBSTONES_SYNCED: &str = "UPDATE job_tombstone t SET es_synced_at = now() \
     FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, v bigint) \
     WHERE t.id = x.id AND t.version <= x.v AND t.es_synced_at IS NULL \
     RETURNING t.id::text";

/// Schedules another attempt. `$1` JSON `[{"id": uuid, "deleted": bool, "v": version,
/// "attempts": n, "at": timestamptz text, "error": text}]` -> the ids updated. Applies only
/// while a lease is held on the version that was sent: a newer version (or a delete) releases
/// the lease and resets the retry state, and a stale outcome must not overwrite that, nor take
/// over the lease of a newer claim of the new version.
pub const RECORD_RETRY: &str = "UPDATE job_sync_queue q SET attempts = x.attempts, \
     next_attempt_at = x.at, last_error = x.error, claimed_until = NULL \
     FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, deleted boolean, v bigint, attempts integer, \
     at timestamptz, error text) \
     WHERE q.job_id = x.id AND q.deleted = x.deleted AND q.version = x.v AND q.claimed_until IS NOT NULL \
     RETURNING q.job_id::text";

/// Gives up on an entry until its row changes again (or an operator requeues it). `$1` JSON
/// `[{"id": uuid, "deleted": bool, "v": version, "attempts": n, "error": text}]` -> the ids
/// dead-lettered. Only for the version that failed.
pub const DEAD_LETTER: &str = "UPDATE job_sync_queue q SET attempts = x.attempts, \
     dead_lettered_at = now(), last_error = x.error, claimed_until = NULL \
     FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, deleted boolean, v bigint, attempts integer, \
     error text) \
     WHERE q.job_id = x.id AND q.deleted = x.deleted AND q.version = x.v \
     RETURNING q.job_id::text";

/// Gives leased entries back without an outcome. `$1` JSON `[{"id": uuid, "deleted": bool,
/// "v": version}]`: only while the entry is still the one claimed (a newer version released
/// that lease itself, and may be another run's claim now).
pub const RELEASE_CLAIMS: &str = "UPDATE job_sync_queue q SET claimed_until = NULL \
     FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, deleted boolean, v bigint) \
     WHERE q.job_id = x.id AND q.deleted = x.deleted AND q.version = x.v AND q.claimed_until IS NOT NULL";

/// Puts dead-lettered entries back in line (an operator's retry). `$1` JSON array of ids, or
/// NULL for all -> the ids requeued.
pub const REQUEUE_DEAD_LETTERS: &str = "UPDATE job_sync_queue q SET dead_lettered_at = NULL, \
     attempts = 0, next_attempt_at = now(), claimed_until = NULL \
     WHERE q.dead_lettered_at IS NOT NULL AND ($1::jsonb IS NULL \
     OR q.job_id IN (SELECT i::uuid FROM jsonb_array_elements_text($1::jsonb) AS s(i))) \
     RETURNING q.job_id::text";

/// Puts back in line the entries dead-lettered in the last `$1` milliseconds (database clock):
/// a failed reindex's, refused by its new index only. -> how many.
pub const REQUEUE_RECENT_DEAD_LETTERS: &str = "UPDATE job_sync_queue q SET dead_lettered_at = NULL, \
     attempts = 0, next_attempt_at = now(), claimed_until = NULL \
     WHERE q.dead_lettered_at >= now() - $1::bigint * interval '1 millisecond'";

/// The entries whose error contains `$2` and that were dead-lettered within `$1` milliseconds
/// of now, or wait for a retry scheduled within them (refused, not yet dead-lettered), oldest
/// first, at most `$3`: 0 id, 1 last_error, 2 how many match in all (a reindex's check before
/// its swap for what the new index refused).
pub const RECENT_DEAD_LETTERS: &str = "SELECT q.job_id::text, q.last_error, count(*) OVER () AS total \
     FROM job_sync_queue q WHERE position($2::text in coalesce(q.last_error, '')) > 0 \
     AND (q.dead_lettered_at >= now() - $1::bigint * interval '1 millisecond' \
     OR (q.dead_lettered_at IS NULL AND q.attempts > 0 \
     AND q.next_attempt_at >= now() - $1::bigint * interval '1 millisecond')) \
     ORDER BY coalesce(q.dead_lettered_at, q.next_attempt_at), q.job_id LIMIT $3::bigint";

/// Dead-lettered entries, oldest first (operators: `jobsctl dead-letters`). `$1` limit ->
/// 0 id, 1 version, 2 deleted, 3 attempts, 4 last_error, 5 dead_lettered_at (UTC text).
pub const LIST_DEAD_LETTERS: &str = concat!(
    "SELECT q.job_id::text, q.version, q.deleted, q.attempts, q.last_error, ",
    sql_utc!("q.dead_lettered_at"),
    " FROM job_sync_queue q WHERE q.dead_lettered_at IS NOT NULL ",
    "ORDER BY q.dead_lettered_at, q.job_id LIMIT $1::bigint"
);

/// The sync lag: 0 dirty entries waiting (not dead-lettered), 1 dead-lettered entries,
/// 2 the oldest waiting change (`dirty_since`, UTC text), 3 its age in milliseconds.
/// Reads only the queue: O(dirty rows).
pub const SYNC_LAG: &str = concat!(
    "SELECT count(*) FILTER (WHERE dead_lettered_at IS NULL), ",
    "count(*) FILTER (WHERE dead_lettered_at IS NOT NULL), ",
    sql_utc!("min(dirty_since) FILTER (WHERE dead_lettered_at IS NULL)"),
    ", (extract(epoch FROM now() - min(dirty_since) FILTER (WHERE dead_lettered_at IS NULL)) ",
    "* 1000)::bigint FROM job_sync_queue"
);

/// The sync state of one entry (operators, tests). `$1` id -> 0 version, 1 deleted,
/// 2 attempts, 3 next_attempt_at, 4 last_error, 5 dead_lettered_at, 6 claimed_until,
/// 7 dirty_since.
pub const SELECT_QUEUE_ENTRY: &str = concat!(
    "SELECT q.version, q.deleted, q.attempts, ",
    sql_utc!("q.next_attempt_at"),
    ", q.last_error, ",
    sql_utc!("q.dead_lettered_at"),
    ", ",
    sql_utc!("q.claimed_until"),
    ", ",
    sql_utc!("q.dirty_since"),
    " FROM job_sync_queue q WHERE q.job_id = $1::uuid"
);

/// The sync columns of one job. `$1` id -> 0 version, 1 es_sync_version, 2 es_synced_at.
pub const SELECT_JOB_SYNC_STATE: &str =
    concat!("SELECT j.version, j.es_sync_version, ", sql_utc!("j.es_synced_at"), " FROM job j WHERE j.id = $1::uuid");

/// One tombstone. `$1` id -> 0 version, 1 user id, 2 workspace id, 3 deleted_at,
/// 4 es_synced_at.
pub const SELECT_TOMBSTONE: &str = concat!(
    "SELECT t.version, t.user_id::text, t.workspace_id::text, ",
    sql_utc!("t.deleted_at"),
    ", ",
    sql_utc!("t.es_synced_at"),
    " FROM job_tombstone t WHERE t.id = $1::uuid"
);

/// Forgets tombstones synced more than `$1` milliseconds ago -> how many. Search engines keep a
/// deleted document's version only briefly (`index.gc_deletes`, 60 s), so keep them longer
/// than any sync run lasts.
pub const PURGE_TOMBSTONES: &str = "DELETE FROM job_tombstone \
     WHERE es_synced_at IS NOT NULL AND es_synced_at < now() - $1::bigint * interval '1 millisecond'";

/// Repairs the queue from the truth: enqueues every dirty job and unsynced tombstone that has
/// no entry (only needed if someone deleted queue rows by hand). Reads the whole job table:
/// an operator's command, not a sync step. -> how many entries were added.
pub const REQUEUE_MISSING: &str = "INSERT INTO job_sync_queue (job_id, version, deleted) \
     SELECT j.id, j.version, false FROM job j \
     WHERE (j.es_synced_at IS NULL OR j.es_sync_version < j.version) \
     UNION ALL SELECT t.id, t.version, true FROM job_tombstone t WHERE t.es_synced_at IS NULL \
     ON CONFLICT (job_id) DO NOTHING";

// ---------------------------------------------------------------------------------------------
// Backfill and drift checks (`jobsctl reindex`, `jobsctl verify`): keyset scans on the primary
// key (never OFFSET), and the repairs that make drifted rows dirty again.

/// The first `$1` jobs in id order.
pub const SCAN_JOBS_FIRST: &str = concat!("SELECT ", sql_job_columns!(), " FROM job j ORDER BY j.id LIMIT $1::bigint");

/// The next `$2` jobs after id `$1`, in id order.
pub const SCAN_JOBS_AFTER: &str =
    concat!("SELECT ", sql_job_columns!(), " FROM job j WHERE j.id > $1::uuid ORDER BY j.id LIMIT $2::bigint");

/// The first `$1` (id, version) pairs in id order.
pub const SCAN_VERSIONS_FIRST: &str = "SELECT j.id::text, j.version FROM job j ORDER BY j.id LIMIT $1::bigint";

/// The next `$2` (id, version) pairs after id `$1`.
pub const SCAN_VERSIONS_AFTER: &str =
    "SELECT j.id::text, j.version FROM job j WHERE j.id > $1::uuid ORDER BY j.id LIMIT $2::bigint";

/// How many jobs there are (progress bars).
pub const COUNT_JOBS: &str = "SELECT count(*) FROM job";

/// The sync state of ids (`verify`'s second look, `GET /v1/jobs?include=sync`). `$1` JSON array
/// of ids -> 0 id, 1 the job's version (NULL: no such job), 2 es_sync_version, 3 es_synced_at
/// (UTC text), 4 queued (a dirty job or a pending delete), 5 dead-lettered, 6 user_id,
/// 7 workspace_id (whose job it is now: an id may have been created again by someone else).
pub const SYNC_STATE_OF: &str = concat!(
    "SELECT x.i, j.version, j.es_sync_version, ",
    sql_utc!("j.es_synced_at"),
    ", q.job_id IS NOT NULL, q.dead_lettered_at IS NOT NULL, j.user_id::text, j.workspace_id::text ",
    "FROM jsonb_array_elements_text($1::jsonb) AS x(i) ",
    "LEFT JOIN job j ON j.id = x.i::uuid ",
    "LEFT JOIN job_sync_queue q ON q.job_id = x.i::uuid"
);

/// Makes jobs dirty again (search lost or never got them, though the row says synced). `$1`
/// JSON array of ids -> the ids queued. Clearing `es_synced_at` is a HOT update that the
/// enqueue trigger turns into a queue entry; a job already unsynced but missing from the queue
/// is queued directly.
pub const RESYNC_JOBS: &str = "WITH ids AS (\
     SELECT DISTINCT i::uuid AS id FROM jsonb_array_elements_text($1::jsonb) AS s(i)), \
     reset AS (UPDATE job j SET es_synced_at = NULL FROM ids \
     WHERE j.id = ids.id AND j.es_synced_at IS NOT NULL RETURNING j.id), \
     queued AS (INSERT INTO job_sync_queue (job_id, version) \
     SELECT j.id, j.version FROM job j JOIN ids ON ids.id = j.id \
     WHERE j.id NOT IN (SELECT reset.id FROM reset) \
     ON CONFLICT (job_id) DO NOTHING RETURNING job_id) \
     SELECT id::text FROM reset UNION ALL SELECT job_id::text FROM queued";

/// Sends again every delete made in the last `$1` milliseconds (database clock; `deleted_at` is
/// the deleting transaction's start): a reindex's deletes during its backfill, whose pages may
/// have reached the new index after them.
pub const RESEND_RECENT_DELETES: &str = "UPDATE job_tombstone SET es_synced_at = NULL \
     WHERE es_synced_at IS NOT NULL AND deleted_at >= now() - $1::bigint * interval '1 millisecond'";

/// Deletes for documents search holds but Postgres does not. `$1` JSON `[{"id": uuid, "v":
/// the document's version, "user_id": uuid, "workspace_id": uuid|null}]` -> the ids queued.
/// The tombstone's version is the document's, so the delete (sent one above) wins over it; a
/// job that exists after all (created meanwhile) is left alone.
pub const RESYNC_DELETES: &str = "INSERT INTO job_tombstone AS t (id, version, user_id, workspace_id) \
     SELECT x.id, x.v, x.user_id, x.workspace_id \
     FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, v bigint, user_id uuid, workspace_id uuid) \
     WHERE NOT EXISTS (SELECT 1 FROM job j WHERE j.id = x.id) \
     ON CONFLICT (id) DO UPDATE SET version = greatest(t.version, EXCLUDED.version), es_synced_at = NULL \
     RETURNING t.id::text";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$n` a statement uses, so a test can check they are numbered 1..=n without gaps.
    fn placeholders(sql: &str) -> Vec<usize> {
        let b = sql.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if let Ok(n) = sql[start..end].parse() {
                    out.push(n);
                }
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    #[track_caller]
    fn check(sql: &str, params: usize) {
        assert_eq!(placeholders(sql), (1..=params).collect::<Vec<_>>(), "{sql}");
        for (i, _) in sql.match_indices('$') {
            let rest = &sql[i + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            assert!(rest[digits..].starts_with("::"), "uncast placeholder in {sql}");
        }
        assert!(!sql.contains(';'), "one statement only: {sql}");
    }

    #[test]
    fn placeholders_are_numbered_and_cast() {
        check(UPSERT_USER, 2);
        check(UPSERT_WORKSPACE, 2);
        check(UPSERT_MEMBER, 2);
        check(ENSURE_WORKSPACES, 1);
        check(ENSURE_MEMBERSHIPS, 2);
        check(SELECT_MEMBER_WORKSPACES, 1);
        check(INSERT_JOB, 9);
        check(SELECT_JOB_SCOPED, 3);
        check(SELECT_JOB, 1);
        check(SELECT_JOB_PIECES, 5);
        check(SELECT_JOBS_BY_IDS, 1);
        check(UPDATE_JOB, 10);
        check(DELETE_JOB, 4);
        check(CLAIM_DIRTY, 2);
        check(MARK_JOBS_SYNCED, 1);
        check(MARK_TOMBSTONES_SYNCED, 1);
        check(RECORD_RETRY, 1);
        check(DEAD_LETTER, 1);
        check(RELEASE_CLAIMS, 1);
        check(LIST_DEAD_LETTERS, 1);
        check(REQUEUE_DEAD_LETTERS, 1);
        check(REQUEUE_RECENT_DEAD_LETTERS, 1);
        check(RECENT_DEAD_LETTERS, 3);
        check(SYNC_LAG, 0);
        check(SELECT_QUEUE_ENTRY, 1);
        check(SELECT_JOB_SYNC_STATE, 1);
        check(SELECT_TOMBSTONE, 1);
        check(PURGE_TOMBSTONES, 1);
        check(REQUEUE_MISSING, 0);
        check(SCAN_JOBS_FIRST, 1);
        check(SCAN_JOBS_AFTER, 2);
        check(SCAN_VERSIONS_FIRST, 1);
        check(SCAN_VERSIONS_AFTER, 2);
        check(COUNT_JOBS, 0);
        check(SYNC_STATE_OF, 1);
        check(RESYNC_JOBS, 1);
        check(RESYNC_DELETES, 1);
        check(RESEND_RECENT_DELETES, 1);
    }

    #[test]
    fn job_columns_follow_the_field_specs() {
        assert_eq!(JOB_COLUMN_COUNT, crate::spec::JOB_FIELDS.len());
        // Each column once, and the two wide ones each behind the fit test (which names both).
        assert_eq!(JOB_COLUMNS.matches("j.").count(), JOB_COLUMN_COUNT + 3);
        assert_eq!(JOB_COLUMNS.matches(" END").count(), 2);
        let fits = sql_job_fits!("j.");
        assert!(fits.contains(&INLINE_ERROR_BYTES.to_string()) && fits.contains(&INLINE_METADATA_BYTES.to_string()));
        assert!(JOB_COLUMNS.contains(&format!("error_message), 0) <= {INLINE_ERROR_BYTES} THEN j.error_message END")));
        assert!(SELECT_JOB_PIECES.matches(&format!(", {PIECE_CHARS})")).count() == 4);
        let order: Vec<usize> = crate::spec::JOB_FIELDS
            .iter()
            .map(|f| JOB_COLUMNS.find(&format!("j.{}", f.name)).unwrap_or(usize::MAX))
            .collect();
        assert!(order.iter().all(|&i| i != usize::MAX), "a field is missing from JOB_COLUMNS");
        assert!(order.windows(2).all(|w| w[0] < w[1]), "JOB_COLUMNS out of spec order");
        assert_eq!(JOB_SELECT, JOB_COLUMNS.replace("j.", ""));
    }
}
