//! Groups in D1 (issue 12 §1): the merge stage of [`super::grouping`] run by the cron over the
//! stored incidents, tickets that follow the group, and the operator's unmerge. Pure statements
//! and plans: the cron Worker (`scheduled/src/groups.rs`) runs them on D1, the tests on SQLite
//! with the same migrations (`tests/groups_sqlite.rs`).
//!
//! # The group step (one read, one batch)
//! [`members_statement`] reads the incidents of the window ([`GROUP_WINDOW_MS`], at most
//! [`MAX_GROUP_MEMBERS`] most recently active) in first-seen order; [`plan`] runs
//! [`assign_groups`] over the ones not pinned (a pinned incident is its own group, keyed by its
//! own fingerprint) and returns each incident whose stored `group_key` differs;
//! [`store_statements`] writes, per change, a history row (`from = to = status`, actor `cron`,
//! why `grouped`, figures: the group key and the previous one, the member's shape, the group's
//! member count) and then the key. Both statements re-check `group_pinned` at write time, so an
//! unmerge between the read and the write is never undone.
//!
//! # Tickets follow the group
//! A group's **ticket** is the ticket of one of its members that is not pinned and not
//! `resolved` (the holder). [`group_ticket_statements`] replace the plain insert of a ticket:
//! the insert happens only when the group has no ticket; otherwise the incident is linked to the
//! group's ticket (`ticket_id`, status `ticketed`) with a history row on the holder (`member_joined`,
//! figures: the member's id, fingerprint, normalized message and occurrences) and no fix job (the
//! insert returns no row). The check runs when the statement runs, so within one batch the first
//! candidate of a group (the candidates come most important first) opens the ticket and the
//! others join it: at most one ticket per group per run. An incident not grouped yet
//! (`group_key` NULL) or pinned opens its own ticket as before.
//!
//! # Unmerge
//! [`unmerge_statements`]: the incident is pinned and keyed by its own fingerprint; when it was
//! linked to another member's ticket it is unlinked (`ticket_id` NULL, status `open`), so the
//! next cron opens its own ticket. A history row `unmerged` records the previous group and the
//! ticket it left. The cron never re-groups a pinned incident.

use serde::{Deserialize, Serialize};

use super::grouping::{BucketKey, MinerConfig, assign_groups, shape};
use crate::store::{self, SqlValue, Statement};

/// Incidents active within this are grouped, ms (90 days: the window the retention keeps
/// resolved incidents for, [`crate::storage::retention::RESOLVED_INCIDENT_DAYS`]).
pub const GROUP_WINDOW_MS: i64 = crate::storage::retention::RESOLVED_INCIDENT_DAYS * 86_400_000;
/// Incidents read per run (the most recently active; older ones keep their stored key).
pub const MAX_GROUP_MEMBERS: i64 = 5000;
/// Changes written per statement pair of [`store_statements`] (bounds a bound parameter's size).
pub const CHANGES_PER_STATEMENT: usize = 200;

/// Not members: incidents another tracker already grouped (a Sentry or a Workers Issues issue is one
/// incident by its issue id: the sender's grouping stands) and a script's overflow incident.
const SELECT_GROUP_MEMBERS: &str = "SELECT id, fingerprint, script_name, exception_type, top_frame, route_pattern, \
status_class, normalized_message, first_seen, group_key, group_pinned FROM (SELECT * FROM ops_incidents \
WHERE last_seen >= ?1 AND exception_type <> 'selfheal.overflow' \
AND fingerprint NOT IN (SELECT fingerprint FROM intake_sentry_issues) \
AND fingerprint NOT IN (SELECT fingerprint FROM intake_workers_issues) \
ORDER BY last_seen DESC, id DESC LIMIT ?2) ORDER BY first_seen, id";

/// The read of the group step at `now_ms`: rows of [`GroupMemberRow`], first-seen order.
pub fn members_statement(now_ms: i64) -> Statement {
    Statement::new(
        SELECT_GROUP_MEMBERS,
        vec![(now_ms - GROUP_WINDOW_MS).into(), MAX_GROUP_MEMBERS.into()],
    )
}

