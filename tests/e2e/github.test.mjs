// The GitHub tracker end to end: the real cron Worker (workerd, local D1, local Queue) mirrors its
// tickets to GitHub Issues. GitHub itself cannot be reached from this machine, so the Worker talks
// to tests/e2e/github-stub.mjs, a local server that implements the documented REST endpoints and
// checks every request (method, path, headers, body shape).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, d1, ingestedItems, startStack, until } from "../../scripts/lib/stack.mjs";
import { drive } from "../../scripts/lib/demo.mjs";
import { API_VERSION, startGithubStub, trackerVars } from "./github-stub.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-github-${process.pid}`);
const TOKEN = "gh-test-token-not-a-secret";
const REPO = "acme/shop";

let stack;
let gh;

const marker = (fp) => `<!-- selfheal:fingerprint=${fp} -->`;
const tickets = () => d1(stateDir, "SELECT id, fingerprint, title, external_number, external_url, external_state FROM tickets ORDER BY id");
const issueRequests = (method, re) => gh.requests.filter((r) => r.method === method && re.test(r.path));

describe("GitHub Issues as the tracker", { timeout: 300_000 }, () => {
  before(async () => {
    // Search never sees issues younger than an hour here: GitHub's index lags writes, and the
    // marker lookup must still find a just-created issue (through the labelled issue list).
    gh = await startGithubStub({ token: TOKEN, repo: REPO, searchLagMs: 3_600_000 });
    // The first create hits GitHub's secondary rate limit, with retry-after as documented.
    gh.failNext(
      { method: "POST", path: /^\/repos\/acme\/shop\/issues$/ },
      { status: 403, headers: { "retry-after": "1" }, body: { message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again." } },
    );
    stack = await startStack({
      stateDir,
      scheduledVars: {
        ...trackerVars(gh, TOKEN, REPO),
      },
    });
    const start = await ingestedItems(stack);
    const reqs = [];
    for (let i = 0; i < 6; i++) reqs.push({ path: `/users/${200 + i}` });
    for (let i = 0; i < 4; i++) reqs.push({ path: `/checkout/${7000 + i}` });
    await drive(stack, reqs);
    await until(async () => (await ingestedItems(stack)) >= start + reqs.length, "every TraceItem", { timeoutMs: 60_000 });
    await stack.cron();
    await until(async () => (await stack.api("/api/runs")).length === 2, "two fix runs", { timeoutMs: 60_000 });
  });

  after(async () => {
    await stack?.stop();
    await gh?.close();
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("one issue per incident, with the marker on its first line, labels and the ticket's title", async () => {
    const rows = await tickets();
    assert.equal(rows.length, 2);
    assert.equal(gh.issues.length, 2, JSON.stringify(gh.issues.map((i) => i.title)));
    for (const t of rows) {
      const issue = gh.issues.find((i) => i.number === t.external_number);
      assert.ok(issue, `ticket ${t.id} recorded issue ${t.external_number}`);
      assert.equal(issue.body.split("\n")[0], marker(t.fingerprint));
      assert.equal(issue.title, t.title);
      assert.equal(t.external_url, issue.html_url);
      assert.equal(t.external_state, "open");
      const labels = issue.labels.map((l) => l.name);
      assert.ok(labels.includes("selfheal"), labels);
      assert.ok(labels.some((l) => /^severity:(high|medium|low)$/.test(l)), labels);
      assert.match(issue.body, /Untrusted: values below come from production errors/);
    }
  });

  test("the secondary rate limit was honoured: the create was retried after retry-after", () => {
    const creates = issueRequests("POST", /^\/repos\/acme\/shop\/issues$/);
    assert.equal(creates.length, 3, "1 limited + 2 created");
    const [limited, retried] = creates;
    assert.deepEqual(retried.body, limited.body);
  });

  test("every request carried the documented headers and body shapes", () => {
    assert.deepEqual(gh.violations, []);
    for (const r of gh.requests) {
      assert.equal(r.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(r.headers["x-github-api-version"], API_VERSION);
      assert.equal(r.headers.accept, "application/vnd.github+json");
      assert.ok(r.headers["user-agent"]);
    }
    // A lookup (search, then the labelled list) comes before every create.
    const searches = issueRequests("GET", /^\/search\/issues$/);
    assert.ok(searches.length >= 2);
    for (const s of searches) assert.match(s.query.q, /^repo:acme\/shop is:issue in:body "selfheal:fingerprint=[0-9a-f]{32}"$/);
    const lists = issueRequests("GET", /^\/repos\/acme\/shop\/issues$/);
    for (const l of lists) assert.deepEqual([l.query.labels, l.query.state], ["selfheal", "all"]);
  });

  test("each fix-run state change is commented once", async () => {
    await stack.cron();
    const runs = await stack.api("/api/runs");
    assert.equal(gh.comments.length, 2, JSON.stringify(gh.comments));
    for (const c of gh.comments) assert.match(c.body, /^selfheal: fix run \d+ is now \*\*ready\*\*\./);
    assert.deepEqual(new Set(gh.comments.map((c) => c.issue_number)), new Set(gh.issues.map((i) => i.number)));
    assert.equal(runs.length, 2);
    await stack.cron();
    assert.equal(gh.comments.length, 2, "no second comment for the same state");
  });

  test("a crash between 'created' and 'recorded' makes no duplicate: the marker finds the issue", async () => {
    const [first] = await tickets();
    await d1(stateDir, `UPDATE tickets SET external_number = NULL, external_url = NULL WHERE id = ${first.id}`);
    await stack.cron();
    const [again] = await tickets();
    assert.equal(gh.issues.length, 2, "no new issue");
    assert.equal(again.external_number, first.external_number);
  });

  test("a resolved incident closes its issue; a regression reopens it", async () => {
    const [first] = await tickets();
    const issue = gh.issues.find((i) => i.number === first.external_number);
    await d1(stateDir, `UPDATE ops_incidents SET status = 'resolved' WHERE fingerprint = '${first.fingerprint}'`);
    await stack.cron();
    assert.equal(issue.state, "closed");
    assert.equal(issue.state_reason, "completed");
    await d1(stateDir, `UPDATE ops_incidents SET status = 'regressed' WHERE fingerprint = '${first.fingerprint}'`);
    await stack.cron();
    assert.equal(issue.state, "open");
    assert.equal(issue.state_reason, "reopened");
    const patches = issueRequests("PATCH", /^\/repos\/acme\/shop\/issues\/\d+$/);
    assert.equal(patches.length, 2);
  });
});
