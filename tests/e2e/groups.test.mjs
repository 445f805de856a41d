// Groups in D1, end to end on ONE stack: the real tail, cron and agent-runner Workers in workerd
// with local D1 and Queues, TraceItems replayed as production delivers them (tests/e2e/replayer).
// No outside service is involved (the built-in tracker; the agent-runner's queue consumer makes
// the fix runs).
//
// TraceItems arrive as one tail() batch, as the runtime groups them.
//
// One missing-validation bug (a handler doing `JSON.parse(body)` on what the client sent) hit with
// a dozen malformed bodies: V8 words each failure differently (message-template.h's
// kJsonParse* templates), so the tail files several incidents, and the cron's group step puts
// them in ONE group: one ticket, one fix run, the other members linked to it with a
// `member_joined` history row on the ticket holder. A second bug on the same route (a TypeError
// reading a property) stays its own group and ticket. `selfheal unmerge` of one member: it gets
// its own ticket on the next cron and stays out after more cron runs.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-groups-${process.pid}`);
const BIN = process.env.SELFHEAL_BIN ?? join(ROOT, "target/debug/selfheal");
const SCRIPT = "orders-api";
const ROUTE = "/orders";
const STACK = "    at createOrder (src/orders.js:14:23)\n    at Object.fetch (src/index.js:88:12)";

// What `JSON.parse(body)` throws in V8 for a dozen malformed bodies (the body in the comment).
const JSON_FAILURES = [
  `Unexpected token 'o', "not json" is not valid JSON`, // not json
  `Unexpected token 'h', "hello" is not valid JSON`, // hello
  `Unexpected token 'u', "undefined" is not valid JSON`, // undefined
  "Unexpected end of JSON input", // (empty)
  "Expected property name or '}' in JSON at position 1 (line 1 column 2)", // {'a': 1}
  "Unexpected non-whitespace character after JSON at position 4", // {} {}
  "Bad control character in string literal in JSON at position 9", // {"note":"a<TAB>b"}
  "Expected ',' or '}' after property value in JSON at position 12 (line 1 column 13)", // {"qty": 1 "id": 2}
  "Expected ',' or ']' after array element in JSON at position 6 (line 1 column 7)", // [1, 2 3]
  "Unterminated string in JSON at position 11 (line 1 column 12)", // {"name": "bo
  "Expected double-quoted property name in JSON at position 15 (line 1 column 16)", // {"qty": 1, }
  "Bad escaped character in JSON at position 3 (line 1 column 4)", // ["\x"]
  "No number after minus sign in JSON at position 1 (line 1 column 2)", // -
];
const TYPE_ERROR = "Cannot read properties of undefined (reading 'items')";

