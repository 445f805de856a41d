// CPU of the tail Worker's tail() handler in workerd, per TraceItem warm and for the first
// invocation of a fresh isolate. Run through scripts/bench-workerd.sh (which documents the method).
// Options: --build LABEL=DIR (repeatable; a tail Worker build: index.js + index_bg.wasm; default
// main=tail-worker/build), --rounds N, --per-run K (batches of 100 per measured run), --warmup N
// (batches of 100 per arm before measuring), --batch-size N (items per batch in the warm phase:
// the same number of items per run in smaller batches; default 100), --cold N (trials; each boots, per build, a baseline workerd and one
// per fresh-isolate case: 100 items stubbed, 1 item stubbed, 100 items local D1), --state-dir
// DIR, --json FILE (results). Several builds are measured side by side: the warm rounds visit every
// build's arms in one workerd (rotating order), the fresh-isolate trials alternate builds, so a
// change in the machine's load hits all builds alike.

import { parseArgs } from "node:util";
import { join } from "node:path";
import { rmSync, writeFileSync } from "node:fs";
import { ROOT, freshState, start } from "./harness.mjs";
import { makeBatches, summary } from "./batches.mjs";

const { values: opt } = parseArgs({
  options: {
    build: { type: "string", multiple: true, default: [`main=${join(ROOT, "tail-worker/build")}`] },
    rounds: { type: "string", default: "21" },
    "per-run": { type: "string", default: "10" },
    warmup: { type: "string", default: "40" },
    "batch-size": { type: "string", default: "100" },
    cold: { type: "string", default: "7" },
    "state-dir": { type: "string", default: join(ROOT, `.selfheal/bench-workerd-${process.pid}`) },
    json: { type: "string" },
  },
});
// In command-line order (an object would put numeric labels such as "3" and "2" first, sorted).
const BUILDS = opt.build.map((b) => {
  const i = b.indexOf("=");
  const label = b.slice(0, i);
  if (i < 1 || !/^[A-Za-z0-9_-]+$/.test(label)) throw new Error(`--build wants LABEL=DIR with LABEL in [A-Za-z0-9_-], got ${b}`);
  return [label, b.slice(i + 1)];
});
const builds = Object.fromEntries(BUILDS);
const LABELS = BUILDS.map(([label]) => label);
const ROUNDS = Number(opt.rounds);
const PER_RUN = Number(opt["per-run"]);
const WARMUP = Number(opt.warmup);
const COLD = Number(opt.cold);
const BATCH = Number(opt["batch-size"]); // items per batch in the warm phase

const stateDir = opt["state-dir"];
const ms = (ns) => ns / 1e6;
const rotate = (xs, k) => xs.map((_, i) => xs[(i + k) % xs.length]);

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

// Batches 0-19: 100 items each (fresh-isolate trials; the warm phase too unless --batch-size).
const batches = makeBatches({ count: 20, size: 100, seed: 1 });
// Batch 20: one item with an uncaught exception (the whole pipeline runs), for the fixed cost of a
// first invocation.
const ONE = batches.length;
batches.push([structuredClone(batches[0].find((it) => it.outcome === "exception"))]);
// The warm phase's batches: 2,000 items in batches of --batch-size (the first 20 when it is 100).
const WARM_BASE = BATCH === 100 ? 0 : batches.length;
const WARM_N = BATCH === 100 ? 20 : Math.ceil(2000 / BATCH);
if (BATCH !== 100) batches.push(...makeBatches({ count: WARM_N, size: BATCH, seed: 2 }));
// Batches per measured run: --per-run counts batches of 100; smaller batches keep the items per run.
const RUN_BATCHES = Math.max(1, Math.round((PER_RUN * 100) / BATCH));
const WARMUP_BATCHES = Math.max(1, Math.round((WARMUP * 100) / BATCH));
const log = (...a) => console.log(...a);
for (const [label, dir] of BUILDS) log(`bench-workerd: build ${label} = ${dir}`);
log(`batches: ${JSON.stringify(summary(batches.slice(WARM_BASE, WARM_BASE + WARM_N)))}`);

