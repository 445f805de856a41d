//! The storage rules, run natively on SQLite (what D1 is) with the real `migrations/` and the
//! exact statements the Workers send: idempotent ingest, counts, sampling, one ticket per incident,
//! one fix run per incident, the daily cap and deferral to the next UTC day.

use rusqlite::Connection;
use selfheal::config::PipelineConfig;
use selfheal::event::{BatchCounts, Event, Verdict, process_item};
use selfheal::storage::ingest::IngestPolicy;
use selfheal::store::{self, SamplePolicy, SqlValue, Statement};
use selfheal::ticket::FixJob;
use selfheal::trace::TraceItem;
use serde_json::{Value, json};

fn db() -> Connection {
    selfheal::sqlite::Db::memory()
        .expect("sqlite with the migrations")
        .conn
}

/// Runs statements in one transaction (as D1 `batch()` does) and returns each one's rows as JSON.
fn batch(conn: &mut Connection, stmts: &[Statement]) -> Vec<Vec<Value>> {
    selfheal::sqlite::run_batch(conn, stmts).unwrap_or_else(|e| panic!("{e}"))
}

fn query(conn: &mut Connection, sql: &'static str, params: Vec<SqlValue>) -> Vec<Value> {
    batch(conn, &[Statement { sql, params }]).remove(0)
}

fn scalar(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect("scalar")
}

fn item(path: &str, ts: i64, message: &str) -> TraceItem {
    serde_json::from_value(json!({
        "outcome": "exception", "scriptName": "api", "eventTimestamp": ts,
        "scriptVersion": {"id": "00000000-0000-0000-0000-000000000001", "tag": format!("v{}", ts % 3)},
        "event": {"request": {"url": format!("https://api.example.com{path}"), "method": "GET", "headers": {}}},
        "exceptions": [{"name": "TypeError", "message": message, "stack": "    at Object.fetch (worker.js:10:5)", "timestamp": ts}],
        "logs": []
    }))
    .expect("item")
}

fn event(path: &str, ts: i64, message: &str) -> Event {
    match process_item(&item(path, ts, message), &PipelineConfig::default(), 0) {
        Verdict::Event(e) => *e,
        Verdict::Noise(r) => panic!("unexpected noise {r:?}"),
    }
}

fn ingest(conn: &mut Connection, events: &[Event]) {
    let counts = BatchCounts {
        items: events.len() as u64,
        events: events.len() as u64,
        ..Default::default()
    };
    let policy = IngestPolicy {
        sample: SamplePolicy { keep_first: 3 },
        ..Default::default()
    };
    let mut stmts = store::ingest_statements(events, 1, policy);
    // Each invocation's delivery counts ride in its traffic flush (one per invocation here).
    let mut agg = selfheal::signal::rates::TrafficAggregator::default();
    agg.add(&[], &counts, 1);
    stmts.extend(store::flush_statements(
        &agg.take(&format!("f{}", stmts.len() + rand_id())),
        "2026-11-21",
        1,
    ));
    batch(conn, &stmts);
}

/// A distinct flush id per call (the flush keys of one test database must not collide).
fn rand_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000
}

