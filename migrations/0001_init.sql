-- selfheal schema v1 (D1 / SQLite). Times are milliseconds since the Unix epoch (INTEGER);
-- days are UTC dates 'YYYY-MM-DD'. A UNIQUE constraint is the guarantee at each step:
-- one incident per fingerprint, one occurrence per event key, one ticket per incident,
-- one fix run per incident.

-- One row per fingerprint. occurrence_count is maintained by the trigger on ops_occurrences,
-- so only occurrences that were really new count (a redelivered tail batch changes nothing).
CREATE TABLE ops_incidents (
  id                  INTEGER PRIMARY KEY AUTOINCREMENT,
  fingerprint         TEXT    NOT NULL UNIQUE,
  fingerprint_version INTEGER NOT NULL,
  script_name         TEXT    NOT NULL,
  route_pattern       TEXT    NOT NULL,
  exception_type      TEXT    NOT NULL,
  normalized_message  TEXT    NOT NULL,
  top_frame           TEXT    NOT NULL,
  status_class        TEXT    NOT NULL,
  occurrence_count    INTEGER NOT NULL DEFAULT 0,
  stored_events       INTEGER NOT NULL DEFAULT 0,
  first_seen          INTEGER NOT NULL,
  last_seen           INTEGER NOT NULL,
  first_release       TEXT,
  last_release        TEXT,
  status              TEXT    NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'ticketed', 'claimed', 'resolved', 'ignored', 'regressed')),
  ticket_id           INTEGER,
  updated_at          INTEGER NOT NULL
);
CREATE INDEX ops_incidents_status ON ops_incidents (status, ticket_id);

-- One small row per occurrence (event key), kept for a retention window (the cron prunes it):
-- the idempotency guard for redelivered batches and the raw material for rates.
CREATE TABLE ops_occurrences (
  event_key   TEXT    PRIMARY KEY,
  fingerprint TEXT    NOT NULL,
  ts          INTEGER NOT NULL,
  release     TEXT
) WITHOUT ROWID;
CREATE INDEX ops_occurrences_fp_ts ON ops_occurrences (fingerprint, ts);
CREATE INDEX ops_occurrences_ts ON ops_occurrences (ts);

CREATE TRIGGER ops_occurrences_count AFTER INSERT ON ops_occurrences
BEGIN
  UPDATE ops_incidents SET
    occurrence_count = occurrence_count + 1,
    first_seen    = min(first_seen, NEW.ts),
    last_seen     = max(last_seen, NEW.ts),
    first_release = CASE WHEN NEW.ts <= first_seen AND NEW.release IS NOT NULL THEN NEW.release
                         ELSE coalesce(first_release, NEW.release) END,
    last_release  = CASE WHEN NEW.ts >= last_seen AND NEW.release IS NOT NULL THEN NEW.release
                         ELSE coalesce(last_release, NEW.release) END,
    status        = CASE WHEN status = 'resolved' THEN 'regressed' ELSE status END,
    updated_at    = max(updated_at, NEW.ts)
  WHERE fingerprint = NEW.fingerprint;
END;

-- Sanitized event summaries: the first few and a sample per incident, never a whole flood.
CREATE TABLE ops_log_events (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  event_key      TEXT    NOT NULL UNIQUE,
  fingerprint    TEXT    NOT NULL,
  script_name    TEXT    NOT NULL,
  route_pattern  TEXT    NOT NULL,
  event_kind     TEXT    NOT NULL,
  method         TEXT,
  url            TEXT,
  status         INTEGER,
  outcome        TEXT    NOT NULL,
  exception_type TEXT    NOT NULL,
  message        TEXT    NOT NULL,
  normalized_message TEXT NOT NULL,
  top_frame      TEXT    NOT NULL,
  stack          TEXT    NOT NULL,
  logs           TEXT    NOT NULL,  -- JSON array of scrubbed error/warn lines
  request        TEXT    NOT NULL,  -- JSON: method, scrubbed url, allow-listed headers, colo/country
  release        TEXT,
  entrypoint     TEXT,
  event_timestamp INTEGER NOT NULL,
  remarks        TEXT    NOT NULL,  -- JSON array of {field, rule, start, end}: which scrubbing rules fired where
  received_at    INTEGER NOT NULL
);
CREATE INDEX ops_log_events_fp ON ops_log_events (fingerprint, event_timestamp);

CREATE TRIGGER ops_log_events_stored AFTER INSERT ON ops_log_events
BEGIN
  UPDATE ops_incidents SET stored_events = stored_events + 1 WHERE fingerprint = NEW.fingerprint;
END;

-- Per UTC day, what the tail Worker received: delivery counts (a redelivery counts again here,
-- by design; incidents and occurrences do not).
CREATE TABLE ops_ingest_stats (
  day       TEXT    PRIMARY KEY,
  batches   INTEGER NOT NULL DEFAULT 0,
  items     INTEGER NOT NULL DEFAULT 0,
  events    INTEGER NOT NULL DEFAULT 0,
  noise     INTEGER NOT NULL DEFAULT 0,
  malformed INTEGER NOT NULL DEFAULT 0
);

-- The built-in tracker: one ticket per incident.
CREATE TABLE tickets (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id INTEGER NOT NULL UNIQUE REFERENCES ops_incidents (id),
  fingerprint TEXT    NOT NULL,
  title       TEXT    NOT NULL,
  body        TEXT    NOT NULL,  -- markdown: the structured task, untrusted text fenced
  state       TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  queued_at   INTEGER            -- when the fix job was sent on the queue; NULL = not yet
);
CREATE INDEX tickets_unqueued ON tickets (queued_at, created_at);

-- One fix run per incident. state: claimed → ready (took a unit of the daily cap) | deferred (cap
-- reached; retried the next UTC day).
CREATE TABLE fix_runs (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id  INTEGER NOT NULL UNIQUE REFERENCES ops_incidents (id),
  ticket_id    INTEGER NOT NULL REFERENCES tickets (id),
  fingerprint  TEXT    NOT NULL,
  state        TEXT    NOT NULL
               CHECK (state IN ('claimed', 'ready', 'deferred', 'leased', 'fixing', 'pr_opened', 'failed')),
  budget_day   TEXT,              -- the UTC day whose cap unit this run took
  deferred_day TEXT,              -- the UTC day it was last deferred on
  task         TEXT    NOT NULL,  -- JSON: the agent-neutral task
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);
CREATE INDEX fix_runs_state ON fix_runs (state, deferred_day);

-- The daily cap: one row per UTC day. `used` only moves through the trigger below, in the same
-- transaction as the state change that consumed it.
CREATE TABLE fix_budget (
  day  TEXT    PRIMARY KEY,
  cap  INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0)
);

CREATE TRIGGER fix_runs_take_budget AFTER UPDATE OF state ON fix_runs
WHEN NEW.state = 'ready' AND OLD.state IN ('claimed', 'deferred') AND NEW.budget_day IS NOT NULL
BEGIN
  UPDATE fix_budget SET used = used + 1 WHERE day = NEW.budget_day;
END;
