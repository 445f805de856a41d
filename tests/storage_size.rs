//! Storage per incident, per stored event and per occurrence, measured on SQLite (what D1 is) with
//! the real migrations and the exact statements the Workers send (ingest, the cron's tickets, the
//! agent-runner's claim), page by page with SQLite's `dbstat` table; then the D1 size at a stated
//! daily volume under the retention rules (src/storage/retention.rs).
//!
//! Prints its table with `cargo test --test storage_size -- --nocapture` (the README's
//! figures). Assertions: the sample policy bounds the events stored per incident, and the stated
//! volume stays far below D1's 10 GB database limit.

use std::collections::BTreeMap;

use selfheal::config::PipelineConfig;
use selfheal::event::{Event, Verdict, process_item};
use selfheal::signal::step;
use selfheal::sqlite::Db;
use selfheal::storage::ingest;
use selfheal::storage::retention;
use selfheal::store::{
    self, EventSample, GatedIncidentRow, IncidentRow, SELECT_JOB_SOURCE, SELECT_TICKET,
    SELECT_TICKET_CANDIDATES, SamplePolicy, Statement, TicketRow,
};
use selfheal::ticket::{self, FixJob};
use selfheal::trace::TraceItem;
use serde_json::json;

const INCIDENTS: i64 = 100;
const OCCURRENCES_PER_INCIDENT: i64 = 200;
const T0: i64 = 1_800_000_000_000;

fn word(mut i: i64) -> String {
    let mut s = String::new();
    for _ in 0..3 {
        s.push(char::from(b'a' + u8::try_from(i % 26).expect("letter")));
        i /= 26;
    }
    s
}

/// A production-shaped failing request: a route with an id, a 5-frame stack, a log line, headers.
fn event(incident: i64, n: i64) -> Event {
    let w = word(incident);
    let ts = T0 + incident * 1_000_000 + n * 1_000;
    let item: TraceItem = serde_json::from_value(json!({
        "outcome": "exception", "scriptName": "api", "eventTimestamp": ts,
        "scriptVersion": {"id": "6f1c2a3b-4d5e-4f60-8a7b-000000000001", "tag": "v42"},
        "event": {"request": {"url": format!("https://api.example.com/{w}/items/{}?page=2", 1000 + n), "method": "GET",
            "headers": {"user-agent": "Mozilla/5.0 (X11; Linux x86_64)", "content-type": "application/json", "accept": "application/json"},
            "cf": {"colo": "FRA", "country": "DE"}},
            "response": {"status": 500}},
        "exceptions": [{"name": "TypeError", "message": format!("Cannot read properties of undefined (reading '{w}Total')"),
            "stack": format!("TypeError: Cannot read properties of undefined (reading '{w}Total')\n    at price{w} (worker.js:120:17)\n    at handle{w} (worker.js:88:10)\n    at route (worker.js:40:12)\n    at Object.fetch (worker.js:12:5)\n    at async dispatch (worker.js:5:3)"),
            "timestamp": ts}],
        "logs": [{"level": "error", "message": [format!("pricing failed for item {}", 1000 + n)], "timestamp": ts}]
    }))
    .expect("item");
    match process_item(&item, &PipelineConfig::default(), 0) {
        Verdict::Event(e) => *e,
        Verdict::Noise(r) => panic!("noise {r:?}"),
    }
}

/// Bytes (pages × page size, indexes included) and rows per table.
fn sizes(db: &Db) -> BTreeMap<String, (i64, i64)> {
    let mut st = db
        .conn
        .prepare(
            "SELECT m.tbl_name, sum(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name \
             GROUP BY m.tbl_name",
        )
        .expect("dbstat");
    let rows: Vec<(String, i64)> = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .expect("q")
        .map(|r| r.expect("row"))
        .filter(|(t, _)| !t.starts_with("sqlite_") && !t.starts_with("_cf"))
        .collect();
    rows.into_iter()
        .map(|(t, bytes)| {
            let n = db
                .scalar(&format!("SELECT count(*) FROM {t}"))
                .expect("count");
            (t, (bytes, n))
        })
        .collect()
}

