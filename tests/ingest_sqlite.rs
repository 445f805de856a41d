//! The ingest write path (`selfheal::storage::ingest`) natively on SQLite with the real
//! migrations and the exact statements the queue consumer sends: messages within Queues' limits,
//! one coalesced batch whose size does not grow with the messages, exact counts under
//! redelivery, the flood cap and its overflow incident, a failing batch that leaves nothing
//! behind, and parked dead-letter messages replayed exactly once.

use selfheal::config::PipelineConfig;
use selfheal::event::{BatchCounts, Event, Verdict, process_item};
use selfheal::signal::rates::{Flush, TrafficAggregator};
use selfheal::sqlite::Db;
use selfheal::storage::ingest::{
    self, DeadRow, IngestMessage, IngestPolicy, MAX_MESSAGE_BYTES, MessageError, WriteCounts,
};
use selfheal::store::{self, SamplePolicy, SqlValue, Statement};
use selfheal::trace::TraceItem;
use serde_json::json;

const NOW: i64 = 1_764_600_000_000; // 2025-12-01T14:40:00Z
const DAY: &str = "2025-12-01";

fn item(script: &str, path: &str, ts: i64, message: &str) -> TraceItem {
    serde_json::from_value(json!({
        "outcome": "exception", "scriptName": script, "eventTimestamp": ts,
        "event": {"request": {"url": format!("https://api.example.com{path}"), "method": "GET", "headers": {}}},
        "exceptions": [{"name": "TypeError", "message": message, "stack": "    at Object.fetch (worker.js:10:5)", "timestamp": ts}],
        "logs": []
    }))
    .expect("item")
}

fn event(script: &str, path: &str, ts: i64, message: &str) -> Event {
    match process_item(
        &item(script, path, ts, message),
        &PipelineConfig::default(),
        0,
    ) {
        Verdict::Event(e) => *e,
        Verdict::Noise(r) => panic!("unexpected noise {r:?}"),
    }
}

/// A flush counting `events` as one delivery of that many items.
fn flush(id: &str, events: &[Event]) -> Flush {
    let mut agg = TrafficAggregator::default();
    let observed: Vec<_> = events
        .iter()
        .map(|e| selfheal::event::Observation {
            script: e.components.script.clone(),
            route: e.components.route.clone(),
            release: String::new(),
            timestamp_ms: e.timestamp_ms,
            error: true,
        })
        .collect();
    let counts = BatchCounts {
        items: events.len() as u64,
        events: events.len() as u64,
        ..Default::default()
    };
    agg.add(&observed, &counts, NOW);
    agg.take(id).pop().expect("a flush")
}

/// One message per "delivery" of `per` events each, as the tail Worker sends them.
fn deliveries(events: &[Event], per: usize) -> Vec<IngestMessage> {
    let mut n = 0;
    events
        .chunks(per)
        .flat_map(|chunk| {
            n += 1;
            let f = flush(&format!("flush-{n}"), chunk);
            ingest::messages(chunk, std::slice::from_ref(&f), NOW, || {
                n += 1000;
                format!("msg-{n}")
            })
        })
        .map(|body| IngestMessage::parse(&body).expect("a message the consumer reads"))
        .collect()
}

fn apply(db: &mut Db, msgs: &[IngestMessage], nonce: &str, policy: IngestPolicy) -> usize {
    let stmts = ingest::apply_statements(msgs, nonce, NOW, DAY, policy, WriteCounts::default());
    db.batch(&stmts).unwrap_or_else(|e| panic!("{e}"));
    stmts.len()
}

