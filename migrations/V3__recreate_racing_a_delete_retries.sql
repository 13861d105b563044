-- A job id created again while its delete was still committing: job_continue_version (V2) runs
-- before the insert waits for the id's old row, so it cannot see that delete's tombstone, and
-- the new row kept version 0, below the delete search received. The enqueue trigger, which runs
-- after the wait, now checks the tombstone it removes and fails such an insert as a
-- serialization failure (the API answers 503: retry). The rest of the function is V1's.
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
