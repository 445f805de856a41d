-- selfheal schema v4: rates (traffic, occurrences per bucket, releases) and the gate's decisions.
--
-- Traffic counts every TraceItem (healthy and noise ones too): the denominator of every rate.
-- The tail Worker aggregates it in the isolate and flushes it with the next D1 batch it writes
-- anyway, or after SELFHEAL_TRAFFIC_FLUSH_SECS (see src/signal/rates.rs for the loss bound).
-- A flush applies only once: its rows are written only when this attempt's row in
-- ops_traffic_flushes is the one that exists (a retried flush that had committed is a no-op).

CREATE TABLE ops_traffic_5m (
  script   TEXT    NOT NULL,
  route    TEXT    NOT NULL,
  release  TEXT    NOT NULL DEFAULT '',   -- scriptVersion tag, else id; '' when unknown
  bucket   INTEGER NOT NULL,              -- bucket start, ms (5 minutes)
  requests INTEGER NOT NULL DEFAULT 0,
  errors   INTEGER NOT NULL DEFAULT 0,    -- items that became events
  PRIMARY KEY (script, route, bucket, release)
) WITHOUT ROWID;
CREATE INDEX ops_traffic_5m_bucket ON ops_traffic_5m (bucket);

-- Hourly roll-up of the same counts (kept 35 days; the 5-minute rows 2 days).
CREATE TABLE ops_traffic_1h (
  script   TEXT    NOT NULL,
  route    TEXT    NOT NULL,
  release  TEXT    NOT NULL DEFAULT '',
  bucket   INTEGER NOT NULL,              -- hour start, ms
  requests INTEGER NOT NULL DEFAULT 0,
  errors   INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (script, route, bucket, release)
) WITHOUT ROWID;
CREATE INDEX ops_traffic_1h_bucket ON ops_traffic_1h (bucket);

CREATE TABLE ops_traffic_flushes (
  flush_id TEXT    PRIMARY KEY,
  attempt  TEXT    NOT NULL,
  at       INTEGER NOT NULL
) WITHOUT ROWID;

-- Releases per script: when each was first (and last) seen in TraceItems.
CREATE TABLE ops_releases (
  script     TEXT    NOT NULL,
  release    TEXT    NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL,
  PRIMARY KEY (script, release)
) WITHOUT ROWID;

-- Occurrences per fingerprint, bucket and release: exact, because the trigger fires only for
-- occurrence keys that were new (a redelivered batch inserts nothing into ops_occurrences).
CREATE TABLE ops_occ_5m (
  fingerprint TEXT    NOT NULL,
  bucket      INTEGER NOT NULL,
  release     TEXT    NOT NULL DEFAULT '',
  n           INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (fingerprint, bucket, release)
) WITHOUT ROWID;
CREATE INDEX ops_occ_5m_bucket ON ops_occ_5m (bucket);
CREATE TABLE ops_occ_1h (
  fingerprint TEXT    NOT NULL,
  bucket      INTEGER NOT NULL,
  release     TEXT    NOT NULL DEFAULT '',
  n           INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (fingerprint, bucket, release)
) WITHOUT ROWID;
CREATE INDEX ops_occ_1h_bucket ON ops_occ_1h (bucket);

CREATE TRIGGER ops_occurrences_buckets AFTER INSERT ON ops_occurrences
BEGIN
  INSERT INTO ops_occ_5m (fingerprint, bucket, release, n)
    VALUES (NEW.fingerprint, NEW.ts - (NEW.ts % 300000), coalesce(NEW.release, ''), 1)
    ON CONFLICT (fingerprint, bucket, release) DO UPDATE SET n = n + 1;
  INSERT INTO ops_occ_1h (fingerprint, bucket, release, n)
    VALUES (NEW.fingerprint, NEW.ts - (NEW.ts % 3600000), coalesce(NEW.release, ''), 1)
    ON CONFLICT (fingerprint, bucket, release) DO UPDATE SET n = n + 1;
END;

-- How many D1 batches the tail Worker wrote (one per flush), beside the delivery counts.
ALTER TABLE ops_ingest_stats ADD COLUMN writes INTEGER NOT NULL DEFAULT 0;

-- The gate's current decision on each incident (updated every run) ...
ALTER TABLE ops_incidents ADD COLUMN gate_decision TEXT;   -- ticket | watch | external | suppressed
ALTER TABLE ops_incidents ADD COLUMN gate_reasons  TEXT;   -- JSON array of reason codes
ALTER TABLE ops_incidents ADD COLUMN gate_signals  TEXT;   -- JSON: every figure behind it
ALTER TABLE ops_incidents ADD COLUMN gate_priority REAL;   -- share of the script's requests per hour
ALTER TABLE ops_incidents ADD COLUMN gate_at       INTEGER;
-- ... and an operator's verdict, for the gate's precision and recall.
ALTER TABLE ops_incidents ADD COLUMN label    TEXT CHECK (label IN ('actionable', 'not_actionable'));
ALTER TABLE ops_incidents ADD COLUMN label_at INTEGER;
CREATE INDEX ops_incidents_gate ON ops_incidents (gate_decision, status);

-- Every change of decision, with the figures that made it.
CREATE TABLE gate_decisions (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id INTEGER NOT NULL REFERENCES ops_incidents (id),
  at          INTEGER NOT NULL,
  mode        TEXT    NOT NULL,              -- enforce | shadow
  decision    TEXT    NOT NULL,
  reasons     TEXT    NOT NULL,
  signals     TEXT    NOT NULL,
  priority    REAL    NOT NULL DEFAULT 0
);
CREATE INDEX gate_decisions_incident ON gate_decisions (incident_id, at);

-- A ticket opened for humans for an `external` incident (SELFHEAL_GATE_EXTERNAL_TICKETS): no fix job.
ALTER TABLE tickets ADD COLUMN kind TEXT NOT NULL DEFAULT 'fix' CHECK (kind IN ('fix', 'external'));