#[test]
fn redelivery_does_not_inflate_counts_and_releases_track_time() {
    let mut conn = db();
    let events: Vec<Event> = (0..5)
        .map(|i| event("/users/1", 1000 + i, "boom"))
        .collect();
    ingest(&mut conn, &events);
    ingest(&mut conn, &events); // the same batch again
    ingest(&mut conn, &events[..2]);
    assert_eq!(scalar(&conn, "SELECT count(*) FROM ops_incidents"), 1);
    assert_eq!(
        scalar(&conn, "SELECT occurrence_count FROM ops_incidents"),
        5
    );
    assert_eq!(scalar(&conn, "SELECT count(*) FROM ops_occurrences"), 5);
    assert_eq!(scalar(&conn, "SELECT first_seen FROM ops_incidents"), 1000);
    assert_eq!(scalar(&conn, "SELECT last_seen FROM ops_incidents"), 1004);
    let (first, last): (String, String) = conn
        .query_row(
            "SELECT first_release, last_release FROM ops_incidents",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!((first.as_str(), last.as_str()), ("v1", "v2")); // ts 1000 % 3 = 1, 1004 % 3 = 2
    assert_eq!(scalar(&conn, "SELECT batches FROM ops_ingest_stats"), 3);
}

#[test]
fn storage_is_bounded_per_incident() {
    let mut conn = db();
    let events: Vec<Event> = (0..100)
        .map(|i| event("/users/1", 10_000 + i, "flood"))
        .collect();
    for chunk in events.chunks(7) {
        ingest(&mut conn, chunk);
    }
    assert_eq!(
        scalar(&conn, "SELECT occurrence_count FROM ops_incidents"),
        100
    );
    // keep_first 3, then ordinals 4, 8, 16, 32, 64 (powers of two).
    let stored = scalar(&conn, "SELECT count(*) FROM ops_log_events");
    assert_eq!(stored, 3 + 5, "stored {stored}");
    assert_eq!(
        scalar(&conn, "SELECT stored_events FROM ops_incidents"),
        stored
    );
}

#[test]
fn resolved_incident_regresses_on_a_new_occurrence() {
    let mut conn = db();
    ingest(&mut conn, &[event("/a", 1, "x")]);
    conn.execute("UPDATE ops_incidents SET status = 'resolved'", [])
        .expect("resolve");
    ingest(&mut conn, &[event("/a", 1, "x")]); // replay: not new, stays resolved
    let status: String = conn
        .query_row("SELECT status FROM ops_incidents", [], |r| r.get(0))
        .expect("s");
    assert_eq!(status, "resolved");
    ingest(&mut conn, &[event("/a", 2, "x")]);
    let status: String = conn
        .query_row("SELECT status FROM ops_incidents", [], |r| r.get(0))
        .expect("s");
    assert_eq!(status, "regressed");
}

fn open_tickets(conn: &mut Connection, now: i64) -> Vec<i64> {
    let incidents = query(
        conn,
        store::SELECT_TICKET_CANDIDATES,
        vec![SqlValue::Integer(50)],
    );
    let mut stmts = Vec::new();
    for inc in &incidents {
        let id = inc["id"].as_i64().expect("id");
        let fp = inc["fingerprint"].as_str().expect("fp");
        stmts.push(store::insert_ticket(id, fp, "t", "b", now));
        stmts.push(store::link_ticket(id, now));
    }
    batch(conn, &stmts)
        .iter()
        .step_by(2)
        .flat_map(|rows| rows.iter().map(|r| r["id"].as_i64().expect("ticket id")))
        .collect()
}

#[test]
fn one_ticket_per_incident_even_when_two_crons_race() {
    let mut conn = db();
    ingest(
        &mut conn,
        &[
            event("/a", 1, "x"),
            event("/b", 2, "y"),
            event("/c", 3, "z"),
        ],
    );
    // Both "cron runs" read the candidates before either writes.
    let seen_by_first = query(
        &mut conn,
        store::SELECT_TICKET_CANDIDATES,
        vec![SqlValue::Integer(50)],
    );
    let created_first = open_tickets(&mut conn, 10);
    let mut stmts = Vec::new();
    for inc in &seen_by_first {
        let id = inc["id"].as_i64().expect("id");
        stmts.push(store::insert_ticket(id, "fp", "t", "b", 11));
        stmts.push(store::link_ticket(id, 11));
    }
    let second: usize = batch(&mut conn, &stmts)
        .iter()
        .step_by(2)
        .map(Vec::len)
        .sum();
    assert_eq!(created_first.len(), 3);
    assert_eq!(
        second, 0,
        "the racing run must see no new ticket (and send no message)"
    );
    assert_eq!(scalar(&conn, "SELECT count(*) FROM tickets"), 3);
    assert_eq!(
        scalar(
            &conn,
            "SELECT count(*) FROM ops_incidents WHERE status = 'ticketed' AND ticket_id IS NOT NULL"
        ),
        3
    );
    assert!(open_tickets(&mut conn, 12).is_empty());
}

fn claim(
    conn: &mut Connection,
    incident_id: i64,
    ticket_id: i64,
    day: &str,
    cap: u32,
) -> (bool, String) {
    let stmts = store::claim_statements(
        &FixJob::new(incident_id, ticket_id, "fp".into()),
        "{}",
        day,
        cap,
        5,
    );
    let res = batch(conn, &stmts);
    let new = !res[store::CLAIM_INSERT_INDEX].is_empty();
    let state = res[store::CLAIM_READBACK_INDEX][0]["state"]
        .as_str()
        .expect("state")
        .to_string();
    (new, state)
}

#[test]
fn claims_once_and_the_cap_defers_the_surplus_to_the_next_day() {
    let mut conn = db();
    let events: Vec<Event> = (0..5)
        .map(|i| {
            event(
                &format!("/r{i}"),
                i,
                &format!("bug {}", ["a", "b", "c", "d", "e"][i as usize]),
            )
        })
        .collect();
    ingest(&mut conn, &events);
    let tickets = open_tickets(&mut conn, 10);
    assert_eq!(tickets.len(), 5);
    let pairs: Vec<(i64, i64)> = conn
        .prepare("SELECT incident_id, id FROM tickets ORDER BY id")
        .expect("p")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("q")
        .map(|r| r.expect("row"))
        .collect();

    let mut states = Vec::new();
    for (inc, t) in &pairs {
        let (new, state) = claim(&mut conn, *inc, *t, "2026-11-21", 2);
        assert!(new);
        states.push(state);
    }
    assert_eq!(
        states,
        ["ready", "ready", "deferred", "deferred", "deferred"]
    );
    // A duplicated message: no second run, nothing moves.
    let (new, state) = claim(&mut conn, pairs[0].0, pairs[0].1, "2026-11-21", 2);
    assert!(!new);
    assert_eq!(state, "ready");
    let (new, state) = claim(&mut conn, pairs[2].0, pairs[2].1, "2026-11-21", 2);
    assert_eq!((new, state.as_str()), (false, "deferred"));
    assert_eq!(scalar(&conn, "SELECT count(*) FROM fix_runs"), 5);
    assert_eq!(
        scalar(
            &conn,
            "SELECT used FROM fix_budget WHERE day = '2026-11-21'"
        ),
        2
    );

    // The next UTC day the cron re-sends deferred jobs; two go ahead, one waits again.
    let due = query(
        &mut conn,
        store::SELECT_DEFERRED_DUE,
        vec!["2026-11-22".into()],
    );
    assert_eq!(due.len(), 3);
    let mut next = Vec::new();
    for d in &due {
        let (new, state) = claim(
            &mut conn,
            d["incident_id"].as_i64().expect("i"),
            d["ticket_id"].as_i64().expect("t"),
            "2026-11-22",
            2,
        );
        assert!(!new);
        next.push(state);
    }
    assert_eq!(next, ["ready", "ready", "deferred"]);
    assert_eq!(
        scalar(
            &conn,
            "SELECT used FROM fix_budget WHERE day = '2026-11-22'"
        ),
        2
    );
    assert_eq!(
        query(
            &mut conn,
            store::SELECT_DEFERRED_DUE,
            vec!["2026-11-22".into()]
        )
        .len(),
        0
    );
    assert_eq!(
        scalar(
            &conn,
            "SELECT count(*) FROM ops_incidents WHERE status = 'claimed'"
        ),
        5
    );
}

#[test]
fn samples_query_returns_the_earliest_per_incident() {
    let mut conn = db();
    let mut evs: Vec<Event> = (0..5).map(|i| event("/a", 100 - i, "x")).collect();
    evs.push(event("/b", 7, "y"));
    ingest(&mut conn, &evs);
    let fps: Vec<String> = conn
        .prepare("SELECT fingerprint FROM ops_incidents")
        .expect("p")
        .query_map([], |r| r.get(0))
        .expect("q")
        .map(|r| r.expect("row"))
        .collect();
    let rows = query(
        &mut conn,
        store::SELECT_SAMPLES,
        vec![
            serde_json::to_string(&fps).expect("json").into(),
            SqlValue::Integer(2),
        ],
    );
    assert_eq!(rows.len(), 3);
    let samples: Vec<store::EventSample> = rows
        .into_iter()
        .map(|r| serde_json::from_value(r).expect("sample"))
        .collect();
    let a: Vec<i64> = samples
        .iter()
        .filter(|s| s.url.as_deref().is_some_and(|u| u.ends_with("/a")))
        .map(|s| s.event_timestamp)
        .collect();
    // Inserted in the order 100, 99, 98, 97, 96: keep_first 3 stores 100..98, ordinal 4 (97) is a
    // power of two, ordinal 5 (96) is not stored. The two earliest *stored* are 97 and 98.
    assert_eq!(a, [97, 98]);
}

#[test]
fn tracker_mirror_comments_each_run_state_once_and_follows_resolution() {
    let mut conn = db();
    ingest(&mut conn, &[event("/a", 1, "x"), event("/b", 2, "y")]);
    let tickets = open_tickets(&mut conn, 10);
    assert_eq!(tickets.len(), 2);
    let unmirrored = |conn: &mut Connection| {
        query(
            conn,
            store::SELECT_UNMIRRORED_TICKETS,
            vec![SqlValue::Integer(10)],
        )
    };
    let rows = unmirrored(&mut conn);
    assert_eq!(rows.len(), 2);
    let row: store::UnmirroredTicket = serde_json::from_value(rows[0].clone()).expect("row");
    assert_eq!(row.ticket_id, tickets[0]);

    // Mirrored once; a second record (a racing run) changes nothing.
    batch(
        &mut conn,
        &[
            store::record_external(tickets[0], 41, "https://gh/41", 11),
            store::record_external(tickets[0], 99, "https://gh/99", 12),
        ],
    );
    assert_eq!(unmirrored(&mut conn).len(), 1);
    assert_eq!(
        scalar(&conn, "SELECT external_number FROM tickets WHERE id = 1"),
        41
    );

    let changes = |conn: &mut Connection| -> Vec<store::TrackerChange> {
        query(
            conn,
            store::SELECT_TRACKER_CHANGES,
            vec![SqlValue::Integer(50)],
        )
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("change"))
        .collect()
    };
    assert!(changes(&mut conn).is_empty());
    let incident_id = scalar(&conn, "SELECT incident_id FROM tickets WHERE id = 1");
    let (_, state) = claim(&mut conn, incident_id, tickets[0], "2026-11-21", 5);
    assert_eq!(state, "ready");
    let c = changes(&mut conn);
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].kind.as_str(), c[0].state.as_str()), ("run", "ready"));
    assert_eq!(c[0].external_number, 41);
    let run_id = c[0].run_id.expect("run id");
    batch(&mut conn, &[store::mark_notified(run_id, "ready")]);
    assert!(changes(&mut conn).is_empty());
    conn.execute(
        "UPDATE fix_runs SET state = 'failed', result = '{\"reason\": \"no test added\"}'",
        [],
    )
    .expect("fail run");
    let c = changes(&mut conn);
    assert_eq!((c[0].kind.as_str(), c[0].state.as_str()), ("run", "failed"));
    assert_eq!(c[0].detail.as_deref(), Some("no test added"));
    batch(&mut conn, &[store::mark_notified(run_id, "failed")]);

    // Resolved → close once; regressed → reopen once.
    conn.execute(
        "UPDATE ops_incidents SET status = 'resolved' WHERE id = ?1",
        [incident_id],
    )
    .expect("resolve");
    let c = changes(&mut conn);
    assert_eq!(
        (c[0].kind.as_str(), c[0].state.as_str()),
        ("issue", "closed")
    );
    batch(
        &mut conn,
        &[store::record_external_state(tickets[0], "closed", 20)],
    );
    assert!(changes(&mut conn).is_empty());
    conn.execute(
        "UPDATE ops_incidents SET status = 'regressed' WHERE id = ?1",
        [incident_id],
    )
    .expect("regress");
    let c = changes(&mut conn);
    assert_eq!((c[0].kind.as_str(), c[0].state.as_str()), ("issue", "open"));
}