/// One incident as the group step reads it (columns of `ops_incidents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMemberRow {
    /// `ops_incidents.id`.
    pub id: i64,
    /// Fingerprint (32 hex chars).
    pub fingerprint: String,
    /// Worker name.
    pub script_name: String,
    /// Exception type component.
    pub exception_type: String,
    /// Top in-app frame component, may be empty.
    pub top_frame: String,
    /// Route pattern.
    pub route_pattern: String,
    /// Status class component.
    pub status_class: String,
    /// Normalized message component.
    pub normalized_message: String,
    /// First occurrence, ms since the epoch.
    pub first_seen: i64,
    /// Stored group key (None = not grouped yet).
    #[serde(default)]
    pub group_key: Option<String>,
    /// 1 = split out by an operator.
    #[serde(default)]
    pub group_pinned: i64,
}

/// One incident whose group key changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupChange {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// The new key: the fingerprint of the group's first member.
    pub group_key: String,
    /// The member's message as the miner sees it ([`shape`]).
    pub shape: String,
    /// Members of the group among the incidents read.
    pub members: usize,
    /// 1 when the incident is pinned (its key is its own fingerprint); the write applies only
    /// while the stored flag is still this.
    pub pinned: i64,
}

/// The changes of one run: [`assign_groups`] over the unpinned `rows` (first-seen order), each
/// pinned row keyed by its own fingerprint; only rows whose stored key differs are returned.
pub fn plan(rows: &[GroupMemberRow], cfg: &MinerConfig) -> Vec<GroupChange> {
    let free: Vec<&GroupMemberRow> = rows.iter().filter(|r| r.group_pinned == 0).collect();
    let members: Vec<(BucketKey, String)> = free
        .iter()
        .map(|r| {
            let key = BucketKey::new(
                &r.script_name,
                &r.exception_type,
                &r.top_frame,
                &r.route_pattern,
                &r.status_class,
            );
            (key, r.normalized_message.clone())
        })
        .collect();
    let firsts = assign_groups(&members, cfg);
    let mut size = vec![0usize; free.len()];
    for &g in &firsts {
        if let Some(n) = size.get_mut(g) {
            *n += 1;
        }
    }
    let mut out = Vec::new();
    for (r, &g) in free.iter().zip(&firsts) {
        let key = free.get(g).map_or(&r.fingerprint, |f| &f.fingerprint);
        if r.group_key.as_deref() != Some(key.as_str()) {
            out.push(GroupChange {
                incident_id: r.id,
                group_key: key.clone(),
                shape: shape(&r.normalized_message),
                members: size.get(g).copied().unwrap_or(1),
                pinned: 0,
            });
        }
    }
    for r in rows.iter().filter(|r| r.group_pinned != 0) {
        if r.group_key.as_deref() != Some(r.fingerprint.as_str()) {
            out.push(GroupChange {
                incident_id: r.id,
                group_key: r.fingerprint.clone(),
                shape: shape(&r.normalized_message),
                members: 1,
                pinned: 1,
            });
        }
    }
    out
}

const INSERT_GROUPED_HISTORY: &str = "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
SELECT i.id, ?2, i.status, i.status, 'cron', 'grouped', json_object('event', 'grouped', \
'group_key', json_extract(c.value, '$.group_key'), 'previous_group_key', i.group_key, \
'shape', json_extract(c.value, '$.shape'), 'members', json_extract(c.value, '$.members')) \
FROM json_each(?1) c JOIN ops_incidents i ON i.id = json_extract(c.value, '$.incident_id') \
WHERE i.group_pinned = json_extract(c.value, '$.pinned') AND i.group_key IS NOT json_extract(c.value, '$.group_key')";

const UPDATE_GROUP_KEYS: &str = "UPDATE ops_incidents SET group_key = (SELECT json_extract(c.value, '$.group_key') \
FROM json_each(?1) c WHERE json_extract(c.value, '$.incident_id') = ops_incidents.id) \
WHERE id IN (SELECT json_extract(c.value, '$.incident_id') FROM json_each(?1) c \
WHERE json_extract(c.value, '$.pinned') = ops_incidents.group_pinned)";

