// CPU of the tail Worker's tail() handler in workerd, per TraceItem warm and for the first
// invocation of a fresh isolate. Run through scripts/bench-workerd.sh (which documents the method);
// options: --build-dir DIR (tail Worker build: index.js + index_bg.wasm), --rounds N, --per-run K
// (batches per measured run), --warmup N (batches per arm before measuring), --cold N (fresh
// workerd processes per arm), --state-dir DIR, --json FILE (results), --label TEXT.

import { parseArgs } from "node:util";
import { join } from "node:path";
import { rmSync, writeFileSync } from "node:fs";
import { ROOT, freshState, start } from "./harness.mjs";
import { makeBatches, summary } from "./batches.mjs";

const { values: opt } = parseArgs({
  options: {
    "build-dir": { type: "string", default: join(ROOT, "tail-worker/build") },
    rounds: { type: "string", default: "21" },
    "per-run": { type: "string", default: "10" },
    warmup: { type: "string", default: "40" },
    cold: { type: "string", default: "7" },
    "state-dir": { type: "string", default: join(ROOT, `.selfheal/bench-workerd-${process.pid}`) },
    json: { type: "string" },
    label: { type: "string", default: "" },
  },
});
const ROUNDS = Number(opt.rounds);
const PER_RUN = Number(opt["per-run"]);
const WARMUP = Number(opt.warmup);
const COLD = Number(opt.cold);
const BATCH = 100;
const stateDir = opt["state-dir"];
const ms = (ns) => ns / 1e6;

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => {
    const i = (s.length - 1) * p;
    const lo = Math.floor(i);
    return s[lo] + (s[Math.ceil(i)] - s[lo]) * (i - lo);
  };
  return { n: s.length, median: q(0.5), p25: q(0.25), p75: q(0.75), min: s[0], max: s[s.length - 1] };
}
const fmt = (st, digits = 3) =>
  `median ${st.median.toFixed(digits)}  IQR ${st.p25.toFixed(digits)}–${st.p75.toFixed(digits)}  range ${st.min.toFixed(digits)}–${st.max.toFixed(digits)}  (n=${st.n})`;

const batches = makeBatches({ count: 20, size: BATCH, seed: 1 });
// Batch 20: one item with an uncaught exception (the whole pipeline runs), for the fixed cost of a
// first invocation.
const ONE = batches.length;
batches.push([structuredClone(batches[0].find((it) => it.outcome === "exception"))]);
const log = (...a) => console.log(...a);
log(`bench-workerd ${opt.label}: tail Worker build ${opt["build-dir"]}`);
log(`batches: ${JSON.stringify(summary(batches.slice(0, ONE)))}`);

