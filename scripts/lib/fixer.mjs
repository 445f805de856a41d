// Shared by the e2e tests of `selfheal fix`: a sample repository with a local bare remote, the
// fixer's environment, and one fixer run. (tests/e2e/repro.test.mjs uses them; fixer.test.mjs has
// its own copies from before, which these replace.)

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

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

/** The fixer's environment: ours plus `extra`, without NODE_TEST_CONTEXT, which node:test sets
 *  for its children and which would turn the sample repository's own `node --test` into a
 *  sub-reporter that always exits 0 (the verification would then see every test pass). */
export function fixerEnv(extra) {
  const env = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

/** Runs the `selfheal` binary `bin` with `args` (ending in `--json`'s report); resolves
 *  {code, stderr, report}. */
export function runFixer(bin, args, env) {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", "pipe"] });
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
