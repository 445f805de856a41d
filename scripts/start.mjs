// `npm start`: the whole loop once, locally. Starts the stack, drives the demo producer with a
// scripted mix of requests, fires the cron, waits for the queue, prints what the loop produced.
// Keeps the stack up until Ctrl-C; `npm start -- --once` exits after the summary.
//
// The demo runs the gate in enforce mode (SELFHEAL_GATE_MODE to change it) and a daily cap of 3
// (SELFHEAL_DEMO_CAP) so both are visible: five incidents, the payment-upstream failure held as
// `external`, four tickets, three runs ready and one deferred to the next UTC day.

import { join } from "node:path";
import { ROOT, d1, ingestedItems, sleep, startStack, until } from "./lib/stack.mjs";
import { drive, plan } from "./lib/demo.mjs";

const once = process.argv.includes("--once");
const cap = process.env.SELFHEAL_DEMO_CAP ?? "3";
const stateDir = join(ROOT, ".selfheal/demo");

const t0 = Date.now();
const say = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

say(`starting the stack (state in ${stateDir}, daily cap ${cap})`);
const gateMode = process.env.SELFHEAL_GATE_MODE ?? "enforce";
const stack = await startStack({
  stateDir,
  runnerVars: { SELFHEAL_DAILY_CAP: cap },
  scheduledVars: { SELFHEAL_GATE_MODE: gateMode },
});
let stopping = false;
const shutdown = async (code) => {
  if (stopping) return;
  stopping = true;
  await stack.stop();
  process.exit(code);
};
process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

try {
  say(`producer ${stack.urls.producer}  tail ${stack.urls.tail}  cron ${stack.urls.scheduled}  api ${stack.urls.runner}`);
  const before = await ingestedItems(stack);
  const requests = plan();
  const { sent, byStatus } = await drive(stack, requests);
  say(`sent ${sent} requests to the demo producer: ${JSON.stringify(byStatus)}`);

  await until(async () => (await ingestedItems(stack)) >= before + sent, "the tail Worker to receive every TraceItem", {
    timeoutMs: 60_000,
  });
  say("every TraceItem reached the tail Worker");

  await stack.cron();
  say("fired the cron (*/5 * * * *)");
  const tickets = (await stack.api("/api/tickets")).length;
  await until(async () => (await stack.api("/api/runs")).length >= tickets, "the agent-runner to claim every ticket", {
    timeoutMs: 60_000,
  });
  say("the agent-runner claimed every ticket");

  const incidents = await stack.api("/api/incidents");
  const runs = await stack.api("/api/runs");
  const summary = await stack.api("/api/summary");
  const ticketRows = await stack.api("/api/tickets");

  console.log("\nIncidents (one per fingerprint):");
  for (const i of incidents) {
    console.log(`  #${i.id} ${i.fingerprint}  x${i.occurrence_count}  ${i.status}`);
    console.log(`      script=${i.script_name}  route=${i.route_pattern}  type=${i.exception_type}  status=${i.status_class}`);
    console.log(`      message=${i.normalized_message}`);
    console.log(`      top frame=${i.top_frame || "(none)"}`);
  }
  console.log(`\nGate decisions (${gateMode} mode; ticket = worth an agent, external = not this code):`);
  for (const d of await gateDecisions(stateDir, incidents)) console.log(`  #${d.id} ${d.decision}: ${d.reasons}  (${d.route})`);
  console.log("\nTickets (built-in tracker):");
  for (const t of ticketRows) console.log(`  #${t.id} incident ${t.incident_id}: ${t.title}`);
  console.log("\nFix runs:");
  for (const r of runs) {
    console.log(`  #${r.id} incident ${r.incident_id} ticket ${r.ticket_id}: ${r.state}${r.budget_day ? ` (cap unit of ${r.budget_day})` : ""}${r.deferred_day ? ` (deferred on ${r.deferred_day})` : ""}`);
  }
  const b = summary.budget;
  console.log(`\nToday's budget: ${b.used}/${b.cap} fix attempts used (${b.day}, UTC)`);
  console.log(`Noise items dropped: ${summary.noise_items}; malformed items: ${summary.malformed_items}`);
  console.log(`API: curl -H 'authorization: Bearer selfheal-local-dev-token' ${stack.urls.runner}/api/summary`);
  console.log(`Dashboard: ${stack.urls.runner}/ (sign in with the API token selfheal-local-dev-token)`);
  console.log(
    `summary: events=${summary.events} incidents=${summary.incidents} tickets=${summary.tickets} runs_ready=${summary.runs_ready} runs_deferred=${summary.runs_deferred} held=${summary.incidents - summary.tickets}`,
  );
} catch (e) {
  console.error(`npm start failed: ${e.message}\nlogs: ${stack.logs}`);
  await shutdown(1);
}

if (once) {
  await shutdown(0);
} else {
  say("the stack stays up; Ctrl-C stops it");
  for (;;) await sleep(60_000);
}

/** Each incident's current gate decision and reasons, read from D1 (the gate's own record). */
async function gateDecisions(stateDir, incidents) {
  const rows = await d1(stateDir, "SELECT id, gate_decision, gate_reasons FROM ops_incidents ORDER BY id");
  return rows.map((r) => ({
    id: r.id,
    decision: r.gate_decision ?? "(none)",
    reasons: (JSON.parse(r.gate_reasons ?? "[]") || []).join(", "),
    route: incidents.find((i) => i.id === r.id)?.route_pattern ?? "",
  }));
}
