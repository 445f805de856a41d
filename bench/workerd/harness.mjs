// Starts one workerd (through miniflare, the library `wrangler dev` runs workerd with) holding:
//   driver          bench/workerd/driver.mjs: holds the batches, calls env.<T>.tail(batch) over RPC
//   selfheal-tail-<label>    a tail Worker build (index.js + index_bg.wasm), options read from
//                            tail-worker/wrangler.toml as wrangler builds them, with the local D1
//   bench-tail-nod1-<label>  the same build wrapped by bench/workerd/tail-nod1.mjs: D1 stubbed
// (one pair per build, so builds are compared in the same process, round by round)
//   bench-noop      bench/workerd/noop.mjs: a tail consumer that does nothing
// and reads the CPU time of the workerd process from /proc: the sum over its threads of
// /proc/<pid>/task/<tid>/schedstat (ns on CPU, not tick-sampled), and that of its main thread
// (tid = pid) alone, which runs every isolate (JS, wasm, GC); the other threads are V8's
// background workers (optimizing compilation of hot wasm/JS) and I/O.

// Attribution (not CPU): `start({ inspectorPort })` exposes each isolate to the DevTools protocol
// at ws://127.0.0.1:<port>/core:user:<worker name>; Profiler.start/stop there gives a V8 CPU
// profile of that isolate (function names need a build with `strip = false`). Its times are wall
// time between samples, and an attached inspector makes console.log much dearer, so use it for
// shares, never for the figures.

import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { readFileSync, readdirSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_getMiniflareWorkerOptions } from "wrangler";

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(HERE, "../..");

/** ns on CPU of every thread of `pid`, by thread id. */
export function threadCpu(pid) {
  const out = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.set(tid, Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]));
    } catch {
      // thread exited between readdir and read
    }
  }
  return out;
}

/** utime+stime of the whole process (clock ticks, includes exited threads). */
export function processTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** CPU spent by `pid` between two `threadCpu` snapshots: { totalNs, perThread: Map }. */
export function cpuDelta(before, after) {
  const perThread = new Map();
  let totalNs = 0;
  for (const [tid, ns] of after) {
    const d = ns - (before.get(tid) ?? 0);
    perThread.set(tid, d);
    totalNs += d;
  }
  return { totalNs, perThread };
}

function childWorkerd() {
  const pids = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (comm === "workerd" && ppid === process.pid) pids.push(Number(p));
    } catch {
      // process gone
    }
  }
  return pids;
}

/**
 * Starts workerd with the driver, the no-op consumer and, for every build of `builds`
 * ({ label: dir with the tail Worker's index.js and index_bg.wasm }), the arms named in `kinds`:
 * "TAIL" (the build as deployed, with the local D1) and "NOD1" (the build with the D1 stub). The
 * driver reaches an arm as `<kind>_<label>` (e.g. NOD1_main). `stateDir` holds the local D1
 * (migrated by `freshState`). Returns { pid, bootCpu, run(target, from, count, cycle),
 * load(batches), stubStats(label), logs, dispose }; `bootCpu` is what workerd spent from its start
 * until every Worker was loaded (a new process starts at zero).
 */
