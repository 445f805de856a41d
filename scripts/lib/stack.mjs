// Starts and drives the whole selfheal stack locally: four `wrangler dev` processes (demo producer,
// tail Worker, cron Worker, agent-runner) sharing one local D1 (`--persist-to`) and one dev registry
// (tail delivery and the Queue cross processes through it). Used by `npm start` and the e2e tests.
//
// The Workers must be built first (scripts/build-worker.sh); processes start with
// SELFHEAL_PREBUILT=1 so their [build] step is a no-op and the first response comes in ~2 s.

import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
export const LOCAL_API_TOKEN = "selfheal-local-dev-token"; // documented local default (.dev.vars)

const WORKERS = {
  tail: { config: "tail-worker/wrangler.toml" },
  runner: { config: "wrangler.toml" },
  scheduled: { config: "scheduled/wrangler.toml" },
  producer: { config: "demo/producer/wrangler.toml" },
};

const baseEnv = (stateDir) => ({
  ...process.env,
  SELFHEAL_PREBUILT: "1",
  WRANGLER_REGISTRY_PATH: join(stateDir, "registry"),
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_LOG_SANITIZE: "true",
  NO_COLOR: "1",
});

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs wrangler to completion; rejects with its output on a non-zero exit. */
export function wrangler(args, { stateDir, timeoutMs = 120_000 } = {}) {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [WRANGLER, ...args], {
      cwd: ROOT,
      env: baseEnv(stateDir ?? join(ROOT, ".selfheal/tmp")),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      code === 0 ? ok(out) : fail(new Error(`wrangler ${args.join(" ")} exited ${code}:\n${out}`));
    });
  });
}

/** Applies migrations/ to the local D1 in `persistDir`. */
export async function migrate(stateDir) {
  const persist = join(stateDir, "persist");
  return wrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist, "-c", "wrangler.toml"], {
    stateDir,
  });
}

/**
 * Rows of a statement on the local D1 (through `wrangler d1 execute --json`). The Workers write the
 * same SQLite file from their own processes, so a statement may find it locked (`SQLITE_BUSY`; seen
 * while the ingest consumer retried against an injected fault): such a statement did not run, and
 * it is tried again, up to 20 times half a second apart.
 */
export async function d1(stateDir, sql) {
  const persist = join(stateDir, "persist");
  const args = ["d1", "execute", "DB", "--local", "--persist-to", persist, "-c", "wrangler.toml", "--json", "--command", sql];
  let out;
  for (let attempt = 1; ; attempt++) {
    try {
      out = await wrangler(args, { stateDir });
      break;
    } catch (e) {
      if (attempt >= 20 || !/SQLITE_BUSY|database is locked/.test(e.message)) throw e;
      await sleep(500);
    }
  }
  const start = out.indexOf("[");
  const parsed = JSON.parse(out.slice(start));
  return parsed.flatMap((r) => r.results ?? []);
}

/**
 * Every file of the local D1 storage, as bytes (SQLite database and WAL files). Only D1: the
 * persistence folder also holds miniflare's own local observability store, which keeps the raw
 * traces of every Worker it runs (the producer's URLs and headers included) and is not selfheal's.
 */
export function d1Files(stateDir) {
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else files.push({ path: p, bytes: readFileSync(p) });
    }
  };
  walk(join(stateDir, "persist", "v3", "d1"));
  return files;
}

async function waitHttp(url, { timeoutMs = 90_000, child, name, logPath }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`${name} exited (${child.exitCode}) before serving; see ${logPath}:\n${tail(logPath)}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${name} did not answer at ${url}; see ${logPath}:\n${tail(logPath)}`);
      await sleep(200);
    }
  }
}

