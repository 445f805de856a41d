// Workers Issues intake (issue 11 §3) and budgets with a cost ledger (issue 13 §2), end to end.
//
// Real parts: the four Workers in workerd (local D1 and Queues), the `selfheal fix` binary, git
// (a one-commit sample repository with a local bare remote). Stand-ins, because this machine
// reaches neither Cloudflare's Notifications service nor an LLM:
//  - Workers Issues deliveries are POSTed here as a Workers Issues automation's generic webhook
//    sends them: the documented Cloudflare Notifications webhook payload (cloudflare-docs
//    notifications/reference/webhook-payload-schema: name, text, data, ts, account_id, policy_id,
//    policy_name, alert_type, alert_correlation_id, alert_event) with the destination's secret in
//    `cf-webhook-auth`. The docs leave `data` unspecified for Workers Issues: the keys inside it
//    are the optional ones selfheal reads (README "Intake: Sentry and Workers Issues").
//  - the agents are scripted shell commands that print what Claude Code prints with
//    `--output-format json` (one result object: type, subtype, is_error, num_turns,
//    total_cost_usd, usage), as its headless-mode reference documents it.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, startStack, until } from "../../scripts/lib/stack.mjs";
import { SELFHEAL_BIN, fixerEnv, runFixer } from "../../scripts/lib/fixer.mjs";
const stateDir = join(ROOT, `.selfheal/e2e-intake-ledger-${process.pid}`);
const SECRET = "wi-destination-secret-not-a-real-one";
const tmp = mkdtempSync(join(tmpdir(), "selfheal-ledger-"));
const repo = join(tmp, "shop");
const agents = join(tmp, "agents");

let stack;

const git = (cwd, ...args) => execFileSync("git", ["-C", cwd, ...args], { encoding: "utf8" }).trim();

/** One Workers Issues notification for issue `id`, generated at `ts` (epoch seconds). */
const notification = (id, ts = Math.floor(Date.now() / 1000)) => ({
  name: "shop-api issues",
  text: `New issue in shop-api: TypeError: Cannot read properties of undefined (reading 'percent') for carol.secret@example.com`,
  data: {
    issue: {
      id,
      script_name: "shop-api",
      occurrences: 17,
      error: {
        name: "TypeError",
        message: "Cannot read properties of undefined (reading 'percent') for carol.secret@example.com",
        stack: "TypeError: Cannot read properties of undefined (reading 'percent')\n    at discount (src/price.js:2:24)\n    at fetch (src/index.js:9:12)",
      },
      request: { url: "https://shop.example.com/checkout/4411" },
      dashboard_link: `https://dash.cloudflare.com/9035f536/workers/services/view/shop-api/production/issues/${id}`,
    },
  },
  ts,
  account_id: "9035f53656c247e895c5a6939ae8a0e0",
  policy_id: "749b911ea5d04344a58e45edd099b328",
  policy_name: "shop-api issues",
  alert_type: "workers_issues",
  alert_correlation_id: "000eaa907ed24e78946d3a93adb2ae57",
  alert_event: "ALERT_STATE_EVENT_START",
});

const deliver = (raw, { secret = SECRET } = {}) =>
  fetch(`${stack.urls.runner}/api/intake/workers-issues`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(secret === null ? {} : { "cf-webhook-auth": secret }) },
    body: raw,
  });

/** The sample repository (the agents never get past their own step, so one commit is enough). */
function makeRepo() {
  mkdirSync(join(repo, "src"), { recursive: true });
  writeFileSync(join(repo, "src/price.js"), "export const discount = (o) => (o.coupon.percent / 100) * o.total;\n");
  git(tmp, "init", "--quiet", "-b", "main", repo);
  git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A");
  git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "shop v1");
  execFileSync("git", ["clone", "--quiet", "--bare", repo, join(tmp, "shop.git")]);
  git(repo, "remote", "add", "origin", join(tmp, "shop.git"));
  git(repo, "fetch", "--quiet", "origin");
  git(repo, "remote", "set-head", "origin", "main");
}

/** Scripted agents printing Claude Code's `--output-format json` result object. The turn count
 *  comes from the SELFHEAL_MAX_TURNS the fixer gives the agent, so the test sees it passed on. */