export async function start({ builds = { main: join(ROOT, "tail-worker/build") }, kinds = ["TAIL", "NOD1"], stateDir, inspectorPort } = {}) {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(join(ROOT, "tail-worker/wrangler.toml"));
  // The build is already bundled by worker-build: give its two modules explicitly (as wrangler's
  // bundle would), so the rule-based module collection (no longer accepted by miniflare 5) is moot.
  delete workerOptions.rootPath;
  delete workerOptions.modulesRules;
  const compatibilityDate = workerOptions.compatibilityDate;
  const arms = [];
  for (const [label, buildDir] of Object.entries(builds)) {
    const tailModules = [
      { type: "ESModule", path: join(buildDir, "index.js") },
      { type: "CompiledWasm", path: join(buildDir, "index_bg.wasm") },
    ];
    if (kinds.includes("TAIL")) {
      arms.push({ target: `TAIL_${label}`, worker: { ...workerOptions, name: `selfheal-tail-${label}`, modulesRoot: buildDir, modules: tailModules } });
    }
    if (kinds.includes("NOD1")) {
      const nod1 = join(buildDir, "bench-tail-nod1.mjs"); // a module name next to index.js; nothing is written there
      arms.push({
        target: `NOD1_${label}`,
        worker: {
          name: `bench-tail-nod1-${label}`,
          compatibilityDate,
          bindings: workerOptions.bindings,
          modulesRoot: buildDir,
          modules: [{ type: "ESModule", path: nod1, contents: readFileSync(join(HERE, "tail-nod1.mjs"), "utf8") }, ...tailModules],
        },
      });
    }
  }
  const tailLogs = [];
  const before = new Set(childWorkerd());
  // wrangler 4.164 bundles miniflare 5 and hands it wrangler-style (v4) options through this converter.
  const mf = new Miniflare(convertV4MiniflareOptions({
    resourcePersistencePath: join(stateDir, "persist/v3"), // where `wrangler d1 migrations apply --persist-to` wrote
    inspectorPort,
    handleStructuredLogs: ({ message }) => tailLogs.push(message),
    workers: [
      {
        name: "driver",
        modules: true,
        modulesRoot: HERE,
        scriptPath: join(HERE, "driver.mjs"),
        compatibilityDate,
        serviceBindings: { NOOP: "bench-noop", ...Object.fromEntries(arms.map((a) => [a.target, a.worker.name])) },
      },
      // The no-op consumer has the D1 binding too, so miniflare's D1 services exist in every
      // configuration and boot CPU differs only by the tail Worker's own script.
      { name: "bench-noop", modules: true, modulesRoot: HERE, scriptPath: join(HERE, "noop.mjs"), compatibilityDate, d1Databases: workerOptions.d1Databases },
      ...arms.map((a) => a.worker),
      // With no tail arm, a second no-op Worker stands in for it (miniflare adds per-Worker services).
      ...(arms.length ? [] : [{ name: "bench-placeholder", modules: true, modulesRoot: HERE, scriptPath: join(HERE, "noop.mjs"), compatibilityDate }]),
    ],
  }));
  await mf.ready;
  const fresh = childWorkerd().filter((p) => !before.has(p));
  if (fresh.length !== 1) throw new Error(`expected one new workerd child, found ${fresh.join(",") || "none"}`);
  const pid = fresh[0];
  const boot = threadCpu(pid);
  const bootCpu = { totalNs: [...boot.values()].reduce((a, b) => a + b, 0), mainNs: boot.get(String(pid)) ?? 0 };

  const post = async (path, body) => {
    const res = await mf.dispatchFetch(`http://bench${path}`, { method: "POST", body });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
  };
  return {
    mf,
    pid,
    bootCpu,
    logs: tailLogs,
    stubStats: async (label) => (await (await mf.getWorker(`bench-tail-nod1-${label}`)).fetch("http://stub/")).json(),
    load: (batches) => post("/load", JSON.stringify(batches)),
    /** Delivers `count` batches to `target`; CPU of workerd and wall time of the whole call. */
    async run(target, from, count, cycle, base = 0) {
      const t0 = threadCpu(pid);
      const ticks0 = processTicks(pid);
      const w0 = performance.now();
      const { items } = await post(`/run?target=${target}&from=${from}&count=${count}${cycle ? `&cycle=${cycle}` : ""}&base=${base}`);
      const wallMs = performance.now() - w0;
      const d = cpuDelta(t0, threadCpu(pid));
      return { items, wallMs, ...d, mainNs: d.perThread.get(String(pid)) ?? 0, ticks: processTicks(pid) - ticks0 };
    },
    dispose: () => mf.dispose(),
  };
}

/** Applies migrations/ to a fresh local D1 under `stateDir` (wrangler, as `npm start` does). */
export async function freshState(stateDir) {
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });
  const { migrate } = await import(join(ROOT, "scripts/lib/stack.mjs"));
  await migrate(stateDir);
}
