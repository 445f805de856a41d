//! The incident history's statements (`selfheal::tracking::history`) on SQLite with the real
//! migrations: a status change and its history row land together, and only while the incident is
//! still in the state the change was decided from.

use selfheal::sqlite::Db;
use selfheal::store::Statement;
use selfheal::tracking::history::{self, parse_status};
use selfheal::tracking::lifecycle::{self, LifecycleEvent, Status};

fn db_with_incident() -> Db {
    let db = Db::memory().expect("db");
    db.conn
        .execute_batch(
            "INSERT INTO ops_incidents (fingerprint, fingerprint_version, script_name, route_pattern, exception_type, \
             normalized_message, top_frame, status_class, first_seen, last_seen, updated_at) \
             VALUES ('f1', 1, 'api', '/x', 'TypeError', 'm', '', '5xx', 1, 1, 1)",
        )
        .expect("incident");
    db
}

fn operator(action: &str, from: Status) -> lifecycle::Transition {
    lifecycle::next(
        from,
        &LifecycleEvent::Operator {
            action: action.into(),
        },
        lifecycle::DEFAULT_RESOLVE_AFTER_DAYS,
    )
    .expect("a transition")
}

#[test]
fn a_status_change_and_its_history_row_land_together() {
    let mut db = db_with_incident();
    db.batch(&history::transition_statements(
        1,
        &operator("resolve", Status::Open),
        "operator",
        10,
    ))
    .expect("resolve");
    assert_eq!(
        db.scalar("SELECT count(*) FROM ops_incidents WHERE status = 'resolved'")
            .expect("q"),
        1
    );
    db.batch(&history::transition_statements(
        1,
        &operator("reopen", Status::Resolved),
        "operator",
        20,
    ))
    .expect("reopen");
    let rows: Vec<serde_json::Value> = db
        .rows(Statement {
            sql: history::SELECT_HISTORY,
            params: vec![1i64.into()],
        })
        .expect("history");
    let seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["from_status"].as_str().unwrap_or("").to_string(),
                r["to_status"].as_str().unwrap_or("").to_string(),
                r["why"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("open".into(), "resolved".into(), "operator_resolve".into()),
            ("resolved".into(), "open".into(), "operator_reopen".into()),
        ]
    );
    assert_eq!(rows[0]["actor"], "operator");
    assert!(
        rows[0]["figures"]
            .as_str()
            .unwrap_or("")
            .contains("\"action\":\"resolve\"")
    );
}

#[test]
fn a_change_decided_on_a_stale_status_writes_nothing() {
    let mut db = db_with_incident();
    // Decided while the incident was `resolved`, but it is `open`: nothing happens.
    db.batch(&history::transition_statements(
        1,
        &operator("reopen", Status::Resolved),
        "operator",
        10,
    ))
    .expect("batch");
    assert_eq!(
        db.scalar("SELECT count(*) FROM incident_history")
            .expect("q"),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM ops_incidents WHERE status = 'open'")
            .expect("q"),
        1
    );
    for s in [
        "open",
        "ticketed",
        "claimed",
        "resolved",
        "ignored",
        "regressed",
    ] {
        assert_eq!(parse_status(s).map(Status::as_str), Some(s));
    }
    assert_eq!(parse_status("bogus"), None);
}
