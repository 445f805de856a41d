// The lifecycle after the draft PR, end to end on ONE stack: the real tail, cron and agent-runner
// Workers in workerd with local D1 and Queues, TraceItems replayed as production delivers them
// (tests/e2e/replayer), and the hosted Copilot coding agent as the fixer.
//
// GitHub and Copilot cannot be reached from this machine: the cron talks to the GitHub stand-in
// (tests/e2e/github-stub.mjs: the documented issues, assignees, timeline and pulls endpoints), and
// what Copilot and a reviewer do on GitHub is done on the stand-in the way GitHub records it:
// Copilot opens a draft PR that the issue's timeline cross-references; a person merges or closes it.
//
// One incident's life, each step checked in D1 (through the API), on GitHub and in the history:
//  1. TraceItems on release v1 → incident, ticket, GitHub issue; the cron hands the run to Copilot;
//  2. Copilot's PR shows on the timeline → run and incident `pr_opened` with the link; the lease
//     expires and the run is NOT handed over again;
//  3. the PR is merged → `fix_merged`; release v2 serves enough requests on the route without the
//     failure → `verifying` → `resolved` (verified), the issue closed with a comment of the figures;
//  4. it recurs on v2 → `regressed`, the issue reopened with a comment; attempt 2 is queued and
//     handed over, its task carrying attempt 1's PR;
//  5. attempt 2's PR is closed unmerged → with SELFHEAL_MAX_ATTEMPTS=2 no attempt 3, one
//     `attempts_exhausted` row; `selfheal retry` (the CLI against the running stack) queues one.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";
import { startGithubStub, trackerVars } from "./github-stub.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-lifecycle-${process.pid}`);
const BIN = process.env.SELFHEAL_BIN ?? join(ROOT, "target/debug/selfheal");
const GH_TOKEN = "gh-lifecycle-token-not-a-secret";
const REPO = "acme/shop";
const SCRIPT = "shop-api";
const ROUTE = "/checkout";
const MERGE_SHA = "c0ffee1234567890abcdef1234567890abcdef12";

let stack;
let gh;
const t0 = Date.now();

