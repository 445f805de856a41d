-- selfheal schema v3: the local fixer's lease on a ready fix run, its result, and cool-downs.
--
-- One fixer at a time is a unique constraint: the partial unique index below admits at most one
-- run in `leased` or `fixing`. A lease that expires goes back to `ready` (in the same batch that
-- takes the next lease), without taking another unit of the daily cap (the budget trigger only
-- fires on claimed/deferred → ready).

ALTER TABLE fix_runs ADD COLUMN lease_id         TEXT;     -- random id the fixer must present
ALTER TABLE fix_runs ADD COLUMN lease_owner      TEXT;     -- the fixer's name (host, user)
ALTER TABLE fix_runs ADD COLUMN lease_expires_at INTEGER;  -- ms since the epoch
ALTER TABLE fix_runs ADD COLUMN pr_url           TEXT;     -- the draft PR, once opened
ALTER TABLE fix_runs ADD COLUMN result           TEXT;     -- JSON: outcome, reason, diagnosis, evidence
CREATE UNIQUE INDEX fix_runs_one_lease ON fix_runs ((1)) WHERE state IN ('leased', 'fixing');

-- A failed fix puts the fingerprint on a cool-down: no lease on its incident before this time (ms).
ALTER TABLE ops_incidents ADD COLUMN cooldown_until INTEGER;