let stack;
const post = async (path, body) => {
  const res = await fetch(stack.urls.replayer + path, { method: "POST", body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.text());
};
const failure = (name, message) =>
  traceItem({ script: SCRIPT, release: "v1", route: ROUTE, method: "POST", ts: Date.now(), error: { name, message, stack: STACK } });
/** The script's incidents as stored, with their group columns. */
const incidents = () =>
  d1(
    stateDir,
    `SELECT id, fingerprint, exception_type, status, ticket_id, group_key, group_pinned FROM ops_incidents WHERE script_name = '${SCRIPT}' ORDER BY id`,
  );
const tickets = () => d1(stateDir, `SELECT t.id, t.incident_id FROM tickets t JOIN ops_incidents i ON i.id = t.incident_id WHERE i.script_name = '${SCRIPT}' ORDER BY t.id`);
const runs = async () => {
  const ids = new Set((await incidents()).map((i) => i.id));
  return (await stack.api("/api/runs")).filter((r) => ids.has(r.incident_id));
};
const history = async (id) => (await stack.api(`/api/incidents/${id}/history`)).history;
const cli = (args) =>
  execFileSync(BIN, args, {
    env: { ...process.env, SELFHEAL_API_URL: stack.urls.runner, SELFHEAL_API_TOKEN: LOCAL_API_TOKEN },
    encoding: "utf8",
  });

describe("groups: one bug hit with a dozen malformed bodies is one group, one ticket, one fix run", { timeout: 90_000 }, () => {
  before(async () => {
    stack = await startStack({ stateDir, extra: { replayer: "tests/e2e/replayer/wrangler.toml" } });
  });

  after(async () => {
    await stack?.stop();
    if (!process.env.SELFHEAL_KEEP_STATE) rmSync(stateDir, { recursive: true, force: true });
  });

  let json; // the JSON bug's incidents
  let holder; // the one holding its ticket
  let typeIncident;

  test("the JSON wordings: several incidents, one group and one ticket; the TypeError its own", async () => {
    // Each body twice (a retried request), the TypeError three times.
    await post("/tail", [
      ...JSON_FAILURES.flatMap((m) => [failure("SyntaxError", m), failure("SyntaxError", m)]),
      ...[1, 2, 3].map(() => failure("TypeError", TYPE_ERROR)),
    ]);
    await stack.settle();
    await stack.cron();

    const all = await incidents();
    json = all.filter((i) => i.exception_type === "SyntaxError");
    typeIncident = all.find((i) => i.exception_type === "TypeError");
    assert.ok(json.length >= 8, `the fingerprint splits the wordings: ${json.length} incidents`);
    assert.ok(typeIncident);
    assert.equal(new Set(json.map((i) => i.group_key)).size, 1, JSON.stringify(json));
    assert.equal(json[0].group_key, json[0].fingerprint, "keyed by the first member's fingerprint");
    assert.equal(typeIncident.group_key, typeIncident.fingerprint, "the TypeError is its own group");

    const ts = await tickets();
    assert.equal(ts.length, 2, `one ticket per group: ${JSON.stringify(ts)}`);
    const jsonTicket = ts.find((t) => json.some((i) => i.id === t.incident_id));
    assert.ok(jsonTicket && ts.some((t) => t.incident_id === typeIncident.id));
    holder = json.find((i) => i.id === jsonTicket.incident_id);
    for (const i of json) assert.equal(i.ticket_id, jsonTicket.id, `member ${i.id} linked`);
    // The holder's run may already be claimed; a member only follows the ticket.
    for (const i of json.filter((i) => i.id !== holder.id)) assert.equal(i.status, "ticketed");

    console.log(`groups: ${JSON_FAILURES.length * 2} failures → ${json.length} SyntaxError incidents in 1 group, 1 ticket; the TypeError its own`);
    // One fix run per group, and no more after another run.
    await until(async () => (await runs()).length === 2, "a fix run per group", { timeoutMs: 20_000 });
    await stack.cron();
    const rs = await runs();
    assert.deepEqual(new Set(rs.map((r) => r.incident_id)), new Set([holder.id, typeIncident.id]));

    // The holder's history: its grouping, its ticket, a row per member that joined with its figures.
    const h = await history(holder.id);
    const joined = h.filter((r) => r.why === "member_joined");
    assert.equal(joined.length, json.length - 1);
    const figures = typeof joined[0].figures === "string" ? JSON.parse(joined[0].figures) : joined[0].figures;
    const member = json.find((i) => i.id === figures.member_incident_id);
    assert.ok(member && member.id !== holder.id);
    assert.equal(figures.fingerprint, member.fingerprint);
    assert.ok(figures.occurrences >= 1 && figures.normalized_message, JSON.stringify(figures));
    assert.ok(h.some((r) => r.why === "grouped") && h.some((r) => r.why === "ticket_opened"));
  });

  test("selfheal unmerge: the member gets its own ticket on the next cron and stays out", async () => {
    const member = json.find((i) => i.id !== holder.id);
    const out = cli(["unmerge", String(member.id)]);
    assert.equal(out.trim(), `#${member.id} unmerged (group ${member.fingerprint})`);
    assert.equal(cli(["unmerge", String(member.id)]).trim(), `#${member.id} already split out`);
    const [mid] = (await incidents()).filter((i) => i.id === member.id);
    assert.deepEqual([mid.status, mid.ticket_id, mid.group_pinned], ["open", null, 1]);

    await stack.cron();
    const ts = await tickets();
    assert.equal(ts.length, 3);
    const own = ts.find((t) => t.incident_id === member.id);
    assert.ok(own, "its own ticket");
    await until(async () => (await runs()).length === 3, "its own fix run", { timeoutMs: 20_000 });

    // More cron runs (and more traffic of the bug): it stays out; the rest stays one group.
    await post("/tail", JSON_FAILURES.slice(0, 4).map((m) => failure("SyntaxError", m)));
    await stack.settle();
    await stack.cron();
    await stack.cron();
    const now = await incidents();
    const me = now.find((i) => i.id === member.id);
    assert.deepEqual([me.group_key, me.group_pinned, me.ticket_id], [member.fingerprint, 1, own.id]);
    const rest = now.filter((i) => i.exception_type === "SyntaxError" && i.id !== member.id);
    assert.equal(new Set(rest.map((i) => i.group_key)).size, 1);
    assert.ok(rest.every((i) => i.ticket_id === holder.ticket_id), JSON.stringify(rest));
    assert.equal((await tickets()).length, 3);
    assert.equal((await runs()).length, 3);
    assert.deepEqual(
      (await history(member.id)).map((r) => r.why).slice(0, 3),
      ["grouped", "unmerged", "ticket_opened"],
    );
  });
});
