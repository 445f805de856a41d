//! `selfheal replay`'s engine on a small hand-made recording: healthy traffic on release v1 for two
//! days, then release v2 whose requests to one route throw a new TypeError. The replay must run the
//! cron on the items' clock, decide `ticket` naming v2 as a regression on v1, open the ticket
//! through the same statements as the cron Worker, and count a line that is not JSON without
//! stopping.

use selfheal::config::PipelineConfig;
use selfheal::signal::gate::{GatePolicy, Verdict};
use selfheal::signal::replay::{DecisionLine, Replay};
use serde_json::json;

const START: i64 = 1_795_392_000_000; // Monday 2026-11-23 00:00 UTC

fn item(ts: i64, path: &str, release: &str, error: bool, n: u64) -> serde_json::Value {
    let mut v = json!({
        "scriptName": "shop",
        "scriptVersion": {"id": format!("id-{release}"), "tag": release},
        "outcome": if error { "exception" } else { "ok" },
        "eventTimestamp": ts,
        "event": {"request": {"url": format!("https://shop.example.com{path}"), "method": "GET",
                              "headers": {"x-request-id": format!("r{n}")}},
                  "response": {"status": if error { 500 } else { 200 }}},
        "logs": [], "exceptions": []
    });
    if error {
        v["exceptions"] = json!([{"name": "TypeError", "timestamp": ts,
            "message": format!("Cannot read properties of undefined (reading 'price') for item {n}"),
            "stack": "TypeError: Cannot read properties of undefined (reading 'price')\n    at renderProduct (src/product.ts:41:13)\n    at async Object.fetch (src/index.ts:12:9)"}]);
    }
    v
}

#[test]
fn a_deploy_that_breaks_a_route_is_ticketed_naming_the_release() {
    let path = std::env::temp_dir().join(format!(
        "selfheal-replay-test-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let db_path = path.to_string_lossy().into_owned();
    let mut replay =
        Replay::new(PipelineConfig::default(), GatePolicy::default(), &db_path).expect("sqlite");
    let mut lines: Vec<DecisionLine> = Vec::new();
    let mut out = |d: DecisionLine| lines.push(d);
    let mut n = 0;
    // Two days on v1: a request every minute on /products/:id and /cart.
    let deploy = START + 2 * 86_400_000;
    let mut t = START;
    while t < deploy {
        for path in ["/products/17", "/cart"] {
            n += 1;
            let line = item(t, path, "v1", false, n).to_string();
            replay.feed(&line, &mut out).expect("feed");
        }
        t += 60_000;
    }
    replay
        .feed("not json at all", &mut out)
        .expect("a bad line is counted");
    // v2: every third product request fails, for an hour.
    while t < deploy + 3_600_000 {
        for path in ["/products/17", "/cart"] {
            n += 1;
            let error = path == "/products/17" && n % 3 == 0;
            // One invocation per line, as an array (what a tail invocation delivers).
            let line = json!([item(t, path, "v2", error, n)]).to_string();
            replay.feed(&line, &mut out).expect("feed");
        }
        t += 60_000;
    }
    let summary = replay.finish(&mut out).expect("finish");
    assert_eq!(summary.bad_lines, 1);
    assert_eq!(summary.incidents, 1);
    assert_eq!(summary.tickets, 1);
    assert!(summary.cron_runs >= 2 * 288, "{}", summary.cron_runs);
    let ticket = lines
        .iter()
        .find(|d| d.decision == Verdict::Ticket)
        .expect("a ticket decision");
    let r = ticket
        .signals
        .regression
        .as_ref()
        .expect("regression figures");
    assert!(r.fired);
    assert_eq!((r.release.as_str(), r.previous.as_str()), ("v2", "v1"));
    assert_eq!(ticket.components.route, "/products/:id");
    assert!(
        ticket.at - deploy <= 15 * 60_000,
        "ticketed {} min after the deploy",
        (ticket.at - deploy) / 60_000
    );
    assert!(ticket.reasons.contains(&"regression".to_string()));

    // The ticket the replay opened carries the gate's Signal section, naming both releases.
    let db = selfheal::sqlite::Db::open(&db_path).expect("reopen");
    let body: String = db
        .conn
        .query_row("SELECT body FROM tickets", [], |r| r.get(0))
        .expect("ticket body");
    assert!(body.contains("## Signal"), "{body}");
    assert!(body.contains("| release | regression on v2 ("), "{body}");
    assert!(body.contains("against v1 ("), "{body}");
    let _ = std::fs::remove_file(&path);
}
