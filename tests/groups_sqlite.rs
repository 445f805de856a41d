//! Groups in D1 (`selfheal::signal::groups`) on SQLite with the real migrations, the cron's
//! statements as the cron runs them: the group step keys one malformed-body bug's JSON wordings
//! into one group (a history row per change, figures stored), the tickets follow the group (one
//! ticket, members linked with a `member_joined` row on the holder, no second ticket in later
//! runs; the mirror's query and comment carry it to the tracker issue), a different bug on the same route stays its own group and ticket, and an unmerged
//! member gets its own ticket on the next run and stays out after more runs.

use selfheal::signal::grouping::MinerConfig;
use selfheal::signal::groups::{self, GroupMemberRow, Unmerged};
use selfheal::signal::step;
use selfheal::sqlite::Db;
use selfheal::store::{
    EventSample, GatedIncidentRow, SELECT_TICKET_CANDIDATES, SELECT_TRACKER_CHANGES, Statement,
    TrackerChange,
};
use selfheal::ticket;
use serde_json::Value;

const T0: i64 = 1_800_000_000_000;

/// (id, exception type, normalized message as the tail Worker stores it).
const INCIDENTS: &[(i64, &str, &str)] = &[
    (
        1,
        "SyntaxError",
        "Unexpected token <quoted>, <quoted> is not valid JSON",
    ),
    (2, "SyntaxError", "Unexpected end of JSON input"),
    (
        3,
        "TypeError",
        "Cannot read properties of undefined (reading 'email')",
    ),
    (
        4,
        "SyntaxError",
        "Expected property name or <quoted> in JSON at position <int> (line <int> column <int>)",
    ),
    (
        5,
        "SyntaxError",
        "Unexpected non-whitespace character after JSON at position <int>",
    ),
];

fn db() -> Db {
    let db = Db::memory().expect("db");
    for (id, ty, msg) in INCIDENTS {
        db.conn
            .execute(
                "INSERT INTO ops_incidents (id, fingerprint, fingerprint_version, script_name, route_pattern, \
                 exception_type, normalized_message, top_frame, status_class, occurrence_count, first_seen, last_seen, updated_at) \
                 VALUES (?1, ?2, 2, 'api', '/items', ?3, ?4, 'handler (src/index.js)', '5xx', 3, ?5, ?5, ?5)",
                rusqlite::params![id, format!("f{id}"), ty, msg, T0 + id],
            )
            .expect("incident");
    }
    db
}

/// One cron run's group step and tickets (the cron's statements, in its order).
fn cron(db: &mut Db, now: i64) -> usize {
    let rows: Vec<GroupMemberRow> = db.rows(groups::members_statement(now)).expect("members");
    let changes = groups::plan(&rows, &MinerConfig::default());
    if !changes.is_empty() {
        db.batch(&groups::store_statements(&changes, now))
            .expect("store groups");
    }
    let candidates: Vec<GatedIncidentRow> = db
        .rows(step::ticket_candidates_statement(SELECT_TICKET_CANDIDATES))
        .expect("candidates");
    if candidates.is_empty() {
        return 0;
    }
    let samples: Vec<EventSample> = db
        .rows(step::ticket_samples_statement(&candidates))
        .expect("samples");
    let results = db
        .batch(&step::ticket_statements(&candidates, &samples, "fix", now))
        .expect("tickets");
    // Fix jobs: one per row the inserts return (what the cron sends).
    results
        .iter()
        .step_by(step::TICKET_STATEMENTS_PER_INCIDENT)
        .map(Vec::len)
        .sum()
}

fn col(db: &mut Db, sql: &'static str) -> Vec<Value> {
    db.rows(Statement {
        sql,
        params: vec![],
    })
    .expect("read")
}

/// (id, group_key, status, ticket_id) of every incident.
fn incidents(db: &mut Db) -> Vec<(i64, String, String, Option<i64>)> {
    col(
        db,
        "SELECT id, group_key, status, ticket_id FROM ops_incidents ORDER BY id",
    )
    .iter()
    .map(|r| {
        (
            r["id"].as_i64().unwrap_or(0),
            r["group_key"].as_str().unwrap_or("").to_string(),
            r["status"].as_str().unwrap_or("").to_string(),
            r["ticket_id"].as_i64(),
        )
    })
    .collect()
}