function makeAgents() {
  mkdirSync(agents, { recursive: true });
  const result = (subtype, turns, usd) =>
    `printf '%s\\n' "{\\"type\\":\\"result\\",\\"subtype\\":\\"${subtype}\\",\\"is_error\\":${subtype !== "success"},\\"duration_ms\\":4210,\\"duration_api_ms\\":3900,\\"num_turns\\":${turns},\\"result\\":\\"Cause: discount() reads o.coupon without a coupon.\\",\\"session_id\\":\\"2b9c8a1e-0d4f-4e5a-9b6c-7d8e9f0a1b2c\\",\\"total_cost_usd\\":${usd},\\"usage\\":{\\"input_tokens\\":1200,\\"cache_creation_input_tokens\\":8000,\\"cache_read_input_tokens\\":21000,\\"output_tokens\\":2600}}"\n`;
  const scripts = {
    // Claude Code ran on past the turn limit selfheal set (a custom command does not pass it on).
    "over-turns": `echo working on "$SELFHEAL_TASK_FILE" >&2\n${result("success", "$((SELFHEAL_MAX_TURNS + 4))", "0.42")}exit 0\n`,
    // Claude Code stopped itself on --max-budget-usd: its own error subtype, exit 1.
    "over-dollars": `${result("error_max_budget_usd", 6, "0.55")}exit 1\n`,
  };
  for (const [name, body] of Object.entries(scripts)) writeFileSync(join(agents, `${name}.sh`), `#!/bin/sh\n${body}`, { mode: 0o755 });
}

/** `selfheal fix --json` once with a scripted agent and extra flags. */
const fixer = (agentName, flags) =>
  runFixer([
    "--api", stack.urls.runner,
    "--agent", `sh ${join(agents, `${agentName}.sh`)}`,
    "--test-cmd", "true", "--repo", repo,
    "--agent-timeout-secs", "30", "--work-root", join(tmp, "work"), "--owner", `e2e-${agentName}`,
    ...flags,
  ]);

const ledgerRow = async (runId) => (await stack.api("/api/ledger")).find((r) => r.run_id === runId);
const runById = async (id) => (await stack.api("/api/runs")).find((r) => r.id === id);

