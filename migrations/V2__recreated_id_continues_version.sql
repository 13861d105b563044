-- A job id created again after its delete continues its version past the delete's. The delete
-- reached (or will reach) search as an externally versioned delete at the last version + 1, and
-- the engine refuses anything at or below that version for `index.gc_deletes` (60 s), or for
-- good while the delete is still on its way: a re-created job starting at version 0 was refused
-- as stale, marked synced, and missing from search (or shown with the deleted job's content).
-- Clients may choose a job's id, and another service may delete and insert an id in one
-- transaction, so this is in the database, for every writer, as the version bump is.
CREATE FUNCTION job_continue_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := greatest(NEW.version,
                            coalesce((SELECT t.version + 2 FROM job_tombstone t WHERE t.id = NEW.id), 0));
    RETURN NEW;
END
$$;

CREATE TRIGGER job_continue_version
    BEFORE INSERT ON job
    FOR EACH ROW
    EXECUTE FUNCTION job_continue_version();
