// The README's main command, as a newcomer runs it: `npm start -- --once` must print the summary
// with every bug as an incident, the gate's decisions (one external, four tickets) and the runs split
// by the demo's cap (3).
// Workers are already built by npm test; start.mjs is run directly (setup and build are covered there).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../../scripts/lib/stack.mjs";
import { BUG_ROUTES, SECRETS } from "../../scripts/lib/demo.mjs";

test("npm start -- --once prints the loop's summary", { timeout: 240_000 }, async () => {
  const out = await new Promise((ok, fail) => {
    const child = spawn(process.execPath, [join(ROOT, "scripts/start.mjs"), "--once"], {
      cwd: ROOT,
      env: { ...process.env, SELFHEAL_PREBUILT: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.stderr.on("data", (d) => (text += d));
    child.on("close", (code) => (code === 0 ? ok(text) : fail(new Error(`exit ${code}:\n${text}`))));
  });
  const last = out.trim().split("\n").at(-1);
  const m = last.match(/^summary: events=(\d+) incidents=(\d+) tickets=(\d+) runs_ready=(\d+) runs_deferred=(\d+) held=(\d+)$/);
  assert.ok(m, `last line is not the summary: ${last}`);
  const [events, incidents, tickets, ready, deferred, held] = m.slice(1).map(Number);
  assert.equal(incidents, BUG_ROUTES.length);
  assert.equal(tickets + held, incidents);
  // The demo runs the gate in enforce mode: the payment upstream's failure is external (held, no
  // fix job); the four bugs in the code are ticketed, three within the demo's daily cap of 3.
  assert.equal(held, 1);
  assert.match(out, /#\d+ external: external_kind.*\(\/checkout\/:id\)/);
  assert.equal((out.match(/#\d+ ticket: /g) ?? []).length, 4, out);
  assert.equal(ready, 3);
  assert.equal(deferred, tickets - 3);
  assert.equal(events, 160);
  for (const s of Object.values(SECRETS)) assert.ok(!out.includes(s), `summary printed a secret: ${s}`);
});