fn scalar(db: &Db, sql: &str) -> i64 {
    db.scalar(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Figures that must not move under redelivery.
/// Asserts that script `api` kept `kept` incidents of its own and that `overflowed` events past the
/// flood cap counted on its overflow incident; returns that incident's fingerprint.
fn assert_capped(db: &Db, kept: i64, overflowed: i64) -> String {
    let overflow_fp = ingest::overflow_components("api").fingerprint();
    assert_eq!(
        scalar(
            db,
            "SELECT count(*) FROM ops_incidents WHERE script_name = 'api' AND exception_type <> 'selfheal.overflow'"
        ),
        kept
    );
    assert_eq!(
        scalar(
            db,
            &format!(
                "SELECT occurrence_count FROM ops_incidents WHERE fingerprint = '{overflow_fp}'"
            )
        ),
        overflowed,
        "the {overflowed} events past the cap count on the overflow incident"
    );
    overflow_fp
}

fn counts(db: &Db) -> [i64; 6] {
    [
        scalar(db, "SELECT count(*) FROM ops_incidents"),
        scalar(
            db,
            "SELECT coalesce(sum(occurrence_count), 0) FROM ops_incidents",
        ),
        scalar(db, "SELECT count(*) FROM ops_log_events"),
        scalar(db, "SELECT coalesce(sum(requests), 0) FROM ops_traffic_5m"),
        scalar(db, "SELECT coalesce(sum(requests), 0) FROM ops_traffic_1h"),
        scalar(db, "SELECT coalesce(sum(items), 0) FROM ops_ingest_stats"),
    ]
}

/// 300 events over 30 fingerprints of two scripts, in delivery order.
fn mixed_events() -> Vec<Event> {
    (0..300)
        .map(|i| {
            let script = if i % 3 == 0 { "billing" } else { "api" };
            event(
                script,
                &format!("/r{}", i % 15),
                NOW - 60_000 + i,
                &format!("boom {} at {i}", i % 2 == 0),
            )
        })
        .collect()
}

#[test]
fn one_batch_of_a_hundred_messages_is_a_handful_of_statements_and_counts_exactly() {
    let events = mixed_events();
    let msgs = deliveries(&events, 3);
    assert_eq!(msgs.len(), 100);
    let mut db = Db::memory().expect("db");
    let n = apply(&mut db, &msgs, "nonce-1", IngestPolicy::default());
    // 4 event statements + 4 flush statements (a fifth, releases, only when a release was seen)
    // + 1 count of the write, whatever the number of messages.
    assert_eq!(n, 9, "statements for 100 messages");
    let fps: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.fingerprint.as_str()).collect();
    let [incidents, occurrences, _samples, t5, t1, items] = counts(&db);
    assert_eq!(incidents as usize, fps.len());
    assert_eq!(occurrences, 300);
    assert_eq!((t5, t1, items), (300, 300, 300));
    assert_eq!(scalar(&db, "SELECT writes FROM ops_ingest_stats"), 1);
    assert_eq!(scalar(&db, "SELECT statements FROM ops_ingest_stats"), 9);
    assert_eq!(scalar(&db, "SELECT messages FROM ops_ingest_stats"), 100);
    // Samples: keep_first (10) per incident, then ordinals that are powers of two.
    for fp in &fps {
        let n = events.iter().filter(|e| e.fingerprint == *fp).count() as i64;
        let expected = (1..=n).filter(|k| *k <= 10 || k & (k - 1) == 0).count() as i64;
        let stored = scalar(
            &db,
            &format!("SELECT stored_events FROM ops_incidents WHERE fingerprint = '{fp}'"),
        );
        assert_eq!(stored, expected, "samples of {fp} ({n} events)");
    }
}

#[test]
fn redelivered_messages_replays_and_duplicates_change_no_count() {
    let events = mixed_events();
    let msgs = deliveries(&events, 5);
    let mut db = Db::memory().expect("db");
    apply(&mut db, &msgs, "try-1", IngestPolicy::default());
    let before = counts(&db);
    // The whole batch again (a consumer whose ack was lost), with a fresh nonce as a new try has.
    apply(&mut db, &msgs, "try-2", IngestPolicy::default());
    // Five deliveries of one message in one batch.
    let five: Vec<IngestMessage> = std::iter::repeat_n(msgs[3].clone(), 5).collect();
    apply(&mut db, &five, "try-3", IngestPolicy::default());
    assert_eq!(counts(&db), before);
    assert_eq!(before[1], 300);
    // The work counters do count every try (they measure writes, not data).
    assert_eq!(scalar(&db, "SELECT writes FROM ops_ingest_stats"), 3);
}

#[test]
fn sampling_across_batches_matches_the_per_event_rule() {
    // One incident, 40 events in 8 batches of 5: keep_first 3, then ordinals 4, 8, 16, 32.
    let events: Vec<Event> = (0..40)
        .map(|i| event("api", "/x", NOW + i, "same"))
        .collect();
    let mut db = Db::memory().expect("db");
    let policy = IngestPolicy {
        sample: SamplePolicy { keep_first: 3 },
        ..Default::default()
    };
    for (k, chunk) in deliveries(&events, 5).chunks(1).enumerate() {
        apply(&mut db, chunk, &format!("n{k}"), policy);
    }
    let kept: Vec<i64> = db
        .rows::<serde_json::Value>(Statement {
            sql: "SELECT event_timestamp FROM ops_log_events ORDER BY event_timestamp",
            params: vec![],
        })
        .expect("rows")
        .iter()
        .filter_map(|r| r["event_timestamp"].as_i64())
        .map(|t| t - NOW + 1)
        .collect();
    assert_eq!(kept, [1, 2, 3, 4, 8, 16, 32]);
}

#[test]
fn the_flood_cap_folds_new_fingerprints_past_it_into_one_overflow_incident() {
    // 80 distinct messages from one script within one hour, cap 50; another script is untouched.
    let mut events: Vec<Event> = (0..80)
        .map(|i| {
            event(
                "api",
                "/x",
                NOW + i,
                &format!("attacker text number-{}", "x".repeat(i as usize)),
            )
        })
        .collect();
    events.push(event("billing", "/pay", NOW, "card declined"));
    let policy = IngestPolicy {
        max_new_incidents_per_hour: 50,
        ..Default::default()
    };
    let mut db = Db::memory().expect("db");
    // Two batches: the cap holds across them.
    let msgs = deliveries(&events, 1);
    apply(&mut db, &msgs[..30], "a", policy);
    apply(&mut db, &msgs[30..], "b", policy);
    let overflow_fp = assert_capped(&db, 50, 30);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM ops_incidents WHERE script_name = 'billing'"
        ),
        1
    );
    // Its samples keep their own messages, so a person sees what folded: keep_first (10) and
    // ordinal 16 of its 30 events.
    assert_eq!(
        scalar(
            &db,
            &format!(
                "SELECT count(DISTINCT normalized_message) FROM ops_log_events WHERE fingerprint = '{overflow_fp}'"
            )
        ),
        11
    );
    // An existing incident keeps counting past the cap.
    let again = deliveries(&[event("api", "/x", NOW + 500, "attacker text number-")], 1);
    apply(&mut db, &again, "c", policy);
    assert_eq!(
        scalar(
            &db,
            "SELECT max(occurrence_count) FROM ops_incidents WHERE exception_type <> 'selfheal.overflow'"
        ),
        2
    );
    // The next hour opens new incidents again.
    let later: Vec<IngestMessage> =
        deliveries(&[event("api", "/x", NOW + 3_600_000, "a new bug")], 1);
    let stmts = ingest::apply_statements(
        &later,
        "d",
        NOW + 3_600_000,
        DAY,
        policy,
        WriteCounts::default(),
    );
    db.batch(&stmts).expect("batch");
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM ops_incidents WHERE script_name = 'api' AND exception_type <> 'selfheal.overflow'"
        ),
        51
    );
}

