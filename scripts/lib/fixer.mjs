// The `selfheal fix` binary for the e2e suites: its path, its environment, one run of it, and a
// sample repository with a local bare remote to fix.

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT } from "./stack.mjs";

/** Built by `cargo test` (scripts/test.sh runs it before the e2e suites); SELFHEAL_BIN overrides. */
export const SELFHEAL_BIN = process.env.SELFHEAL_BIN ?? join(ROOT, "target/debug/selfheal");

/** `git -C cwd args…`, its stdout trimmed. */
export const git = (cwd, ...args) => execFileSync("git", ["-C", cwd, ...args], { encoding: "utf8" }).trim();

/** Writes `text` to `path`, making its folder. */
export const write = (path, text) => {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
};

/**
 * A git repository at `repo` holding `files` ({relative path: text}) as one commit tagged `tag` on
 * `main`, cloned to the bare remote `bare` (origin, HEAD → main).
 */
export function sampleRepo(repo, bare, files, { tag = "v1", message = "v1" } = {}) {
  for (const [path, text] of Object.entries(files)) write(join(repo, path), text);
  git(join(repo, ".."), "init", "--quiet", "-b", "main", repo);
  git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A");
  git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", message);
  git(repo, "tag", tag);
  execFileSync("git", ["clone", "--quiet", "--bare", repo, bare]);
  git(repo, "remote", "add", "origin", bare);
  git(repo, "fetch", "--quiet", "origin");
  git(repo, "remote", "set-head", "origin", "main");
}

/** Whether branch `b` exists on the bare remote (the GitHub stand-in's `branchExists`). */
export const branchOn = (bare) => (b) => {
  try {
    execFileSync("git", ["--git-dir", bare, "rev-parse", "--verify", "--quiet", `refs/heads/${b}`]);
    return true;
  } catch {
    return false;
  }
};

/** The fixer's environment: ours with the local API token and `extra`, without NODE_TEST_CONTEXT,
 *  which node:test sets for its children and which would turn a sample repository's own
 *  `node --test` into a sub-reporter that always exits 0 (the verification would then see every
 *  test pass). */
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
