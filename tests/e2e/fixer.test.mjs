// The local fixer end to end: ticket → lease → agent → verification → draft PR.
//
// Real parts: the agent-runner (workerd, local D1, local Queue) with runs made from real demo bugs,
// the `selfheal fix` binary, git (a sample buggy repository created here, with a local bare remote).
// Stand-ins, because this machine can reach neither an LLM nor GitHub: the "agent" is a scripted
// shell command that edits code and tests the way a coding agent would, and GitHub is the local
// stand-in tests/e2e/github-stub.mjs (documented REST endpoints, every request checked), which
// only accepts a PR whose head branch exists on the bare remote.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, ingestedItems, startStack, until } from "../../scripts/lib/stack.mjs";
import { drive } from "../../scripts/lib/demo.mjs";
import { startGithubStub } from "./github-stub.mjs";
import { branchOn, fixerEnv, git, runFixer, sampleRepo } from "../../scripts/lib/fixer.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-fixer-${process.pid}`);
const TOKEN = "gh-fixer-token-not-a-secret";
const tmp = mkdtempSync(join(tmpdir(), "selfheal-fixer-"));
const repo = join(tmp, "shop");
const bare = join(tmp, "shop.git");
const agents = join(tmp, "agents");

let stack;
let gh;

/** The sample repository: a discount function that crashes without a coupon (the bug). */
function makeRepo() {
  sampleRepo(
    repo,
    bare,
    {
      "src/price.js": "export function discount(order) {\n  return (order.coupon.percent / 100) * order.total;\n}\n",
      "test/price.test.js":
        'import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { discount } from "../src/price.js";\n\ntest("a coupon takes its percent off", () => {\n  assert.equal(discount({ total: 200, coupon: { percent: 10 } }), 20);\n});\n',
      "package.json": '{ "type": "module", "private": true }\n',
    },
    { tag: "v1", message: "shop v1" },
  );
}

/** Scripted agents standing in for an LLM coding agent (they run in the worktree). */
function makeAgents() {
  const fix = `cat > src/price.js <<'JS'\nexport function discount(order) {\n  return ((order.coupon?.percent ?? 0) / 100) * order.total;\n}\nJS\n`;
  const newTest = `cat > test/no-coupon.test.js <<'JS'\nimport { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { discount } from "../src/price.js";\n\ntest("no coupon, no discount (was: TypeError reading 'percent')", () => {\n  assert.equal(discount({ total: 200 }), 0);\n});\nJS\n`;
  const passingTest = `cat > test/more.test.js <<'JS'\nimport { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { discount } from "../src/price.js";\n\ntest("a 50% coupon halves", () => {\n  assert.equal(discount({ total: 10, coupon: { percent: 50 } }), 5);\n});\nJS\n`;
  const diagnosis = `printf 'Cause: discount() read order.coupon.percent without a coupon.\\nFix: treat a missing coupon as 0%%.\\nTest: test/no-coupon.test.js fails before (TypeError) and passes after.\\n' > "$SELFHEAL_DIAGNOSIS_FILE"\n`;
  mkdirSync(agents, { recursive: true });
  const scripts = {
    good: `set -e\ntest -s "$SELFHEAL_TASK_FILE"\n${newTest}${fix}${diagnosis}`,
    "no-test": `set -e\n${fix}`,
    "already-passing": `set -e\n${passingTest}${fix}`,
    slow: "sleep 60\n",
  };
  for (const [name, body] of Object.entries(scripts)) writeFileSync(join(agents, `${name}.sh`), `#!/bin/sh\n${body}`, { mode: 0o755 });
}

/** Runs `selfheal fix` once with the named scripted agent; resolves {code, stderr, report}. */
function fixer(agentName, { agentTimeout = 60 } = {}) {
  return runFixer(
    [
      "--api", stack.urls.runner,
      "--agent", `sh ${join(agents, `${agentName}.sh`)}`,
      "--test-cmd", "node --test test/*.test.js",
      "--repo", repo,
      "--agent-timeout-secs", String(agentTimeout),
      "--test-timeout-secs", "60",
      "--work-root", join(tmp, "work"),
      "--github-repo", "acme/shop",
      "--github-api", gh.url,
      "--owner", `e2e-${agentName}`,
    ],
    fixerEnv({ SELFHEAL_GITHUB_TOKEN: TOKEN }),
  );
}

const runById = async (id) => (await stack.api("/api/runs")).find((r) => r.id === id);

