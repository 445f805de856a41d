-- selfheal schema v8: the incident history (issue 11). Every change of an incident's status made by
-- selfheal or a person is a row, with who made it, why and the figures (JSON), so a person can
-- check it. (Migration numbers 0006 and 0007 belong to the security and grouping work.)
CREATE TABLE incident_history (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id INTEGER NOT NULL REFERENCES ops_incidents (id),
  at          INTEGER NOT NULL,  -- ms since the epoch
  from_status TEXT    NOT NULL,
  to_status   TEXT    NOT NULL,
  actor       TEXT    NOT NULL,  -- 'operator' (the API token holder), 'cron', 'fixer'
  why         TEXT    NOT NULL,  -- reason code (src/tracking/lifecycle.rs Transition::why)
  figures     TEXT    NOT NULL   -- JSON of the event that made it, with its figures
);
CREATE INDEX incident_history_incident ON incident_history (incident_id, at);
