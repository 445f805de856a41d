// The ingest write path under faults, end to end in the real runtime: the tail Worker's tail()
// sends sanitized events on the local `selfheal-ingest` Queue; the agent-runner's queue() consumer
// (src/runner/ingest_queue.rs) writes one D1 batch per queue batch, retries with backoff,
// dead-letters, and its dead-letter consumer parks messages for `selfheal ingest replay`. So the
// consumer's settings (backoff, flood cap) are the runner's vars, and its D1 errors are in
// runner.log; the tail's log says what it sent.
//
// How faults are injected locally: D1 itself is made to fail with a trigger created through
// `wrangler d1 execute --local` on the same database the Workers use
// (`RAISE(ABORT, 'injected fault')` on every insert into ops_occurrences, or only for one
// marked message: a poisonous message). The D1 batch fails as a real D1 error does, after its
// first statements ran, and rolls back. Nothing in the Workers knows about it: no flag, binding or
// build a production deploy could carry.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-ingest-${process.pid}`);
const BIN = process.env.SELFHEAL_BIN ?? join(ROOT, "target/debug/selfheal");
const CAP = 20;
let stack;
let seq = 0;

const post = async (path, body) => {
  const res = await fetch(stack.urls.replayer + path, { method: "POST", body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.text());
};
const scalar = async (sql) => Object.values((await d1(stateDir, sql))[0] ?? { n: 0 })[0] ?? 0;
const occurrences = (script) =>
  scalar(`SELECT coalesce(sum(occurrence_count), 0) AS n FROM ops_incidents WHERE script_name = '${script}'`);
const BUGS = ["cart lookup", "price rounding", "session refresh", "invoice render"];
/** `n` error items of `script`, `kinds` distinct bugs, each delivered alone (as production does). */
const errors = (script, n, kinds, marker = "") =>
  Array.from({ length: n }, (_, i) =>
    traceItem({
      script,
      release: "r1",
      route: `/things/${++seq}`,
      ts: Date.now() - 1000 + i,
      error: { name: "TypeError", message: `${BUGS[i % kinds]}${marker} failed for request ${seq}`, stack: `    at handler (worker.js:${10 + (i % kinds)}:5)` },
    }),
  );
const tailLog = () => readFileSync(join(stack.logs, "tail.log"), "utf8");
const runnerLog = () => readFileSync(join(stack.logs, "runner.log"), "utf8");
const cli = (args) =>
  execFileSync(BIN, args, {
    env: { ...process.env, SELFHEAL_API_URL: stack.urls.runner, SELFHEAL_API_TOKEN: LOCAL_API_TOKEN },
    encoding: "utf8",
  });

describe("the ingest Queue under faults", { timeout: 300_000 }, () => {
  before(async () => {
    stack = await startStack({
      stateDir,
      extra: { replayer: "tests/e2e/replayer/wrangler.toml" },
      // The consumer is the agent-runner's: backoff of 1 s so the retries of a test fit in seconds
      // (production: 10 s doubling), and the flood cap of the last tests.
      runnerVars: {
        SELFHEAL_INGEST_RETRY_BASE_SECS: "1",
        SELFHEAL_INGEST_RETRY_MAX_SECS: "1",
        SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR: String(CAP),
      },
    });
  });

  after(async () => {
    await stack?.stop();
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("events travel on the Queue and land as one D1 batch per queue batch", async () => {
    await post("/tail-each", errors("q-basic", 40, 4));
    await until(async () => (await occurrences("q-basic")) === 40, "40 occurrences");
    assert.equal(await scalar("SELECT count(*) AS n FROM ops_incidents WHERE script_name = 'q-basic'"), 4);
    assert.match(tailLog(), /messages=1/, "the tail Worker sent messages, not D1 writes");
    const [stats] = await d1(stateDir, "SELECT sum(messages) AS m, sum(writes) AS w FROM ops_ingest_stats");
    assert.ok(stats.m >= 40, `messages applied: ${JSON.stringify(stats)}`);
    assert.ok(stats.w < stats.m, `fewer D1 batches than messages: ${JSON.stringify(stats)}`);
  });

  test("D1 failing for a stretch: nothing is lost, every count exact after recovery", async () => {
    await d1(stateDir, "CREATE TRIGGER fault BEFORE INSERT ON ops_occurrences BEGIN SELECT RAISE(ABORT, 'injected fault'); END");
    const items = errors("q-outage", 30, 3);
    try {
      await post("/tail-each", items);
      await until(async () => /injected fault/.test(runnerLog()), "a failed D1 write in the consumer's log", { timeoutMs: 20_000 });
      await new Promise((r) => setTimeout(r, 2500)); // a few retries while D1 still fails
      assert.equal(await occurrences("q-outage"), 0, "nothing lands while D1 fails");
    } finally {
      await d1(stateDir, "DROP TRIGGER IF EXISTS fault");
    }
    await until(async () => (await occurrences("q-outage")) === 30, "30 occurrences after recovery", { timeoutMs: 30_000 });
    assert.ok((await scalar("SELECT sum(retried_messages) AS n FROM ops_ingest_stats")) >= 0);
    // The same items delivered again by the runtime (a tail redelivery): no count moves.
    await post("/tail", items);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await occurrences("q-outage"), 30);
    assert.equal(await scalar("SELECT count(*) AS n FROM ops_ingest_dead"), 0, "nothing dead-lettered");
  });

  test("one message delivered five times, and a malformed one, change no count", async () => {
    const items = errors("q-dup", 1, 1);
    // What the tail Worker would send for this item: capture by delivering it once.
    await post("/tail", items);
    await until(async () => (await occurrences("q-dup")) === 1, "the first delivery");
    const [row] = await d1(
      stateDir,
      "SELECT e.fingerprint FROM ops_log_events e JOIN ops_incidents i ON i.fingerprint = e.fingerprint WHERE i.script_name = 'q-dup'",
    );
    const [inc] = await d1(stateDir, `SELECT * FROM ops_incidents WHERE fingerprint = '${row.fingerprint}'`);
    const body = JSON.stringify({
      v: 1,
      id: "dup-1",
      sent_at: Date.now(),
      events: [
        {
          event_key: "0123456789abcdef0123456789abcdef", // a new occurrence of the same incident
          fingerprint: row.fingerprint,
          components: {
            version: inc.fingerprint_version, script: inc.script_name, route: inc.route_pattern,
            exception_type: inc.exception_type, message: inc.normalized_message, top_frame: inc.top_frame,
            status_class: inc.status_class,
          },
          event_kind: "fetch", method: "GET", url: null, status: null, outcome: "exception", message: "m", stack: "",
          logs: "[]", request: "{}", release: "r1", entrypoint: null, timestamp_ms: Date.now(), remarks: "[]",
        },
      ],
      flushes: [],
    });
    const malformedBefore = await scalar("SELECT coalesce(sum(malformed_messages), 0) AS n FROM ops_ingest_stats");
    await post("/ingest", [body, body, body, body, body, "{not an ingest message"]);
    await until(
      async () => (await scalar("SELECT coalesce(sum(malformed_messages), 0) AS n FROM ops_ingest_stats")) === malformedBefore + 1,
      "the malformed message counted",
    );
    await until(async () => (await occurrences("q-dup")) >= 2, "the duplicated occurrence");
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await occurrences("q-dup"), 2, "five deliveries of one occurrence count once");
  });

  test("a poisonous message is dead-lettered, holds up nobody, and replays exactly once", async () => {
    // Only events whose message carries the marker fail; the others of the same queue batches land.
    await d1(
      stateDir,
      "CREATE TRIGGER poison BEFORE INSERT ON ops_occurrences WHEN (SELECT normalized_message FROM ops_incidents WHERE fingerprint = NEW.fingerprint) LIKE '%POISON%' BEGIN SELECT RAISE(ABORT, 'injected poison'); END",
    );
    try {
      const good = errors("q-poison", 20, 2);
      const bad = errors("q-poison", 1, 1, " POISON");
      await post("/tail-each", [...good.slice(0, 10), ...bad, ...good.slice(10)]);
      await until(async () => (await occurrences("q-poison")) === 20, "the 20 good occurrences", { timeoutMs: 30_000 });
      // max_retries (10) tries 1 s apart, then the dead-letter queue parks it.
      await until(async () => (await scalar("SELECT count(*) AS n FROM ops_ingest_dead")) === 1, "the parked message", {
        timeoutMs: 90_000,
      });
      assert.equal(await occurrences("q-poison"), 20);
      const listed = cli(["ingest", "dead"]);
      assert.match(listed, /1 events 1 tries dead-lettered/, listed);
    } finally {
      await d1(stateDir, "DROP TRIGGER IF EXISTS poison");
    }
    const out = cli(["ingest", "replay"]);
    assert.match(out, /replayed=1 unreadable=0 left=0/);
    assert.equal(await occurrences("q-poison"), 21);
    // A second replay finds nothing and changes nothing.
    assert.match(cli(["ingest", "replay"]), /replayed=0 unreadable=0 left=0/);
    assert.equal(await occurrences("q-poison"), 21);
    assert.equal(await scalar("SELECT sum(dead_messages) AS n FROM ops_ingest_stats"), 1);
  });

  test("a flood of new fingerprints folds past the cap into one overflow incident", async () => {
    const items = Array.from({ length: CAP + 15 }, (_, i) =>
      traceItem({
        script: "q-flood",
        release: "r1",
        route: "/login",
        ts: Date.now() + i,
        // Attacker-chosen text: every message a different shape the normalizer cannot fold.
        error: { name: "Error", message: `unexpected ${"zq".repeat(i + 1)} in input`, stack: "    at handler (worker.js:3:1)" },
      }),
    );
    await post("/tail-each", items);
    await until(async () => (await occurrences("q-flood")) === CAP + 15, "every occurrence counted");
    const rows = await d1(
      stateDir,
      "SELECT exception_type, occurrence_count FROM ops_incidents WHERE script_name = 'q-flood' ORDER BY id",
    );
    const overflow = rows.filter((r) => r.exception_type === "selfheal.overflow");
    assert.equal(rows.length - overflow.length, CAP);
    assert.equal(overflow.length, 1);
    assert.equal(overflow[0].occurrence_count, 15);
  });

  test("the operator CLI round-trips against the running stack", async () => {
    const table = cli(["incidents", "--status", "open"]);
    const [header, ...lines] = table.trim().split("\n");
    assert.match(header, /^id\s+status\s+gate\s+count\s+last_seen\s+script\s+route\s+type\s+message$/);
    const listed = JSON.parse(cli(["incidents", "--json"]));
    const target = listed.find((i) => i.script_name === "q-basic");
    assert.ok(lines.some((l) => l.startsWith(`${target.id} `)), table);
    assert.match(cli(["resolve", String(target.id)]), new RegExp(`^#${target.id} open -> resolved`));
    assert.equal(JSON.parse(cli(["incidents", "--json", "--status", "resolved"])).filter((i) => i.id === target.id).length, 1);
    assert.match(cli(["reopen", String(target.id)]), /resolved -> open/);
    assert.match(cli(["ignore", String(target.id)]), /open -> ignored/);
    const shown = JSON.parse(cli(["show", String(target.id), "--json"]));
    assert.deepEqual(
      shown.history.map((h) => [h.from_status, h.to_status, h.actor, h.why]),
      [
        ["open", "resolved", "operator", "operator_resolve"],
        ["resolved", "open", "operator", "operator_reopen"],
        ["open", "ignored", "operator", "operator_ignore"],
      ],
    );
    const text = cli(["show", String(target.id)]);
    assert.match(text, new RegExp(`incident #${target.id}  ignored  10 occurrences`));
    assert.match(text, /open -> ignored by operator \(operator_ignore\)/);
    assert.match(cli(["budget"]), /^\d{4}-\d{2}-\d{2} \d+\/\d+$/m);
    assert.match(cli(["runs"]), /^id\s+incident\s+ticket\s+state/);
    // An unknown incident: a non-zero exit and the API's 404.
    const missing = spawnSync(BIN, ["resolve", "999999"], {
      env: { ...process.env, SELFHEAL_API_URL: stack.urls.runner, SELFHEAL_API_TOKEN: LOCAL_API_TOKEN },
      encoding: "utf8",
    });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /HTTP 404/);
  });
});