async function warm() {
  await freshState(stateDir);
  const h = await start({ builds, kinds: ["TAIL", "NOD1"], stateDir });
  try {
    await h.load(batches);
    const arms = ["NOOP", ...LABELS.flatMap((l) => [`NOD1_${l}`, `TAIL_${l}`])];
    for (const arm of arms) {
      for (let done = 0; done < WARMUP_BATCHES; done += RUN_BATCHES) await h.run(arm, done % WARM_N, RUN_BATCHES, WARM_N, WARM_BASE);
    }
    const logsBefore = h.logs.length;
    const stubBefore = Object.fromEntries(await Promise.all(LABELS.map(async (l) => [l, await h.stubStats(l)])));
    const per = { NOOP: [] };
    for (const l of LABELS) for (const k of ["NOD1", "TAIL"]) for (const v of ["", "_main", "_wall"]) per[`${k}${v}_${l}`] = [];
    for (const l of LABELS.slice(1)) per[`ratio_${l}`] = [];
    let from = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const res = {};
      for (const arm of rotate(arms, r)) res[arm] = await h.run(arm, from, RUN_BATCHES, WARM_N, WARM_BASE);
      from = (from + RUN_BATCHES) % WARM_N;
      const { items } = res.NOOP;
      per.NOOP.push(ms(res.NOOP.totalNs) / items);
      for (const l of LABELS) {
        for (const k of ["NOD1", "TAIL"]) {
          const x = res[`${k}_${l}`];
          if (x.items !== items) throw new Error(`${k}_${l} got ${x.items} items, NOOP ${items}`);
          per[`${k}_${l}`].push(ms(x.totalNs - res.NOOP.totalNs) / items);
          per[`${k}_main_${l}`].push(ms(x.mainNs - res.NOOP.mainNs) / items);
          per[`${k}_wall_${l}`].push((x.wallMs - res.NOOP.wallMs) / items);
        }
      }
      // Same round, same batches: each build's stubbed CPU relative to the first build's.
      const ref = res[`NOD1_${LABELS[0]}`].totalNs - res.NOOP.totalNs;
      for (const l of LABELS.slice(1)) per[`ratio_${l}`].push((res[`NOD1_${l}`].totalNs - res.NOOP.totalNs) / ref);
    }
    // What the pipeline made of the measured batches (every tail arm logs one line per batch).
    const verdicts = { items: 0, events: 0, noise: 0, malformed: 0 };
    for (const line of h.logs.slice(logsBefore)) {
      const m = /^selfheal tail: items=(\d+) events=(\d+) noise=(\d+) malformed=(\d+)/.exec(line);
      if (m) ["items", "events", "noise", "malformed"].forEach((k, i) => (verdicts[k] += Number(m[i + 1])));
    }
    const failures = h.logs.filter((l) => /selfheal tail: (?!items=)/.test(l));
    if (failures.length) throw new Error(`the tail Worker reported errors:\n${failures.slice(0, 5).join("\n")}`);
    const d1 = {};
    for (const l of LABELS) {
      const after = await h.stubStats(l);
      const n = after.batches - stubBefore[l].batches;
      d1[l] = { statementsPerBatch: (after.statements - stubBefore[l].statements) / n, bodyBytesPerBatch: Math.round((after.bodyBytes - stubBefore[l].bodyBytes) / n) };
    }
    return { verdicts, d1, per };
  } finally {
    await h.dispose();
  }
}

/**
 * One fresh workerd: its boot CPU, then deliveries to `target` after two to NOOP (the first call
 * through the driver and RPC is not the tail Worker's; the second is the delivery cost subtracted):
 * the first one (100 items, or the one-item batch when `one`), the second, the tenth.
 */
async function coldTrial(label, kind, one = false) {
  const h = await start({ builds: label ? { [label]: builds[label] } : {}, kinds: [kind], stateDir });
  try {
    if (!label) return { bootNs: h.bootCpu.totalNs, bootMainNs: h.bootCpu.mainNs };
    const target = `${kind}_${label}`;
    await h.load(batches);
    await h.run("NOOP", one ? ONE : 0, 1);
    const noop = await h.run("NOOP", one ? ONE : 1, 1);
    const first = await h.run(target, one ? ONE : 2, 1);
    const second = await h.run(target, 3, 1);
    let last;
    for (let i = 4; i < 12; i++) last = await h.run(target, i, 1);
    return { bootNs: h.bootCpu.totalNs, bootMainNs: h.bootCpu.mainNs, noop, first, second, last };
  } finally {
    await h.dispose();
  }
}

// Cases of a fresh isolate: 100 items with D1 stubbed, 1 item with D1 stubbed, 100 items with local D1.
const CASES = { NOD1: ["NOD1", false], NOD1_one: ["NOD1", true], TAIL: ["TAIL", false] };

async function cold() {
  const keys = ["startup", "startupMain", "first", "firstMain", "firstWall", "second", "secondMain", "tenth", "tenthMain"];
  const out = Object.fromEntries(keys.map((k) => [k, {}]));
  const push = (k, key, v) => (out[k][key] ??= []).push(v);
  for (let t = 0; t < COLD; t++) {
    for (const label of rotate(LABELS, t)) {
      // Startup = boot CPU minus that of the baseline booted just before (no-op Worker in place).
      const base = await coldTrial(null, "NOD1");
      for (const name of rotate(Object.keys(CASES), t)) {
        const [kind, one] = CASES[name];
        const r = await coldTrial(label, kind, one);
        const key = `${name}_${label}`;
        push("startup", label, ms(r.bootNs - base.bootNs));
        push("startupMain", label, ms(r.bootMainNs - base.bootMainNs));
        push("first", key, ms(r.first.totalNs - r.noop.totalNs));
        push("firstMain", key, ms(r.first.mainNs - r.noop.mainNs));
        push("firstWall", key, r.first.wallMs - r.noop.wallMs);
        push("second", key, ms(r.second.totalNs - r.noop.totalNs));
        push("secondMain", key, ms(r.second.mainNs - r.noop.mainNs));
        push("tenth", key, ms(r.last.totalNs - r.noop.totalNs));
        push("tenthMain", key, ms(r.last.mainNs - r.noop.mainNs));
      }
    }
  }
  return out;
}

