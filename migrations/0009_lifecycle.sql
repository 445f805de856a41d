-- selfheal schema v9: the lifecycle after the draft PR (issue 11; src/tracking/lifecycle.rs).
--
-- 1. Incidents get the statuses of the lifecycle (pr_opened, fix_merged, verifying) and the
--    figures verification needs: the merge, the release that carries it, when it was first seen.
-- 2. A fix run belongs to an incident AND an attempt: the unique constraint moves from
--    (incident_id) to (incident_id, attempt); every existing run becomes attempt 1. A run also
--    records its PR's state as the cron last read it and why its attempt ended.
-- 3. A ticket carries the attempt its next fix job is for.
--
-- SQLite cannot alter a CHECK or a UNIQUE constraint, so both tables are rebuilt. D1 keeps
-- foreign keys on, so they are deferred to the end of the migration's transaction (as D1's
-- documentation advises), and each table is rebuilt under its own name: copy the rows aside, drop
-- the table, create it anew, put the rows back. Putting a parent row back settles the deferred
-- violation its drop counted for each child row (tickets, fix_runs, run_tokens, histories), so the
-- transaction commits; a rename of a new table would leave the count standing. The triggers that
-- name a rebuilt table are dropped first and made again after.

PRAGMA defer_foreign_keys = true;

DROP TRIGGER ops_occurrences_count;
DROP TRIGGER ops_log_events_stored;

CREATE TABLE ops_incidents_copy AS SELECT * FROM ops_incidents;
DROP TABLE ops_incidents;
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
                      CHECK (status IN ('open', 'ticketed', 'claimed', 'pr_opened', 'fix_merged',
                                        'verifying', 'resolved', 'ignored', 'regressed')),
  ticket_id           INTEGER,
  updated_at          INTEGER NOT NULL,
  cooldown_until      INTEGER,
  gate_decision       TEXT,
  gate_reasons        TEXT,
  gate_signals        TEXT,
  gate_priority       REAL,
  gate_at             INTEGER,
  label               TEXT CHECK (label IN ('actionable', 'not_actionable')),
  label_at            INTEGER,
  created_at          INTEGER,
  -- The lifecycle (all times ms since the epoch):
  fix_run_id          INTEGER,   -- the run whose PR was merged
  fix_commit          TEXT,      -- its merge commit
  fix_merged_at       INTEGER,
  verify_release      TEXT,      -- the first release of the script seen after the merge
  verify_since        INTEGER,   -- when that release was first seen
  verify_basis        TEXT,      -- how the release was tied to the merge: commit | time
  resolution          TEXT CHECK (resolution IN ('verified', 'inactive', 'operator')),
  resolved_at         INTEGER,
  ignore_until_escalating INTEGER NOT NULL DEFAULT 0  -- 1: an escalation reopens it
);
INSERT INTO ops_incidents (
  id, fingerprint, fingerprint_version, script_name, route_pattern, exception_type,
  normalized_message, top_frame, status_class, occurrence_count, stored_events, first_seen,
  last_seen, first_release, last_release, status, ticket_id, updated_at, cooldown_until,
  gate_decision, gate_reasons, gate_signals, gate_priority, gate_at, label, label_at, created_at)
SELECT
  id, fingerprint, fingerprint_version, script_name, route_pattern, exception_type,
  normalized_message, top_frame, status_class, occurrence_count, stored_events, first_seen,
  last_seen, first_release, last_release, status, ticket_id, updated_at, cooldown_until,
  gate_decision, gate_reasons, gate_signals, gate_priority, gate_at, label, label_at, created_at
FROM ops_incidents_copy;
DROP TABLE ops_incidents_copy;
CREATE INDEX ops_incidents_status ON ops_incidents (status, ticket_id);
CREATE INDEX ops_incidents_gate ON ops_incidents (gate_decision, status);
CREATE INDEX ops_incidents_script_created ON ops_incidents (script_name, created_at);

