//! The control plane's storage on SQLite: per-run tokens (src/storage/run_tokens.rs) live exactly
//! as long as their run's lease, and the retention rules (src/storage/retention.rs) on SQLite with the real migrations and foreign
//! keys on (as D1 has them): what must stay stays (incidents not resolved, their samples, tickets
//! and runs; any incident with an open run; each incident's latest gate decision; live tokens and
//! holds), what is past its rule goes, and every table of `migrations/` has a rule.

use std::collections::BTreeSet;

use rusqlite::Connection;
use selfheal::fixing::caps::Caps;
use selfheal::security::{mint_run_token, run_token_matches};
use selfheal::sqlite::{Db, run_batch};
use selfheal::storage::retention::{self, DAY_MS, RULES};
use selfheal::storage::run_tokens::{self, RunTokenRow, SELECT_RUN_TOKEN};
use selfheal::store::{self, Statement, utc_day};

const NOW: i64 = 1_800_000_000_000;

fn ago(days: i64) -> i64 {
    NOW - days * DAY_MS
}

fn db() -> Connection {
    let conn = Db::memory().expect("sqlite with the migrations").conn;
    conn.execute_batch("PRAGMA foreign_keys = ON;")
        .expect("foreign keys");
    conn
}

fn exec(conn: &Connection, sql: &str) {
    conn.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// An incident with two samples, a ticket, a fix run in `run_state` and two gate decisions.
fn incident(conn: &Connection, id: i64, status: &str, last_seen: i64, run_state: &str) {
    let fp = format!("fp{id}");
    exec(
        conn,
        &format!(
            "INSERT INTO ops_incidents (id, fingerprint, fingerprint_version, script_name, route_pattern, exception_type, \
             normalized_message, top_frame, status_class, first_seen, last_seen, status, ticket_id, updated_at) \
             VALUES ({id}, '{fp}', 1, 'api', '/x', 'TypeError', 'm', 'f', '5xx', {last_seen}, {last_seen}, '{status}', {id}, {last_seen});
             INSERT INTO tickets (id, incident_id, fingerprint, title, body, created_at, updated_at, queued_at) \
             VALUES ({id}, {id}, '{fp}', 't', 'b', {last_seen}, {last_seen}, {last_seen});
             INSERT INTO fix_runs (id, incident_id, ticket_id, fingerprint, state, task, created_at, updated_at, lease_id, lease_expires_at) \
             VALUES ({id}, {id}, {id}, '{fp}', '{run_state}', '{{}}', {last_seen}, {last_seen}, 'lease{id}', {});
             INSERT INTO gate_decisions (incident_id, at, mode, decision, reasons, signals) VALUES \
             ({id}, {}, 'shadow', 'watch', '[]', '{{}}'), ({id}, {}, 'shadow', 'ticket', '[]', '{{}}');",
            NOW + 3_600_000,
            last_seen - 2 * DAY_MS,
            last_seen - DAY_MS,
        ),
    );
    for n in 0..2 {
        exec(
            conn,
            &format!(
                "INSERT INTO ops_log_events (event_key, fingerprint, script_name, route_pattern, event_kind, outcome, \
                 exception_type, message, normalized_message, top_frame, stack, logs, request, event_timestamp, remarks, received_at) \
                 VALUES ('{fp}-{n}', '{fp}', 'api', '/x', 'fetch', 'exception', 'TypeError', 'm', 'm', 'f', 's', '[]', '{{}}', {last_seen}, '[]', {last_seen})"
            ),
        );
    }
}

fn fixture(conn: &Connection) {
    incident(conn, 1, "open", ago(200), "failed"); // open: kept whatever its age
    incident(conn, 2, "resolved", ago(100), "pr_opened"); // past its rule: all of it goes
    incident(conn, 3, "resolved", ago(100), "leased"); // open run: kept
    incident(conn, 4, "resolved", ago(10), "pr_opened"); // recent: kept
    incident(conn, 5, "ignored", ago(300), "failed"); // ignored stays ignored: kept
    exec(
        conn,
        &format!(
            "INSERT INTO run_tokens (token_hash, run_id, lease_id, expires_at, created_at) VALUES \
             ('live', 3, 'lease3', {later}, {now}), ('stale', 3, 'an-older-lease', {later}, {now}), ('finished', 2, 'lease2', {later}, {now});
             INSERT INTO tracker_holds (tracker, until_ms, reason, created_at) VALUES ('github', {later}, 'r', {now}), ('old', {now} - 1, 'r', {now});
             INSERT INTO ops_occurrences (event_key, fingerprint, ts) VALUES ('k-old', 'fp1', {d8}), ('k-new', 'fp1', {d6});
             INSERT INTO ops_traffic_5m (script, route, bucket, requests) VALUES ('api', '/x', {d3}, 1), ('api', '/x', {d1}, 1);
             INSERT INTO ops_traffic_1h (script, route, bucket, requests) VALUES ('api', '/x', {d36}, 1), ('api', '/x', {d30}, 1);
             INSERT INTO ops_traffic_flushes (flush_id, attempt, at) VALUES ('f-old', 'a', {d3}), ('f-new', 'a', {d1});
             INSERT INTO ops_releases (script, release, first_seen, last_seen) VALUES ('api', 'v1', {d91}, {d91}), ('api', 'v2', {d89}, {d89});
             INSERT INTO ops_ingest_stats (day) VALUES ('{day91}'), ('{day89}');
             INSERT INTO fix_budget (day, cap) VALUES ('{day91}', 5), ('{day89}', 5);",
            later = NOW + 3_600_000,
            now = NOW,
            d1 = ago(1),
            d3 = ago(3),
            d6 = ago(6),
            d8 = ago(8),
            d30 = ago(30),
            d36 = ago(36),
            d89 = ago(89),
            d91 = ago(91),
            day89 = utc_day(ago(89)),
            day91 = utc_day(ago(91)),
        ),
    );
}

fn ids(conn: &Connection, sql: &str) -> Vec<String> {
    let mut st = conn.prepare(sql).expect("prepare");
    st.query_map([], |r| r.get::<_, rusqlite::types::Value>(0))
        .expect("query")
        .map(|v| match v.expect("row") {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn pruning_keeps_what_it_must_and_deletes_what_is_past_its_rule() {
    let mut conn = db();
    fixture(&conn);
    run_batch(&mut conn, &retention::statements(NOW)).expect("retention batch");

    // Incidents: only the resolved one quiet for 90+ days without an open run went, with its
    // samples, ticket, run, decisions and token.
    let kept = ["1", "3", "4", "5"];
    assert_eq!(ids(&conn, "SELECT id FROM ops_incidents ORDER BY id"), kept);
    assert_eq!(ids(&conn, "SELECT id FROM tickets ORDER BY id"), kept);
    assert_eq!(ids(&conn, "SELECT id FROM fix_runs ORDER BY id"), kept);
    assert_eq!(
        ids(
            &conn,
            "SELECT DISTINCT fingerprint FROM ops_log_events ORDER BY 1"
        ),
        ["fp1", "fp3", "fp4", "fp5"]
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM ops_log_events"),
        8,
        "every sample of a kept incident"
    );
    // Gate decisions: the 90-day window, but never an incident's latest.
    assert_eq!(
        ids(
            &conn,
            "SELECT incident_id || ':' || decision FROM gate_decisions ORDER BY id"
        ),
        ["1:ticket", "3:ticket", "4:watch", "4:ticket", "5:ticket"]
    );
    assert_eq!(ids(&conn, "SELECT token_hash FROM run_tokens"), ["live"]);
    assert_eq!(ids(&conn, "SELECT tracker FROM tracker_holds"), ["github"]);
    assert_eq!(
        ids(&conn, "SELECT event_key FROM ops_occurrences"),
        ["k-new"]
    );
    assert_eq!(
        ids(&conn, "SELECT bucket FROM ops_traffic_5m"),
        [ago(1).to_string()]
    );
    assert_eq!(
        ids(&conn, "SELECT bucket FROM ops_traffic_1h"),
        [ago(30).to_string()]
    );
    assert_eq!(
        ids(&conn, "SELECT flush_id FROM ops_traffic_flushes"),
        ["f-new"]
    );
    assert_eq!(ids(&conn, "SELECT release FROM ops_releases"), ["v2"]);
    assert_eq!(
        ids(&conn, "SELECT day FROM ops_ingest_stats"),
        [utc_day(ago(89))]
    );
    assert_eq!(ids(&conn, "SELECT day FROM fix_budget"), [utc_day(ago(89))]);
    // The occurrence triggers' buckets follow their own windows (2 and 35 days).
    assert_eq!(
        count(
            &conn,
            &format!("SELECT count(*) FROM ops_occ_5m WHERE bucket < {}", ago(2))
        ),
        0
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM ops_occ_1h"), 2);

    // A second run deletes nothing more.
    let before: i64 = count(
        &conn,
        "SELECT (SELECT count(*) FROM ops_incidents) + (SELECT count(*) FROM gate_decisions) + (SELECT count(*) FROM ops_log_events)",
    );
    run_batch(&mut conn, &retention::statements(NOW)).expect("again");
    assert_eq!(
        count(
            &conn,
            "SELECT (SELECT count(*) FROM ops_incidents) + (SELECT count(*) FROM gate_decisions) + (SELECT count(*) FROM ops_log_events)"
        ),
        before
    );
}

#[test]
fn every_table_of_the_migrations_has_a_retention_rule() {
    // The tables the migrations leave behind (a rebuild's scratch copy is dropped again).
    let db = Db::memory().expect("db");
    let mut stmt = db
        .conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .expect("prepare");
    let tables: BTreeSet<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("names");
    assert!(tables.len() >= 15, "{tables:?}");
    let ruled: BTreeSet<String> = RULES.iter().map(|r| r.table.to_string()).collect();
    let missing: Vec<&String> = tables.difference(&ruled).collect();
    assert!(
        missing.is_empty(),
        "tables without a retention rule: {missing:?}"
    );
    let unknown: Vec<&String> = ruled.difference(&tables).collect();
    assert!(
        unknown.is_empty(),
        "rules for tables that do not exist: {unknown:?}"
    );
}

fn live_tokens(conn: &mut Connection, run_id: i64, now: i64) -> Vec<RunTokenRow> {
    let rows = run_batch(
        conn,
        &[Statement {
            sql: SELECT_RUN_TOKEN,
            params: vec![run_id.into(), now.into()],
        }],
    )
    .expect("select token")
    .remove(0);
    selfheal::sqlite::decode(rows).expect("decode")
}

#[test]
fn a_run_token_is_minted_with_its_lease_and_dies_with_it() {
    let mut conn = db();
    incident(&conn, 1, "claimed", NOW, "ready");
    incident(&conn, 2, "claimed", NOW, "ready");
    let minted = mint_run_token(&[9u8; 32]);
    let r = run_batch(
        &mut conn,
        &run_tokens::lease_with_token("L1", "webhook", NOW, 60_000, &minted.hash, &Caps::default()),
    )
    .expect("lease");
    let leased = r[run_tokens::LEASE_READBACK_INDEX][0]["run_id"].as_i64();
    assert_eq!(leased, Some(1));
    assert_eq!(count(&conn, "SELECT count(*) FROM run_tokens"), 1);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM run_tokens WHERE token_hash LIKE 'shr_%'"
        ),
        0,
        "only the hash is stored"
    );
    let rows = live_tokens(&mut conn, 1, NOW + 1);
    assert_eq!(rows.len(), 1);
    assert!(run_token_matches(&minted.token, &rows[0].token_hash));
    assert!(
        live_tokens(&mut conn, 2, NOW + 1).is_empty(),
        "no token for another run"
    );
    // No second lease while one is held: no token minted either.
    let other = mint_run_token(&[10u8; 32]);
    run_batch(
        &mut conn,
        &run_tokens::lease_with_token("L2", "webhook", NOW, 60_000, &other.hash, &Caps::default()),
    )
    .expect("second lease");
    assert_eq!(count(&conn, "SELECT count(*) FROM run_tokens"), 1);
    // Expired lease: dead token.
    assert!(live_tokens(&mut conn, 1, NOW + 60_001).is_empty());
    // Finished run: dead token, and retention removes it.
    run_batch(
        &mut conn,
        &[store::finish_run(
            1,
            "L1",
            "pr_opened",
            Some("https://x/pr/1"),
            "{}",
            NOW + 5,
        )],
    )
    .expect("finish");
    assert!(live_tokens(&mut conn, 1, NOW + 6).is_empty());
    run_batch(&mut conn, &retention::statements(NOW + 6)).expect("retention");
    assert_eq!(count(&conn, "SELECT count(*) FROM run_tokens"), 0);
}
