-- The enqueue trigger also runs when a sync marks an older version of a job that changed
-- since (es_sync_version moves, the row stays dirty). It cleared the entry's lease every time,
-- so a newer version already claimed by the next batch lost its lease while in flight: another
-- batch or run claimed it again (a second bulk of the same version), and its retry, which
-- requires the lease, matched nothing (no attempt counted, no backoff). A lease now survives
-- when the version queued has not changed. The rest of the function is V3's.
CREATE OR REPLACE FUNCTION job_sync_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- a re-created id supersedes its tombstone. A delete that committed while this insert
        -- waited for the id (its row still held the key) left a tombstone job_continue_version
        -- could not see: the version would not be past the delete's, and search would refuse
        -- the new job as stale. Such an insert fails as a serialization failure, to be retried.
        DELETE FROM job_tombstone WHERE id = NEW.id RETURNING version INTO gone;
        IF gone IS NOT NULL AND NEW.version < gone + 2 THEN
            RAISE EXCEPTION 'job % was deleted while it was being created again: retry', NEW.id
                USING ERRCODE = 'serialization_failure';
        END IF;
    ELSIF OLD.id <> NEW.id THEN
        DELETE FROM job_sync_queue WHERE job_id = OLD.id;
    END IF;
    IF NEW.es_synced_at IS NULL OR NEW.es_sync_version < NEW.version THEN
        INSERT INTO job_sync_queue AS q (job_id, version)
        VALUES (NEW.id, NEW.version)
        ON CONFLICT (job_id) DO UPDATE SET
            version = EXCLUDED.version,
            deleted = false,
            claimed_until = CASE WHEN q.version = EXCLUDED.version AND NOT q.deleted
                                 THEN q.claimed_until END,
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
