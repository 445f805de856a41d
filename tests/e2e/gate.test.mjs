// The gate end to end in the real runtime: the tail Worker's traffic and occurrence counting, the
// cron's gate in enforce and shadow mode, the agent-runner's gate API, and the D1 writes that healthy
// traffic costs. Production-shaped TraceItems (scriptName, scriptVersion {id, tag}, entrypoint,
// eventTimestamp in the past hour) go through the tail Worker's real tail() via tests/e2e/replayer.
//
// Two stacks on one D1 (the same state folder): first the tail with its production default
// SELFHEAL_TRAFFIC_FLUSH_SECS=60 and the cron in enforce mode; then the same database after
// switching: the cron in shadow mode and the tail writing every invocation (FLUSH_SECS=0, the
// behaviour before the in-isolate aggregation, whose D1 writes are measured for the comparison).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-gate-${process.pid}`);
const BIN = process.env.SELFHEAL_BIN ?? join(ROOT, "target/debug/selfheal");
const MIN = 60_000;
const BUCKET = 300_000;
const T = Date.now();

let stack;
// Carried from the first stack to the second.
let healthyWritesAt60s;
let externalIds = [];
const item = traceItem;

const post = async (path, body) => {
  const res = await fetch(stack.urls.replayer + path, { method: "POST", body: JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  if (path.startsWith("/tail")) await stack.settle(); // the ingest Queue's consumer has written it
  return JSON.parse(text);
};
/** Delivers `items` as tail invocations of `size` items each, in order. */
const deliver = async (items, size = 25) => {
  const batches = [];
  for (let i = 0; i < items.length; i += size) batches.push(items.slice(i, i + size));
  for (const b of batches) await post("/tail", b);
  return batches;
};
const one = async (sql) => (await d1(stateDir, sql))[0];
const call = async (method, path, { body, token = LOCAL_API_TOKEN, raw } = {}) => {
  const res = await fetch(stack.urls.runner + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), "content-type": "application/json" },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  return { status: res.status, body: await res.json() };
};
const ingestTotals = async () => {
  const days = await stack.api("/api/ingest");
  return days.reduce((a, d) => ({ items: a.items + d.items, writes: a.writes + d.writes }), { items: 0, writes: 0 });
};
const incidentsOf = async (script) => (await stack.api("/api/incidents")).filter((i) => i.script_name === script);
/** Sorted in time, spread evenly over [from, to). */
const spread = (n, from, to) => Array.from({ length: n }, (_, i) => Math.floor(from + ((to - from) * (i + 0.5)) / n));
/** Expected 5-minute traffic rows, {bucket: requests}. */
const buckets = (items) => {
  const out = {};
  for (const i of items) {
    const b = i.eventTimestamp - (i.eventTimestamp % BUCKET);
    out[b] = (out[b] ?? 0) + 1;
  }
  return out;
};
const inApp = (fn, file, line) => `    at ${fn} (src/${file}:${line}:17)\n    at Object.fetch (src/index.js:88:12)`;
/** A batch with an error event of a throwaway script: it writes D1, so pending traffic counts ride along. */
let flushN = 0;
const flushPending = () =>
  post("/tail", [
    item({
      script: "flush-probe",
      release: "p1",
      route: `/probe`,
      ts: T - MIN + ++flushN,
      error: { name: "Error", message: "probe failure", stack: inApp("probe", "probe.js", 1) },
    }),
  ]);

describe("the gate end to end", { timeout: 600_000 }, () => {
  before(async () => {
    stack = await startStack({
      stateDir,
      tailVars: { SELFHEAL_TRAFFIC_FLUSH_SECS: "60" },
      scheduledVars: { SELFHEAL_GATE_MODE: "enforce" },
      extra: { replayer: "tests/e2e/replayer/wrangler.toml" },
      // Healthy items wait up to 60 s in the isolate: warm up with a request that fails.
      warmupPath: "/reports/export",
    });
  });

  after(async () => {
    await stack?.stop();
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("D1 writes: 1,000 healthy invocations with the default flush interval, then one error flushes them all", async () => {
    const script = "quiet-api";
    const healthy = spread(1000, T - 4 * MIN, T - 10_000).map((ts, i) =>
      item({ script, release: "q1", route: i % 2 ? `/items/${i}` : "/status", ts }),
    );
    const before = await ingestTotals();
    const started = Date.now();
    await post("/tail-each", healthy);
    const secs = (Date.now() - started) / 1000;
    const mid = await ingestTotals();
    const healthyWrites = mid.writes - before.writes;
    await post("/tail-each", [
      item({ script, release: "q1", route: "/status", ts: T - 5_000, error: { name: "Error", message: "quiet failure" } }),
    ]);
    const afterTotals = await ingestTotals();
    console.log(
      `D1 writes per 1,000 healthy tail invocations (SELFHEAL_TRAFFIC_FLUSH_SECS=60): ${healthyWrites}` +
        ` (1,000 invocations in ${secs.toFixed(1)} s); the error invocation: ${afterTotals.writes - mid.writes} write`,
    );
    assert.ok(healthyWrites <= 5, `${healthyWrites} D1 writes for 1,000 healthy invocations`);
    assert.equal(afterTotals.writes - mid.writes, 1, "the error invocation writes once, with every pending count");
    assert.equal(afterTotals.items - before.items, 1001, "ops_ingest_stats.items counts every item");
    const t = await one(`SELECT sum(requests) AS n, sum(errors) AS e FROM ops_traffic_5m WHERE script = '${script}'`);
    assert.deepEqual([t.n, t.e], [1001, 1]);
    const h = await one(`SELECT sum(requests) AS n FROM ops_traffic_1h WHERE script = '${script}'`);
    assert.equal(h.n, 1001);
    healthyWritesAt60s = healthyWrites;
  });

  test("traffic and occurrence counts equal what was sent; replayed batches change none", async () => {
    const script = "count-app";
    const times = spread(150, T - 50 * MIN, T - 2 * MIN);
    const items = times.map((ts, i) => {
      const error =
        i % 10 === 9
          ? { name: "TypeError", message: `Cannot read properties of undefined (reading 'sku')`, stack: inApp("lineItem", "cart.js", 12) }
          : undefined;
      return item({ script, release: "c1", route: error ? `/cart/${i}` : i % 2 ? `/list/${i}` : "/home", ts, error });
    });
    const errors = items.filter((i) => i.outcome === "exception");
    assert.equal(errors.length, 15);
    // The last item of the last batch is an error, so its invocation writes every pending count.
    const batches = await deliver(items, 25);

    const rows = await d1(stateDir, `SELECT bucket, sum(requests) AS n, sum(errors) AS e FROM ops_traffic_5m WHERE script = '${script}' GROUP BY bucket`);
    const got = Object.fromEntries(rows.map((r) => [r.bucket, r.n]));
    assert.deepEqual(got, Object.fromEntries(Object.entries(buckets(items)).map(([b, n]) => [Number(b), n])));
    assert.equal(rows.reduce((n, r) => n + r.e, 0), 15);
    const hourly = await one(`SELECT sum(requests) AS n, sum(errors) AS e FROM ops_traffic_1h WHERE script = '${script}'`);
    assert.deepEqual([hourly.n, hourly.e], [150, 15]);
    const [incident, ...others] = await incidentsOf(script);
    assert.equal(others.length, 0, "one incident");
    assert.equal(incident.occurrence_count, 15);
    assert.equal(incident.route_pattern, "/cart/:id");
    const occ = await d1(stateDir, `SELECT bucket, sum(n) AS n FROM ops_occ_5m WHERE fingerprint = '${incident.fingerprint}' GROUP BY bucket`);
    assert.deepEqual(
      Object.fromEntries(occ.map((r) => [r.bucket, r.n])),
      Object.fromEntries(Object.entries(buckets(errors)).map(([b, n]) => [Number(b), n])),
    );
    const rel = await one(`SELECT release, first_seen, last_seen FROM ops_releases WHERE script = '${script}'`);
    assert.deepEqual([rel.release, rel.first_seen, rel.last_seen], ["c1", times[0], times.at(-1)]);

    const snapshot = async () => ({
      traffic: await d1(stateDir, `SELECT route, release, bucket, requests, errors FROM ops_traffic_5m WHERE script = '${script}' ORDER BY route, bucket`),
      hourly: await d1(stateDir, `SELECT route, bucket, requests FROM ops_traffic_1h WHERE script = '${script}' ORDER BY route, bucket`),
      occ: await d1(stateDir, `SELECT bucket, n FROM ops_occ_5m WHERE fingerprint = '${incident.fingerprint}' ORDER BY bucket`),
      count: (await incidentsOf(script))[0].occurrence_count,
    });
    const first = await snapshot();
    // Redeliver a healthy batch, a batch with errors, and the whole lot once more; then make the
    // isolate write whatever it holds.
    await post("/tail", batches[0]);
    await post("/tail", batches.at(-1));
    await deliver(items, 25);
    await flushPending();
    assert.deepEqual(await snapshot(), first);
  });

  test("a deploy that introduces a TypeError on one route → ticket naming the release, in enforce mode", async () => {
    const script = "shop-api";
    const deploy = T - 12 * MIN;
    const routes = ["/products/7", "/cart", "/orders/81", "/search"];
    // Healthy traffic on v1 over the past hour, then v2 from the deploy on.
    const v1 = spread(320, T - 60 * MIN, deploy).map((ts, i) => item({ script, release: "v1", route: routes[i % 4], ts }));
    const v2times = spread(160, deploy, T - 30_000);
    const v2 = v2times.map((ts, i) => {
      const route = routes[i % 4];
      // Half the /cart requests on v2 fail.
      const error =
        route === "/cart" && i % 8 !== 1
          ? { name: "TypeError", message: "Cannot read properties of undefined (reading 'total')", stack: inApp("cartTotal", "cart.js", 42) }
          : undefined;
      return item({ script, release: "v2", route, ts, error, method: route === "/cart" ? "POST" : "GET" });
    });
    const sent = v2.filter((i) => i.outcome === "exception").length;
    await deliver([...v1, ...v2], 40);
    await flushPending();
    await stack.cron();

    const [inc, ...more] = await incidentsOf(script);
    assert.equal(more.length, 0, JSON.stringify(more));
    assert.equal(inc.occurrence_count, sent);
    assert.equal(inc.gate_decision, "ticket", JSON.stringify(inc));
    assert.ok(inc.gate_reasons.includes("regression"), inc.gate_reasons.join(","));
    assert.ok(inc.gate_priority > 0);
    const history = await stack.api(`/api/incidents/${inc.id}/decisions`);
    assert.equal(history.decisions.at(-1).decision, "ticket");
    assert.equal(history.decisions.at(-1).mode, "enforce");
    const reg = history.decisions.at(-1).signals.regression;
    assert.deepEqual([reg.fired, reg.release, reg.previous], [true, "v2", "v1"]);

    const ticket = (await stack.api("/api/tickets")).find((t) => t.incident_id === inc.id);
    assert.ok(ticket, "a ticket for the regression");
    const signal = ticket.body.slice(ticket.body.indexOf("## Signal"));
    assert.ok(ticket.body.includes("## Signal"), ticket.body);
    assert.match(signal, /regression on v2 .* against v1/);
    await until(async () => (await stack.api("/api/runs")).some((r) => r.incident_id === inc.id), "its fix run");
  });

  test("an outage-shaped burst across 3 routes → external, no ticket, no fix run", async () => {
    const script = "edge-api";
    const routes = ["/checkout/12", "/quote", "/shipping/3"];
    const healthy = spread(240, T - 60 * MIN, T - MIN).map((ts, i) => item({ script, release: "e1", route: routes[i % 3], ts }));
    const burst = spread(60, T - 8 * MIN, T - MIN).map((ts, i) =>
      item({
        script,
        release: "e1",
        route: routes[i % 3],
        ts,
        error:
          i % 2
            ? { name: "TypeError", message: "fetch failed", stack: inApp("callUpstream", "upstream.js", 12) }
            : { name: "Error", message: "Network connection lost.", stack: inApp("callUpstream", "upstream.js", 12) },
      }),
    );
    const all = [...healthy, ...burst].sort((a, b) => a.eventTimestamp - b.eventTimestamp);
    await deliver(all, 30);
    await flushPending();
    await stack.cron();

    const incidents = await incidentsOf(script);
    assert.equal(incidents.length, 6, incidents.map((i) => `${i.route_pattern} ${i.normalized_message}`).join("; "));
    assert.equal(incidents.reduce((n, i) => n + i.occurrence_count, 0), 60);
    for (const i of incidents) {
      assert.equal(i.gate_decision, "external", `${i.route_pattern} ${i.normalized_message}: ${i.gate_reasons}`);
      assert.ok(i.gate_reasons.includes("external_kind"), i.gate_reasons.join(","));
      assert.equal(i.ticket_id, null);
    }
    const ids = new Set(incidents.map((i) => i.id));
    await stack.cron();
    assert.ok(!(await stack.api("/api/tickets")).some((t) => ids.has(t.incident_id)), "no ticket");
    assert.ok(!(await stack.api("/api/runs")).some((r) => ids.has(r.incident_id)), "no fix run");
    externalIds = [...ids];
  });

  test("the label API: 200 stored, 400 bad body or label, 404 unknown incident, 413 too big, 401 without the token", async () => {
    const [shop] = await incidentsOf("shop-api");
    const [edge] = await incidentsOf("edge-api");
    const stored = async (id) => (await one(`SELECT label, label_at FROM ops_incidents WHERE id = ${id}`)) ?? {};

    for (const raw of ["not json", "[]", "{}", '{"label": 3}', '{"label": "yes"}', '{"label": "actionable", "x": 1}']) {
      const r = await call("POST", `/api/incidents/${shop.id}/label`, { raw });
      assert.equal(r.status, 400, `${raw}: ${JSON.stringify(r.body)}`);
      assert.equal(typeof r.body.error, "string");
    }
    assert.match((await call("POST", `/api/incidents/${shop.id}/label`, { body: { label: "yes" } })).body.error, /not one of actionable, not_actionable/);
    assert.equal((await call("POST", `/api/incidents/999999/label`, { body: { label: "actionable" } })).status, 404);
    assert.equal((await call("POST", `/api/incidents/abc/label`, { body: { label: "actionable" } })).status, 404);
    assert.equal((await call("GET", `/api/incidents/999999/decisions`)).status, 404);
    const big = JSON.stringify({ label: "actionable", pad: "x".repeat(20_000) });
    assert.equal((await call("POST", `/api/incidents/${shop.id}/label`, { raw: big })).status, 413);
    assert.equal((await call("POST", `/api/incidents/${shop.id}/label`, { body: { label: "actionable" }, token: null })).status, 401);
    assert.equal((await call("GET", `/api/incidents/${shop.id}/label`)).status, 405);
    assert.deepEqual(await stored(shop.id), { label: null, label_at: null }, "nothing stored by a refused request");

    const ok = await call("POST", `/api/incidents/${shop.id}/label`, { body: { label: "actionable" } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual([ok.body.incident_id, ok.body.label], [shop.id, "actionable"]);
    assert.ok(Math.abs(ok.body.label_at - Date.now()) < 60_000);
    assert.equal((await stored(shop.id)).label, "actionable");
    // The CLI, against the same API.
    assert.ok(existsSync(BIN), `${BIN} (built by cargo test; SELFHEAL_BIN overrides)`);
    const env = { ...process.env, SELFHEAL_API_URL: stack.urls.runner, SELFHEAL_API_TOKEN: LOCAL_API_TOKEN };
    const out = execFileSync(BIN, ["label", String(edge.id), "not_actionable"], { env, encoding: "utf8" });
    assert.equal(JSON.parse(out).label, "not_actionable");
    const listed = (await stack.api("/api/incidents")).find((i) => i.id === edge.id);
    assert.equal(listed.label, "not_actionable");
  });

  test("the report over the labels (API and CLI); an HTTP error is a non-zero exit", async () => {
    const report = await stack.api("/api/gate/report");
    assert.equal(report.labelled, 2);
    assert.deepEqual(report.confusion, { true_positive: 1, false_positive: 0, false_negative: 0, true_negative: 1 });
    assert.deepEqual([report.precision, report.recall], [1, 1]);
    assert.equal(report.time_to_ticket.count, 1);
    const [shop] = await incidentsOf("shop-api");
    const t = report.time_to_ticket.incidents[0];
    assert.equal(t.incident_id, shop.id);
    // First seen 12 min before the test started; decided at the first cron after that.
    assert.ok(t.ms >= 11 * MIN && t.ms < 20 * MIN, `${t.ms} ms`);
    assert.ok(report.decisions.external >= 6 && report.decisions.ticket >= 1, JSON.stringify(report.decisions));

    const env = { ...process.env, SELFHEAL_API_URL: stack.urls.runner, SELFHEAL_API_TOKEN: LOCAL_API_TOKEN };
    const text = execFileSync(BIN, ["gate-report"], { env, encoding: "utf8" });
    assert.match(text, /precision 1\.000 {3}recall 1\.000/);
    assert.match(text, /decided ticket +1 +0/);
    console.log(text);
    const json = JSON.parse(execFileSync(BIN, ["gate-report", "--json"], { env, encoding: "utf8" }));
    assert.deepEqual(json.confusion, report.confusion);
    const bad = spawnSync(BIN, ["gate-report"], { env: { ...env, SELFHEAL_API_TOKEN: "wrong" }, encoding: "utf8" });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /HTTP 401: missing or wrong bearer token/);
    // One incident's decision history through the CLI.
    const history = execFileSync(BIN, ["decisions", String(shop.id)], { env, encoding: "utf8" });
    assert.match(history, new RegExp(`^incident ${shop.id}: now ticket \\(label actionable\\)`, "m"));
    assert.match(history, /^\S+Z enforce ticket \S*regression/m);
    const missing = spawnSync(BIN, ["decisions", "999999"], { env, encoding: "utf8" });
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /HTTP 404/);
  });

  describe("shadow mode, on the same D1", () => {
    before(async () => {
      await stack.stop();
      stack = await startStack({
        stateDir,
        fresh: false,
        // Shadow mode; the tail writes D1 itself on every invocation: the write path before the
        // in-isolate aggregation and the ingest Queue, whose D1 writes are measured for comparison.
        tailVars: { SELFHEAL_TRAFFIC_FLUSH_SECS: "0", SELFHEAL_INGEST_MODE: "direct" },
        scheduledVars: { SELFHEAL_GATE_MODE: "shadow" },
        extra: { replayer: "tests/e2e/replayer/wrangler.toml" },
      });
    });

    test("decisions are recorded, tickets and jobs open for every incident as without the gate", async () => {
      const script = "shadow-app";
      const healthy = spread(200, T - 60 * MIN, T - MIN).map((ts, i) => item({ script, release: "s1", route: i % 2 ? "/feed" : "/profile/5", ts }));
      const bug = spread(20, T - 9 * MIN, T - MIN).map((ts, i) =>
        item({ script, release: "s1", route: `/profile/${i}`, ts, error: { name: "RangeError", message: "Invalid time value", stack: inApp("formatDate", "profile.js", 7) } }),
      );
      const outage = spread(20, T - 9 * MIN, T - MIN).map((ts) =>
        item({ script, release: "s1", route: "/feed", ts, error: { name: "TypeError", message: "fetch failed", stack: inApp("loadFeed", "feed.js", 3) } }),
      );
      const before = (await stack.api("/api/tickets")).length;
      await deliver([...healthy, ...bug, ...outage].sort((a, b) => a.eventTimestamp - b.eventTimestamp), 30);
      await stack.cron();

      const mine = await incidentsOf(script);
      assert.equal(mine.length, 2);
      const history = await d1(
        stateDir,
        `SELECT d.incident_id, d.mode, d.decision FROM gate_decisions d JOIN ops_incidents i ON i.id = d.incident_id WHERE i.script_name = '${script}'`,
      );
      assert.equal(history.length, 2, JSON.stringify(history));
      assert.ok(history.every((h) => h.mode === "shadow"));
      const byRoute = Object.fromEntries(mine.map((i) => [i.route_pattern, i]));
      assert.equal(byRoute["/feed"].gate_decision, "external");
      assert.equal(byRoute["/profile/:id"].gate_decision, "ticket", JSON.stringify(byRoute["/profile/:id"].gate_reasons));

      // As without the gate: every incident is ticketed (the external ones of enforce mode too), on its
      // own ticket or, when the merge stage put it in a group, on its group's; a fix run per ticket.
      const incidents = await stack.api("/api/incidents");
      const tickets = await stack.api("/api/tickets");
      const ticketIds = new Set(tickets.map((t) => t.id));
      for (const i of incidents) assert.ok(ticketIds.has(i.ticket_id), `incident ${i.id} is on a ticket: ${JSON.stringify(i)}`);
      const holders = new Set(tickets.map((t) => t.incident_id));
      const grouped = await d1(stateDir, "SELECT id, group_key, fingerprint FROM ops_incidents");
      const keyOf = Object.fromEntries(grouped.map((g) => [g.id, g.group_key ?? g.fingerprint]));
      for (const i of incidents.filter((x) => !holders.has(x.id))) {
        const holder = tickets.find((t) => t.id === i.ticket_id).incident_id;
        assert.equal(keyOf[i.id], keyOf[holder], `incident ${i.id} shares its ticket only with its group`);
      }
      assert.ok(tickets.length > before);
      for (const id of externalIds) assert.ok(incidents.find((i) => i.id === id)?.ticket_id, `external incident ${id} ticketed in shadow mode`);
      await until(async () => (await stack.api("/api/runs")).length === tickets.length, "a fix run per ticket", { timeoutMs: 60_000 });
      // The report is served and counts the labels stored in enforce mode.
      const report = await stack.api("/api/gate/report");
      assert.equal(report.labelled, 2);
      const label = await call("POST", `/api/incidents/${byRoute["/feed"].id}/label`, { body: { label: "not_actionable" } });
      assert.equal(label.status, 200);
      const again = await stack.api("/api/gate/report");
      assert.equal(again.labelled, 3);
      assert.equal(again.confusion.true_negative, 2);
    });

    test("D1 writes before the aggregation: 1,000 healthy invocations write 1,000 times", async () => {
      const healthy = spread(1000, T - 4 * MIN, T - 10_000).map((ts, i) => item({ script: "loud-api", release: "l1", route: `/items/${i}`, ts }));
      const before = await ingestTotals();
      await post("/tail-each", healthy);
      const afterTotals = await ingestTotals();
      const writes = afterTotals.writes - before.writes;
      console.log(
        `D1 writes per 1,000 healthy tail invocations: ${writes} writing every invocation (SELFHEAL_TRAFFIC_FLUSH_SECS=0, as before), ` +
          `${healthyWritesAt60s ?? "?"} with the default 60 s flush`,
      );
      assert.equal(writes, 1000);
      assert.equal(afterTotals.items - before.items, 1000);
    });
  });
});