-- As in 0001, plus: a resolved incident that occurs again is `regressed`, with a history row —
-- except an occurrence on a release older than the one that verified the fix (an isolate still on
-- the old version during a gradual deployment).
CREATE TRIGGER ops_occurrences_count AFTER INSERT ON ops_occurrences
BEGIN
  INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures)
    SELECT id, NEW.ts, 'resolved', 'regressed', 'tail', 'occurred_after_resolve',
           json_object('event', 'occurred', 'event_key', NEW.event_key, 'release', NEW.release,
                       'ts', NEW.ts, 'resolution', resolution)
    FROM ops_incidents
    WHERE fingerprint = NEW.fingerprint AND status = 'resolved'
      AND NOT (resolution = 'verified' AND NEW.release IS NOT NULL AND EXISTS (
        SELECT 1 FROM ops_releases r WHERE r.script = ops_incidents.script_name
          AND r.release = NEW.release AND r.first_seen < ops_incidents.verify_since));
  UPDATE ops_incidents SET
    occurrence_count = occurrence_count + 1,
    first_seen    = min(first_seen, NEW.ts),
    last_seen     = max(last_seen, NEW.ts),
    first_release = CASE WHEN NEW.ts <= first_seen AND NEW.release IS NOT NULL THEN NEW.release
                         ELSE coalesce(first_release, NEW.release) END,
    last_release  = CASE WHEN NEW.ts >= last_seen AND NEW.release IS NOT NULL THEN NEW.release
                         ELSE coalesce(last_release, NEW.release) END,
    status        = CASE WHEN status = 'resolved'
                          AND NOT (resolution = 'verified' AND NEW.release IS NOT NULL AND EXISTS (
                            SELECT 1 FROM ops_releases r WHERE r.script = ops_incidents.script_name
                              AND r.release = NEW.release AND r.first_seen < ops_incidents.verify_since))
                         THEN 'regressed' ELSE status END,
    updated_at    = max(updated_at, NEW.ts)
  WHERE fingerprint = NEW.fingerprint;
END;

CREATE TRIGGER ops_log_events_stored AFTER INSERT ON ops_log_events
BEGIN
  UPDATE ops_incidents SET stored_events = stored_events + 1 WHERE fingerprint = NEW.fingerprint;
END;

-- Fix runs per (incident, attempt).
DROP TRIGGER fix_runs_take_budget;
DROP INDEX fix_runs_state;
DROP INDEX fix_runs_one_lease;
CREATE TABLE fix_runs_copy AS SELECT * FROM fix_runs;
DROP TABLE fix_runs;
CREATE TABLE fix_runs (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id      INTEGER NOT NULL REFERENCES ops_incidents (id),
  attempt          INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
  ticket_id        INTEGER NOT NULL REFERENCES tickets (id),
  fingerprint      TEXT    NOT NULL,
  state            TEXT    NOT NULL
                   CHECK (state IN ('claimed', 'ready', 'deferred', 'leased', 'fixing', 'pr_opened', 'failed')),
  budget_day       TEXT,
  deferred_day     TEXT,
  task             TEXT    NOT NULL,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  notified_state   TEXT,
  lease_id         TEXT,
  lease_owner      TEXT,
  lease_expires_at INTEGER,
  pr_url           TEXT,
  result           TEXT,
  -- The PR as the cron last read it from the tracker (NULL: not followed yet).
  pr_state         TEXT CHECK (pr_state IN ('open', 'merged', 'closed')),
  pr_merge_commit  TEXT,
  pr_merged_at     INTEGER,
  pr_checked_at    INTEGER,
  -- Why this attempt ended (NULL while it can still succeed): failed | pr_closed | did_not_hold | verified.
  ended            TEXT CHECK (ended IN ('failed', 'pr_closed', 'did_not_hold', 'verified')),
  ended_at         INTEGER,
  UNIQUE (incident_id, attempt)
);
INSERT INTO fix_runs (
  id, incident_id, attempt, ticket_id, fingerprint, state, budget_day, deferred_day, task,
  created_at, updated_at, notified_state, lease_id, lease_owner, lease_expires_at, pr_url, result,
  ended, ended_at)
SELECT
  id, incident_id, 1, ticket_id, fingerprint, state, budget_day, deferred_day, task,
  created_at, updated_at, notified_state, lease_id, lease_owner, lease_expires_at, pr_url, result,
  CASE WHEN state = 'failed' THEN 'failed' END, CASE WHEN state = 'failed' THEN updated_at END
FROM fix_runs_copy;
DROP TABLE fix_runs_copy;
CREATE INDEX fix_runs_state ON fix_runs (state, deferred_day);
CREATE UNIQUE INDEX fix_runs_one_lease ON fix_runs ((1)) WHERE state IN ('leased', 'fixing');
CREATE TRIGGER fix_runs_take_budget AFTER UPDATE OF state ON fix_runs
WHEN NEW.state = 'ready' AND OLD.state IN ('claimed', 'deferred') AND NEW.budget_day IS NOT NULL
BEGIN
  UPDATE fix_budget SET used = used + 1 WHERE day = NEW.budget_day;
END;

-- The attempt the ticket's next fix job is for (the cron raises it when an attempt has ended).
ALTER TABLE tickets ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;

-- The tracker comments every lifecycle change once (src/store.rs SELECT_TRACKER_CHANGES).
ALTER TABLE incident_history ADD COLUMN notified_at INTEGER;