/// The writes of `changes` at `now_ms` (one batch): per [`CHANGES_PER_STATEMENT`] changes, the
/// history rows, then the keys.
pub fn store_statements(changes: &[GroupChange], now_ms: i64) -> Vec<Statement> {
    let mut out = Vec::new();
    for chunk in changes.chunks(CHANGES_PER_STATEMENT) {
        let json = SqlValue::Text(store::json_text(chunk));
        out.push(Statement::new(
            INSERT_GROUPED_HISTORY,
            vec![json.clone(), now_ms.into()],
        ));
        out.push(Statement::new(UPDATE_GROUP_KEYS, vec![json]));
    }
    out
}

/// The ticket of incident `?1`'s group held by another member (not pinned, not resolved); the
/// oldest when several hold one (a group formed after its members were ticketed).
macro_rules! group_ticket {
    () => {
        "(SELECT t.id FROM ops_incidents i JOIN ops_incidents m ON m.group_key = i.group_key AND m.id <> i.id \
         JOIN tickets t ON t.incident_id = m.id WHERE i.id = ?1 AND i.group_pinned = 0 AND m.group_pinned = 0 \
         AND m.status <> 'resolved' ORDER BY t.id LIMIT 1)"
    };
}

const INSERT_TICKET_UNLESS_GROUP_HAS_ONE: &str = concat!(
    "INSERT INTO tickets (incident_id, fingerprint, title, body, state, created_at, updated_at, kind) \
     SELECT ?1, ?2, ?3, ?4, 'open', ?5, ?5, ?6 WHERE ",
    group_ticket!(),
    " IS NULL ON CONFLICT (incident_id) DO NOTHING RETURNING id, incident_id"
);

const INSERT_MEMBER_JOINED: &str = concat!(
    "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
     SELECT h.id, ?2, h.status, h.status, 'cron', 'member_joined', json_object('event', 'member_joined', \
     'member_incident_id', i.id, 'fingerprint', i.fingerprint, 'normalized_message', i.normalized_message, \
     'occurrences', i.occurrence_count, 'ticket_id', t.id) \
     FROM ops_incidents i JOIN tickets t ON t.id = ",
    group_ticket!(),
    " JOIN ops_incidents h ON h.id = t.incident_id WHERE i.id = ?1 AND i.ticket_id IS NULL \
     AND NOT EXISTS (SELECT 1 FROM tickets o WHERE o.incident_id = ?1)"
);

const LINK_TICKET_OR_GROUP: &str = concat!(
    "UPDATE ops_incidents SET status = 'ticketed', updated_at = ?2, ticket_id = coalesce(\
     (SELECT id FROM tickets WHERE incident_id = ?1), ",
    group_ticket!(),
    ") WHERE id = ?1 AND ticket_id IS NULL AND coalesce((SELECT id FROM tickets WHERE incident_id = ?1), ",
    group_ticket!(),
    ") IS NOT NULL"
);

/// Statements per incident in [`group_ticket_statements`].
pub const STATEMENTS_PER_INCIDENT: usize = 4;

/// The statements that give incident `incident_id` its ticket or its group's, in this order
/// (the first returns a row only when it created a ticket: only then is a fix job due):
/// 1. the ticket (`kind`: `fix` | `external`), unless its group has one;
/// 2. the `ticket_opened` history row ([`store::ticket_history`]; only for its own ticket);
/// 3. the `member_joined` history row on the group's ticket holder (only when it joins one);
/// 4. the link (own ticket, else the group's), status `ticketed`.
pub fn group_ticket_statements(
    incident_id: i64,
    fingerprint: &str,
    title: &str,
    body: &str,
    kind: &str,
    now_ms: i64,
) -> [Statement; STATEMENTS_PER_INCIDENT] {
    // The plain insert's parameters (?1..?6), with the group's condition.
    let mut insert =
        store::insert_ticket_of_kind(incident_id, fingerprint, title, body, now_ms, kind);
    insert.sql = INSERT_TICKET_UNLESS_GROUP_HAS_ONE;
    [
        insert,
        store::ticket_history(incident_id, now_ms),
        Statement::new(
            INSERT_MEMBER_JOINED,
            vec![incident_id.into(), now_ms.into()],
        ),
        Statement::new(
            LINK_TICKET_OR_GROUP,
            vec![incident_id.into(), now_ms.into()],
        ),
    ]
}

