// Faults of the control plane and its security guards, end to end on ONE stack: the real cron Worker,
// agent-runner and tail Worker in workerd with local D1 and Queue. GitHub cannot be reached from this
// machine, so the cron talks to tests/e2e/github-stub.mjs (the documented REST contract, with
// injected 500s, lost responses, 429s and rate-limit resets); the hosted agent of the webhook
// handover is a local receiver that checks the signature with node:crypto.
//
// Fault → outcome, one test each:
//  - GitHub 500s and a create whose response is lost (timeout) → retried within the documented
//    limits, one issue per ticket;
//  - a 429 with retry-after on a comment and a comment whose response is lost → one comment per
//    run state, the retry no earlier than retry-after;
//  - a primary rate limit resetting beyond what one run may wait → the cron holds: no request to
//    GitHub before x-ratelimit-reset, then the issue is created once;
//  - the cron stopped between the ticket insert and the queue send → a later run sends the job
//    once (after SELFHEAL_UNQUEUED_GRACE_MS), exactly one fix run;
//  - 50 concurrent POST /api/runs/lease → exactly one lease; two concurrent results → one wins, 409;
//  - per-run tokens, tokens in query strings, body limits: the guards of src/security.rs;
//  - Sentry intake (issue 11 §3): five signed deliveries of one Sentry issue → one incident, one
//    ticket, one fix run; a wrong signature, a stale timestamp, a 2 MB body, a non-JSON body → 4xx,
//    nothing stored. Sentry cannot reach this machine: the deliveries are built here as its
//    "Issues" webhook page documents them and signed with node:crypto.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, ingestedItems, sleep, startStack, until } from "../../scripts/lib/stack.mjs";
import { drive } from "../../scripts/lib/demo.mjs";
import { startGithubStub, trackerVars } from "./github-stub.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-faults-control-${process.pid}`);
const GH_TOKEN = "gh-test-token-not-a-secret";
const REPO = "acme/shop";
const SECRET = "webhook-secret-for-tests-0123456789";
const SENTRY_SECRET = "sentry-client-secret-for-tests";
const GRACE_MS = 15_000;
const TIMEOUT_MS = 2_000;

let stack;
let gh;
let receiver;
const deliveries = [];

const issuesPath = /^\/repos\/acme\/shop\/issues$/;
const commentsPath = /^\/repos\/acme\/shop\/issues\/\d+\/comments$/;
const marker = (fp) => `<!-- selfheal:fingerprint=${fp} -->`;

function verified(headers, raw) {
  const ts = headers["x-selfheal-timestamp"];
  const want = Buffer.from(`sha256=${createHmac("sha256", SECRET).update(`${ts}.`).update(raw).digest("hex")}`);
  const got = Buffer.from(headers["x-selfheal-signature"] ?? "");
  return got.length === want.length && timingSafeEqual(got, want);
}

