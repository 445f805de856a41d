// End to end in the real runtime: four Workers under `wrangler dev` (workerd) with a local D1 and a
// local Queue, fed by the demo producer through real tail delivery. Run by `npm test` after the wasm
// build (scripts/build-all.sh); the test Worker tests/e2e/replayer reaches the tail Worker's real
// tail() handler (JS RPC) and the real Queue, to replay batches and duplicate messages.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, d1, ingestedItems, d1Files, startStack, until } from "../../scripts/lib/stack.mjs";
import { BUG_ROUTES, SECRETS, drive, plan } from "../../scripts/lib/demo.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-${process.pid}`);
const fixtures = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/trace-items/labelled.json"), "utf8"));
const fixture = (label) => fixtures.find((f) => f.label === label).traceItem;

let stack;
const requests = plan();

const post = async (path, body) => {
  const res = await fetch(stack.urls.replayer + path, { method: "POST", body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.text());
};
const incidentsByRoute = async () => {
  const all = await stack.api("/api/incidents");
  return Object.groupBy(all, (i) => i.route_pattern);
};
const runnerLog = () => readFileSync(join(stack.logs, "runner.log"), "utf8");

describe("the loop on the demo producer", { timeout: 300_000 }, () => {
  before(async () => {
    stack = await startStack({
      stateDir,
      runnerVars: { SELFHEAL_DAILY_CAP: "2" },
      extra: { replayer: "tests/e2e/replayer/wrangler.toml" },
    });
    const start = await ingestedItems(stack);
    await drive(stack, requests);
    await until(async () => (await ingestedItems(stack)) >= start + requests.length, "every TraceItem", {
      timeoutMs: 60_000,
    });
  });

  after(async () => {
    await stack?.stop();
    // Kept for debugging with SELFHEAL_KEEP_STATE=1 (logs of every Worker are in <state>/logs).
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("the API needs the bearer token", async () => {
    await assert.rejects(stack.api("/api/incidents", { token: null }), (e) => e.status === 401);
    await assert.rejects(stack.api("/api/incidents", { token: "wrong" }), (e) => e.status === 401);
  });

  test("the same bug hit N times with different ids is one incident with count N", async () => {
    const byRoute = await incidentsByRoute();
    for (const route of BUG_ROUTES) {
      const expected = requests.filter((r) => r.bug === route).length;
      const incidents = byRoute[route] ?? [];
      const total = incidents.reduce((n, i) => n + i.occurrence_count, 0);
      assert.equal(total, expected, `${route}: occurrences`);
      assert.equal(incidents.length, 1, `${route}: ${JSON.stringify(incidents.map((i) => i.normalized_message))}`);
    }
    assert.equal(byRoute["/users/:id"][0].occurrence_count, 50);
    assert.equal(byRoute["/users/:id"][0].exception_type, "TypeError");
  });

  test("different bugs are different incidents; healthy and 4xx traffic makes none", async () => {
    const incidents = await stack.api("/api/incidents");
    assert.equal(incidents.length, BUG_ROUTES.length);
    assert.equal(new Set(incidents.map((i) => i.fingerprint)).size, BUG_ROUTES.length);
    assert.deepEqual(new Set(incidents.map((i) => i.route_pattern)), new Set(BUG_ROUTES));
    const summary = await stack.api("/api/summary");
    const healthy = requests.filter((r) => !r.bug).length;
    assert.ok(summary.noise_items >= healthy, `noise ${summary.noise_items} < ${healthy}`);
  });

  test("two cron runs at once make one ticket per incident; cap 2 of 5 gives 2 ready, 3 deferred", async () => {
    await Promise.all([stack.cron(), stack.cron()]);
    await stack.cron();
    const incidents = await stack.api("/api/incidents");
    const tickets = await stack.api("/api/tickets");
    assert.equal(tickets.length, incidents.length);
    assert.equal(new Set(tickets.map((t) => t.incident_id)).size, incidents.length);
    for (const t of tickets) {
      assert.match(t.body, /## Task/);
      assert.ok(t.queued_at, `ticket ${t.id} was sent on the queue`);
    }
    const runs = await until(async () => {
      const r = await stack.api("/api/runs");
      return r.length === incidents.length && r;
    }, "a fix run per ticket");
    const states = runs.map((r) => r.state).sort();
    assert.deepEqual(states, ["deferred", "deferred", "deferred", "ready", "ready"]);
    const budget = await stack.api("/api/budget");
    assert.deepEqual([budget.used, budget.cap], [2, 2]);
    const after = await stack.api("/api/incidents");
    assert.ok(after.every((i) => i.status === "claimed"), JSON.stringify(after.map((i) => i.status)));
  });

  test("a duplicated queue message is a no-op: still one fix run per incident", async () => {
    const runs = await stack.api("/api/runs");
    const ready = runs.find((r) => r.state === "ready");
    const deferred = runs.find((r) => r.state === "deferred");
    const job = (r) => ({ v: 1, incident_id: r.incident_id, ticket_id: r.ticket_id, fingerprint: r.fingerprint });
    const seen = (runnerLog().match(/selfheal runner: incident/g) ?? []).length;
    await post("/queue", [job(ready), job(ready), job(deferred), { not: "a job" }]);
    await until(() => (runnerLog().match(/selfheal runner: incident/g) ?? []).length >= seen + 3, "the runner to handle the duplicates");
    await until(() => runnerLog().includes("malformed message"), "the runner to ack the malformed message");
    const again = await stack.api("/api/runs");
    assert.equal(again.length, runs.length);
    assert.deepEqual(
      again.map((r) => [r.id, r.state]),
      runs.map((r) => [r.id, r.state]),
    );
    assert.equal((await stack.api("/api/budget")).used, 2);
  });

  test("a replayed batch leaves every count unchanged", async () => {
    const batch = [fixture("js_uncaught_exception_no_bundle"), fixture("rust_panic"), fixture("js_returns_500")];
    await post("/tail", batch);
    const first = await until(async () => {
      const all = await stack.api("/api/incidents");
      return all.length === BUG_ROUTES.length + 3 && all;
    }, "the replayed items' incidents");
    const counts = (list) => Object.fromEntries(list.map((i) => [i.fingerprint, i.occurrence_count]));
    const before = await ingestedItems(stack);
    await post("/tail", batch);
    await post("/tail", batch);
    await until(async () => (await ingestedItems(stack)) >= before + 6, "the replays to be processed");
    const second = await stack.api("/api/incidents");
    assert.deepEqual(counts(second), counts(first));
    const panic = second.find((i) => i.exception_type === "RustPanic");
    assert.equal(panic.occurrence_count, 1);
    assert.match(panic.top_frame, /cron-worker\/src\/lib\.rs/);
  });

  test("a malformed TraceItem is counted and skipped; the rest of its batch is stored", async () => {
    const ingest = async () => (await stack.api("/api/ingest")).reduce((n, d) => n + d.malformed, 0);
    const malformedBefore = await ingest();
    const fresh = structuredClone(fixture("js_async_uncaught_exception_no_bundle"));
    fresh.eventTimestamp += 12345; // a new occurrence, not a replay
    const other = structuredClone(fixture("rust_outbound_fetch_failure"));
    await post("/tail", [fresh, { logs: "not a list", exceptions: 7 }, other, "garbage"]);
    await until(async () => (await ingest()) === malformedBefore + 2, "the malformed items to be counted");
    const incidents = await stack.api("/api/incidents");
    assert.ok(incidents.some((i) => i.exception_type === "TypeError" && i.route_pattern === "/async-throw"));
    assert.ok(incidents.some((i) => i.route_pattern === "/outbound"));
  });

  test("no seeded secret is stored anywhere in D1", async () => {
    const needles = [...Object.values(SECRETS), "Sup3rSecret", "DemoLeakedToken", "alice.secret",
      // issue 9's prefix-less shapes, planted in demo/producer/index.js (and a password's tail)
      "q8Zr3T0fWm1XcV7bN4kJ2pLs9HdYg6Ea5uRiOtWz", "pk_prod_4eC39HqLyjWDarjtT1zdp7dc",
      "sess_9fKd02LmQx7PzR4tVb81NcWe", "tr0ub&dor&Pa55", "dor&Pa55"];
    // Every row of every table, through D1.
    const tables = (await d1(stateDir, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")).map((t) => t.name);
    assert.ok(tables.includes("ops_log_events") && tables.includes("tickets"), tables.join(","));
    let rows = 0;
    for (const table of tables) {
      const dump = await d1(stateDir, `SELECT * FROM ${table}`);
      rows += dump.length;
      const text = JSON.stringify(dump);
      for (const n of needles) assert.ok(!text.includes(n), `${n} found in table ${table}`);
    }
    assert.ok(rows > 20, `only ${rows} rows dumped`);
    // And the raw bytes of D1's files (SQLite pages, WAL): nothing hides in free pages either.
    const files = d1Files(stateDir);
    assert.ok(files.some((f) => f.path.endsWith(".sqlite")), "found the D1 SQLite file");
    for (const { path, bytes } of files) {
      for (const n of needles) assert.ok(!bytes.includes(Buffer.from(n)), `${n} found in ${path}`);
    }
    // The scrubbing left its remarks (which rule fired where), never the values.
    const remarks = await d1(stateDir, "SELECT remarks FROM ops_log_events WHERE remarks != '[]' LIMIT 5");
    assert.ok(remarks.length > 0);
  });
});