const post = async (path, body) => {
  const res = await fetch(stack.urls.replayer + path, { method: "POST", body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.text());
};
/** `ok` healthy requests and `errors` failing ones on ROUTE of `release`. */
const traffic = (release, ok, errors) =>
  post(
    "/tail-each",
    Array.from({ length: ok + errors }, (_, i) =>
      traceItem({
        script: SCRIPT,
        release,
        route: ROUTE,
        ts: Date.now(),
        ...(i < errors
          ? { error: { name: "TypeError", message: "Cannot read properties of undefined (reading 'total')", stack: "    at checkout (src/cart.js:42:17)" } }
          : {}),
      }),
    ),
  );
const incident = async () => (await stack.api("/api/incidents")).find((i) => i.script_name === SCRIPT);
const history = async (id) => (await stack.api(`/api/incidents/${id}/history`)).history;
const assignments = () => gh.requests.filter((r) => r.method === "POST" && /\/assignees$/.test(r.path) && r.status === 201);
/** Runs the cron until `fn` holds. */
const cronUntil = (fn, what) =>
  until(
    async () => {
      await stack.cron();
      return fn();
    },
    what,
    { timeoutMs: 60_000, everyMs: 500 },
  );
const cli = (args) =>
  execFileSync(BIN, args, {
    env: { ...process.env, SELFHEAL_API_URL: stack.urls.runner, SELFHEAL_API_TOKEN: LOCAL_API_TOKEN },
    encoding: "utf8",
  });

describe("the lifecycle: draft PR → verified in production → regression → attempts", { timeout: 300_000 }, () => {
  before(async () => {
    gh = await startGithubStub({ token: GH_TOKEN, repo: REPO });
    stack = await startStack({
      stateDir,
      extra: { replayer: "tests/e2e/replayer/wrangler.toml" },
      scheduledVars: {
        ...trackerVars(gh, GH_TOKEN, REPO),
        SELFHEAL_HANDOVER: "copilot",
        SELFHEAL_MAX_ATTEMPTS: "2",
        SELFHEAL_GITHUB_TIMEOUT_MS: "2000",
        // A retried ticket's job goes out on the next run (production waits 2 minutes for a
        // concurrent run that may still be sending it).
        SELFHEAL_UNQUEUED_GRACE_MS: "1000",
      },
    });
  });

  after(async () => {
    await stack?.stop();
    await gh?.close();
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  let id;
  let issue;
  let pr1;

  test("a ticket's run is handed to Copilot, whose PR is found on the issue's timeline, once", async () => {
    // Baseline on v1: 5 failures in 10 requests on the route (rate 0.5 per request).
    await traffic("v1", 5, 5);
    await stack.settle();
    await cronUntil(async () => assignments().length === 1, "the run handed over to Copilot");
    id = (await incident()).id;
    issue = gh.issues.find((i) => i.assignees.includes("copilot-swe-agent[bot]"));
    assert.ok(issue, "the incident's issue is assigned to Copilot");

    pr1 = gh.openPullFromIssue(issue.number, { head: "copilot/fix-checkout" });
    // The lease runs out before the cron looks (the hosted agent holds it for hours in production).
    await d1(stateDir, "UPDATE fix_runs SET lease_expires_at = 1 WHERE lease_owner = 'copilot'");
    await cronUntil(async () => (await incident()).status === "pr_opened", "pr_opened from the timeline");
    const runs = await stack.api("/api/runs");
    assert.equal(runs.length, 1);
    assert.equal(runs[0].state, "pr_opened");
    const [row] = await d1(stateDir, `SELECT pr_url FROM fix_runs WHERE id = ${runs[0].id}`);
    assert.equal(row.pr_url, pr1.html_url);
    await stack.cron();
    assert.equal(assignments().length, 1, "a run with a PR is never handed over again");
    assert.ok(gh.requests.some((r) => r.method === "GET" && r.path.endsWith(`/issues/${issue.number}/timeline`)));
  });

  test("merged, then verified on the next release's traffic: resolved, the issue closed with the figures", async () => {
    gh.mergePull(pr1.number, MERGE_SHA);
    await cronUntil(async () => (await incident()).status === "fix_merged", "fix_merged");
    assert.ok(gh.requests.some((r) => r.method === "GET" && r.path === `/repos/${REPO}/pulls/${pr1.number}`));

    // v2 after the merge: 12 requests, no failure. 1 − e^(−0.5·12) ≈ 0.9975 ≥ 0.99.
    await traffic("v2", 12, 0);
    await stack.settle();
    await cronUntil(async () => (await incident()).status === "resolved", "resolved (verified)");
    const h = await history(id);
    const whys = h.map((r) => r.why);
    for (const w of ["ticket_opened", "run_claimed", "pr_opened", "pr_merged", "release_seen", "verified"]) {
      assert.ok(whys.includes(w), `history has ${w}: ${whys.join(", ")}`);
    }
    const verified = JSON.parse(h.find((r) => r.why === "verified").figures);
    assert.equal(verified.release, "v2");
    assert.equal(verified.release_requests, 12);
    assert.equal(verified.release_occurrences, 0);
    assert.ok(verified.p_detect >= 0.99, JSON.stringify(verified));
    await cronUntil(async () => issue.state === "closed", "the issue closed");
    assert.ok(
      gh.comments.some((c) => c.issue_number === issue.number && c.body.includes("verified in production")),
      "a comment says it was verified, with the figures",
    );
    const fixed = (await d1(stateDir, `SELECT ended, pr_state, pr_merge_commit FROM fix_runs WHERE incident_id = ${id}`))[0];
    assert.deepEqual(fixed, { ended: "verified", pr_state: "merged", pr_merge_commit: MERGE_SHA });
  });

  test("it recurs on the release: regressed, the issue reopened, attempt 2 handed over with attempt 1's PR", async () => {
    await traffic("v2", 0, 1);
    await stack.settle();
    await cronUntil(async () => assignments().length === 2, "attempt 2 handed over");
    assert.equal(issue.state, "open", "the issue is reopened");
    assert.ok(gh.comments.some((c) => c.issue_number === issue.number && c.body.includes("occurred again")));
    const whys = (await history(id)).map((r) => r.why);
    assert.ok(whys.includes("occurred_after_resolve") && whys.includes("attempt_queued"), whys.join(", "));
    const [run2] = await d1(stateDir, `SELECT attempt, task FROM fix_runs WHERE incident_id = ${id} AND attempt = 2`);
    const task = JSON.parse(run2.task);
    assert.equal(task.attempt, 2);
    assert.equal(task.bounds.branch, `selfheal/${id}-attempt-2`);
    assert.equal(task.earlier_attempts[0].pr_url, pr1.html_url);
    assert.equal(task.earlier_attempts[0].ended, "verified");
  });

  test("attempt 2's PR closed unmerged: no attempt past the maximum, until a person retries", async () => {
    const pr2 = gh.openPullFromIssue(issue.number, { head: "copilot/fix-checkout-2" });
    await cronUntil(async () => (await incident()).status === "pr_opened", "attempt 2's PR found");
    const [row] = await d1(stateDir, `SELECT pr_url FROM fix_runs WHERE incident_id = ${id} AND attempt = 2`);
    assert.equal(row.pr_url, pr2.html_url, "attempt 2 records its own PR, not attempt 1's");
    gh.closePull(pr2.number);
    await cronUntil(async () => (await history(id)).some((r) => r.why === "attempts_exhausted"), "attempts exhausted");
    await stack.cron();
    const runs = await d1(stateDir, `SELECT count(*) AS n FROM fix_runs WHERE incident_id = ${id}`);
    assert.equal(runs[0].n, 2, "no third attempt");
    assert.equal((await history(id)).filter((r) => r.why === "attempts_exhausted").length, 1);

    // The operator CLI against the running stack.
    const shown = JSON.parse(cli(["show", String(id), "--json"]));
    assert.ok(JSON.stringify(shown).includes("attempts_exhausted"));
    assert.match(cli(["retry", String(id)]), new RegExp(`#${id} attempt 3 queued`));
    await cronUntil(
      async () => (await d1(stateDir, `SELECT count(*) AS n FROM fix_runs WHERE incident_id = ${id}`))[0].n === 3,
      "attempt 3 claimed after the retry",
    );
    console.log(
      `lifecycle: ${(await history(id)).map((r) => `${r.why}@+${((r.at - t0) / 1000).toFixed(1)}s`).join(" → ")}`,
    );
  });
});
