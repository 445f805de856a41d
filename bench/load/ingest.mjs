// Load on the ingest write path: the real tail Worker in workerd (`wrangler dev`, the local Queue
// and D1 of scripts/lib/stack.mjs), fed production-shaped TraceItems one per tail() call (what
// production delivers per producer invocation) in concurrent bursts; the agent-runner consumes the
// Queue (src/runner/ingest_queue.rs), so the consumer's settings are its vars. A bench, not a test: it
// prints figures and exits non-zero only when a count in D1 differs from what was sent.
//
//   node bench/load/ingest.mjs [--items N] [--error-share F] [--arms a,b,…] [--concurrency C]
//
// Arms (each on a fresh local stack):
//   queue      the default: sanitized events on the ingest Queue, one D1 batch per queue batch
//   storm      the same at a 100% error share (every invocation an error)
//   busy       queue, with the cron triggered every 2 s and the fix-job consumer running
//   redeliver  queue, with one D1 batch in four failing (a trigger that aborts at random), so
//              queue messages are retried and redelivered; counts must stay exact
//   direct     the write path before the Queue: tail() writes D1 itself on every invocation
//              (SELFHEAL_INGEST_MODE=direct, SELFHEAL_TRAFFIC_FLUSH_SECS=0)
//
// Printed per arm: items/s through tail() (wall time of the bursts), CPU per item of the tail
// Worker's workerd (from /proc: tail(), and on the direct arm its D1 writes, the local D1 running
// in the process of the Worker that calls it) and of the agent-runner's (the queue consumer and
// its D1 writes; it also serves the API polled while draining and, on `busy`, the fix jobs), D1 batches and
// statements per 1,000 items (ops_ingest_stats.writes / .statements), queue messages, the delay
// from an item's hand-over to tail() (the replayer stamps eventTimestamp then) to its stored sample (ops_log_events.received_at,
// p50/p99 over every stored sample), the drain time after the last burst, and the exactness check
// (occurrences per incident, traffic requests and errors, delivery counts).

import { parseArgs } from "node:util";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, d1, sleep, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";
import { rng } from "../workerd/batches.mjs";

const { values: opt } = parseArgs({
  options: {
    items: { type: "string", default: "100000" },
    "error-share": { type: "string", default: "0.05" },
    arms: { type: "string", default: "queue,storm,busy,redeliver,direct" },
    concurrency: { type: "string", default: "8" },
    burst: { type: "string", default: "250" },
  },
});
const ITEMS = Number(opt.items);
const SHARE = Number(opt["error-share"]);
const CONCURRENCY = Number(opt.concurrency);
const BURST = Number(opt.burst);
const SCRIPTS = 10;
const FINGERPRINTS = 200; // distinct bugs across the scripts
const WORDS = ["cart", "price", "session", "invoice", "token", "quota", "render", "sync", "export", "import"];

/** The k-th bug: its script, route and error (Zipf-like popularity comes from the draw). */
function bug(k) {
  const script = `load-${k % SCRIPTS}`;
  const a = WORDS[k % WORDS.length];
  const b = WORDS[Math.floor(k / WORDS.length) % WORDS.length];
  const c = WORDS[Math.floor(k / 100) % WORDS.length];
  return {
    script,
    route: `/${a}/${b}/:id`,
    error: {
      name: k % 3 ? "TypeError" : "Error",
      message: `${a} ${b} ${c} failed: cannot read properties of undefined (reading '${b}')`,
      stack: `    at ${a}${b} (src/${c}.js:${10 + k}:7)\n    at Object.fetch (src/index.js:88:12)`,
    },
  };
}

/** What the k-th bug's incident is known by: its script and top in-app frame (unique per bug). */
function bugKey(k) {
  const b = bug(k);
  const fn = b.error.stack.match(/at (\S+) \((src\/[^:]+):/);
  return `${b.script}|${fn[1]} (${fn[2]})`;
}

function plan(n, share, seed) {
  const r = rng(seed);
  const items = [];
  for (let i = 0; i < n; i++) {
    if (r() < share) {
      // Popularity ~ 1/rank: a few bugs take most occurrences, a long tail appears a few times.
      const k = Math.min(FINGERPRINTS - 1, Math.floor(Math.exp(r() * Math.log(FINGERPRINTS + 1))) - 1);
      items.push({ bug: k });
    } else {
      items.push({ script: `load-${i % SCRIPTS}`, route: `/ok/${i % 50}` });
    }
  }
  return items;
}

function materialize(p, i) {
  const ts = Date.now();
  if (p.bug === undefined) return traceItem({ script: p.script, release: "v1", route: p.route, ts });
  const b = bug(p.bug);
  return traceItem({ script: b.script, release: "v1", route: b.route.replace(":id", String(i)), ts, error: b.error });
}

/** ns on CPU of a process and its threads. */
function cpuNs(pid) {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      n += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // thread gone
    }
  }
  return n;
}