describe("the local fixer", { timeout: 400_000 }, () => {
  before(async () => {
    makeRepo();
    makeAgents();
    gh = await startGithubStub({
      token: TOKEN,
      repo: "acme/shop",
      branchExists: branchOn(bare),
    });
    // The GitHub tracker is on, so the whole chain runs: incident → GitHub issue → lease → agent →
    // verification → draft PR → comment on the issue.
    stack = await startStack({
      stateDir,
      scheduledVars: { SELFHEAL_TRACKER: "github", SELFHEAL_GITHUB_API: gh.url, SELFHEAL_GITHUB_REPO: "acme/shop", SELFHEAL_GITHUB_TOKEN: TOKEN },
    });
    const start = await ingestedItems(stack);
    const reqs = [];
    for (let i = 0; i < 2; i++) {
      reqs.push({ path: `/users/${300 + i}` }, { path: `/checkout/${8000 + i}` }, { path: `/sync?n=${i}` });
      reqs.push({ path: `/orders/6f1c2a3b-4d5e-4f60-8a7b-00000000000${i}`, init: { method: "POST", body: "x=1", headers: { "content-type": "application/json" } } });
      reqs.push({ path: `/reports/export?page=${i}` });
    }
    await drive(stack, reqs);
    await until(async () => (await ingestedItems(stack)) >= start + reqs.length, "every TraceItem", { timeoutMs: 60_000 });
    await stack.cron();
    await until(async () => (await stack.api("/api/runs")).filter((r) => r.state === "ready").length === 5, "five ready runs", { timeoutMs: 60_000 });
  });

  after(async () => {
    await stack?.stop();
    await gh?.close();
    rmSync(tmp, { recursive: true, force: true });
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("a verified fix becomes one draft PR from selfheal/<incident>, never the default branch", async () => {
    const mainBefore = git(bare, "rev-parse", "refs/heads/main");
    const { code, stderr, report } = await fixer("good");
    assert.equal(code, 0, stderr);
    assert.equal(report.outcome, "pr_opened", stderr);
    assert.equal(gh.pulls.length, 1);
    const pr = gh.pulls[0];
    assert.equal(pr.draft, true);
    assert.equal(pr.base.ref, "main");
    assert.match(pr.head.ref, /^selfheal\/\d+$/);
    assert.equal(report.pr_url, pr.html_url);
    // Evidence: the new test failed on the base and everything passes with the fix.
    assert.deepEqual(report.evidence.map((e) => e.ok), [true, true]);
    assert.notEqual(report.evidence[0].exit_code, 0);
    assert.equal(report.evidence[1].exit_code, 0);
    assert.match(pr.body, /Cause: discount\(\) read order.coupon.percent/);
    assert.match(pr.body, /must fail/);
    assert.match(pr.body, /selfheal never merges/);
    // The PR links the ticket's GitHub issue, and the next cron comments the PR on that issue.
    const issue = gh.issues.find((i) => pr.body.includes(`Ticket: ${i.html_url}\n`));
    assert.ok(issue, "PR body links the incident's issue");
    await stack.cron();
    const comment = gh.comments.find((c) => c.issue_number === issue.number && /\*\*pr_opened\*\*/.test(c.body));
    assert.ok(comment, JSON.stringify(gh.comments));
    assert.ok(comment.body.includes(pr.html_url));
    // The branch holds the fix; main on the remote is untouched.
    assert.equal(git(bare, "rev-parse", "refs/heads/main"), mainBefore);
    assert.match(git(bare, "show", `refs/heads/${pr.head.ref}:src/price.js`), /coupon\?\.percent/);
    const run = await runById(report.run_id);
    assert.equal(run.state, "pr_opened");
    assert.deepEqual(gh.violations, []);
    for (const p of ["lease", "prepare", "agent", "verify", "publish"]) {
      assert.ok(report.timings.some(([name]) => name === p), `timing ${p}`);
    }
    console.log(`chain: incident ${run.incident_id} → issue ${issue.html_url} → run ${run.id} → ${pr.html_url} (draft)\nfixer output:\n${stderr}`);
  });

  test("no new test → rejected, nothing pushed, no PR", async () => {
    const { code, stderr, report } = await fixer("no-test");
    assert.equal(code, 1, stderr);
    assert.equal(report.outcome, "failed");
    assert.match(report.reason, /no test added or changed/);
    assert.equal(gh.pulls.length, 1);
    const run = await runById(report.run_id);
    assert.equal(run.state, "failed");
    assert.throws(() => git(bare, "rev-parse", "--verify", "--quiet", `refs/heads/selfheal/${run.incident_id}`));
  });

  test("a test that already passes before the fix → rejected: nothing was reproduced", async () => {
    const { code, stderr, report } = await fixer("already-passing");
    assert.equal(code, 1, stderr);
    assert.match(report.reason, /already pass on the base commit/);
    assert.equal(report.evidence[0].ok, false);
    assert.equal(report.evidence[0].exit_code, 0);
    assert.equal(gh.pulls.length, 1);
  });

  test("an agent over its time limit → failed, and the incident cools down", async () => {
    const started = Date.now();
    const { code, report } = await fixer("slow", { agentTimeout: 2 });
    assert.equal(code, 1);
    assert.match(report.reason, /exceeded its time limit of 2 s/);
    assert.ok(Date.now() - started < 30_000, "killed at the limit, not after the agent's 60 s");
    const run = await runById(report.run_id);
    assert.equal(run.state, "failed");
    const [incident] = await d1(stateDir, `SELECT cooldown_until FROM ops_incidents WHERE id = ${run.incident_id}`);
    assert.ok(incident.cooldown_until > Date.now() + 23 * 3_600_000, `cooldown_until ${incident.cooldown_until}`);
  });

  test("two fixers at once → one lease", async () => {
    const lease = () =>
      fetch(`${stack.urls.runner}/api/runs/lease`, {
        method: "POST",
        headers: { authorization: `Bearer ${LOCAL_API_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ owner: "racer", ttl_secs: 60 }),
      });
    const [a, b] = await Promise.all([lease(), lease()]);
    assert.deepEqual([a.status, b.status].sort(), [200, 204]);
    const leased = await (a.status === 200 ? a : b).json();
    await (a.status === 200 ? b : a).arrayBuffer();
    assert.equal((await runById(leased.run_id)).state, "leased");
    // And a fixer that comes now finds nothing to do.
    const { code, report } = await fixer("good");
    assert.equal(code, 0);
    assert.equal(report.outcome, "idle");
  });
});
