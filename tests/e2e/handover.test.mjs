// Handover to a hosted agent by webhook, end to end: the real cron Worker leases a ready run (one
// agent at a time) and POSTs the task, signed with HMAC-SHA256 over "<timestamp>.<body>", to a
// local receiver standing in for a hosted agent (Claude Code routine, Devin, n8n …: none is
// reachable from this machine). The receiver checks the signature with node:crypto (an
// implementation independent of selfheal's) and reports back on the agent-runner's result API.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, ingestedItems, startStack, until } from "../../scripts/lib/stack.mjs";
import { drive } from "../../scripts/lib/demo.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-handover-${process.pid}`);
const SECRET = "webhook-secret-for-tests-0123456789";

let stack;
let receiver;
const deliveries = []; // { verified, body, headers }

function verify(headers, raw) {
  const ts = headers["x-selfheal-timestamp"];
  const sig = headers["x-selfheal-signature"] ?? "";
  if (!ts || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;
  const want = Buffer.from(`sha256=${createHmac("sha256", SECRET).update(`${ts}.`).update(raw).digest("hex")}`);
  const got = Buffer.from(sig);
  return got.length === want.length && timingSafeEqual(got, want);
}

describe("handover by signed webhook", { timeout: 300_000 }, () => {
  before(async () => {
    receiver = createServer(async (req, res) => {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const raw = Buffer.concat(chunks);
      const verified = verify(req.headers, raw);
      deliveries.push({ verified, headers: req.headers, body: JSON.parse(raw.toString("utf8")) });
      res.writeHead(verified ? 202 : 401).end();
    });
    await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
    stack = await startStack({
      stateDir,
      scheduledVars: {
        SELFHEAL_HANDOVER: "webhook",
        SELFHEAL_WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hooks/selfheal`,
        SELFHEAL_WEBHOOK_SECRET: SECRET,
      },
    });
    const start = await ingestedItems(stack);
    const reqs = [{ path: "/users/901" }, { path: "/users/902" }, { path: "/checkout/903" }, { path: "/checkout/904" }];
    await drive(stack, reqs);
    await until(async () => (await ingestedItems(stack)) >= start + reqs.length, "every TraceItem", { timeoutMs: 60_000 });
    await stack.cron();
    await until(async () => (await stack.api("/api/runs")).filter((r) => r.state === "ready").length === 2, "two ready runs", { timeoutMs: 60_000 });
  });

  after(async () => {
    await stack?.stop();
    await new Promise((r) => receiver?.close(r));
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  test("a ready run is POSTed once, signed, with the task; one agent at a time", async () => {
    await stack.cron();
    await stack.cron();
    assert.equal(deliveries.length, 1, "the second cron finds the slot taken");
    const [d] = deliveries;
    assert.equal(d.verified, true, "HMAC-SHA256 over '<timestamp>.<body>' checks out with node:crypto");
    assert.equal(d.body.version, 1);
    assert.equal(d.body.task.kind, "selfheal.fix");
    assert.equal(d.body.task.bounds.draft_pr_only, true);
    assert.match(d.body.task.ticket.body_markdown, /Untrusted/);
    const runs = await stack.api("/api/runs");
    assert.equal(runs.find((r) => r.id === d.body.run_id).state, "fixing");
  });

  test("the receiver reports with its lease id; then the next run is handed over", async () => {
    const [d] = deliveries;
    const report = (lease_id) =>
      fetch(`${stack.urls.runner}${d.body.result_path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${LOCAL_API_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ lease_id, outcome: "pr_opened", pr_url: "https://github.com/acme/shop/pull/9" }),
      });
    assert.equal((await report("not-the-lease")).status, 409);
    assert.equal((await report(d.body.lease_id)).status, 200);
    await stack.cron();
    assert.equal(deliveries.length, 2);
    assert.notEqual(deliveries[1].body.run_id, d.body.run_id);
    assert.ok(deliveries.every((x) => x.verified));
    const runs = await stack.api("/api/runs");
    assert.equal(runs.find((r) => r.id === d.body.run_id).state, "pr_opened");
  });
});