async function warm() {
  await freshState(stateDir);
  const h = await start({ buildDir: opt["build-dir"], stateDir, targets: ["TAIL", "NOD1"] });
  try {
    await h.load(batches);
    let from = 0;
    for (const arm of ["NOOP", "NOD1", "TAIL"]) {
      for (let done = 0; done < WARMUP; done += PER_RUN) await h.run(arm, done % ONE, PER_RUN, ONE);
    }
    const logsBefore = h.logs.length;
    const stubBefore = await h.stubStats();
    const per = { NOD1: [], TAIL: [], NOD1_main: [], TAIL_main: [], NOOP: [], NOD1_wall: [], TAIL_wall: [] };
    const arms = ["NOOP", "NOD1", "TAIL"];
    for (let r = 0; r < ROUNDS; r++) {
      const order = arms.map((_, i) => arms[(i + r) % arms.length]); // rotate: no arm always first
      const res = {};
      for (const arm of order) res[arm] = await h.run(arm, from, PER_RUN, ONE);
      from = (from + PER_RUN) % ONE;
      const items = res.NOOP.items;
      per.NOOP.push(ms(res.NOOP.totalNs) / items);
      for (const arm of ["NOD1", "TAIL"]) {
        if (res[arm].items !== items) throw new Error(`${arm} got ${res[arm].items} items, NOOP ${items}`);
        per[arm].push(ms(res[arm].totalNs - res.NOOP.totalNs) / items);
        per[`${arm}_main`].push(ms(res[arm].mainNs - res.NOOP.mainNs) / items);
        per[`${arm}_wall`].push((res[arm].wallMs - res.NOOP.wallMs) / items);
      }
    }
    // What the pipeline made of the measured batches (both tail arms log one line per batch).
    const verdicts = { items: 0, events: 0, noise: 0, malformed: 0 };
    for (const line of h.logs.slice(logsBefore)) {
      const m = /^selfheal tail: items=(\d+) events=(\d+) noise=(\d+) malformed=(\d+)/.exec(line);
      if (m) ["items", "events", "noise", "malformed"].forEach((k, i) => (verdicts[k] += Number(m[i + 1])));
    }
    const failures = h.logs.filter((l) => /selfheal tail: (?!items=)/.test(l));
    if (failures.length) throw new Error(`the tail Worker reported errors:\n${failures.slice(0, 5).join("\n")}`);
    const stubAfter = await h.stubStats();
    const d1 = {
      statementsPerBatch: (stubAfter.statements - stubBefore.statements) / (stubAfter.batches - stubBefore.batches),
      bodyBytesPerBatch: Math.round((stubAfter.bodyBytes - stubBefore.bodyBytes) / (stubAfter.batches - stubBefore.batches)),
    };
    return { verdicts, d1, per };
  } finally {
    await h.dispose();
  }
}

/**
 * One fresh workerd: its boot CPU, then deliveries to `arm` after two to NOOP (the first call
 * through the driver and RPC is not the tail Worker's; the second is the delivery cost subtracted):
 * the first one (100 items, or the one-item batch when `one`), the second, the tenth.
 */
async function coldTrial(arm, one = false) {
  const h = await start({ buildDir: opt["build-dir"], stateDir, targets: arm ? [arm] : [] });
  try {
    if (!arm) return { bootNs: h.bootCpu.totalNs, bootMainNs: h.bootCpu.mainNs };
    await h.load(batches);
    await h.run("NOOP", one ? ONE : 0, 1);
    const noop = await h.run("NOOP", one ? ONE : 1, 1);
    const first = await h.run(arm, one ? ONE : 2, 1);
    const second = await h.run(arm, 3, 1);
    const tenth = [];
    for (let i = 4; i < 12; i++) tenth.push(await h.run(arm, i, 1));
    return { bootNs: h.bootCpu.totalNs, bootMainNs: h.bootCpu.mainNs, noop, first, second, last: tenth.at(-1) };
  } finally {
    await h.dispose();
  }
}

const COLD_ARMS = { NOD1: ["NOD1", false], NOD1_one: ["NOD1", true], TAIL: ["TAIL", false] };

async function cold() {
  const keys = ["startup", "startupMain", "first", "firstMain", "firstWall", "second", "secondMain", "tenth", "tenthMain"];
  const out = Object.fromEntries(keys.map((k) => [k, Object.fromEntries(Object.keys(COLD_ARMS).map((a) => [a, []]))]));
  for (let t = 0; t < COLD; t++) {
    const base = await coldTrial(null);
    const names = Object.keys(COLD_ARMS);
    for (const name of names.map((_, i) => names[(i + t) % names.length])) {
      const [arm, one] = COLD_ARMS[name];
      const r = await coldTrial(arm, one);
      out.startup[name].push(ms(r.bootNs - base.bootNs));
      out.startupMain[name].push(ms(r.bootMainNs - base.bootMainNs));
      out.first[name].push(ms(r.first.totalNs - r.noop.totalNs));
      out.firstMain[name].push(ms(r.first.mainNs - r.noop.mainNs));
      out.firstWall[name].push(r.first.wallMs - r.noop.wallMs);
      out.second[name].push(ms(r.second.totalNs - r.noop.totalNs));
      out.secondMain[name].push(ms(r.second.mainNs - r.noop.mainNs));
      out.tenth[name].push(ms(r.last.totalNs - r.noop.totalNs));
      out.tenthMain[name].push(ms(r.last.mainNs - r.noop.mainNs));
    }
  }
  return out;
}

