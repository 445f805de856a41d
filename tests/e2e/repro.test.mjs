// Verification like production (issue 13 §1): the incident's sampled requests are replayed against
// the repository's own Worker under `wrangler dev`, and what the runtime reports is fingerprinted
// with the tail Worker's code, before and after the fix.
//
// Real parts: the selfheal stack (workerd, local D1 and Queue; incidents made by the real tail()
// from production-shaped TraceItems through tests/e2e/replayer), the `selfheal fix` binary, git, and
// the sample buggy Worker repository made here: a real wrangler project that the fixer starts with
// `wrangler dev` on the base commit and on the change (its TraceItems captured by a tail consumer).
// Stand-ins, because this machine reaches neither an LLM nor GitHub: scripted shell agents, and the
// local GitHub stand-in tests/e2e/github-stub.mjs (documented REST endpoints, every request checked).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, WRANGLER, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";
import { branchOn, fixerEnv, runFixer, sampleRepo } from "../../scripts/lib/fixer.mjs";
import { startGithubStub } from "./github-stub.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-repro-${process.pid}`);
const TOKEN = "gh-repro-token-not-a-secret";
const tmp = mkdtempSync(join(tmpdir(), "selfheal-repro-"));
const repo = join(tmp, "shop");
const bare = join(tmp, "shop.git");
const agents = join(tmp, "agents");

let stack;
let gh;

// The shop Worker (release v1) with two bugs: /checkout/:id reads a missing coupon, /invoice/:id
// formats a missing total. `no_bundle` keeps the runtime's exception shape under wrangler dev.
const WORKER = `export function discount(order) {
  return (order.coupon.percent / 100) * order.total;
}

export function formatTotal(n) {
  return n.toFixed(2);
}

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname.startsWith("/checkout/")) return Response.json({ discount: discount({ total: 200 }) });
    if (pathname.startsWith("/invoice/")) return new Response(\`total: \${formatTotal({}.total)}\`);
    if (pathname === "/") return new Response("shop");
    return new Response("not found", { status: 404 });
  },
};
`;

function makeRepo() {
  sampleRepo(repo, bare, {
    "wrangler.toml": 'name = "shop"\nmain = "src/index.js"\ncompatibility_date = "2026-11-01"\nno_bundle = true\n',
    "src/index.js": WORKER,
    "test/price.test.js":
      'import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { discount } from "../src/index.js";\n\ntest("a coupon takes its percent off", () => {\n  assert.equal(discount({ total: 200, coupon: { percent: 10 } }), 20);\n});\n',
    "package.json": '{ "type": "module", "private": true }\n',
  });
}

/** Scripted agents standing in for an LLM coding agent (they run in the worktree). */
function makeAgents() {
  const js = (path, text) => `cat > ${path} <<'JS'\n${text}JS\n`;
  const testOf = (name, imports, body) =>
    `import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { ${imports} } from "../src/index.js";\n\ntest(${JSON.stringify(name)}, () => {\n  ${body}\n});\n`;
  // The task must tell the agent about the check and list the replayed requests.
  const readsTask = `grep -q "replays the requests below" "$SELFHEAL_TASK_MD"\ngrep -q '"replay_requests"' "$SELFHEAL_TASK_FILE"\n`;
  const fixDiscount = `sed -i 's/order.coupon.percent/(order.coupon?.percent ?? 0)/' src/index.js\n`;
  const scripts = {
    // Fixes the cause of /checkout/:id, with a test that fails before.
    good:
      readsTask +
      js("test/no-coupon.test.js", testOf("no coupon, no discount", "discount", "assert.equal(discount({ total: 200 }), 0);")) +
      fixDiscount +
      `printf 'Cause: discount() read order.coupon.percent without a coupon.\\nFix: a missing coupon is 0%%.\\n' > "$SELFHEAL_DIAGNOSIS_FILE"\n`,
    // Its own test fails before and passes after, but it fixes another thing: /invoice/:id still
    // throws the reported TypeError.
    unrelated:
      readsTask +
      js("test/money.test.js", testOf("money has two decimals", "formatMoney", 'assert.equal(formatMoney(2), "2.00");')) +
      `printf '\\nexport function formatMoney(n) {\\n  return Number(n ?? 0).toFixed(2);\\n}\\n' >> src/index.js\n`,
  };
  mkdirSync(agents, { recursive: true });
  for (const [name, body] of Object.entries(scripts)) writeFileSync(join(agents, `${name}.sh`), `#!/bin/sh\nset -e\n${body}`, { mode: 0o755 });
}

/** Runs `selfheal fix` once with the named scripted agent; resolves {code, stderr, report}. */
function fixer(agentName) {
  const args = [
    "--api", stack.urls.runner,
    "--agent", `sh ${join(agents, `${agentName}.sh`)}`,
    "--test-cmd", "node --test test/*.test.js",
    "--repo", repo, "--work-root", join(tmp, "work"),
    "--agent-timeout-secs", "60", "--test-timeout-secs", "60",
    "--github-repo", "acme/shop", "--github-api", gh.url,
    "--owner", `e2e-repro-${agentName}`,
    // selfheal's own wrangler (the sample repository has no node_modules), on this Node.
    "--wrangler", `'${process.execPath}' '${WRANGLER}'`,
  ];
  return runFixer(args, fixerEnv({ SELFHEAL_GITHUB_TOKEN: TOKEN }));
}

/** Production-shaped occurrences of one bug of the shop (scriptName, release v1, module-relative
 *  stack paths as a deployed Worker reports them), through the real tail(); then a cron, and the
 *  incident with its ready run. */