fn lease(conn: &mut Connection, id: &str, now: i64) -> Option<store::LeasedRun> {
    let res = batch(conn, &store::lease_statements(id, "test-host", now, 1_000));
    res[store::LEASE_READBACK_INDEX]
        .first()
        .map(|v| serde_json::from_value(v.clone()).expect("leased run"))
}

#[test]
fn one_lease_at_a_time_expiry_returns_the_run_and_failure_cools_down() {
    let mut conn = db();
    ingest(&mut conn, &[event("/a", 1, "x"), event("/b", 2, "y")]);
    let tickets = open_tickets(&mut conn, 10);
    for (i, t) in tickets.iter().enumerate() {
        let incident = i as i64 + 1;
        assert_eq!(claim(&mut conn, incident, *t, "2026-11-21", 5).1, "ready");
    }
    let used = |conn: &Connection| scalar(conn, "SELECT used FROM fix_budget");
    assert_eq!(used(&conn), 2);

    let a = lease(&mut conn, "lease-a", 100).expect("a lease");
    assert_eq!((a.run_id, a.lease_expires_at), (1, 1_100));
    assert!(a.task.starts_with('{'));
    assert_eq!(
        lease(&mut conn, "lease-b", 200),
        None,
        "one fixer at a time"
    );
    // The unique index is the guarantee even without the NOT EXISTS guard.
    assert!(
        conn.execute("UPDATE fix_runs SET state = 'fixing' WHERE id = 2", [])
            .is_err()
    );

    let renew = |conn: &mut Connection, lease: &str, now: i64| {
        !batch(conn, &[store::renew_lease(1, lease, "fixing", now, 1_000)])[0].is_empty()
    };
    assert!(!renew(&mut conn, "lease-b", 300), "a stranger cannot renew");
    assert!(renew(&mut conn, "lease-a", 300));
    // Expired (300 + 1000 < 2000): the next lease takes the same run back, no new cap unit.
    let c = lease(&mut conn, "lease-c", 2_000).expect("c lease");
    assert_eq!(c.run_id, 1);
    assert_eq!(used(&conn), 2);
    let finish = |conn: &mut Connection, lease: &str, state: &str| {
        !batch(
            conn,
            &[store::finish_run(1, lease, state, None, "{}", 2_100)],
        )[0]
        .is_empty()
    };
    assert!(
        !finish(&mut conn, "lease-a", "pr_opened"),
        "an expired lease reports nothing"
    );
    // A stale report finishes nothing and so cools nothing down.
    batch(&mut conn, &[store::cool_down(1, 77_777, 2_100)]);
    assert_eq!(
        scalar(
            &conn,
            "SELECT count(*) FROM ops_incidents WHERE cooldown_until IS NOT NULL"
        ),
        0
    );
    assert!(finish(&mut conn, "lease-c", "failed"));
    batch(&mut conn, &[store::cool_down(1, 99_999, 2_100)]);
    assert_eq!(
        scalar(
            &conn,
            "SELECT cooldown_until FROM ops_incidents WHERE id = 1"
        ),
        99_999
    );
    // Run 2 is next; once its incident cools down too, nothing is leased.
    conn.execute(
        "UPDATE ops_incidents SET cooldown_until = 5000 WHERE id = 2",
        [],
    )
    .expect("cool");
    assert_eq!(lease(&mut conn, "lease-d", 3_000), None);
    assert_eq!(
        lease(&mut conn, "lease-e", 5_000).map(|r| r.run_id),
        Some(2)
    );
}

