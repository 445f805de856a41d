-- selfheal schema v2: an external tracker (GitHub Issues) beside the built-in one.
--
-- The built-in `tickets` row stays the record; the cron Worker mirrors it to the tracker and
-- keeps the tracker's number here. A crash between "created on GitHub" and "recorded here" is
-- healed by the marker search (see src/github.rs) before any create.

ALTER TABLE tickets ADD COLUMN external_number INTEGER;   -- issue number on the tracker; NULL = not mirrored yet
ALTER TABLE tickets ADD COLUMN external_url    TEXT;      -- its web URL
ALTER TABLE tickets ADD COLUMN external_state  TEXT;      -- 'open' | 'closed' as last set on the tracker
CREATE INDEX tickets_unmirrored ON tickets (external_number, id);

-- The last fix-run state announced on the tracker (a comment per change).
ALTER TABLE fix_runs ADD COLUMN notified_state TEXT;
