-- selfheal schema v10: Workers Issues intake, and what fix runs spend (issue 11 §3, issue 13 §2).

-- Cloudflare Workers Issues intake (POST /api/intake/workers-issues): one row per Workers Issues
-- issue id, first delivery wins. The incident's fingerprint is derived from the id
-- (src/intake.rs), so one issue is one incident, one ticket and one fix run however often its
-- automation delivers it (the Sentry table of 0006 does the same for Sentry issue ids).
CREATE TABLE intake_workers_issues (
  issue_id    TEXT    PRIMARY KEY,
  fingerprint TEXT    NOT NULL UNIQUE,
  account_id  TEXT,               -- the Notifications payload's account_id, when given
  alert_type  TEXT,               -- its alert_type, when given
  created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Runs started: a run's first lease (local fixer or hosted handover). The weekly and monthly run
-- caps count these rows (src/fixing/caps.rs); a lease that expires and is taken again counts once.
CREATE TABLE fix_run_starts (
  run_id     INTEGER PRIMARY KEY REFERENCES fix_runs (id),
  started_at INTEGER NOT NULL     -- ms since the epoch
);
CREATE INDEX fix_run_starts_at ON fix_run_starts (started_at);

CREATE TRIGGER fix_runs_count_start AFTER UPDATE OF state ON fix_runs
WHEN NEW.state = 'leased' AND OLD.state IS NOT 'leased'
BEGIN
  INSERT OR IGNORE INTO fix_run_starts (run_id, started_at) VALUES (NEW.id, NEW.updated_at);
END;

-- The cost ledger: one row per finished run, written by the agent-runner in the same batch as the
-- result (only when that result ended the lease). NULL = "not reported" by the agent, never 0.
CREATE TABLE fix_ledger (
  run_id             INTEGER PRIMARY KEY REFERENCES fix_runs (id),
  incident_id        INTEGER NOT NULL,
  outcome            TEXT    NOT NULL,   -- pr_opened | failed | budget_exhausted | … (the fixer's)
  reporter           TEXT,               -- claude-code | codex: whose documented output; NULL = none
  turns              INTEGER,
  input_tokens       INTEGER,            -- not counting cache reads
  output_tokens      INTEGER,
  cache_read_tokens  INTEGER,
  cache_write_tokens INTEGER,
  cost_usd           REAL,
  max_turns          INTEGER,            -- the run's own limits; NULL = none
  max_usd            REAL,
  phases             TEXT    NOT NULL DEFAULT '{}',  -- JSON object: phase → seconds
  seconds            REAL,               -- sum of the phases
  finished_at        INTEGER NOT NULL,   -- ms since the epoch
  day                TEXT    NOT NULL    -- its UTC day, YYYY-MM-DD
);
CREATE INDEX fix_ledger_finished ON fix_ledger (finished_at);