/// `?1`'s ticket is another incident's (it joined a group's ticket).
macro_rules! linked_to_other {
    () => {
        "(i.ticket_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = i.ticket_id AND t.incident_id = i.id))"
    };
}

const INSERT_UNMERGED_HISTORY: &str = concat!(
    "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
     SELECT i.id, ?2, i.status, CASE WHEN ",
    linked_to_other!(),
    " AND i.status = 'ticketed' THEN 'open' ELSE i.status END, 'operator', 'unmerged', \
     json_object('event', 'unmerged', 'previous_group_key', i.group_key, 'group_key', i.fingerprint, \
     'unlinked_ticket_id', CASE WHEN ",
    linked_to_other!(),
    " THEN i.ticket_id END) FROM ops_incidents i WHERE i.id = ?1 AND i.group_pinned = 0 \
     RETURNING json_extract(figures, '$.unlinked_ticket_id') AS unlinked_ticket_id"
);

const UPDATE_UNMERGED: &str = concat!(
    "UPDATE ops_incidents AS i SET group_pinned = 1, group_key = i.fingerprint, updated_at = ?2, \
     status = CASE WHEN ",
    linked_to_other!(),
    " AND i.status = 'ticketed' THEN 'open' ELSE i.status END, \
     ticket_id = CASE WHEN ",
    linked_to_other!(),
    " THEN NULL ELSE i.ticket_id END WHERE i.id = ?1 AND i.group_pinned = 0 \
     RETURNING id AS incident_id, group_key, status"
);

/// The unmerge of incident `incident_id` at `now_ms` (one batch): the `unmerged` history row
/// (returns `unlinked_ticket_id`, NULL when it held no other member's ticket), then the pin
/// (returns [`Unmerged`]). Neither writes when the incident is already pinned (no rows back).
pub fn unmerge_statements(incident_id: i64, now_ms: i64) -> Vec<Statement> {
    vec![
        Statement::new(
            INSERT_UNMERGED_HISTORY,
            vec![incident_id.into(), now_ms.into()],
        ),
        Statement::new(UPDATE_UNMERGED, vec![incident_id.into(), now_ms.into()]),
    ]
}

/// The row [`unmerge_statements`]' pin returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmerged {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// Its key now: its own fingerprint.
    pub group_key: String,
    /// Its status now (`open` when it left another member's ticket).
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, msg: &str, pinned: i64, key: Option<&str>) -> GroupMemberRow {
        GroupMemberRow {
            id,
            fingerprint: format!("f{id}"),
            script_name: "api".into(),
            exception_type: "SyntaxError".into(),
            top_frame: "handler (index.js)".into(),
            route_pattern: "/items".into(),
            status_class: "5xx".into(),
            normalized_message: msg.into(),
            first_seen: id,
            group_key: key.map(str::to_owned),
            group_pinned: pinned,
        }
    }

    #[test]
    fn json_wordings_are_one_group_and_a_pinned_one_stays_out() {
        let rows = vec![
            row(1, "Unexpected end of JSON input", 0, None),
            row(
                2,
                "Expected property name or '}' in JSON at position <int> (line <int> column <int>)",
                0,
                None,
            ),
            row(3, "Unexpected end of JSON input", 1, Some("f1")),
        ];
        let changes = plan(&rows, &MinerConfig::default());
        let keys: Vec<(i64, &str, usize, i64)> = changes
            .iter()
            .map(|c| (c.incident_id, c.group_key.as_str(), c.members, c.pinned))
            .collect();
        assert_eq!(
            keys,
            vec![(1, "f1", 2, 0), (2, "f1", 2, 0), (3, "f3", 1, 1)]
        );
        assert_eq!(changes[0].shape, "<json_parse_error>");
        // Applied keys produce no further change.
        let applied: Vec<GroupMemberRow> = rows
            .iter()
            .map(|r| {
                let k = changes
                    .iter()
                    .find(|c| c.incident_id == r.id)
                    .map(|c| c.group_key.clone());
                GroupMemberRow {
                    group_key: k,
                    ..r.clone()
                }
            })
            .collect();
        assert!(plan(&applied, &MinerConfig::default()).is_empty());
    }
}