async function incident(route, ids, error) {
  const t0 = Date.now() - 60_000;
  const items = ids.map((id, i) =>
    traceItem({ script: "shop", release: "v1", route: `${route}${id}`, ts: t0 + i * 1000, error }),
  );
  const res = await fetch(`${stack.urls.replayer}/tail`, { method: "POST", body: JSON.stringify(items) });
  assert.equal(res.status, 200, await res.text());
  await stack.settle();
  await stack.cron();
  const inc = await until(
    async () => (await stack.api("/api/incidents")).find((i) => i.route_pattern === `${route}:id`),
    `the ${route}:id incident`,
  );
  await until(
    async () => (await stack.api("/api/runs")).some((r) => r.incident_id === inc.id && r.state === "ready"),
    `a ready run for ${route}:id`,
    { timeoutMs: 60_000 },
  );
  return inc;
}

const typeError = (reading, fn) => ({
  name: "TypeError",
  message: `Cannot read properties of undefined (reading '${reading}')`,
  stack: `    at ${fn} (index.js:2:25)\n    at Object.fetch (index.js:12:68)`,
});

describe("fingerprint reproduction", { timeout: 120_000 }, () => {
  before(async () => {
    makeRepo();
    makeAgents();
    gh = await startGithubStub({ token: TOKEN, repo: "acme/shop", branchExists: branchOn(bare) });
    stack = await startStack({ stateDir, extra: { replayer: "tests/e2e/replayer/wrangler.toml" } });
  });

  after(async () => {
    await stack?.stop();
    await gh?.close();
    rmSync(tmp, { recursive: true, force: true });
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("a fix that makes the fingerprint disappear → draft PR with the reproduction evidence", async () => {
    const inc = await incident("/checkout/", [1001, 1002], typeError("percent", "discount"));
    const { code, stderr, report } = await fixer("good");
    assert.equal(code, 0, stderr);
    assert.equal(report.outcome, "pr_opened", `${report.reason}\n${stderr}`);
    const r = report.reproduction;
    assert.equal(r.verdict, "fixed", r.detail);
    assert.deepEqual(r.requests.map((q) => `${q.method} ${q.path}`), ["GET /checkout/1001", "GET /checkout/1002"]);
    // Before: the runtime's TraceItem of each request fingerprints as the production incident.
    for (const o of r.before) {
      assert.equal(o.outcome, "exception");
      assert.equal(o.seen?.fingerprint, inc.fingerprint, JSON.stringify(o));
      assert.equal(o.seen.components.top_frame, "discount (index.js)");
    }
    // After: the same requests answer 200 and make no event at all.
    for (const o of r.after) {
      assert.equal(o.status, 200, JSON.stringify(o));
      assert.equal(o.seen, null);
      assert.equal(o.noise, "healthy");
    }
    const steps = report.evidence.filter((e) => e.step.startsWith("fingerprint reproduction"));
    assert.deepEqual(steps.map((e) => e.ok), [true, true]);
    const pr = gh.pulls.at(-1);
    assert.equal(pr.draft, true);
    assert.match(pr.body, /## Fingerprint reproduction/);
    assert.match(pr.body, /Verdict: \*\*fixed\*\*/);
    assert.ok(pr.body.includes(`GET /checkout/1001 → HTTP 500, outcome exception: fingerprint ${inc.fingerprint}`), pr.body);
    assert.ok(pr.body.includes("GET /checkout/1001 → HTTP 200, outcome ok: no fingerprint (healthy)"), pr.body);
    console.log(`seconds per phase: ${JSON.stringify(report.timings)}\nfixer output:\n${stderr}\nPR body as a reviewer reads it:\n${pr.body}`);
  });

  test("a fix whose own test passes but whose replayed request still fails → rejected, no PR", async () => {
    const inc = await incident("/invoice/", [7, 8], typeError("toFixed", "formatTotal"));
    const pulls = gh.pulls.length;
    const { code, stderr, report } = await fixer("unrelated");
    assert.equal(code, 1, stderr);
    assert.equal(report.outcome, "failed");
    assert.match(report.reason, /^fix does not remove the reported failure: GET \/invoice\/7, GET \/invoice\/8 still give/);
    // The test-only check alone would have accepted it.
    const tests = report.evidence.filter((e) => !e.step.startsWith("fingerprint reproduction"));
    assert.deepEqual(tests.map((e) => e.ok), [true, true]);
    assert.equal(report.reproduction.verdict, "still_reproduced");
    assert.ok(report.reproduction.after.every((o) => o.seen?.fingerprint === inc.fingerprint));
    assert.equal(gh.pulls.length, pulls);
    const run = (await stack.api("/api/runs")).find((x) => x.id === report.run_id);
    assert.equal(run.state, "failed");
  });

  test("a failure that does not happen locally → not_reproduced (distinct), no PR", async () => {
    await incident("/legacy/", [3, 4], typeError("rows", "report"));
    const pulls = gh.pulls.length;
    const { code, stderr, report } = await fixer("good");
    assert.equal(code, 1, stderr);
    assert.equal(report.outcome, "not_reproduced");
    assert.match(report.reason, /^not_reproduced: none of the 2 replayed request\(s\) gave the incident's fingerprint/);
    assert.equal(report.reproduction.verdict, "not_reproduced");
    assert.deepEqual(report.reproduction.before.map((o) => [o.status, o.noise]), [[404, "client_error"], [404, "client_error"]]);
    assert.deepEqual(report.reproduction.after, [], "nothing ran with the change");
    assert.equal(gh.pulls.length, pulls);
    const run = (await stack.api("/api/runs")).find((x) => x.id === report.run_id);
    assert.equal(run.state, "failed", "the attempt ended; the stored result keeps not_reproduced");
  });
});
