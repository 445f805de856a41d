-- selfheal schema v5: the ingest write path through a Queue (issue 10).
--
-- The tail Worker scrubs and fingerprints, then sends the sanitized events of each delivery as one
-- message on the `selfheal-ingest` Queue; the queue consumer writes one D1 batch per queue batch
-- (src/storage/ingest.rs). Every write stays idempotent: events by their event key (UNIQUE in
-- ops_occurrences / ops_log_events), traffic flushes by (flush_id, attempt) where the attempt is a
-- fresh nonce per consumer try (ops_traffic_flushes, migration 0004).

-- When the incident row was created (receive time, ms): the flood cap counts the incidents a script
-- opened in the current hour. NULL for rows created before this migration.
ALTER TABLE ops_incidents ADD COLUMN created_at INTEGER;
CREATE INDEX ops_incidents_script_created ON ops_incidents (script_name, created_at);

-- What the queue consumer did, per UTC day: messages applied, statements run (with `writes`, the
-- D1 batches), malformed messages skipped, messages retried, messages parked from the dead-letter
-- queue, and events that folded into a script's overflow incident.
ALTER TABLE ops_ingest_stats ADD COLUMN statements INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ops_ingest_stats ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ops_ingest_stats ADD COLUMN malformed_messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ops_ingest_stats ADD COLUMN retried_messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ops_ingest_stats ADD COLUMN dead_messages INTEGER NOT NULL DEFAULT 0;

-- Messages the dead-letter queue handed over (an ingest message that failed max_retries times):
-- kept verbatim (they are already scrubbed) with the last error, until `selfheal ingest replay`
-- applies them (exactly once: the events are keyed) and deletes them in the same batch.
CREATE TABLE ops_ingest_dead (
  message_id TEXT    PRIMARY KEY,
  body       TEXT    NOT NULL,  -- the message as sent by the tail Worker (JSON, scrubbed)
  attempts   INTEGER NOT NULL,  -- deliveries before it was dead-lettered
  error      TEXT    NOT NULL,  -- why the last try failed (a D1 error message)
  parked_at  INTEGER NOT NULL
) WITHOUT ROWID;
