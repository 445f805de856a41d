// The draft PR's own CI (issue 13 §3): after the PR is opened, `selfheal fix` follows the check
// runs of its head commit until all are completed; red checks are recorded, and with `--fix-ci N`
// the agent gets up to N more turns on them before the run ends as `failed`.
//
// Real parts: the selfheal stack (workerd, local D1 and Queue; incidents made by the real tail()
// from production-shaped TraceItems through tests/e2e/replayer), the `selfheal fix` binary, git (a
// sample buggy repository made here, with a local bare remote). Stand-ins, because this machine
// reaches neither an LLM nor GitHub: scripted shell agents, and the local GitHub stand-in
// tests/e2e/github-stub.mjs, which answers "List check runs for a Git reference" with the
// documented shape. Its "CI" is computed from the pushed commit itself (read from the bare
// remote): `test` passes, `lint` fails while src/price.js holds a console.log, and each commit's
// checks go queued → in_progress → completed over three polls.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, d1, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";
import { branchOn, fixerEnv, git, runFixer, sampleRepo } from "../../scripts/lib/fixer.mjs";
import { startGithubStub } from "./github-stub.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-prci-${process.pid}`);
const TOKEN = "gh-prci-token-not-a-secret";
const tmp = mkdtempSync(join(tmpdir(), "selfheal-prci-"));
const repo = join(tmp, "shop");
const bare = join(tmp, "shop.git");
const agent = join(tmp, "agent.sh");

let stack;
let gh;

/** The sample repository's CI, run on a pushed commit: check runs as GitHub lists them. */
function ciOf(sha, poll) {
  if (poll === 1) return [{ name: "test", status: "queued" }, { name: "lint", status: "queued" }];
  if (poll === 2) return [{ name: "test", status: "completed", conclusion: "success" }, { name: "lint", status: "in_progress" }];
  const source = execGitShow(sha, "src/price.js");
  const line = source.split("\n").findIndex((l) => l.includes("console.log")) + 1;
  return [
    { name: "test", status: "completed", conclusion: "success", title: "2 tests passed" },
    line > 0
      ? { name: "lint", status: "completed", conclusion: "failure", title: "1 error", summary: `no-console: src/price.js:${line} Unexpected console statement.` }
      : { name: "lint", status: "completed", conclusion: "success", title: "no problems" },
  ];
}
const execGitShow = (sha, path) => git(tmp, "--git-dir", bare, "show", `${sha}:${path}`);

/**
 * The scripted agent (standing in for an LLM): its first turn adds a test and fixes the bug but
 * leaves a debug console.log; on a CI turn it must find the red `lint` check and its output in its
 * task, and removes the line. Every turn appends its kind to the file named by its argument.
 */
function makeAgent() {
  const newTest = `import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { discount } from "../src/price.js";\n\ntest("no coupon, no discount", () => {\n  assert.equal(discount({ total: 200 }), 0);\n});\n`;
  const fixed = `export function discount(order) {\n  console.log("discount", order);\n  return ((order.coupon?.percent ?? 0) / 100) * order.total;\n}\n`;
  const script = `#!/bin/sh
set -e
if grep -q "## CI turn 1 of" "$SELFHEAL_TASK_MD"; then
  grep -q "### lint (failure)" "$SELFHEAL_TASK_MD"
  grep -q "no-console: src/price.js:2 Unexpected console statement." "$SELFHEAL_TASK_MD"
  sed -i '/console.log/d' src/price.js
  echo ci >> "$1"
  exit 0
fi
echo first >> "$1"
cat > test/no-coupon.test.js <<'JS'
${newTest}JS
cat > src/price.js <<'JS'
${fixed}JS
printf 'Cause: discount() read order.coupon.percent without a coupon.\\n' > "$SELFHEAL_DIAGNOSIS_FILE"
`;
  writeFileSync(agent, script, { mode: 0o755 });
}

/** One `selfheal fix` run; its turns are logged to turns-<name>. */
function fixer(name, extra = [], agentCmd = `sh ${agent} ${join(tmp, `turns-${name}`)}`) {
  const args = [
    "--api", stack.urls.runner,
    "--agent", agentCmd,
    "--test-cmd", "node --test test/*.test.js",
    "--repo", repo, "--work-root", join(tmp, "work"),
    "--agent-timeout-secs", "60", "--test-timeout-secs", "60",
    "--github-repo", "acme/shop", "--github-api", gh.url,
    "--owner", `e2e-prci-${name}`,
    "--ci-poll-secs", "1",
    ...extra,
  ];
  return runFixer(args, fixerEnv({ SELFHEAL_GITHUB_TOKEN: TOKEN }));
}
const turns = (name) => readFileSync(join(tmp, `turns-${name}`), "utf8").trim().split("\n");

