// The `selfheal fix` binary for the e2e suites: its path, its environment and one run of it.

import { spawn } from "node:child_process";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT } from "./stack.mjs";

/** Built by `cargo test` (scripts/test.sh runs it before the e2e suites); SELFHEAL_BIN overrides. */
export const SELFHEAL_BIN = process.env.SELFHEAL_BIN ?? join(ROOT, "target/debug/selfheal");

/** The fixer's environment: ours with the local API token and `extra`, without NODE_TEST_CONTEXT,
 *  which node:test sets for its children and which would turn a sample repository's own
 *  `node --test` into a sub-reporter that always exits 0. */
export function fixerEnv(extra = {}) {
  const env = { ...process.env, SELFHEAL_API_TOKEN: LOCAL_API_TOKEN, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

/** Runs `selfheal fix --json <args>` once; resolves {code, stderr, report} (report: the parsed
 *  JSON on stdout, or null when there is none). */
export function runFixer(args, env = fixerEnv()) {
  return new Promise((resolve) => {
    const child = spawn(SELFHEAL_BIN, ["fix", "--json", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => {
      let report = null;
      try {
        report = JSON.parse(stdout);
      } catch {}
      resolve({ code, stderr, report });
    });
  });
}