try {
  const w = await warm();
  log(`pipeline verdicts of the measured batches: ${JSON.stringify(w.verdicts)}; D1 batch per tail() call (stub): ${JSON.stringify(w.d1)}`);
  log(`\nWARM, CPU ms per TraceItem (batches of ${BATCH}, ${RUN_BATCHES} batches per run, ${ROUNDS} rounds; minus the no-op consumer's run in the same round):`);
  for (const l of LABELS) {
    log(`  [${l}] tail handler, D1 stubbed   all threads  ${fmt(stats(w.per[`NOD1_${l}`]), 4)}`);
    log(`  [${l}]                            main thread  ${fmt(stats(w.per[`NOD1_main_${l}`]), 4)}`);
    log(`  [${l}] tail + local D1 (SQLite)   all threads  ${fmt(stats(w.per[`TAIL_${l}`]), 4)}`);
    log(`  [${l}]                            main thread  ${fmt(stats(w.per[`TAIL_main_${l}`]), 4)}`);
    log(`  [${l}] wall ms per item (stubbed / local D1)   ${stats(w.per[`NOD1_wall_${l}`]).median.toFixed(4)} / ${stats(w.per[`TAIL_wall_${l}`]).median.toFixed(4)} (median)`);
  }
  log(`  delivery to the no-op consumer, all threads  ${fmt(stats(w.per.NOOP), 4)}  (subtracted above)`);
  for (const l of LABELS.slice(1)) log(`  [${l}] / [${LABELS[0]}], D1 stubbed, per round  ${fmt(stats(w.per[`ratio_${l}`]), 2)}`);
  const c = COLD > 0 ? await cold() : null;
  if (c) {
    log(`\nFRESH ISOLATE, CPU ms (${COLD} fresh workerd processes per line; delivery cost subtracted):`);
    for (const l of LABELS) {
      const row = (title, xs) => log(`  [${l}] ${title.padEnd(56)} ${fmt(stats(xs), 1)}`);
      row("startup, all threads (wasm compile+instantiate, eval)", c.startup[l]);
      row("startup, main thread", c.startupMain[l]);
      row("first invocation, 100 items, D1 stubbed, all threads", c.first[`NOD1_${l}`]);
      row("first invocation, 100 items, D1 stubbed, main thread", c.firstMain[`NOD1_${l}`]);
      row("first invocation, 100 items, D1 stubbed, wall", c.firstWall[`NOD1_${l}`]);
      row("first invocation, 1 item,    D1 stubbed, all threads", c.first[`NOD1_one_${l}`]);
      row("first invocation, 1 item,    D1 stubbed, main thread", c.firstMain[`NOD1_one_${l}`]);
      row("first invocation, 100 items, local D1,   all threads", c.first[`TAIL_${l}`]);
      row("first invocation, 100 items, local D1,   main thread", c.firstMain[`TAIL_${l}`]);
      row("2nd invocation, 100 items, D1 stubbed, all threads", c.second[`NOD1_${l}`]);
      row("2nd invocation, 100 items, D1 stubbed, main thread", c.secondMain[`NOD1_${l}`]);
      row("10th invocation, 100 items, D1 stubbed, all threads", c.tenth[`NOD1_${l}`]);
      row("10th invocation, 100 items, D1 stubbed, main thread", c.tenthMain[`NOD1_${l}`]);
    }
  }
  const mapStats = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, stats(v)]));
  const result = {
    builds: BUILDS,
    batchSize: BATCH,
    batches: summary(batches.slice(WARM_BASE, WARM_BASE + WARM_N)),
    verdicts: w.verdicts,
    d1: w.d1,
    warm: mapStats(w.per),
    cold: c && Object.fromEntries(Object.entries(c).map(([k, v]) => [k, mapStats(v)])),
  };
  if (opt.json) writeFileSync(opt.json, JSON.stringify(result, null, 1));
  for (const l of LABELS) {
    log(
      `bench-workerd [${l}]: warm_ms_per_item=${result.warm[`NOD1_${l}`].median.toFixed(4)} warm_ms_per_item_with_local_d1=${result.warm[`TAIL_${l}`].median.toFixed(4)}` +
        (c ? ` fresh_startup_ms=${result.cold.startup[l].median.toFixed(1)} fresh_first_invocation_ms=${result.cold.first[`NOD1_${l}`].median.toFixed(1)} fresh_first_invocation_main_thread_ms=${result.cold.firstMain[`NOD1_${l}`].median.toFixed(1)}` : ""),
    );
  }
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
