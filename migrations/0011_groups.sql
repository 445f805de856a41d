-- selfheal schema v11: groups in D1 (issue 12 §1; src/signal/groups.rs).
--
-- The cron's group step runs the merge stage (src/signal/grouping.rs) over the incidents of the
-- retention window and stores each incident's group here; tickets then follow the group: a
-- member whose group already has a ticket is linked to it instead of opening one.
--
-- group_key:    the fingerprint of the group's first member (first-seen order); NULL = not
--               grouped yet (the cron fills it on its next run).
-- group_pinned: 1 = an operator split the incident out (`selfheal unmerge`): it is its own group
--               (group_key = its own fingerprint) and the cron leaves it so.

ALTER TABLE ops_incidents ADD COLUMN group_key TEXT;
ALTER TABLE ops_incidents ADD COLUMN group_pinned INTEGER NOT NULL DEFAULT 0;
CREATE INDEX ops_incidents_group ON ops_incidents (group_key);