/** A production-shaped incident on its own route, through the real tail(); then a cron, and its
 *  ready run. Each route's failure throws from its own function: the same failure from one function
 *  on two routes is one bug, and the merge stage would give it one ticket and one run. */
async function incident(route) {
  const t0 = Date.now() - 60_000;
  const handler = `discount${route.replace(/[^a-z]/gi, "")}`;
  const error = {
    name: "TypeError",
    message: "Cannot read properties of undefined (reading 'percent')",
    stack: `    at ${handler} (index.js:2:25)\n    at Object.fetch (index.js:12:68)`,
  };
  const items = [1, 2, 3].map((id, i) => traceItem({ script: "shop", release: "v1", route: `${route}${id}`, ts: t0 + i * 1000, error }));
  const res = await fetch(`${stack.urls.replayer}/tail`, { method: "POST", body: JSON.stringify(items) });
  assert.equal(res.status, 200, await res.text());
  await stack.settle();
  await stack.cron();
  const inc = await until(async () => (await stack.api("/api/incidents")).find((i) => i.route_pattern === `${route}:id`), `the ${route}:id incident`);
  await until(async () => (await stack.api("/api/runs")).some((r) => r.incident_id === inc.id && r.state === "ready"), `a ready run for ${route}:id`, { timeoutMs: 30_000 });
  return inc;
}

const storedResult = async (runId) => JSON.parse((await d1(stateDir, `SELECT result FROM fix_runs WHERE id = ${runId}`))[0].result);