function tail(path, lines = 30) {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/**
 * Starts the four Workers. Options:
 *  - stateDir: folder for D1 persistence, the dev registry and logs (wiped first when fresh=true);
 *  - runnerVars / tailVars / scheduledVars: extra `--var KEY:VALUE` pairs, e.g. { SELFHEAL_DAILY_CAP: "2" };
 *  - ports: fixed ports { producer, tail, scheduled, runner } (free ones otherwise);
 *  - extra: more Workers to start, { name: "path/to/wrangler.toml" } (reachable as urls[name]);
 *  - warmupPath: the producer path requested until the tail Worker has written a delivery count
 *    ("/health" by default). With SELFHEAL_TRAFFIC_FLUSH_SECS > 0 healthy items are written only
 *    after that many seconds, so give a path that fails (its event is written at once).
 * Returns { ports, urls, api(path), cron(), producer(path, init), settle(), stop(), logs }.
 */
export async function startStack({
  stateDir,
  fresh = true,
  runnerVars = {},
  tailVars = {},
  scheduledVars = {},
  ports = {},
  extra = {},
  warmupPath = "/health",
} = {}) {
  if (fresh) rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(join(stateDir, "registry"), { recursive: true });
  mkdirSync(join(stateDir, "logs"), { recursive: true });
  await migrate(stateDir);

  const children = [];
  const urls = {};
  const allPorts = {};
  const stop = async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
    await Promise.all(
      children.map(
        (c) =>
          new Promise((r) => {
            if (c.exitCode !== null) return r();
            const t = setTimeout(() => {
              c.kill("SIGKILL");
              r();
            }, 5000);
            c.on("exit", () => {
              clearTimeout(t);
              r();
            });
          }),
      ),
    );
  };

  try {
    // Tail first: the producer resolves its tail consumer through the registry.
    for (const name of ["tail", "runner", "scheduled", "producer", ...Object.keys(extra)]) {
      const port = ports[name] ?? (await freePort());
      const inspector = await freePort();
      // Local defaults: the tail writes its traffic counts with every invocation (tests check exact
      // counts at once; production aggregates for SELFHEAL_TRAFFIC_FLUSH_SECS), and the gate runs in
      // shadow mode (it decides and records; tickets and jobs are as before), unless a caller says.
      const defaults = {
        tail: { SELFHEAL_TRAFFIC_FLUSH_SECS: "0" },
        scheduled: { SELFHEAL_GATE_MODE: "shadow" },
      };
      const vars = {
        ...(defaults[name] ?? {}),
        ...({ runner: runnerVars, tail: tailVars, scheduled: scheduledVars }[name] ?? {}),
      };
      const args = [
        WRANGLER, "dev", "-c", WORKERS[name]?.config ?? extra[name],
        "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspector),
        "--persist-to", join(stateDir, "persist"),
        "--show-interactive-dev-session=false", "--log-level", "log",
        ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      ];
      const logPath = join(stateDir, "logs", `${name}.log`);
      const fd = openSync(logPath, "a");
      const child = spawn(process.execPath, args, {
        cwd: ROOT,
        env: baseEnv(stateDir),
        stdio: ["ignore", fd, fd],
        detached: false,
      });
      children.push(child);
      allPorts[name] = port;
      urls[name] = `http://127.0.0.1:${port}`;
      await waitHttp(urls[name] + "/", { child, name, logPath });
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const api = async (path, { token = LOCAL_API_TOKEN } = {}) => {
    const res = await fetch(urls.runner + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const body = await res.json();
    if (!res.ok) throw Object.assign(new Error(`GET ${path}: ${res.status} ${JSON.stringify(body)}`), { status: res.status });
    return body;
  };
  const cron = async () => {
    const res = await fetch(`${urls.scheduled}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent("*/5 * * * *")}`);
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`cron trigger: ${res.status}`);
  };
  const producer = (path, init) => fetch(urls.producer + path, init);
  // The tail Worker hands events to the ingest Queue; its consumer writes them a moment later
  // (max_batch_timeout). settle() waits until every message the tail Worker logged as sent has
  // been applied (or parked from the dead-letter queue).
  const sentMessages = () => {
    let n = 0;
    for (const m of readFileSync(join(stateDir, "logs", "tail.log"), "utf8").matchAll(/ messages=(\d+)/g)) n += Number(m[1]);
    return n;
  };
  const settle = async ({ timeoutMs = 60_000 } = {}) => {
    await sleep(300); // the tail's log line reaches the file through wrangler
    const sent = sentMessages();
    await until(
      async () => {
        const days = await api("/api/ingest");
        return days.reduce((n, d) => n + (d.messages ?? 0) + (d.malformed_messages ?? 0) + (d.dead_messages ?? 0), 0) >= sent;
      },
      `the ingest queue to drain (${sent} messages sent)`,
      { timeoutMs, everyMs: 200 },
    );
  };

  // Tail delivery crosses processes through the registry: wait until the tail Worker has seen one.
  const deadline = Date.now() + 60_000;
  for (let i = 0; ; i++) {
    await (await producer(`${warmupPath}?warmup=${i}`)).arrayBuffer();
    const ingest = await api("/api/ingest");
    if (ingest.some((d) => d.items > 0)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`tail Worker never received a TraceItem; see ${join(stateDir, "logs")}`);
    }
    await sleep(300);
  }
  // Warm-up requests still on the ingest Queue land before the caller counts anything.
  await settle();

  return { ports: allPorts, urls, api, cron, producer, settle, stop, stateDir, logs: join(stateDir, "logs") };
}

/** Polls `fn` until it returns a truthy value (returned) or the time runs out (throws `what`). */
export async function until(fn, what, { timeoutMs = 30_000, everyMs = 250 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Total `items` the tail Worker has received (ops_ingest_stats). */
export async function ingestedItems(stack) {
  const days = await stack.api("/api/ingest");
  return days.reduce((n, d) => n + d.items, 0);
}