/** POST to the agent-runner; `token` null sends no Authorization header. */
async function post(path, body, { token = LOCAL_API_TOKEN, headers = {} } = {}) {
  const res = await fetch(stack.urls.runner + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const runs = () => stack.api("/api/runs");
const incidentOf = async (route) => (await stack.api("/api/incidents")).find((i) => i.route_pattern === route);
async function produce(paths) {
  const start = await ingestedItems(stack);
  await drive(stack, paths.map((path) => ({ path })));
  await until(async () => (await ingestedItems(stack)) >= start + paths.length, "every TraceItem", { timeoutMs: 60_000 });
}

describe("control-plane faults and guards", { timeout: 240_000 }, () => {
  before(async () => {
    gh = await startGithubStub({ token: GH_TOKEN, repo: REPO });
    receiver = createServer(async (req, res) => {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const raw = Buffer.concat(chunks);
      deliveries.push({ verified: verified(req.headers, raw), body: JSON.parse(raw.toString("utf8")) });
      res.writeHead(202).end();
    });
    await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
    stack = await startStack({
      stateDir,
      runnerVars: { SELFHEAL_SENTRY_CLIENT_SECRET: SENTRY_SECRET },
      scheduledVars: {
        ...trackerVars(gh, GH_TOKEN, REPO),
        SELFHEAL_GITHUB_TIMEOUT_MS: String(TIMEOUT_MS),
        SELFHEAL_UNQUEUED_GRACE_MS: String(GRACE_MS),
        SELFHEAL_HANDOVER: "webhook",
        SELFHEAL_WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hooks/selfheal`,
        SELFHEAL_WEBHOOK_SECRET: SECRET,
      },
    });
    await produce(["/users/301", "/users/302", "/checkout/303", "/checkout/304"]);
  });

  after(async () => {
    await stack?.stop();
    await gh?.close();
    await new Promise((r) => receiver?.close(r));
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("GitHub 500s and a create whose response is lost: retried, one issue per ticket", async () => {
    // The first create is applied by GitHub but its response never comes back before the cron's
    // timeout (what a duplicate would come from); the second gets two 500s.
    gh.failNext({ method: "POST", path: issuesPath }, { process: true, delayMs: TIMEOUT_MS + 3_000 });
    gh.failNext({ method: "POST", path: issuesPath }, { status: 500, body: { message: "Server Error" } }, 2);
    await stack.cron();
    const tickets = await d1(stateDir, "SELECT id, fingerprint, external_number FROM tickets ORDER BY id");
    assert.equal(tickets.length, 2);
    for (const t of tickets) {
      const withMarker = gh.issues.filter((i) => i.body.split("\n")[0] === marker(t.fingerprint));
      assert.equal(withMarker.length, 1, `one issue for ticket ${t.id}`);
      assert.equal(t.external_number, withMarker[0].number);
    }
    assert.equal(gh.issues.length, 2);
    const creates = gh.requests.filter((r) => r.method === "POST" && issuesPath.test(r.path));
    assert.deepEqual(creates.map((r) => [r.status, r.lostResponse ?? false]), [[201, true], [500, false], [500, false], [201, false]]);
    // The lost create was looked up (search found it), not sent again.
    const between = gh.requests.filter((r) => r.at > creates[0].at && r.at < creates[1].at);
    assert.ok(between.some((r) => r.method === "GET" && r.path === "/search/issues"), "looked up before any resend");
    // Backoff after the 500s: 2 s, then 4 s (src/github.rs classify).
    assert.ok(creates[2].at - creates[1].at >= 2_000, `${creates[2].at - creates[1].at} ms`);
    assert.ok(creates[3].at - creates[2].at >= 4_000, `${creates[3].at - creates[2].at} ms`);
  });

  test("a 429 with retry-after and a comment whose response is lost: one comment per run state", async () => {
    const settled = (rs) => rs.length === 2 && rs.every((r) => ["ready", "leased", "fixing"].includes(r.state));
    await until(async () => settled(await runs()), "two claimed runs", { timeoutMs: 60_000 });
    const mark = gh.requests.length;
    gh.failNext({ method: "POST", path: commentsPath }, { status: 429, headers: { "retry-after": "2" }, body: { message: "You have exceeded a secondary rate limit." } });
    gh.failNext({ method: "POST", path: commentsPath }, { process: true, delayMs: TIMEOUT_MS + 3_000 });
    const posts = () => gh.requests.slice(mark).filter((r) => r.method === "POST" && commentsPath.test(r.path));
    for (let i = 0; i < 3 && !posts().some((r) => r.lostResponse); i++) await stack.cron();
    const [limited, retried] = posts();
    assert.equal(limited.status, 429);
    assert.equal(retried.lostResponse, true, "the retry was applied, its response lost");
    assert.ok(retried.at - limited.at >= 2_000, "retried no earlier than retry-after");
    assert.deepEqual(retried.body, limited.body);
    const lostMarker = retried.body.body.trim().split("\n").at(-1);
    assert.match(lostMarker, /^<!-- selfheal:run=\d+:\w+ -->$/);
    const markers = gh.comments.map((c) => c.body.trim().split("\n").at(-1));
    assert.equal(markers.filter((m) => m === lostMarker).length, 1, "looked up, not posted again");
    assert.equal(new Set(markers).size, markers.length, "no comment twice");
    const lookups = gh.requests.filter((r) => r.method === "GET" && commentsPath.test(r.path) && r.at > retried.at);
    assert.ok(lookups.length >= 1, "the comment list was read before any resend");
  });

  test("a webhook handover's run token reports its own run only, and dies with it", async () => {
    if (deliveries.length === 0) await stack.cron();
    assert.equal(deliveries.length, 1);
    const [d] = deliveries;
    assert.equal(d.verified, true);
    const { run_id, lease_id, run_token } = d.body;
    assert.match(run_token, /^shr_[0-9a-f]{64}$/);
    const other = (await runs()).find((r) => r.id !== run_id);
    const stored = await d1(stateDir, "SELECT token_hash FROM run_tokens");
    assert.equal(stored.length, 1);
    assert.notEqual(stored[0].token_hash, run_token, "only the hash is stored");

    assert.equal((await post(`/api/runs/${run_id}/heartbeat`, { lease_id, state: "fixing", ttl_secs: 600 }, { token: run_token })).status, 200);
    assert.equal((await post(`/api/runs/${other.id}/heartbeat`, { lease_id, state: "fixing" }, { token: run_token })).status, 401, "another run");
    assert.equal((await post("/api/runs/lease", { owner: "thief" }, { token: run_token })).status, 401, "no lease");
    const read = await fetch(`${stack.urls.runner}/api/runs`, { headers: { authorization: `Bearer ${run_token}` } });
    assert.equal(read.status, 401, "no reads");
    assert.equal((await post(`/api/incidents/${other.incident_id}/label`, { label: "actionable" }, { token: run_token })).status, 401);

    const result = { lease_id, outcome: "pr_opened", pr_url: "https://github.com/acme/shop/pull/77" };
    // A token in the query string is refused, and nothing is done.
    const inQuery = await post(`/api/runs/${run_id}/result?token=${run_token}`, result, { token: null });
    assert.equal(inQuery.status, 400);
    assert.match(inQuery.body.error, /Authorization header/);
    assert.equal((await runs()).find((r) => r.id === run_id).state, "fixing");

    assert.equal((await post(`/api/runs/${run_id}/result`, result, { token: run_token })).status, 200);
    assert.equal((await runs()).find((r) => r.id === run_id).state, "pr_opened");
    assert.equal((await post(`/api/runs/${run_id}/heartbeat`, { lease_id }, { token: run_token })).status, 401, "dead with its run");
  });

  test("50 concurrent leases: exactly one; two concurrent results: one wins, the other 409", async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => post("/api/runs/lease", { owner: `fixer-${i}`, ttl_secs: 600 })));
    const statuses = answers.map((a) => a.status);
    assert.equal(statuses.filter((s) => s === 200).length, 1, JSON.stringify(statuses));
    assert.equal(statuses.filter((s) => s === 204).length, 49);
    const won = answers.find((a) => a.status === 200).body;
    assert.equal((await runs()).filter((r) => ["leased", "fixing"].includes(r.state)).length, 1);

    const [a, b] = await Promise.all([
      post(`/api/runs/${won.run_id}/result`, { lease_id: won.lease_id, outcome: "pr_opened", pr_url: "https://github.com/acme/shop/pull/78" }),
      post(`/api/runs/${won.run_id}/result`, { lease_id: won.lease_id, outcome: "failed", reason: "racing" }),
    ]);
    assert.deepEqual([a.status, b.status].sort(), [200, 409]);
    const winner = a.status === 200 ? "pr_opened" : "failed";
    assert.equal((await runs()).find((r) => r.id === won.run_id).state, winner);
    assert.match((a.status === 409 ? a : b).body.error, /lease not held/);
  });

  test("every POST has a body limit (413 before parsing, nothing stored); credentials in a URL are refused", async () => {
    const [run] = await runs();
    const before = await d1(stateDir, `SELECT state, updated_at FROM fix_runs WHERE id = ${run.id}`);
    const big = (n) => JSON.stringify({ lease_id: "x", outcome: "failed", reason: "a".repeat(n) });
    assert.equal((await post("/api/runs/lease", { owner: "a".repeat(5_000) })).status, 413);
    assert.equal((await post(`/api/runs/${run.id}/heartbeat`, big(5_000))).status, 413);
    assert.equal((await post(`/api/runs/${run.id}/result`, big(33_000))).status, 413);
    assert.equal((await post(`/api/incidents/${run.incident_id}/label`, JSON.stringify({ label: "actionable", pad: "a".repeat(17_000) }))).status, 413);
    // No Content-Length (chunked): the bytes read are counted.
    const chunked = await fetch(`${stack.urls.runner}/api/runs/${run.id}/result`, {
      method: "POST",
      headers: { authorization: `Bearer ${LOCAL_API_TOKEN}`, "content-type": "application/json" },
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < 40; i++) c.enqueue(new TextEncoder().encode("a".repeat(1024)));
          c.close();
        },
      }),
      duplex: "half",
    });
    assert.equal(chunked.status, 413);
    assert.deepEqual(await d1(stateDir, `SELECT state, updated_at FROM fix_runs WHERE id = ${run.id}`), before);
    const labelled = await d1(stateDir, `SELECT label FROM ops_incidents WHERE id = ${run.incident_id}`);
    assert.equal(labelled[0].label, null);

    for (const q of ["token=x", "api_token=x", "access_token=x", "apikey=x"]) {
      const res = await fetch(`${stack.urls.runner}/api/runs?${q}`, { headers: { authorization: `Bearer ${LOCAL_API_TOKEN}` } });
      assert.equal(res.status, 400, q);
    }
    const wrong = await fetch(`${stack.urls.runner}/api/runs`, { headers: { authorization: `Bearer ${LOCAL_API_TOKEN}x` } });
    assert.equal(wrong.status, 401);
  });

  test("a primary rate limit beyond one run's wait: held, no request before x-ratelimit-reset, then one issue", async () => {
    await produce(["/reports/export?page=1"]);
    await until(() => incidentOf("/reports/export"), "the export incident");
    const reset = Math.floor(Date.now() / 1000) + 14;
    gh.failNext({ method: "GET", path: /^\/search\/issues$/ }, { status: 403, headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) }, body: { message: "API rate limit exceeded" } });
    await stack.cron();
    const limited = gh.requests.findLast((r) => r.status === 403);
    assert.ok(limited, "the limit was hit");
    const holds = await d1(stateDir, "SELECT until_ms FROM tracker_holds WHERE tracker = 'github'");
    assert.equal(holds[0].until_ms, reset * 1000);
    const seen = gh.requests.length;
    await stack.cron();
    assert.equal(gh.requests.length, seen, "nothing sent while held");
    await sleep(reset * 1000 - Date.now() + 200);
    await stack.cron();
    const next = gh.requests.slice(seen);
    assert.ok(next.length > 0 && next.every((r) => r.at >= reset * 1000), "first call after the reset");
    const inc = await incidentOf("/reports/export");
    assert.equal(gh.issues.filter((i) => i.body.split("\n")[0] === marker(inc.fingerprint)).length, 1);
  });

  test("the cron stopped between ticket insert and queue send: a later run sends the job once", async () => {
    await produce(["/sync?n=1"]);
    const inc = await until(() => incidentOf("/sync"), "the sync incident");
    // What a cron run leaves when it dies after its ticket batch and before sendBatch.
    const created = Date.now();
    await d1(
      stateDir,
      `INSERT INTO tickets (incident_id, fingerprint, title, body, state, created_at, updated_at, kind) VALUES (${inc.id}, '${inc.fingerprint}', 'crash', 'crash', 'open', ${created}, ${created}, 'fix');
       UPDATE ops_incidents SET status = 'ticketed', updated_at = ${created}, ticket_id = (SELECT id FROM tickets WHERE incident_id = ${inc.id}) WHERE id = ${inc.id};`,
    );
    const ticketRow = async () => (await d1(stateDir, `SELECT id, queued_at FROM tickets WHERE incident_id = ${inc.id}`))[0];
    const runsOf = async () => (await runs()).filter((r) => r.incident_id === inc.id);
    if (Date.now() - created < GRACE_MS - 3_000) {
      await stack.cron();
      assert.equal((await ticketRow()).queued_at, null, "within the grace a concurrent run may still be sending it");
    }
    await sleep(Math.max(0, created + GRACE_MS + 500 - Date.now()));
    await stack.cron();
    const queuedAt = (await ticketRow()).queued_at;
    assert.ok(queuedAt > created, "sent by the later run");
    await until(async () => (await runsOf()).length === 1, "its fix run", { timeoutMs: 30_000 });
    await stack.cron();
    await sleep(2_000);
    assert.equal((await runsOf()).length, 1, "exactly one fix run");
    assert.equal((await ticketRow()).queued_at, queuedAt, "not sent again");
    const log = readFileSync(join(stack.logs, "runner.log"), "utf8");
    const claims = log.split("\n").filter((l) => l.includes(`selfheal runner: incident ${inc.id} ticket`));
    assert.equal(claims.length, 1, claims.join("\n"));
  });

  test("Sentry intake: five deliveries of one issue → one incident, ticket and run; bad deliveries → 4xx, nothing stored", async () => {
    const payload = {
      action: "created",
      installation: { uuid: "eac5a0ae-60ec-418f-9318-46dc5e7e52ec" },
      data: {
        issue: {
          id: "1170820242", shortId: "FRONTEND-9", title: "TypeError: Cannot read properties of undefined (reading 'total')",
          culprit: "priceCart(app/cart)", permalink: "https://acme.sentry.io/issues/1170820242/", level: "error", status: "unresolved",
          platform: "javascript", project: { id: "1", name: "frontend", slug: "frontend", platform: "javascript" }, type: "error",
          metadata: { type: "TypeError", value: "Cannot read properties of undefined (reading 'total') for alice.secret@example.com" },
          count: "3", userCount: 1, firstSeen: new Date().toISOString(), lastSeen: new Date().toISOString(),
        },
      },
      actor: { type: "application", id: "sentry", name: "Sentry" },
    };
    const deliver = (raw, { secret = SENTRY_SECRET, timestamp = String(Math.floor(Date.now() / 1000)), resource = "issue" } = {}) =>
      fetch(`${stack.urls.runner}/api/intake/sentry`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "request-id": "6d8f2a0e-1f7e-4a38-9d41-2f9f7d3c0a11",
          "sentry-hook-resource": resource,
          "sentry-hook-timestamp": timestamp,
          "sentry-hook-signature": createHmac("sha256", secret).update(raw).digest("hex"),
        },
        body: raw,
      });
    const sentryIncidents = async () => (await stack.api("/api/incidents")).filter((i) => i.script_name === "sentry/frontend");
    const raw = JSON.stringify(payload);
    const refused = [
      await deliver(raw, { secret: "not-the-secret" }),
      await deliver(raw, { timestamp: String(Math.floor(Date.now() / 1000) - 3600) }),
      await deliver(JSON.stringify({ ...payload, pad: "a".repeat(2 * 1024 * 1024) })),
      await deliver("this is not json"),
    ].map((r) => r.status);
    assert.deepEqual(refused, [401, 401, 413, 400]);
    assert.equal((await sentryIncidents()).length, 0, "nothing stored");
    assert.equal((await d1(stateDir, "SELECT count(*) AS n FROM intake_sentry_issues"))[0].n, 0);

    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await deliver(raw)).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200]);
    const [inc, ...more] = await sentryIncidents();
    assert.equal(more.length, 0, "one incident");
    assert.equal(inc.occurrence_count, 1, "five deliveries, one occurrence");
    assert.equal(inc.exception_type, "TypeError");
    const stored = await d1(stateDir, `SELECT message, logs FROM ops_log_events WHERE fingerprint = '${inc.fingerprint}'`);
    assert.equal(stored.length, 1);
    assert.ok(!JSON.stringify(stored).includes("alice.secret@example.com"), "scrubbed like every TraceItem");
    assert.match(stored[0].logs, /acme\.sentry\.io\/issues\/1170820242/);
    await stack.cron();
    await until(async () => (await runs()).filter((r) => r.incident_id === inc.id).length === 1, "its fix run", { timeoutMs: 30_000 });
    await stack.cron();
    const tickets = await d1(stateDir, `SELECT id, body FROM tickets WHERE incident_id = ${inc.id}`);
    assert.equal(tickets.length, 1, "one ticket");
    assert.match(tickets[0].body, /FRONTEND-9/);
    assert.equal((await runs()).filter((r) => r.incident_id === inc.id).length, 1, "one run");
  });

  test("never a duplicate issue or comment; every retry within GitHub's documented limits", () => {
    const firstLines = gh.issues.map((i) => i.body.split("\n")[0]);
    assert.equal(new Set(firstLines).size, firstLines.length, "one issue per marker");
    const commentMarkers = gh.comments.map((c) => c.body.trim().split("\n").at(-1));
    assert.equal(new Set(commentMarkers).size, commentMarkers.length, "one comment per run state");
    for (const [i, r] of gh.requests.entries()) {
      const next = gh.requests[i + 1];
      if (!next) continue;
      if (r.retryAfter) assert.ok(next.at - r.at >= Number(r.retryAfter) * 1000 - 50, `retry-after ${r.retryAfter} s honoured`);
      if (r.rateLimitReset) assert.ok(next.at >= Number(r.rateLimitReset) * 1000 - 50, "x-ratelimit-reset honoured");
    }
    const perBody = new Map();
    for (const r of gh.requests.filter((x) => x.method !== "GET")) {
      const k = `${r.method} ${r.path} ${JSON.stringify(r.body)}`;
      perBody.set(k, (perBody.get(k) ?? 0) + 1);
    }
    assert.ok([...perBody.values()].every((n) => n <= 5), "at most MAX_ATTEMPTS sends of one write");
    assert.deepEqual(gh.violations, []);
  });
});