describe("the draft PR's own CI", { timeout: 90_000 }, () => {
  before(async () => {
    sampleRepo(repo, bare, {
      "src/price.js": "export function discount(order) {\n  return (order.coupon.percent / 100) * order.total;\n}\n",
      "test/price.test.js":
        'import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { discount } from "../src/price.js";\n\ntest("a coupon takes its percent off", () => {\n  assert.equal(discount({ total: 200, coupon: { percent: 10 } }), 20);\n});\n',
      "package.json": '{ "type": "module", "private": true }\n',
    });
    makeAgent();
    mkdirSync(join(tmp, "work"), { recursive: true });
    gh = await startGithubStub({ token: TOKEN, repo: "acme/shop", branchExists: branchOn(bare) });
    gh.onCheckRuns(ciOf);
    stack = await startStack({ stateDir, extra: { replayer: "tests/e2e/replayer/wrangler.toml" } });
  });

  after(async () => {
    await stack?.stop();
    await gh?.close();
    rmSync(tmp, { recursive: true, force: true });
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("a red PR check without --fix-ci → failed as ci_failed, the red check recorded", async () => {
    await incident("/checkout/");
    const mainBefore = git(bare, "rev-parse", "refs/heads/main");
    const { code, stderr, report } = await fixer("red");
    assert.equal(code, 1, stderr);
    assert.equal(report.outcome, "failed");
    assert.match(report.reason, /^ci_failed: lint \(failure\) on [0-9a-f]{12} after 0 CI turn\(s\)$/, stderr);
    assert.deepEqual(turns("red"), ["first"], "no extra agent turn");
    // Followed until completed: queued, in_progress, completed.
    assert.equal(report.checks.length, 1);
    const [round] = report.checks;
    assert.equal(round.state, "red");
    assert.equal(round.polls, 3);
    const pr = gh.pulls.at(-1);
    assert.equal(round.head_sha, git(bare, "rev-parse", `refs/heads/${pr.head.ref}`));
    const lint = round.checks.find((c) => c.name === "lint");
    assert.equal(lint.conclusion, "failure");
    assert.match(lint.html_url, /^https:\/\/github\.com\/acme\/shop\/runs\/\d+$/);
    // The draft stays, and the run says where; main is untouched.
    assert.equal(report.pr_url, pr.html_url);
    assert.equal(pr.draft, true);
    assert.equal(git(bare, "rev-parse", "refs/heads/main"), mainBefore);
    // The evidence and the result the agent-runner stored hold the red check with its link.
    const step = report.evidence.find((e) => e.step.startsWith("PR checks on"));
    assert.equal(step.ok, false);
    assert.ok(step.output_tail.includes(`lint (failure) ${lint.html_url}`), step.output_tail);
    const stored = await storedResult(report.run_id);
    assert.equal(stored.checks[0].state, "red");
    assert.deepEqual(stored.checks[0].checks.map((c) => `${c.name} ${c.conclusion}`), ["test success", "lint failure"]);
    assert.ok(stored.evidence.some((e) => e.step === step.step));
    const run = (await stack.api("/api/runs")).find((r) => r.id === report.run_id);
    assert.equal(run.state, "failed");
    assert.deepEqual(gh.violations, []);
  });

  test("--fix-ci 1: one extra agent turn sees the failing check, pushes to the same branch, checks green → pr_opened", async () => {
    await incident("/cart/");
    const pulls = gh.pulls.length;
    const mainBefore = git(bare, "rev-parse", "refs/heads/main");
    const { code, stderr, report } = await fixer("fixci", ["--fix-ci", "1"]);
    assert.equal(code, 0, stderr);
    assert.equal(report.outcome, "pr_opened", `${report.reason}\n${stderr}`);
    assert.deepEqual(turns("fixci"), ["first", "ci"]);
    assert.deepEqual(report.checks.map((r) => r.state), ["red", "green"]);
    // One PR; its branch went from the red head to the green one (a descendant: no history lost).
    assert.equal(gh.pulls.length, pulls + 1);
    const pr = gh.pulls.at(-1);
    const [red, green] = report.checks;
    assert.notEqual(red.head_sha, green.head_sha);
    assert.equal(git(bare, "rev-parse", `refs/heads/${pr.head.ref}`), green.head_sha);
    assert.equal(git(bare, "merge-base", red.head_sha, green.head_sha), red.head_sha);
    assert.doesNotMatch(execGitShow(green.head_sha, "src/price.js"), /console\.log/);
    assert.equal(git(bare, "rev-parse", "refs/heads/main"), mainBefore);
    // The CI turn was verified again (the new test fails on the base, passes with the change).
    assert.equal(report.evidence.filter((e) => /must fail$/.test(e.step)).length, 2);
    assert.ok(report.evidence.every((e) => e.ok || e.step.startsWith("PR checks on")), JSON.stringify(report.evidence));
    assert.equal(report.pr_url, pr.html_url);
    assert.ok(report.timings.filter(([p]) => p === "ci").length === 2);
    const run = (await stack.api("/api/runs")).find((r) => r.id === report.run_id);
    assert.equal(run.state, "pr_opened");
    console.log(`fixer output:\n${stderr}`);
  });

  test("an agent that changes nothing but writes a diagnosis → diagnosed, the diagnosis kept for the ticket", async () => {
    await incident("/gift/");
    const diagnose = join(tmp, "diagnose.sh");
    writeFileSync(diagnose, "#!/bin/sh\nprintf 'Expected: the payment upstream answered 402; no code change helps.\\n' > \"$SELFHEAL_DIAGNOSIS_FILE\"\n", { mode: 0o755 });
    const pulls = gh.pulls.length;
    const { code, stderr, report } = await fixer("diagnose", [], `sh ${diagnose}`);
    assert.equal(code, 1, stderr);
    assert.equal(report.outcome, "diagnosed", `${report.reason}\n${stderr}`);
    assert.match(report.reason, /^diagnosed: the agent changed nothing and wrote a diagnosis/);
    assert.equal(gh.pulls.length, pulls, "no PR");
    const stored = await storedResult(report.run_id);
    assert.equal(stored.outcome, "diagnosed");
    assert.match(stored.diagnosis, /payment upstream answered 402/);
    assert.equal((await stack.api("/api/runs")).find((r) => r.id === report.run_id).state, "failed");
  });

  test("no CI checks at all → recorded as such, not a failure", async () => {
    await incident("/wishlist/");
    gh.onCheckRuns(() => []);
    const { code, stderr, report } = await fixer("none", ["--ci-timeout-secs", "2"]);
    assert.equal(code, 0, stderr);
    assert.equal(report.outcome, "pr_opened", `${report.reason}\n${stderr}`);
    assert.equal(report.checks[0].state, "none");
    assert.ok(report.checks[0].polls >= 2, "an empty list is waited on for a while");
    assert.ok(report.evidence.some((e) => e.ok && / no CI checks$/.test(e.step)), JSON.stringify(report.evidence));
  });
});