try {
  const w = await warm();
  log(`pipeline verdicts of the measured batches: ${JSON.stringify(w.verdicts)}; D1 batch per 100 items: ${w.d1.statementsPerBatch.toFixed(1)} statements, ${w.d1.bodyBytesPerBatch} bytes of request JSON`);
  log(`\nWARM, CPU ms per TraceItem (batches of ${BATCH}, ${PER_RUN} batches per run, ${ROUNDS} rounds; minus the no-op consumer's run):`);
  log(`  tail handler, D1 stubbed   all threads  ${fmt(stats(w.per.NOD1), 4)}`);
  log(`                             main thread  ${fmt(stats(w.per.NOD1_main), 4)}`);
  log(`  tail + local D1 (SQLite)   all threads  ${fmt(stats(w.per.TAIL), 4)}`);
  log(`                             main thread  ${fmt(stats(w.per.TAIL_main), 4)}`);
  log(`  delivery to no-op consumer all threads  ${fmt(stats(w.per.NOOP), 4)}  (subtracted above)`);
  log(`  wall ms per item (stubbed / local D1)   ${stats(w.per.NOD1_wall).median.toFixed(4)} / ${stats(w.per.TAIL_wall).median.toFixed(4)} (median)`);
  const c = COLD > 0 ? await cold() : null;
  if (c) {
    const row = (title, xs) => log(`  ${title.padEnd(56)} ${fmt(stats(xs), 1)}`);
    log(`\nFRESH ISOLATE, CPU ms (${COLD} fresh workerd processes per line; delivery cost subtracted):`);
    row("startup, all threads (wasm compile+instantiate, eval)", c.startup.NOD1);
    row("startup, main thread", c.startupMain.NOD1);
    row("first invocation, 100 items, D1 stubbed, all threads", c.first.NOD1);
    row("first invocation, 100 items, D1 stubbed, main thread", c.firstMain.NOD1);
    row("first invocation, 100 items, D1 stubbed, wall", c.firstWall.NOD1);
    row("first invocation, 1 item,    D1 stubbed, all threads", c.first.NOD1_one);
    row("first invocation, 1 item,    D1 stubbed, main thread", c.firstMain.NOD1_one);
    row("first invocation, 100 items, local D1,   all threads", c.first.TAIL);
    row("first invocation, 100 items, local D1,   main thread", c.firstMain.TAIL);
    row("2nd invocation, 100 items, D1 stubbed, all threads", c.second.NOD1);
    row("2nd invocation, 100 items, D1 stubbed, main thread", c.secondMain.NOD1);
    row("10th invocation, 100 items, D1 stubbed, all threads", c.tenth.NOD1);
    row("10th invocation, 100 items, D1 stubbed, main thread", c.tenthMain.NOD1);
  }
  const result = {
    label: opt.label,
    buildDir: opt["build-dir"],
    batches: summary(batches),
    verdicts: w.verdicts,
    d1: w.d1,
    warm: Object.fromEntries(Object.entries(w.per).map(([k, v]) => [k, stats(v)])),
    cold: c && Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Object.fromEntries(Object.entries(v).map(([a, xs]) => [a, stats(xs)]))])),
  };
  if (opt.json) writeFileSync(opt.json, JSON.stringify(result, null, 1));
  log(`\nbench-workerd: warm_ms_per_item=${result.warm.NOD1.median.toFixed(4)} warm_ms_per_item_with_local_d1=${result.warm.TAIL.median.toFixed(4)}` +
    (c ? ` fresh_startup_ms=${result.cold.startup.NOD1.median.toFixed(1)} fresh_first_invocation_ms=${result.cold.first.NOD1.median.toFixed(1)} fresh_first_invocation_main_thread_ms=${result.cold.firstMain.NOD1.median.toFixed(1)}` : ""));
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