describe("Workers Issues intake, budgets and the ledger", { timeout: 90_000 }, () => {
  before(async () => {
    makeRepo();
    makeAgents();
    stack = await startStack({
      stateDir,
      runnerVars: { SELFHEAL_WORKERS_ISSUES_SECRET: SECRET, SELFHEAL_WEEKLY_CAP: "2" },
    });
  });

  after(async () => {
    await stack?.stop();
    rmSync(tmp, { recursive: true, force: true });
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("Workers Issues: five deliveries → one incident, one ticket; bad deliveries → 4xx, nothing stored", async () => {
    const ours = async () => (await stack.api("/api/incidents")).filter((i) => i.script_name === "workers-issues/shop-api");
    const raw = JSON.stringify(notification("wi_checkout_percent"));
    const refused = [
      await deliver(raw, { secret: "not-the-secret" }),
      await deliver(raw, { secret: null }),
      await deliver(JSON.stringify(notification("wi_checkout_percent", Math.floor(Date.now() / 1000) - 3600))),
      await deliver(JSON.stringify({ ...notification("wi_checkout_percent"), pad: "a".repeat(2 * 1024 * 1024) })),
      await deliver("this is not json"),
      await deliver(JSON.stringify({ ...notification("x"), data: {}, alert_correlation_id: undefined })),
    ];
    assert.deepEqual(refused.map((r) => r.status), [401, 401, 401, 413, 400, 400]);
    assert.match((await refused[2].json()).error, /stale ts/);
    assert.match((await refused[5].json()).error, /issue id/);
    // The destination's "Save and Test" message: acknowledged, nothing to do.
    const hello = await deliver(JSON.stringify({ text: "Hello World! This is a test message sent from https://cloudflare.com." }));
    assert.equal(hello.status, 202);
    assert.equal((await ours()).length, 0, "nothing stored");
    assert.equal((await d1(stateDir, "SELECT count(*) AS n FROM intake_workers_issues"))[0].n, 0);

    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await deliver(raw)).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200]);
    const [inc, ...more] = await ours();
    assert.equal(more.length, 0, "one incident");
    assert.equal(inc.occurrence_count, 1, "five deliveries of one notification, one occurrence");
    assert.equal(inc.exception_type, "TypeError");
    const stored = await d1(stateDir, `SELECT message, logs FROM ops_log_events WHERE fingerprint = '${inc.fingerprint}'`);
    assert.equal(stored.length, 1);
    assert.ok(!JSON.stringify(stored).includes("carol.secret@example.com"), "scrubbed like every TraceItem");
    assert.match(stored[0].logs, /production\/issues\/wi_checkout_percent/);
    const [dedup] = await d1(stateDir, "SELECT issue_id, fingerprint, account_id, alert_type FROM intake_workers_issues");
    assert.deepEqual(dedup, { issue_id: "wi_checkout_percent", fingerprint: inc.fingerprint, account_id: "9035f53656c247e895c5a6939ae8a0e0", alert_type: "workers_issues" });

    // Two more issues, so the budget tests below have three runs.
    for (const id of ["wi_sync_timeout", "wi_export_range"]) assert.equal((await deliver(JSON.stringify(notification(id)))).status, 200);
    await stack.cron();
    await until(async () => (await stack.api("/api/runs")).filter((r) => r.state === "ready").length === 3, "three ready runs", { timeoutMs: 30_000 });
    await stack.cron();
    const tickets = (await stack.api("/api/tickets")).filter((t) => t.incident_id === inc.id);
    assert.equal(tickets.length, 1, "one ticket");
    assert.equal((await stack.api("/api/runs")).filter((r) => r.incident_id === inc.id).length, 1, "one run");
  });

  test("a run over its turn budget → budget_exhausted, with what it spent in the ledger", async () => {
    const { code, stderr, report } = await fixer("over-turns", ["--max-turns", "10"]);
    assert.equal(code, 1, stderr);
    assert.equal(report.outcome, "budget_exhausted", stderr);
    assert.match(report.reason, /turn limit 10 reached \(turns 14, tokens 32800, dollars \$0\.4200\)/);
    assert.equal(report.usage.turns, 14, "the agent saw SELFHEAL_MAX_TURNS=10");
    assert.equal((await runById(report.run_id)).state, "failed", "ended like a failed run (and cools down)");
    const row = await ledgerRow(report.run_id);
    assert.equal(row.outcome, "budget_exhausted");
    assert.deepEqual([row.reporter, row.turns, row.cost_usd, row.max_turns, row.max_usd], ["claude-code", 14, 0.42, 10, null]);
    assert.deepEqual([row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens], [1200, 2600, 21000, 8000]);
    const phases = JSON.parse(row.phases);
    for (const p of ["lease", "prepare", "agent"]) assert.ok(p in phases, `phase ${p}: ${row.phases}`);
    assert.ok(Math.abs(row.seconds - Object.values(phases).reduce((a, b) => a + b, 0)) < 1e-6);
    const [r] = await d1(stateDir, `SELECT json_extract(result, '$.outcome') AS outcome, json_extract(result, '$.reason') AS reason FROM fix_runs WHERE id = ${report.run_id}`);
    assert.equal(r.outcome, "budget_exhausted");
    assert.match(r.reason, /budget exhausted/, "what it learned goes to the ticket's comment");
  });

  test("a run its agent stopped on the dollar limit → budget_exhausted", async () => {
    const { code, stderr, report } = await fixer("over-dollars", ["--max-usd", "0.5"]);
    assert.equal(code, 1, stderr);
    assert.equal(report.outcome, "budget_exhausted", stderr);
    assert.match(report.reason, /dollar limit \$0\.50 reached/);
    const row = await ledgerRow(report.run_id);
    assert.deepEqual([row.outcome, row.turns, row.cost_usd, row.max_usd], ["budget_exhausted", 6, 0.55, 0.5]);
  });

  test("the weekly cap reached → no lease, with the reason; budget shows spend against every cap", async () => {
    const ready = (await stack.api("/api/runs")).filter((r) => r.state === "ready");
    assert.equal(ready.length, 1, "a run is ready");
    const res = await fetch(`${stack.urls.runner}/api/runs/lease`, {
      method: "POST",
      headers: { authorization: `Bearer ${LOCAL_API_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ owner: "e2e", ttl_secs: 60 }),
    });
    assert.equal(res.status, 429);
    const body = await res.json();
    assert.match(body.error, /^weekly runs cap reached: 2 runs of 2 runs \(SELFHEAL_WEEKLY_CAP\)/);
    assert.equal(body.cap.name, "weekly_runs");
    assert.equal(Number(res.headers.get("retry-after")), body.retry_after_secs);
    assert.ok(body.retry_after_secs > 0 && body.retry_after_secs <= 7 * 86_400);
    assert.equal((await runById(ready[0].id)).state, "ready", "still waiting, not leased");

    const budget = await stack.api("/api/budget");
    const cap = (name) => budget.caps.find((c) => c.name === name);
    assert.deepEqual([cap("weekly_runs").used, cap("weekly_runs").cap, cap("weekly_runs").reached], [2, 2, true]);
    assert.deepEqual([cap("monthly_runs").used, cap("monthly_runs").cap], [2, null]);
    assert.ok(Math.abs(cap("daily_usd").used - 0.97) < 1e-9, JSON.stringify(budget));
    assert.deepEqual([budget.used, budget.cap], [3, 5], "the daily cap as before: three claims");

    const cli = execFileSync(SELFHEAL_BIN, ["budget"], { env: { ...fixerEnv(), SELFHEAL_API_URL: stack.urls.runner }, encoding: "utf8" });
    assert.match(cli, /^\d{4}-\d{2}-\d{2} 3\/5$/m);
    assert.match(cli, /^weekly_runs\s+2\s+2\s+.*reached\s+SELFHEAL_WEEKLY_CAP$/m);
    assert.match(cli, /^daily_usd\s+\$0\.97\s+none\s/m);
    // And the fixer stops with the reason instead of working.
    const { code, stderr } = await fixer("over-turns", []);
    assert.notEqual(code, 0);
    assert.match(stderr, /weekly runs cap reached/);
    console.log(`selfheal budget:\n${cli}selfheal fix: ${stderr.trim().split("\n").pop()}`);
  });
});
