//! The gate's report and the API's gate reads and writes, on SQLite with the real migrations and
//! the exact statements: incidents ingested by the tail Worker's statements, decisions stored by
//! the cron's, labels by the agent-runner's; the figures checked by hand.

use selfheal::config::PipelineConfig;
use selfheal::event::{Event, Verdict as ItemVerdict, process_item};
use selfheal::signal::gate::{self, Decision, GateMode, GatePolicy, IncidentInput, Verdict};
use selfheal::signal::report::{self, DecisionCountRow, DecisionRow, IncidentView, LabelledRow};
use selfheal::signal::step;
use selfheal::sqlite::{Db, decode};
use selfheal::storage::ingest::IngestPolicy;
use selfheal::store::{self, Statement};
use selfheal::trace::TraceItem;
use serde_json::{Value, json};

const T0: i64 = 1_796_000_000_000;
const MIN: i64 = 60_000;

fn event(route: &str, ts: i64, message: &str) -> Event {
    let item: TraceItem = serde_json::from_value(json!({
        "outcome": "exception", "scriptName": "api", "eventTimestamp": ts,
        "scriptVersion": {"id": "00000000-0000-0000-0000-000000000001", "tag": "v1"},
        "event": {"request": {"url": format!("https://api.example.com{route}"), "method": "GET", "headers": {}}},
        "exceptions": [{"name": "TypeError", "message": message, "stack": "    at Object.fetch (worker.js:10:5)", "timestamp": ts}],
        "logs": []
    }))
    .expect("item");
    match process_item(&item, &PipelineConfig::default(), 0) {
        ItemVerdict::Event(e) => *e,
        ItemVerdict::Noise(r) => panic!("unexpected noise {r:?}"),
    }
}

/// One real decision (from the gate) for incident `id`, with its verdict forced to `verdict`.
fn decision(id: i64, verdict: Verdict, now: i64) -> Decision {
    let input = IncidentInput {
        incident_id: id,
        fingerprint: format!("fp{id}"),
        script: "api".into(),
        route: "/r".into(),
        exception_type: "TypeError".into(),
        message: "m".into(),
        first_seen_ms: now - 10 * MIN,
        last_seen_ms: now,
        occurrence_count: 5,
        ..IncidentInput::default()
    };
    let mut d = gate::decide_all(&[input], &[], &GatePolicy::default(), now)
        .pop()
        .expect("one decision");
    d.decision = verdict;
    d.reasons = vec![format!("test_{}", verdict.as_str())];
    d
}

fn decide(db: &mut Db, decisions: &[Decision], now: i64) {
    db.batch(&step::decision_statements(decisions, GateMode::Shadow, now))
        .expect("decisions stored");
}

fn rows<T: serde::de::DeserializeOwned>(db: &mut Db, s: Statement) -> Vec<T> {
    db.rows(s).expect("read")
}

#[test]
fn report_counts_ever_ticketed_against_labels_with_times() {
    let mut db = Db::memory().expect("db");
    // Five incidents, first seen at T0 + 0, 1, 2, 3, 4 minutes.
    let events: Vec<Event> = (0..5)
        .map(|i| {
            event(
                &format!("/r{i}"),
                T0 + i * MIN,
                &format!("bug number {i} broke"),
            )
        })
        .collect();
    db.batch(&store::ingest_statements(
        &events,
        T0,
        IngestPolicy::default(),
    ))
    .expect("ingest");
    let ids: Vec<i64> = events
        .iter()
        .map(|e| {
            db.scalar(&format!(
                "SELECT id FROM ops_incidents WHERE fingerprint = '{}'",
                e.fingerprint
            ))
            .expect("incident id")
        })
        .collect();
    let [a, b, c, d, e] = ids[..] else {
        panic!("five incidents")
    };

    // Run 1 at T0 + 10 min: a watch, b ticket, c external, d ticket. e never decided.
    let t1 = T0 + 10 * MIN;
    decide(
        &mut db,
        &[
            decision(a, Verdict::Watch, t1),
            decision(b, Verdict::Ticket, t1),
            decision(c, Verdict::External, t1),
            decision(d, Verdict::Ticket, t1),
        ],
        t1,
    );
    // Run 2 at T0 + 25 min: a becomes ticket, b goes back to watch (it was still ticketed once).
    let t2 = T0 + 25 * MIN;
    decide(
        &mut db,
        &[
            decision(a, Verdict::Ticket, t2),
            decision(b, Verdict::Watch, t2),
        ],
        t2,
    );
    // An unchanged decision adds no history row.
    decide(&mut db, &[decision(d, Verdict::Ticket, t2)], t2);
    assert_eq!(
        db.scalar("SELECT count(*) FROM gate_decisions").expect("n"),
        6
    );

    // Labels: a, b, c actionable; d not. e unlabelled.
    let now = T0 + 30 * MIN;
    for (id, label) in [
        (a, "actionable"),
        (b, "actionable"),
        (c, "actionable"),
        (d, "not_actionable"),
    ] {
        let got: Vec<Value> = rows(&mut db, report::label_statement(id, label, now));
        assert_eq!(
            got,
            vec![json!({"incident_id": id, "label": label, "label_at": now})]
        );
    }
    // Unknown incident: no row (the API's 404), nothing stored.
    let none: Vec<Value> = rows(&mut db, report::label_statement(9999, "actionable", now));
    assert!(none.is_empty());
    // A label outside the set never reaches the table (the API refuses it first; the CHECK too).
    assert!(
        db.batch(&[report::label_statement(e, "maybe", now)])
            .is_err()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM ops_incidents WHERE label IS NOT NULL")
            .expect("n"),
        4
    );

    let results = db
        .batch(&report::report_statements())
        .expect("report reads");
    let labelled: Vec<LabelledRow> = decode(results[report::idx::LABELLED].clone()).expect("rows");
    let counts: Vec<DecisionCountRow> = decode(results[report::idx::COUNTS].clone()).expect("rows");
    let r = report::build(&labelled, &counts);

    assert_eq!((r.labelled, r.actionable, r.incidents), (4, 3, 5));
    let m = r.confusion;
    assert_eq!(
        (
            m.true_positive,
            m.false_positive,
            m.false_negative,
            m.true_negative
        ),
        (2, 1, 1, 0)
    );
    assert!((r.precision.expect("defined") - 2.0 / 3.0).abs() < 1e-12);
    assert!((r.recall.expect("defined") - 2.0 / 3.0).abs() < 1e-12);
    // a: first seen T0, first ticket t2 → 25 min; b: T0+1 → t1: 9 min; d: T0+3 → t1: 7 min.
    let per: Vec<(i64, i64)> = r
        .time_to_ticket
        .incidents
        .iter()
        .map(|t| (t.incident_id, t.ms))
        .collect();
    assert_eq!(per, vec![(a, 25 * MIN), (b, 9 * MIN), (d, 7 * MIN)]);
    assert_eq!(r.time_to_ticket.median_ms, Some(9 * MIN));
    assert_eq!(r.time_to_ticket.max_ms, Some(25 * MIN));
    // Current decisions: a, d ticket; b watch; c external; e undecided.
    let decisions: Vec<(&str, u64)> = r.decisions.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        decisions,
        vec![
            ("external", 1),
            ("ticket", 2),
            ("undecided", 1),
            ("watch", 1)
        ]
    );
}