#[test]
fn the_direct_path_applies_the_configured_flood_cap() {
    // The tail Worker's direct path (no Queue, SELFHEAL_INGEST_MODE=direct, a failed send) writes
    // with store::ingest_statements under its own SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR, not 50.
    let events: Vec<Event> = (0..35)
        .map(|i| {
            event(
                "api",
                "/x",
                NOW + i,
                &format!("attacker text number-{}", "x".repeat(i as usize)),
            )
        })
        .collect();
    let policy = IngestPolicy::from_var(Some("20")).expect("a cap");
    let mut db = Db::memory().expect("db");
    // One direct write per tail invocation: the cap holds across them.
    for chunk in events.chunks(7) {
        db.batch(&store::ingest_statements(chunk, NOW, policy))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_capped(&db, 20, 15);
    // The default (unset var) is the Queue consumer's default: 50, so all 35 stand alone.
    let mut db = Db::memory().expect("db");
    let default = IngestPolicy::from_var(None).expect("the default");
    db.batch(&store::ingest_statements(&events, NOW, default))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM ops_incidents WHERE exception_type = 'selfheal.overflow'"
        ),
        0
    );
}

#[test]
fn a_failing_batch_writes_nothing_and_the_retry_lands_exactly_once() {
    let events = mixed_events();
    let msgs = deliveries(&events, 10);
    let mut db = Db::memory().expect("db");
    // D1 failing: the way the e2e test injects it locally (a trigger that aborts every insert).
    db.conn
        .execute_batch("CREATE TRIGGER fault BEFORE INSERT ON ops_occurrences BEGIN SELECT RAISE(ABORT, 'injected fault'); END;")
        .expect("trigger");
    let stmts = ingest::apply_statements(
        &msgs,
        "t1",
        NOW,
        DAY,
        IngestPolicy::default(),
        WriteCounts::default(),
    );
    let err = db.batch(&stmts).expect_err("the batch fails");
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(counts(&db), [0; 6], "a failed batch leaves nothing behind");
    db.conn.execute_batch("DROP TRIGGER fault").expect("drop");
    apply(&mut db, &msgs, "t2", IngestPolicy::default());
    apply(&mut db, &msgs, "t3", IngestPolicy::default());
    let c = counts(&db);
    assert_eq!((c[1], c[3], c[5]), (300, 300, 300));
}