fn ticket_of(db: &Db, incident: i64) -> i64 {
    db.scalar(&format!(
        "SELECT id FROM tickets WHERE incident_id = {incident}"
    ))
    .expect("ticket")
}

fn whys(db: &mut Db, incident: i64) -> Vec<String> {
    let rows = db
        .rows::<Value>(Statement {
            sql: "SELECT why FROM incident_history WHERE incident_id = ?1 ORDER BY id",
            params: vec![incident.into()],
        })
        .expect("history");
    rows.iter()
        .map(|r| r["why"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn one_bug_one_group_one_ticket_and_an_unmerged_member_stays_out() {
    let mut db = db();
    let jobs = cron(&mut db, T0 + 60_000);
    assert_eq!(
        jobs, 2,
        "one fix job per group: the JSON bug and the TypeError"
    );
    let (json_ticket, type_ticket) = (ticket_of(&db, 1), ticket_of(&db, 3));
    assert_ne!(json_ticket, type_ticket);
    assert_eq!(
        incidents(&mut db),
        vec![
            (1, "f1".into(), "ticketed".into(), Some(json_ticket)),
            (2, "f1".into(), "ticketed".into(), Some(json_ticket)),
            (3, "f3".into(), "ticketed".into(), Some(type_ticket)),
            (4, "f1".into(), "ticketed".into(), Some(json_ticket)),
            (5, "f1".into(), "ticketed".into(), Some(json_ticket)),
        ]
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM tickets").expect("n"),
        2,
        "no ticket for a member"
    );
    // History: the holder has its grouping, its ticket and three members joining; a member only
    // its grouping.
    assert_eq!(
        whys(&mut db, 1),
        vec![
            "grouped",
            "ticket_opened",
            "member_joined",
            "member_joined",
            "member_joined"
        ]
    );
    assert_eq!(whys(&mut db, 2), vec!["grouped"]);
    let joined = col(
        &mut db,
        "SELECT from_status, to_status, actor, figures FROM incident_history WHERE why = 'member_joined' ORDER BY id LIMIT 1",
    );
    let figures: Value =
        serde_json::from_str(joined[0]["figures"].as_str().unwrap_or("")).expect("figures");
    assert_eq!(figures["member_incident_id"], 2);
    assert_eq!(figures["fingerprint"], "f2");
    assert_eq!(
        figures["normalized_message"],
        "Unexpected end of JSON input"
    );
    assert_eq!(figures["occurrences"], 3);
    assert_eq!(joined[0]["actor"], "cron");
    assert_eq!(joined[0]["from_status"], joined[0]["to_status"]);
    let grouped = col(
        &mut db,
        "SELECT figures FROM incident_history WHERE why = 'grouped' AND incident_id = 4",
    );
    let figures: Value =
        serde_json::from_str(grouped[0]["figures"].as_str().unwrap_or("")).expect("figures");
    assert_eq!(figures["group_key"], "f1");
    assert_eq!(figures["members"], 4);
    assert_eq!(figures["shape"], "<json_parse_error>");

    // A later run changes nothing: no new key, no history, no ticket.
    let before = db
        .scalar("SELECT count(*) FROM incident_history")
        .expect("n");
    assert_eq!(cron(&mut db, T0 + 360_000), 0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM incident_history")
            .expect("n"),
        before
    );

    // Unmerge member 4: pinned, own key, unlinked → its own ticket on the next run.
    let r = db
        .batch(&groups::unmerge_statements(4, T0 + 400_000))
        .expect("unmerge");
    assert_eq!(r[0][0]["unlinked_ticket_id"], json_ticket);
    let u: Unmerged = serde_json::from_value(r[1][0].clone()).expect("unmerged row");
    assert_eq!((u.group_key.as_str(), u.status.as_str()), ("f4", "open"));
    let again = db
        .batch(&groups::unmerge_statements(4, T0 + 410_000))
        .expect("unmerge again");
    assert!(again[0].is_empty() && again[1].is_empty(), "idempotent");
    assert_eq!(cron(&mut db, T0 + 660_000), 1, "the unmerged one's own job");
    for run in 0..3 {
        assert_eq!(cron(&mut db, T0 + 960_000 + run * 300_000), 0);
    }
    let own = ticket_of(&db, 4);
    let now = incidents(&mut db);
    assert_eq!(now[3], (4, "f4".into(), "ticketed".into(), Some(own)));
    assert_eq!(now[4].1, "f1", "the rest stays one group");
    assert_eq!(
        whys(&mut db, 4),
        vec!["grouped", "unmerged", "ticket_opened"]
    );

    // A new wording of the JSON bug after the tickets joins the group's ticket, no new ticket.
    db.conn
        .execute(
            "INSERT INTO ops_incidents (id, fingerprint, fingerprint_version, script_name, route_pattern, \
             exception_type, normalized_message, top_frame, status_class, occurrence_count, first_seen, last_seen, updated_at) \
             VALUES (6, 'f6', 2, 'api', '/items', 'SyntaxError', \
             'Bad control character in string literal in JSON at position <int>', 'handler (src/index.js)', '5xx', 1, ?1, ?1, ?1)",
            [T0 + 2_000_000],
        )
        .expect("new member");
    assert_eq!(cron(&mut db, T0 + 2_100_000), 0);
    assert_eq!(
        incidents(&mut db)[5],
        (6, "f1".into(), "ticketed".into(), Some(json_ticket))
    );
}

#[test]
fn an_ungrouped_incident_opens_its_own_ticket_as_before() {
    // group_key NULL (the group step did not run): every incident its own ticket.
    let mut db = db();
    let candidates: Vec<GatedIncidentRow> = db
        .rows(step::ticket_candidates_statement(SELECT_TICKET_CANDIDATES))
        .expect("candidates");
    db.batch(&step::ticket_statements(&candidates, &[], "fix", T0))
        .expect("tickets");
    assert_eq!(
        db.scalar("SELECT count(*) FROM tickets").expect("n"),
        INCIDENTS.len() as i64
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM incident_history WHERE why = 'member_joined'")
            .expect("n"),
        0
    );
}

#[test]
fn a_member_joining_is_commented_on_the_tracker_issue() {
    let mut db = db();
    cron(&mut db, T0 + 60_000);
    // The holder's ticket is mirrored (issue 7); the member rows joined after it was created.
    db.conn
        .execute_batch(
            "UPDATE tickets SET external_number = 7, external_state = 'open' WHERE incident_id = 1",
        )
        .expect("mirror");
    let changes: Vec<TrackerChange> = db
        .rows(Statement {
            sql: SELECT_TRACKER_CHANGES,
            params: vec![100i64.into()],
        })
        .expect("changes");
    let joined: Vec<&TrackerChange> = changes
        .iter()
        .filter(|c| c.why.as_deref() == Some("member_joined"))
        .collect();
    assert_eq!(joined.len(), 3, "{changes:?}");
    assert!(joined.iter().all(|c| c.external_number == 7));
    let md = ticket::history_comment(
        "member_joined",
        &joined[0].state,
        joined[0].detail.as_deref(),
    );
    assert!(md.contains("another incident of the same bug"), "{md}");
    assert!(md.contains("| fingerprint | f2 |"), "{md}");
    assert!(md.contains("| occurrences | 3 |"), "{md}");
}

#[test]
fn incidents_another_tracker_grouped_are_never_merged() {
    let mut db = db();
    // Incidents 1 and 2 came from Workers Issues (one incident per issue id there): the sender's
    // grouping stands, so they keep their own tickets though their messages share a shape.
    db.conn
        .execute_batch(
            "INSERT INTO intake_workers_issues (issue_id, fingerprint, created_at) VALUES ('wi_1', 'f1', 1), ('wi_2', 'f2', 1)",
        )
        .expect("intake rows");
    let jobs = cron(&mut db, T0 + 100);
    let rows = incidents(&mut db);
    assert_eq!(rows[0].1, "", "not grouped: {rows:?}");
    assert_eq!(rows[1].1, "", "not grouped: {rows:?}");
    assert_ne!(rows[0].3, rows[1].3, "each on its own ticket: {rows:?}");
    // The other two wordings of the same bug (4, 5) still form one group with one ticket.
    assert_eq!(rows[3].1, rows[4].1, "{rows:?}");
    assert_eq!(rows[3].3, rows[4].3, "{rows:?}");
    assert_eq!(
        jobs, 4,
        "tickets: 1, 2, the TypeError, and one for the group of 4 and 5"
    );
}
