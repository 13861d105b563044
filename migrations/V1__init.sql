-- V1: users, workspaces, jobs, and the bookkeeping that mirrors jobs into search.
--
-- Plain PostgreSQL (11+), applied by `jobsctl migrate` and acceptable to Flyway unchanged.
-- The sync design and the measurements behind it are in docs/sync-storage.md. In short:
--   * job.es_synced_at / job.es_sync_version are the truth operators read: a job is dirty when
--     es_synced_at IS NULL OR es_sync_version < version.
--   * No index mentions a sync column, so marking a job synced is a HOT update (fillfactor 90).
--   * job_sync_queue holds exactly the dirty jobs and tombstones, kept by triggers in the same
--     transaction as the write, so detection costs O(dirty rows) and writers that know nothing of
--     sync (another service, an FK action, an operator's UPDATE) are still detected.

CREATE TABLE users (
    id         UUID PRIMARY KEY,
    email      VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE workspace (
    id         UUID PRIMARY KEY,
    name       VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE workspace_member (
    workspace_id UUID NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         VARCHAR(50) NOT NULL DEFAULT 'MEMBER',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);

CREATE INDEX idx_workspace_member_user ON workspace_member (user_id);

-- fillfactor 90 leaves room on each page for the HOT updates that marking synced makes.
CREATE TABLE job (
    id              UUID PRIMARY KEY,
    workspace_id    UUID REFERENCES workspace (id) ON DELETE SET NULL,
    user_id         UUID NOT NULL REFERENCES users (id),
    status          VARCHAR(50) NOT NULL,
    type            VARCHAR(50) NOT NULL,
    project_name    VARCHAR(255) NOT NULL,
    hostname        VARCHAR(255),
    arch            VARCHAR(50),
    user_email      VARCHAR(255),
    error_message   TEXT,
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ,
    version         BIGINT NOT NULL DEFAULT 0,
    es_synced_at    TIMESTAMPTZ,
    es_sync_version BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 90);

-- The listing orders (newest first, id as the keyset tiebreak). No status-only index: it is a
-- prefix of idx_job_status_created. No index may mention es_synced_at or es_sync_version.
CREATE INDEX idx_job_user_created ON job (user_id, created_at DESC, id);
CREATE INDEX idx_job_workspace_created ON job (workspace_id, created_at DESC, id);
CREATE INDEX idx_job_status_created ON job (status, created_at);

-- Deleted jobs, so deletes reach search whoever deleted the row. `version` is the row's last
-- version; a tombstone is dirty until es_synced_at is set.
CREATE TABLE job_tombstone (
    id           UUID PRIMARY KEY,
    version      BIGINT NOT NULL,
    user_id      UUID NOT NULL,
    workspace_id UUID,
    deleted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    es_synced_at TIMESTAMPTZ
);

-- Exactly the dirty jobs and the unsynced tombstones, plus their retry state. Narrow, so the
-- job row stays small and detection reads only this. No foreign key: a tombstone's job is gone.
CREATE TABLE job_sync_queue (
    job_id           UUID PRIMARY KEY,
    -- the version to index (for a tombstone: the deleted row's last version)
    version          BIGINT NOT NULL,
    deleted          BOOLEAN NOT NULL DEFAULT false,
    -- the first change not yet in search: the sync lag is now() - min(dirty_since)
    dirty_since      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT,
    dead_lettered_at TIMESTAMPTZ,
    -- a sync run's lease: claimed rows are skipped by other runs until it passes
    claimed_until    TIMESTAMPTZ
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);

CREATE INDEX idx_job_sync_queue_due ON job_sync_queue (next_attempt_at, job_id)
    WHERE dead_lettered_at IS NULL;

-- A writer that changes a job but not its version (an FK's ON DELETE SET NULL, a bulk UPDATE by
-- another service, an operator) still produces a new version, so search learns of it and
-- optimistic lockers see the change. Sync-column-only updates never get here (see WHEN).
CREATE FUNCTION job_bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    IF NEW.updated_at = OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_bump_version
    BEFORE UPDATE ON job
    FOR EACH ROW
    WHEN (NEW.version = OLD.version
          AND (OLD.id, OLD.workspace_id, OLD.user_id, OLD.status, OLD.type, OLD.project_name,
               OLD.hostname, OLD.arch, OLD.user_email, OLD.error_message, OLD.metadata,
               OLD.created_at, OLD.updated_at, OLD.completed_at)
              IS DISTINCT FROM
              (NEW.id, NEW.workspace_id, NEW.user_id, NEW.status, NEW.type, NEW.project_name,
               NEW.hostname, NEW.arch, NEW.user_email, NEW.error_message, NEW.metadata,
               NEW.created_at, NEW.updated_at, NEW.completed_at))
    EXECUTE FUNCTION job_bump_version();

-- Keeps job_sync_queue equal to the dirty predicate for live jobs. A new version resets the
-- retry state (it may index fine) and releases any lease; an unchanged version keeps its place.
CREATE FUNCTION job_sync_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- a re-created id supersedes its tombstone
        DELETE FROM job_tombstone WHERE id = NEW.id;
    ELSIF OLD.id <> NEW.id THEN
        DELETE FROM job_sync_queue WHERE job_id = OLD.id;
    END IF;
    IF NEW.es_synced_at IS NULL OR NEW.es_sync_version < NEW.version THEN
        INSERT INTO job_sync_queue AS q (job_id, version)
        VALUES (NEW.id, NEW.version)
        ON CONFLICT (job_id) DO UPDATE SET
            version = EXCLUDED.version,
            deleted = false,
            claimed_until = NULL,
            attempts = CASE WHEN q.version = EXCLUDED.version AND NOT q.deleted
                            THEN q.attempts ELSE 0 END,
            dead_lettered_at = CASE WHEN q.version = EXCLUDED.version AND NOT q.deleted
                                    THEN q.dead_lettered_at END,
            next_attempt_at = CASE WHEN (q.version = EXCLUDED.version AND NOT q.deleted)
                                        OR (q.attempts = 0 AND q.dead_lettered_at IS NULL)
                                   THEN q.next_attempt_at ELSE now() END;
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM job_sync_queue WHERE job_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_sync_enqueue_insert
    AFTER INSERT ON job
    FOR EACH ROW
    EXECUTE FUNCTION job_sync_enqueue();

CREATE TRIGGER job_sync_enqueue_update
    AFTER UPDATE ON job
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id
          OR OLD.version IS DISTINCT FROM NEW.version
          OR OLD.es_sync_version IS DISTINCT FROM NEW.es_sync_version
          OR OLD.es_synced_at IS DISTINCT FROM NEW.es_synced_at)
    EXECUTE FUNCTION job_sync_enqueue();

-- Every delete, by anyone, leaves a tombstone in the same transaction.
CREATE FUNCTION job_record_tombstone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_tombstone (id, version, user_id, workspace_id, deleted_at)
    VALUES (OLD.id, OLD.version, OLD.user_id, OLD.workspace_id, now())
    ON CONFLICT (id) DO UPDATE SET
        version = EXCLUDED.version,
        user_id = EXCLUDED.user_id,
        workspace_id = EXCLUDED.workspace_id,
        deleted_at = EXCLUDED.deleted_at,
        es_synced_at = NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_record_tombstone
    AFTER DELETE ON job
    FOR EACH ROW
    EXECUTE FUNCTION job_record_tombstone();

-- Keeps job_sync_queue equal to the unsynced tombstones.
CREATE FUNCTION job_tombstone_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM job_sync_queue WHERE job_id = OLD.id AND deleted;
        RETURN NULL;
    END IF;
    IF NEW.es_synced_at IS NULL THEN
        INSERT INTO job_sync_queue AS q (job_id, version, deleted)
        VALUES (NEW.id, NEW.version, true)
        ON CONFLICT (job_id) DO UPDATE SET
            version = EXCLUDED.version,
            deleted = true,
            claimed_until = NULL,
            attempts = 0,
            dead_lettered_at = NULL,
            next_attempt_at = now();
    ELSE
        DELETE FROM job_sync_queue WHERE job_id = NEW.id AND deleted;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_tombstone_enqueue
    AFTER INSERT OR UPDATE OR DELETE ON job_tombstone
    FOR EACH ROW
    EXECUTE FUNCTION job_tombstone_enqueue();