/** The workerd process serving one Worker of the stack (a descendant of its wrangler process). */
function workerd(stack, name, config) {
  const out = execFileSync("ps", ["-eo", "pid,ppid,args"], { encoding: "utf8" }).trim().split("\n").slice(1);
  const procs = out.map((l) => {
    const [pid, ppid, ...args] = l.trim().split(/\s+/);
    return { pid: Number(pid), ppid: Number(ppid), args: args.join(" ") };
  });
  const port = String(stack.ports[name]);
  const wrangler = procs.find(
    (p) => p.args.includes("wrangler.js dev") && p.args.includes(`-c ${config} `) && p.args.includes(`--port ${port} `),
  );
  const descendants = (pid) => procs.filter((p) => p.ppid === pid).flatMap((c) => [c, ...descendants(c.pid)]);
  const w = wrangler && descendants(wrangler.pid).find((p) => /workerd/.test(p.args));
  if (!w) throw new Error(`workerd of the ${name} Worker not found`);
  return w.pid;
}

const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
};

async function arm(name) {
  const stateDir = join(ROOT, `.selfheal/bench-load-${name}-${process.pid}`);
  const share = name === "storm" ? 1 : SHARE;
  const tailVars =
    name === "direct"
      ? { SELFHEAL_INGEST_MODE: "direct", SELFHEAL_TRAFFIC_FLUSH_SECS: "0" }
      : { SELFHEAL_TRAFFIC_FLUSH_SECS: "60" };
  // The flood cap on both write paths: the tail's direct one and the agent-runner's consumer,
  // whose backoff is 1 s doubling to 2 s here (production: 10 s to 15 min).
  const cap = { SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR: "1000" };
  const stack = await startStack({
    stateDir,
    tailVars: { ...tailVars, ...cap },
    runnerVars: { ...cap, SELFHEAL_INGEST_RETRY_BASE_SECS: "1", SELFHEAL_INGEST_RETRY_MAX_SECS: "2" },
    scheduledVars: { SELFHEAL_GATE_MODE: "shadow" },
    extra: { replayer: "tests/e2e/replayer/wrangler.toml" },
    warmupPath: "/reports/export",
  });
  try {
    const items = plan(ITEMS, share, 42);
    const base = await d1(stateDir, "SELECT coalesce(sum(writes),0) AS w, coalesce(sum(statements),0) AS s, coalesce(sum(messages),0) AS m, coalesce(sum(items),0) AS i FROM ops_ingest_stats");
    if (name === "redeliver") {
      // Every D1 batch of the consumer ends with its one upsert of ops_ingest_stats: one in four aborts.
      await d1(stateDir, "CREATE TRIGGER load_fault BEFORE UPDATE ON ops_ingest_stats WHEN abs(random()) % 4 = 0 BEGIN SELECT RAISE(ABORT, 'injected fault'); END");
    }
    let cronRuns = 0;
    let busy = name === "busy";
    const cronLoop = (async () => {
      while (busy) {
        await stack.cron().catch(() => {});
        cronRuns++;
        await sleep(2000);
      }
    })();
    const pid = workerd(stack, "tail", "tail-worker/wrangler.toml");
    const runnerPid = workerd(stack, "runner", "wrangler.toml");
    const cpu0 = cpuNs(pid);
    const runnerCpu0 = cpuNs(runnerPid);
    const t0 = Date.now();
    let next = 0;
    const worker = async () => {
      for (;;) {
        const start = next;
        next += BURST;
        if (start >= items.length) return;
        const batch = items.slice(start, start + BURST).map((p, j) => materialize(p, start + j));
        const res = await fetch(stack.urls.replayer + "/tail-each?stamp=1", { method: "POST", body: JSON.stringify(batch) });
        if (!res.ok) throw new Error(`replayer: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const sendSecs = (Date.now() - t0) / 1000;
    // Healthy counts wait in the isolate up to SELFHEAL_TRAFFIC_FLUSH_SECS: one error flushes them.
    await fetch(stack.urls.replayer + "/tail-each", {
      method: "POST",
      body: JSON.stringify([materialize({ bug: 0 }, ITEMS)]),
    }).then((r) => r.arrayBuffer());
    if (name === "redeliver") {
      await sleep(5000); // let faults hit a few more retries
      await d1(stateDir, "DROP TRIGGER IF EXISTS load_fault");
    }
    const expectedErrors = items.filter((p) => p.bug !== undefined).length + 1;
    await until(
      async () => (await d1(stateDir, "SELECT coalesce(sum(items),0) AS i FROM ops_ingest_stats"))[0].i - base[0].i >= ITEMS + 1,
      "every item counted",
      { timeoutMs: 600_000, everyMs: 1000 },
    );
    await stack.settle({ timeoutMs: 600_000 });
    const drainSecs = (Date.now() - t0) / 1000 - sendSecs;
    const cpu = cpuNs(pid) - cpu0;
    const runnerCpu = cpuNs(runnerPid) - runnerCpu0;
    busy = false;
    await cronLoop;

    // Exactness: occurrences per bug, traffic, delivery counts.
    const want = new Map();
    for (const p of [...items, { bug: 0 }]) {
      if (p.bug === undefined) continue;
      const key = bugKey(p.bug);
      want.set(key, (want.get(key) ?? 0) + 1);
    }
    const got = await d1(
      stateDir,
      "SELECT script_name || '|' || top_frame AS k, occurrence_count AS n FROM ops_incidents WHERE script_name LIKE 'load-%'",
    );
    const gotMap = new Map(got.map((r) => [r.k, r.n]));
    const mismatches = [...want].filter(([k, n]) => gotMap.get(k) !== n).length + got.filter((r) => !want.has(r.k)).length;
    const [traffic] = await d1(stateDir, "SELECT sum(requests) AS n, sum(errors) AS e FROM ops_traffic_5m WHERE script LIKE 'load-%'");
    const [after] = await d1(stateDir, "SELECT sum(writes) AS w, sum(statements) AS s, sum(messages) AS m, sum(items) AS i, sum(retried_messages) AS r, sum(dead_messages) AS d FROM ops_ingest_stats");
    const delays = (await d1(stateDir, "SELECT received_at - event_timestamp AS d FROM ops_log_events WHERE script_name LIKE 'load-%'")).map((r) => r.d);
    const exact = mismatches === 0 && traffic.n === ITEMS + 1 && traffic.e === expectedErrors && after.i - base[0].i === ITEMS + 1;
    const per1k = (x) => ((x * 1000) / (ITEMS + 1)).toFixed(2);
    return {
      arm: name,
      items: ITEMS,
      error_share: share,
      items_per_s: Math.round(ITEMS / sendSecs),
      cpu_us_per_item: Math.round(cpu / 1000 / (ITEMS + 1)),
      runner_cpu_us_per_item: Math.round(runnerCpu / 1000 / (ITEMS + 1)),
      d1_batches_per_1k: per1k(after.w - base[0].w),
      statements_per_1k: per1k(after.s - base[0].s),
      queue_messages: after.m - base[0].m,
      retried: after.r,
      dead: after.d,
      delay_p50_ms: pct(delays, 0.5),
      delay_p99_ms: pct(delays, 0.99),
      samples: delays.length,
      drain_s: drainSecs.toFixed(1),
      cron_runs: cronRuns,
      incidents: got.length,
      exact: exact ? "yes" : `NO (${mismatches} incident counts differ; traffic ${traffic.n}/${traffic.e})`,
    };
  } finally {
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

const rows = [];
for (const name of opt.arms.split(",")) {
  console.error(`== arm ${name}: ${ITEMS} items`);
  const r = await arm(name);
  console.error(JSON.stringify(r));
  rows.push(r);
}
const cols = Object.keys(rows[0]);
console.log(cols.join("\t"));
for (const r of rows) console.log(cols.map((c) => r[c]).join("\t"));
process.exit(rows.every((r) => r.exact === "yes") ? 0 : 1);