#[test]
fn parked_messages_replay_once_and_unreadable_ones_stay_parked() {
    let events = mixed_events();
    let msgs = deliveries(&events, 50);
    let mut db = Db::memory().expect("db");
    let mut park: Vec<Statement> = msgs
        .iter()
        .map(|m| ingest::park_statement(&m.to_json(), 10, "injected poison", NOW))
        .collect();
    park.push(ingest::park_statement("{not json", 10, "bad", NOW));
    park.push(ingest::count_dead(DAY, 7));
    db.batch(&park).expect("park");
    assert_eq!(scalar(&db, "SELECT count(*) FROM ops_ingest_dead"), 7);
    assert_eq!(counts(&db)[1], 0, "parking applies nothing");
    let rows: Vec<DeadRow> = db
        .rows(Statement {
            sql: ingest::SELECT_DEAD,
            params: vec![SqlValue::Integer(100)],
        })
        .expect("rows");
    let (stmts, bad) = ingest::replay_statements(&rows, "r1", NOW, DAY, IngestPolicy::default());
    assert_eq!(bad.len(), 1);
    db.batch(&stmts).expect("replay");
    assert_eq!(counts(&db)[1], 300);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM ops_ingest_dead"),
        1,
        "only the unreadable one is left"
    );
    // A second replay that read the rows before the first deleted them (two operators at once)
    // applies under its own nonce and changes nothing.
    let (again, _) = ingest::replay_statements(&rows, "r2", NOW, DAY, IngestPolicy::default());
    db.batch(&again).expect("replay again");
    assert_eq!(counts(&db)[1], 300);
    assert_eq!(counts(&db)[5], 300);
    // And a replay after it finds only the unreadable one.
    let left: Vec<DeadRow> = db
        .rows(Statement {
            sql: ingest::SELECT_DEAD,
            params: vec![SqlValue::Integer(100)],
        })
        .expect("rows");
    let (none, bad) = ingest::replay_statements(&left, "r3", NOW, DAY, IngestPolicy::default());
    assert!(none.is_empty());
    assert_eq!(bad.len(), 1);
}

#[test]
fn messages_stay_within_queues_limits_and_malformed_bodies_are_named() {
    // Events of ~10 KB each (long stacks): a delivery of 40 of them splits into several messages.
    let big: Vec<Event> = (0..40)
        .map(|i| {
            let mut e = event("api", "/x", NOW + i, "big");
            e.stack = "    at f (worker.js:1:1)\n".repeat(400);
            e
        })
        .collect();
    let bodies = ingest::messages(&big, &[], NOW, || "id".to_string());
    assert!(bodies.len() > 1);
    assert!(
        bodies.iter().all(|b| b.len() <= MAX_MESSAGE_BYTES),
        "{:?}",
        bodies.iter().map(String::len).collect::<Vec<_>>()
    );
    let total: usize = bodies
        .iter()
        .map(|b| IngestMessage::parse(b).expect("parse").events.len())
        .sum();
    assert_eq!(total, 40);
    let batches = ingest::send_batches(bodies.clone());
    assert!(
        batches
            .iter()
            .all(|b| b.len() <= 100 && b.iter().map(String::len).sum::<usize>() <= 240_000)
    );
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), bodies.len());
    assert!(matches!(
        IngestMessage::parse("[1,2]"),
        Err(MessageError::Malformed(_))
    ));
    assert_eq!(
        IngestMessage::parse(r#"{"v":9,"id":"x","sent_at":1}"#),
        Err(MessageError::Version(9))
    );
    assert!(ingest::messages(&[], &[], NOW, || "x".into()).is_empty());
}

#[test]
fn backoff_doubles_and_is_capped() {
    let d: Vec<u32> = (1..=10).map(|a| ingest::backoff_secs(a, 10, 900)).collect();
    assert_eq!(d, [10, 20, 40, 80, 160, 320, 640, 900, 900, 900]);
    assert_eq!(ingest::backoff_secs(0, 1, 1), 1);
    assert_eq!(ingest::backoff_secs(u32::MAX, 10, 900), 900);
}
