-- selfheal schema v6: the control plane's security state.
--
-- Per-run tokens for hosted handovers (webhook): the cron Worker mints a random token when it
-- leases a run to a hosted agent and keeps only its SHA-256 here. The token authorizes
-- POST /api/runs/{run_id}/heartbeat and /result of that run, and only while the run still holds
-- the lease it was minted with and that lease has not expired (a finished, expired or re-leased
-- run kills it; heartbeats extend the lease and so the token); it can never lease, read or report
-- another run. Rows are pruned by the retention rules (src/storage/retention.rs) once dead.
CREATE TABLE run_tokens (
  token_hash TEXT    PRIMARY KEY,   -- lowercase hex SHA-256 of the token
  run_id     INTEGER NOT NULL REFERENCES fix_runs (id),
  lease_id   TEXT    NOT NULL,      -- the lease the token was minted with
  expires_at INTEGER NOT NULL,      -- ms since the epoch: the lease's end when minted
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_tokens_run ON run_tokens (run_id);
CREATE INDEX run_tokens_expires ON run_tokens (expires_at);

-- A tracker's "do not call before": set when GitHub answers with a wait longer than one cron run
-- may spend (retry-after, x-ratelimit-reset), so the next runs honour it instead of retrying early.
CREATE TABLE tracker_holds (
  tracker    TEXT    PRIMARY KEY,   -- 'github'
  until_ms   INTEGER NOT NULL,      -- ms since the epoch
  reason     TEXT    NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Sentry intake (POST /api/intake/sentry): one row per Sentry issue id, first delivery wins. The
-- incident's fingerprint is derived from the id (src/intake.rs), so one Sentry issue is one
-- incident, one ticket and one fix run however often it is delivered.
CREATE TABLE intake_sentry_issues (
  sentry_issue_id TEXT    PRIMARY KEY,
  fingerprint     TEXT    NOT NULL UNIQUE,
  permalink       TEXT,
  created_at      INTEGER NOT NULL
) WITHOUT ROWID;