#[test]
fn api_reads_list_decisions_and_history() {
    let mut db = Db::memory().expect("db");
    let ev = event("/orders/7", T0, "order total is undefined");
    db.batch(&store::ingest_statements(
        std::slice::from_ref(&ev),
        T0,
        IngestPolicy::default(),
    ))
    .expect("ingest");
    let id = db.scalar("SELECT id FROM ops_incidents").expect("id");

    // Before any decision: listed with nulls; an empty history.
    let list: Vec<selfheal::store::GatedIncidentRow> = rows(
        &mut db,
        Statement {
            sql: report::LIST_INCIDENTS_GATED,
            params: vec![],
        },
    );
    let view = IncidentView::from(list[0].clone());
    assert_eq!(view.incident.id, id);
    assert_eq!(view.incident.occurrence_count, 1);
    assert_eq!((view.gate_decision, view.gate_reasons), (None, None));

    let t1 = T0 + 5 * MIN;
    let t2 = T0 + 10 * MIN;
    decide(&mut db, &[decision(id, Verdict::Watch, t1)], t1);
    decide(&mut db, &[decision(id, Verdict::Ticket, t2)], t2);
    let list: Vec<selfheal::store::GatedIncidentRow> = rows(
        &mut db,
        Statement {
            sql: report::LIST_INCIDENTS_GATED,
            params: vec![],
        },
    );
    let view = IncidentView::from(list[0].clone());
    assert_eq!(view.gate_decision.as_deref(), Some("ticket"));
    assert_eq!(view.gate_reasons, Some(vec!["test_ticket".to_string()]));
    assert_eq!(view.gate_at, Some(t2));
    let shown = serde_json::to_value(&view).expect("json");
    assert_eq!(shown["route_pattern"], "/orders/:id");
    assert_eq!(shown["gate_reasons"], json!(["test_ticket"]));
    assert!(shown["gate_priority"].is_number());
    assert_eq!(shown["label"], Value::Null);

    let results = db
        .batch(&report::decisions_statements(id))
        .expect("history");
    assert_eq!(results[0].len(), 1, "the incident exists");
    let history: Vec<DecisionRow> = decode(results[1].clone()).expect("rows");
    let history: Vec<report::DecisionView> = history.into_iter().map(Into::into).collect();
    assert_eq!(
        history
            .iter()
            .map(|d| (d.decision.as_str(), d.at))
            .collect::<Vec<_>>(),
        vec![("watch", t1), ("ticket", t2)]
    );
    assert_eq!(history[1].mode, "shadow");
    assert_eq!(history[1].reasons, json!(["test_ticket"]));
    assert!(
        history[1].signals["impact"].is_object(),
        "{:?}",
        history[1].signals
    );
    // Unknown incident: no row in the first read (the API's 404).
    let results = db
        .batch(&report::decisions_statements(id + 100))
        .expect("reads");
    assert!(results[0].is_empty() && results[1].is_empty());
}