#[test]
fn storage_per_incident_event_and_occurrence_and_d1_size_at_a_daily_volume() {
    let mut db = Db::memory().expect("db");
    // D1's page size (SQLite's default) and no free pages kept around.
    db.conn
        .execute_batch("PRAGMA page_size = 4096; VACUUM;")
        .expect("pragma");
    let policy = SamplePolicy::default();
    for i in 0..INCIDENTS {
        let events: Vec<Event> = (0..OCCURRENCES_PER_INCIDENT).map(|n| event(i, n)).collect();
        for chunk in events.chunks(50) {
            // The flood cap (50 new incidents per script-hour) does not apply to a measurement
            // that files every incident in one hour.
            let queued: Vec<ingest::QueuedEvent> =
                chunk.iter().map(ingest::QueuedEvent::from).collect();
            let no_cap = ingest::IngestPolicy {
                sample: policy,
                max_new_incidents_per_hour: u32::MAX,
            };
            db.batch(&ingest::event_statements(&queued, T0, no_cap))
                .expect("ingest");
        }
    }
    // The cron's tickets (its statements, in its pages of MAX_TICKETS_PER_RUN) ...
    loop {
        let candidates: Vec<GatedIncidentRow> = db
            .rows(step::ticket_candidates_statement(SELECT_TICKET_CANDIDATES))
            .expect("candidates");
        if candidates.is_empty() {
            break;
        }
        let samples: Vec<EventSample> = db
            .rows(step::ticket_samples_statement(&candidates))
            .expect("samples");
        db.batch(&step::ticket_statements(&candidates, &samples, "fix", T0))
            .expect("tickets");
    }
    // ... and the agent-runner's claim of each job (the task JSON stored with the run).
    assert_eq!(
        db.scalar("SELECT count(*) FROM ops_incidents").expect("n"),
        INCIDENTS,
        "one incident per bug"
    );
    let ids: Vec<i64> = {
        let mut st = db
            .conn
            .prepare("SELECT id FROM ops_incidents")
            .expect("ids");
        st.query_map([], |r| r.get(0))
            .expect("q")
            .map(|r| r.expect("id"))
            .collect()
    };
    for id in ids {
        let inc: IncidentRow = db
            .rows(Statement {
                sql: SELECT_JOB_SOURCE,
                params: vec![id.into()],
            })
            .expect("incident")
            .pop()
            .expect("incident row");
        let ticket_id = inc.ticket_id.expect("ticketed");
        let t: TicketRow = db
            .rows(Statement {
                sql: SELECT_TICKET,
                params: vec![ticket_id.into()],
            })
            .expect("ticket")
            .pop()
            .expect("ticket row");
        let task = ticket::task(&inc, &t).to_string();
        db.batch(&store::claim_statements(
            &FixJob::new(inc.id, t.id, inc.fingerprint.clone()),
            &task,
            "2027-01-15",
            1_000,
            T0,
        ))
        .expect("claim");
    }
    // Rate rows of a realistic shape, to measure their bytes per row.
    for b in 0..288 {
        db.conn
            .execute(
                "INSERT INTO ops_traffic_5m (script, route, release, bucket, requests, errors) VALUES ('api', '/users/:id', 'v42', ?1, 3472, 174)",
                [T0 + b * 300_000],
            )
            .expect("traffic");
    }
    db.conn.execute_batch("VACUUM;").expect("vacuum");

    let s = sizes(&db);
    let get = |t: &str| s.get(t).copied().unwrap_or((0, 0));
    println!("table                 rows      bytes   bytes/row");
    for (t, (bytes, n)) in &s {
        println!(
            "{t:<20} {n:>6} {bytes:>10} {:>10.0}",
            *bytes as f64 / (*n).max(1) as f64
        );
    }
    let (ev_bytes, ev_rows) = get("ops_log_events");
    let per_event = ev_bytes as f64 / ev_rows as f64;
    let samples_per_incident = ev_rows as f64 / INCIDENTS as f64;
    // keep_first (10), then the power-of-two ordinals up to 200: 16, 32, 64, 128.
    assert_eq!(ev_rows, INCIDENTS * (10 + 4));
    let incident_only: f64 = ["ops_incidents", "tickets", "fix_runs"]
        .iter()
        .map(|t| get(t).0 as f64)
        .sum::<f64>()
        / INCIDENTS as f64;
    let per_incident = incident_only + samples_per_incident * per_event;
    let occurrences = INCIDENTS * OCCURRENCES_PER_INCIDENT;
    let (occ_bytes, occ_rows) = get("ops_occurrences");
    assert_eq!(occ_rows, occurrences);
    let per_occurrence = occ_bytes as f64 / occ_rows as f64;
    let per_bucket_row = {
        let (b, n) = get("ops_occ_1h");
        b as f64 / n.max(1) as f64
    };
    let per_traffic_row = {
        let (b, n) = get("ops_traffic_5m");
        b as f64 / n.max(1) as f64
    };
    println!(
        "\nper stored event (ops_log_events row + indexes): {per_event:.0} B\n\
         per incident (row + ticket + fix run with its task: {incident_only:.0} B) with its {samples_per_incident:.0} samples: {per_incident:.0} B\n\
         per occurrence key (ops_occurrences + indexes): {per_occurrence:.0} B\n\
         per rate-bucket row: occurrences {per_bucket_row:.0} B, traffic {per_traffic_row:.0} B"
    );

    // The stated daily volume: 1,000,000 producer requests a day at a 5% error share (50,000
    // occurrences), 20 new incidents a day over 10 routes of one script and one release a day.
    let occ_per_day = 50_000.0;
    let new_incidents_per_day = 20.0;
    let routes = 10.0;
    let active_fingerprints = 20.0;
    // Under the retention rules: occurrence keys 7 days, 5-minute rows 2 days, hourly rows 35 days,
    // incidents (worst case: none resolved, so none pruned) for a year.
    let occurrence_keys = occ_per_day * retention::OCCURRENCE_DAYS as f64 * per_occurrence;
    let fine = (routes + active_fingerprints)
        * 288.0
        * retention::FINE_BUCKET_DAYS as f64
        * per_traffic_row.max(per_bucket_row);
    let hourly = (routes + active_fingerprints)
        * 24.0
        * retention::HOURLY_BUCKET_DAYS as f64
        * per_traffic_row.max(per_bucket_row);
    let incidents_year = new_incidents_per_day * 365.0 * per_incident;
    let total = occurrence_keys + fine + hourly + incidents_year;
    let mb = |b: f64| b / 1e6;
    println!(
        "\nD1 at 1,000,000 requests/day, 5% errors (50,000 occurrences/day), 20 new incidents/day:\n\
         occurrence keys (7 days): {:.1} MB\n\
         5-minute buckets (2 days): {:.1} MB, hourly buckets (35 days): {:.1} MB\n\
         incidents with samples, tickets and runs after a year, none resolved: {:.1} MB\n\
         total: {:.1} MB (D1 limit: 10,000 MB per database)",
        mb(occurrence_keys),
        mb(fine),
        mb(hourly),
        mb(incidents_year),
        mb(total)
    );
    assert!(total < 1e9, "the stated volume fits D1 with room: {total}");
}