#[test]
fn traffic_flushes_apply_once_and_occurrence_buckets_count_only_new_keys() {
    use selfheal::event::Observation;
    use selfheal::signal::rates::TrafficAggregator;
    let mut conn = db();
    let mut agg = TrafficAggregator::default();
    let obs: Vec<Observation> = (0..4)
        .map(|i| Observation {
            script: "api".into(),
            route: "/a".into(),
            release: "v7".into(),
            timestamp_ms: 600_000 + i,
            error: i == 0,
        })
        .collect();
    agg.add(
        &obs,
        &BatchCounts {
            items: 4,
            events: 1,
            noise: 3,
            malformed: 0,
        },
        1,
    );
    let flushes = agg.take("flush-1");
    let stmts = store::flush_statements(&flushes, "2026-11-21", 1);
    batch(&mut conn, &stmts);
    // The write "failed" after committing: the retry (next attempt) must change nothing.
    agg.failed(flushes);
    let retry = agg.take("flush-2");
    batch(&mut conn, &store::flush_statements(&retry, "2026-11-21", 2));
    assert_eq!(scalar(&conn, "SELECT requests FROM ops_traffic_5m"), 4);
    assert_eq!(scalar(&conn, "SELECT errors FROM ops_traffic_1h"), 1);
    assert_eq!(scalar(&conn, "SELECT items FROM ops_ingest_stats"), 4);
    assert_eq!(scalar(&conn, "SELECT writes FROM ops_ingest_stats"), 2);
    assert_eq!(
        scalar(
            &conn,
            "SELECT first_seen FROM ops_releases WHERE release = 'v7'"
        ),
        600_000
    );

    let events: Vec<Event> = (0..3).map(|i| event("/a", 300_000 * i + 7, "x")).collect();
    ingest(&mut conn, &events);
    ingest(&mut conn, &events); // redelivered
    assert_eq!(scalar(&conn, "SELECT sum(n) FROM ops_occ_5m"), 3);
    assert_eq!(
        scalar(&conn, "SELECT count(*) FROM ops_occ_5m"),
        3,
        "three 5-minute buckets"
    );
    assert_eq!(scalar(&conn, "SELECT sum(n) FROM ops_occ_1h"), 3);
}
