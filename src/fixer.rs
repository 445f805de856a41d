//! `selfheal fix`: the local fixer, run on the owner's machine (feature `cli`).
//!
//! One pass ([`run_once`]):
//! 1. **lease** the next ready run from the agent-runner (`POST /api/runs/lease`; one fixer at a
//!    time, enforced there by a unique index; the lease is renewed while working);
//! 2. **prepare** a git worktree of the repository on branch `selfheal/<incident>` at the commit of
//!    the incident's release (a tag, else a commit whose message names it), else the default branch;
//!    write the task (`task.json`, `task.md`) beside it, never inside it;
//! 3. run the **agent command** (any command; `{task_file}`, `{task_md}`, `{workdir}` and
//!    `{diagnosis_file}` are filled in) in the worktree, killed at the wall-time limit; read its
//!    usage from its documented machine output ([`crate::fixing::usage`]) and end the run as
//!    `budget_exhausted` when it went over `--max-turns` / `--max-usd`;
//! 4. **verify** (an agent that changed nothing but wrote a diagnosis ends the run as `diagnosed`):
//!    the change must add or modify a test file; the test command must **fail** on the
//!    base commit with only those test files applied (the bug is reproduced) and **pass** with the
//!    whole change;
//!    then, where the repository is a Worker, the **fingerprint reproduction**
//!    ([`crate::fixing::repro`]): the incident's sampled requests replayed under `wrangler dev`
//!    must give its fingerprint on the base commit (else the run ends `not_reproduced`) and must
//!    not with the change;
//! 5. on success **push** the branch (never the default branch) and open a **draft** PR (never
//!    merge);
//! 6. follow the **PR's own CI** ([`crate::fixing::checks`]): its check runs on the head commit,
//!    polled until all are completed (`--ci-timeout-secs`); red checks are recorded, and with
//!    `--fix-ci N` the agent gets up to N more turns on them (steps 3–5 again in the same
//!    worktree on the same branch, the red checks' output appended to its task), else the run
//!    fails as `ci_failed: …`;
//!
//! then report `pr_opened` or `failed` (with why) to the agent-runner, which cools a failed
//! incident down. The tracker comment follows from the run's state (the cron's mirror).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::fixing::checks::{self, ChecksRound};
use crate::fixing::repro::{self, Reproduction};
use crate::fixing::usage::{AgentUsage, Budget, parse_usage};
use crate::github::{self, Outcome, Repo};
use crate::store::LeasedRun;

/// Templates for well-known coding-agent CLIs (`--agent claude` / `--agent codex`). Both write
/// their documented machine output to `$SELFHEAL_USAGE_FILE` (Claude Code `--output-format json`,
/// Codex `exec --json`), which [`crate::fixing::usage`] reads; Claude Code gets the run's limits
/// as its own `--max-turns` / `--max-budget-usd` when they are set.
pub const AGENT_TEMPLATES: &[(&str, &str)] = &[
    (
        "claude",
        "claude -p \"$(cat {task_md})\" --permission-mode acceptEdits --output-format json \
         ${SELFHEAL_MAX_TURNS:+--max-turns \"$SELFHEAL_MAX_TURNS\"} \
         ${SELFHEAL_MAX_USD:+--max-budget-usd \"$SELFHEAL_MAX_USD\"} > \"$SELFHEAL_USAGE_FILE\"",
    ),
    (
        "codex",
        "codex exec --json --full-auto \"$(cat {task_md})\" --output-last-message {diagnosis_file} \
         > \"$SELFHEAL_USAGE_FILE\"",
    ),
];

/// Longest output kept from a command for the evidence, bytes (the tail is kept).
const MAX_EVIDENCE_BYTES: usize = 4000;

/// Settings of one fixer.
#[derive(Debug, Clone)]
pub struct FixerConfig {
    /// Agent-runner base URL, e.g. `https://selfheal-agent-runner.example.workers.dev`.
    pub api: String,
    /// Its bearer token (`SELFHEAL_API_TOKEN`).
    pub token: String,
    /// Name reported with the lease (host or user).
    pub owner: String,
    /// The local checkout of the producer's repository.
    pub repo_dir: PathBuf,
    /// The git remote to fetch from and push to.
    pub remote: String,
    /// The agent command (a template name from [`AGENT_TEMPLATES`] or a shell command).
    pub agent_cmd: String,
    /// The test command, run with `sh -c` in a worktree.
    pub test_cmd: String,
    /// Wall-time limit of the agent command.
    pub agent_timeout: Duration,
    /// Wall-time limit of one test command run.
    pub test_timeout: Duration,
    /// Lease length asked for (renewed at each step).
    pub lease_ttl: Duration,
    /// Where worktrees and task files go.
    pub work_root: PathBuf,
    /// GitHub, for the draft PR; `None` → the branch is pushed and the result says so.
    pub github: Option<Repo>,
    /// The run's own limits in turns and dollars (`--max-turns`, `--max-usd`).
    pub budget: Budget,
    /// The fingerprint reproduction ([`crate::fixing::repro`]).
    pub repro: repro::Settings,
    /// How the draft PR's checks are followed (`timeout_secs` 0: not at all).
    pub ci: checks::Follow,
    /// Extra agent turns on red PR checks (`--fix-ci N`; 0: red checks fail the run).
    pub fix_ci: u32,
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixReport {
    /// The leased run, or `None` when nothing was ready.
    pub run_id: Option<i64>,
    /// `pr_opened`, `failed`, `budget_exhausted`, `diagnosed` (the agent changed nothing but wrote a
    /// diagnosis, posted fenced on the ticket), `not_reproduced` (the failure could not be made to
    /// happen locally) or `idle`.
    pub outcome: String,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// The draft PR.
    pub pr_url: Option<String>,
    /// Each verification step: what ran, its exit code and the tail of its output.
    pub evidence: Vec<Evidence>,
    /// Seconds per phase (`lease`, `prepare`, `agent`, `verify`, `publish`).
    pub timings: Vec<(String, f64)>,
    /// What the agent reported spending; `None`: it reported nothing (or did not run).
    pub usage: Option<AgentUsage>,
    /// The fingerprint reproduction, when verification got that far (its steps are in
    /// `evidence` too).
    pub reproduction: Option<Reproduction>,
    /// The draft PR's checks, one round per pushed head commit (empty: not followed).
    pub checks: Vec<ChecksRound>,
}

/// One command of the verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// What the step checks.
    pub step: String,
    /// Exit code (`None`: killed at the time limit, or a step that runs no command of its own:
    /// the fingerprint reproduction, whose text says what ran).
    pub exit_code: Option<i32>,
    /// Whether the step went the required way.
    pub ok: bool,
    /// Last bytes of stdout+stderr.
    pub output_tail: String,
}

/// A failure that ends the pass before a result can be reported (the API or git unusable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixError(pub String);

impl std::fmt::Display for FixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixError {}

/// Why a verified fix was not accepted (reported as `failed`).
struct Rejected(String);

/// The HTTP client of the fixer: statuses are answers, not errors; 30 s per request.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The agent-runner API.
struct Api<'a> {
    cfg: &'a FixerConfig,
    http: ureq::Agent,
}

impl Api<'_> {
    fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), FixError> {
        let url = format!("{}{path}", self.cfg.api.trim_end_matches('/'));
        let mut resp = self
            .http
            .post(&url)
            .header("authorization", &format!("Bearer {}", self.cfg.token))
            .send_json(body)
            .map_err(|e| FixError(format!("POST {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, value))
    }

    fn lease(&self) -> Result<Option<LeasedRun>, FixError> {
        let ttl = self.cfg.lease_ttl.as_secs();
        match self.post(
            "/api/runs/lease",
            &json!({ "owner": self.cfg.owner, "ttl_secs": ttl }),
        )? {
            (204, _) => Ok(None),
            (200, v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| FixError(format!("lease: unexpected body: {e}"))),
            (s, v) => Err(FixError(format!("lease: HTTP {s}: {v}"))),
        }
    }

    fn heartbeat(&self, run: &LeasedRun) -> Result<(), FixError> {
        let ttl = self.cfg.lease_ttl.as_secs();
        let body = json!({ "lease_id": run.lease_id, "state": "fixing", "ttl_secs": ttl });
        match self.post(&format!("/api/runs/{}/heartbeat", run.run_id), &body)? {
            (200, _) => Ok(()),
            (s, v) => Err(FixError(format!("lease lost (HTTP {s}: {v})"))),
        }
    }

    fn result(&self, run: &LeasedRun, report: &FixReport, diagnosis: &str) -> Result<(), FixError> {
        let body = json!({
            "lease_id": run.lease_id,
            "outcome": report.outcome,
            "pr_url": report.pr_url,
            "reason": report.reason,
            "diagnosis": crate::ticket::bounded(diagnosis),
            "evidence": report.evidence,
            "timings": report.timings,
            "usage": report.usage,
            "budget": self.cfg.budget,
            "checks": report.checks.iter().map(ChecksRound::summary).collect::<Vec<_>>(),
        });
        match self.post(&format!("/api/runs/{}/result", run.run_id), &body)? {
            (200, _) => Ok(()),
            (s, v) => Err(FixError(format!("result: HTTP {s}: {v}"))),
        }
    }
}

/// Output of a command run with a time limit.
struct Ran {
    code: Option<i32>,
    output: String,
}

/// Runs `sh -c <cmd>` in `dir` with `env`, killing its process group at `limit`.
fn run_shell(
    cmd: &str,
    dir: &Path,
    env: &[(&str, String)],
    limit: Duration,
) -> Result<Ran, FixError> {
    use std::os::unix::process::CommandExt;
    let out_path = dir.join(format!(".selfheal-out-{}", std::process::id()));
    let out = std::fs::File::create(&out_path).map_err(|e| FixError(format!("{e}")))?;
    let err = out.try_clone().map_err(|e| FixError(format!("{e}")))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| FixError(format!("spawn {cmd:?}: {e}")))?;
    let start = Instant::now();
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if start.elapsed() >= limit => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(FixError(format!("wait: {e}"))),
        }
    };
    let mut output = String::new();
    if let Ok(mut f) = std::fs::File::open(&out_path) {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        output = String::from_utf8_lossy(&bytes).into_owned();
    }
    let _ = std::fs::remove_file(&out_path);
    Ok(Ran { code, output })
}

/// SIGKILL to the process group `pgid` (the agent and every child it started). A `pgid` of 0 or 1
/// is refused: `kill(-1)` would signal every process of the user, and `kill(0)` our own group.
pub(crate) fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers and has no memory effects; the negative pid names
        // the process group that `process_group(0)` made this child the leader of.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

fn tail(s: &str) -> String {
    s[s.ceil_char_boundary(s.len().saturating_sub(MAX_EVIDENCE_BYTES))..].to_string()
}

/// The first 12 characters of a commit id or fingerprint (all of it when shorter), for messages.
fn short(id: &str) -> &str {
    &id[..id.floor_char_boundary(12)]
}

/// The evidence of one verification command.
fn evidence(step: String, ran: &Ran, ok: bool) -> Evidence {
    Evidence {
        step,
        exit_code: ran.code,
        ok,
        output_tail: tail(&ran.output),
    }
}

/// `git -C dir args…`, its stdout trimmed. Errors name the command and its stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String, FixError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| FixError(format!("git {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(FixError(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether a changed path is a test: a `test`/`tests`/`__tests__`/`spec` folder, or a file named
/// `*.test.*`, `*_test.*`, `*.spec.*` or `test_*`.
pub fn is_test_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let in_test_dir = lower
        .split('/')
        .rev()
        .skip(1)
        .any(|d| matches!(d, "test" | "tests" | "__tests__" | "spec" | "specs"));
    let name = lower.rsplit('/').next().unwrap_or_default();
    in_test_dir
        || name.contains(".test.")
        || name.contains("_test.")
        || name.contains(".spec.")
        || name.starts_with("test_")
}

/// The agent command for `spec`: a template name of [`AGENT_TEMPLATES`] or the command itself,
/// with `{task_file}`, `{task_md}`, `{workdir}` and `{diagnosis_file}` replaced (shell-quoted).
pub fn agent_command(
    spec: &str,
    task_file: &Path,
    task_md: &Path,
    workdir: &Path,
    diagnosis: &Path,
) -> String {
    let template = AGENT_TEMPLATES
        .iter()
        .find(|(name, _)| *name == spec)
        .map_or(spec, |(_, t)| t);
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    template
        .replace("{task_file}", &q(task_file))
        .replace("{task_md}", &q(task_md))
        .replace("{workdir}", &q(workdir))
        .replace("{diagnosis_file}", &q(diagnosis))
}

/// The default branch of `remote` (`refs/remotes/<remote>/HEAD`), else `main`.
fn default_branch(repo: &Path, remote: &str) -> String {
    git(
        repo,
        &[
            "symbolic-ref",
            "--short",
            &format!("refs/remotes/{remote}/HEAD"),
        ],
    )
    .ok()
    .and_then(|s| s.strip_prefix(&format!("{remote}/")).map(str::to_string))
    .unwrap_or_else(|| "main".to_string())
}

/// The base commit for a release: a tag of that name, else the newest commit whose message names
/// it, else the tip of the default branch. Returns (commit, how it was found).
fn base_commit(
    repo: &Path,
    remote: &str,
    release: Option<&str>,
    default: &str,
) -> Result<(String, String), FixError> {
    if let Some(rel) = release.filter(|r| !r.is_empty() && !r.starts_with('-')) {
        if let Ok(c) = git(
            repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/tags/{rel}^{{commit}}"),
            ],
        ) {
            return Ok((c, format!("tag {rel}")));
        }
        if let Ok(c) = git(
            repo,
            &[
                "log",
                "--all",
                "-n",
                "1",
                "--format=%H",
                "--fixed-strings",
                &format!("--grep={rel}"),
            ],
        ) && !c.is_empty()
        {
            return Ok((c, format!("commit message naming {rel}")));
        }
    }
    let c = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            &format!("{remote}/{default}^{{commit}}"),
        ],
    )
    .or_else(|_| {
        git(
            repo,
            &["rev-parse", "--verify", &format!("{default}^{{commit}}")],
        )
    })?;
    Ok((c, format!("default branch {default}")))
}

type Sent = (u16, Vec<(String, String)>, String);

fn read_response(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Sent {
    match sent {
        Ok(mut r) => {
            let headers: Vec<(String, String)> = r
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            let status = r.status().as_u16();
            (
                status,
                headers,
                r.body_mut().read_to_string().unwrap_or_default(),
            )
        }
        Err(_) => (0, Vec::new(), String::new()),
    }
}

fn send_github(http: &ureq::Agent, req: &github::Request) -> Sent {
    if let Some(body) = &req.body {
        let mut b = match req.method {
            "PATCH" => http.patch(&req.url),
            _ => http.post(&req.url),
        };
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        read_response(b.send(body.to_string().as_bytes()))
    } else {
        let mut b = http.get(&req.url);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        read_response(b.call())
    }
}

/// Sends a GitHub request with the shared retry rules (waits up to 60 s per retry).
fn github_call(http: &ureq::Agent, req: &github::Request) -> Result<String, FixError> {
    for attempt in 1.. {
        let (status, headers, body) = send_github(http, req);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let resp = github::Response {
            status,
            headers: &headers,
            body: &body,
        };
        match github::classify(&resp, attempt, now) {
            Outcome::Success => return Ok(body),
            Outcome::Retry { after_secs, .. } if after_secs <= 60 => {
                std::thread::sleep(Duration::from_secs(after_secs));
            }
            Outcome::Retry { reason, .. } | Outcome::Fail { reason } => {
                return Err(FixError(format!("{} {}: {reason}", req.method, req.url)));
            }
        }
    }
    Err(FixError("unreachable".into()))
}

/// One pass: lease, prepare, agent, verify, publish, report. `progress` gets one line per step.
///
/// Errors: the API or git cannot be used at all (a rejected fix is not an error: it is reported
/// as `failed` and returned in the report).
pub fn run_once(cfg: &FixerConfig, progress: &mut dyn FnMut(&str)) -> Result<FixReport, FixError> {
    let api = Api { cfg, http: agent() };
    let t0 = Instant::now();
    let Some(run) = api.lease()? else {
        progress("nothing to fix: no ready run");
        return Ok(FixReport {
            run_id: None,
            outcome: "idle".into(),
            reason: None,
            pr_url: None,
            evidence: Vec::new(),
            timings: vec![("lease".into(), t0.elapsed().as_secs_f64())],
            usage: None,
            reproduction: None,
            checks: Vec::new(),
        });
    };
    progress(&format!(
        "leased run {} (incident {}, fingerprint {}) until {}",
        run.run_id,
        run.incident_id,
        run.fingerprint,
        crate::ticket::utc_datetime(run.lease_expires_at)
    ));
    let mut report = FixReport {
        run_id: Some(run.run_id),
        outcome: "failed".into(),
        reason: None,
        pr_url: None,
        evidence: Vec::new(),
        timings: vec![("lease".into(), t0.elapsed().as_secs_f64())],
        usage: None,
        reproduction: None,
        checks: Vec::new(),
    };
    let scratch = cfg.work_root.join(format!("run-{}", run.run_id));
    let diagnosis_path = scratch.join("diagnosis.md");
    let outcome = attempt(
        cfg,
        &api,
        &run,
        &scratch,
        &diagnosis_path,
        &mut report,
        progress,
        None,
    );
    let diagnosis = std::fs::read_to_string(&diagnosis_path).unwrap_or_default();
    match outcome {
        Ok(pr_url) => {
            report.outcome = "pr_opened".into();
            report.pr_url = Some(pr_url);
        }
        Err(Rejected(why)) => {
            progress(&format!("failed: {why}"));
            report.reason = Some(why);
        }
    }
    api.result(&run, &report, &diagnosis)?;
    progress(&format!(
        "reported {} for run {}",
        report.outcome, run.run_id
    ));
    // Worktrees go; the branch stays (it is what the PR shows).
    for wt in ["base", "fix"] {
        let _ = git(
            &cfg.repo_dir,
            &[
                "worktree",
                "remove",
                "--force",
                &scratch.join(wt).display().to_string(),
            ],
        );
    }
    Ok(report)
}

fn timed<T>(report: &mut FixReport, phase: &str, start: Instant, v: T) -> T {
    report
        .timings
        .push((phase.to_string(), start.elapsed().as_secs_f64()));
    v
}

/// Prepare, agent, verify, publish. `Ok(pr_url)` or why the run failed.
/// The run's branch: the task's `bounds.branch` (attempt n > 1 has its own) when it is a
/// `selfheal/<incident>…` name of safe characters, else `selfheal/<incident>`.
fn run_branch(run: &LeasedRun) -> String {
    let own = format!("selfheal/{}", run.incident_id);
    serde_json::from_str::<serde_json::Value>(&run.task)
        .ok()
        .and_then(|t| t.pointer("/bounds/branch")?.as_str().map(str::to_string))
        .filter(|b| {
            (b == &own || b.starts_with(&format!("{own}-")))
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_'))
        })
        .unwrap_or(own)
}

/// A CI turn (`--fix-ci`): the agent works again on the branch's pushed head, with the red checks
/// appended to its task.
struct CiTurn {
    /// 1-based.
    turn: u32,
    /// The pushed head commit the checks were red on (the worktree starts there).
    head: String,
    /// [`checks::task_note`].
    note: String,
}

#[allow(clippy::too_many_arguments)]
fn attempt(
    cfg: &FixerConfig,
    api: &Api<'_>,
    run: &LeasedRun,
    scratch: &Path,
    diagnosis_path: &Path,
    report: &mut FixReport,
    progress: &mut dyn FnMut(&str),
    ci: Option<&CiTurn>,
) -> Result<String, Rejected> {
    let reject = |e: FixError| Rejected(e.0);
    let repo = &cfg.repo_dir;
    let branch = run_branch(run);

    // 1. Prepare.
    let t = Instant::now();
    api.heartbeat(run).map_err(reject)?;
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| Rejected(format!("work dir: {e}")))?;
    let _ = git(repo, &["fetch", "--quiet", &cfg.remote]);
    let _ = git(repo, &["remote", "set-head", &cfg.remote, "--auto"]);
    let default = default_branch(repo, &cfg.remote);
    if branch == default {
        return Err(Rejected("refusing to work on the default branch".into()));
    }
    let (base, how) =
        base_commit(repo, &cfg.remote, run.last_release.as_deref(), &default).map_err(reject)?;
    let fix_dir = scratch.join("fix");
    let fix_s = fix_dir.display().to_string();
    let _ = git(repo, &["worktree", "prune"]);
    git(
        repo,
        &[
            "worktree",
            "add",
            "--force",
            "-B",
            &branch,
            &fix_s,
            ci.map_or(base.as_str(), |c| c.head.as_str()),
        ],
    )
    .map_err(reject)?;
    let task_file = scratch.join("task.json");
    let task_md = scratch.join("task.md");
    let mut task: Value = serde_json::from_str(&run.task).unwrap_or(Value::Null);
    let plan = repro::replay_plan(&task);
    let is_worker = cfg.repro.mode == repro::Mode::Auto && repro::worker_config(&fix_dir).is_some();
    if let Some(obj) = task.as_object_mut() {
        obj.insert(
            "selfheal_check".into(),
            repro::task_json(&plan, &run.fingerprint, is_worker),
        );
    }
    let md = format!(
        "{}\n\n---\nWork in this directory (a git worktree on branch `{branch}` at {how}, {short}). \
         The test command is `{test}`. Add a test that fails before your fix, then fix the cause. \
         Write your diagnosis (cause, fix, how the test shows it) to the file in $SELFHEAL_DIAGNOSIS_FILE. \
         Do not push, do not open pull requests: selfheal verifies and publishes.\n{note}",
        task.pointer("/ticket/body_markdown")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        short = short(&base),
        test = cfg.test_cmd,
        note = repro::task_note(&plan, &run.fingerprint, is_worker),
    );
    std::fs::write(
        &task_file,
        serde_json::to_string_pretty(&task).unwrap_or_default(),
    )
    .and_then(|()| std::fs::write(&task_md, md + ci.map_or("", |c| c.note.as_str())))
    .map_err(|e| Rejected(format!("task file: {e}")))?;
    progress(&format!(
        "worktree {fix_s} on {branch} at {how} ({})",
        short(&base)
    ));
    timed(report, "prepare", t, ());

    // 2. Agent.
    let t = Instant::now();
    api.heartbeat(run).map_err(reject)?;
    let cmd = agent_command(
        &cfg.agent_cmd,
        &task_file,
        &task_md,
        &fix_dir,
        diagnosis_path,
    );
    progress(&format!(
        "agent: {} (limit {} s)",
        cfg.agent_cmd,
        cfg.agent_timeout.as_secs()
    ));
    let usage_path = scratch.join("usage.json");
    let mut env = vec![
        ("SELFHEAL_TASK_FILE", task_file.display().to_string()),
        ("SELFHEAL_TASK_MD", task_md.display().to_string()),
        (
            "SELFHEAL_DIAGNOSIS_FILE",
            diagnosis_path.display().to_string(),
        ),
        ("SELFHEAL_USAGE_FILE", usage_path.display().to_string()),
    ];
    env.extend(cfg.budget.env());
    let ran = run_shell(&cmd, &fix_dir, &env, cfg.agent_timeout).map_err(reject)?;
    timed(report, "agent", t, ());
    // Usage: the agent's machine output (the usage file, else what it printed).
    let written = std::fs::read_to_string(&usage_path).unwrap_or_default();
    report.usage = parse_usage(if written.trim().is_empty() {
        &ran.output
    } else {
        &written
    });
    let final_message = report.usage.as_ref().and_then(|u| u.result.as_deref());
    let no_diagnosis =
        std::fs::read_to_string(diagnosis_path).map_or(true, |d| d.trim().is_empty());
    if let (Some(text), true) = (final_message, no_diagnosis) {
        let _ = std::fs::write(diagnosis_path, text);
    }
    if let Some(u) = &report.usage {
        progress(&format!("agent usage ({}): {}", u.reporter, u.spent()));
    }
    if let Some(hit) = cfg.budget.check(report.usage.as_ref()) {
        report.outcome = "budget_exhausted".into();
        return Err(Rejected(hit.reason));
    }
    match ran.code {
        None => {
            return Err(Rejected(format!(
                "agent exceeded its time limit of {} s",
                cfg.agent_timeout.as_secs()
            )));
        }
        Some(0) => progress("agent finished"),
        Some(c) => {
            return Err(Rejected(format!(
                "agent exited with {c}: {}",
                tail(&ran.output)
            )));
        }
    }

    // 3. Verify.
    let t = Instant::now();
    api.heartbeat(run).map_err(reject)?;
    git(&fix_dir, &["add", "-A"]).map_err(reject)?;
    let changed = git(&fix_dir, &["diff", "--cached", "--name-only", &base]).map_err(reject)?;
    let changed: Vec<&str> = changed.lines().filter(|l| !l.is_empty()).collect();
    if changed.is_empty() {
        // No change but a diagnosis: worth a person's read (posted fenced on the ticket).
        if std::fs::read_to_string(diagnosis_path).is_ok_and(|d| !d.trim().is_empty()) {
            report.outcome = "diagnosed".into();
            return Err(Rejected(
                "diagnosed: the agent changed nothing and wrote a diagnosis".into(),
            ));
        }
        return Err(Rejected("the agent changed nothing".into()));
    }
    let tests: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|p| is_test_path(p))
        .collect();
    if tests.is_empty() {
        return Err(Rejected(format!(
            "no test added or changed (changed: {}): a fix must come with a test that reproduces the bug",
            changed.join(", ")
        )));
    }
    let status = git(&fix_dir, &["status", "--porcelain"]).unwrap_or_default();
    if !status.is_empty() {
        git(
            &fix_dir,
            &[
                "-c",
                "user.name=selfheal",
                "-c",
                "user.email=selfheal@localhost",
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                &format!(
                    "selfheal: fix incident {} ({})",
                    run.incident_id, run.fingerprint
                ),
            ],
        )
        .map_err(reject)?;
    }
    let head = git(&fix_dir, &["rev-parse", "HEAD"]).map_err(reject)?;
    // Base + the tests only: must fail (the bug is reproduced).
    let base_dir = scratch.join("base");
    let base_s = base_dir.display().to_string();
    git(
        repo,
        &["worktree", "add", "--force", "--detach", &base_s, &base],
    )
    .map_err(reject)?;
    let mut args = vec!["checkout", head.as_str(), "--"];
    args.extend(tests.iter().copied());
    git(&base_dir, &args).map_err(reject)?;
    progress(&format!(
        "verify: test command on the base commit with the new tests ({})",
        tests.join(", ")
    ));
    let before = run_shell(&cfg.test_cmd, &base_dir, &[], cfg.test_timeout).map_err(reject)?;
    let reproduced = matches!(before.code, Some(c) if c != 0);
    report.evidence.push(evidence(
        format!(
            "`{}` on the base commit {} with only the new tests: must fail",
            cfg.test_cmd,
            short(&base)
        ),
        &before,
        reproduced,
    ));
    if !reproduced {
        return Err(Rejected(match before.code {
            None => "the tests on the base commit exceeded their time limit".into(),
            _ => "the new tests already pass on the base commit: nothing was reproduced".into(),
        }));
    }
    progress("verify: test command with the fix");
    let after = run_shell(&cfg.test_cmd, &fix_dir, &[], cfg.test_timeout).map_err(reject)?;
    let passes = after.code == Some(0);
    report.evidence.push(evidence(
        format!(
            "`{}` with the change {}: must pass",
            cfg.test_cmd,
            short(&head)
        ),
        &after,
        passes,
    ));
    if !passes {
        timed(report, "verify", t, ());
        return Err(Rejected("the test command fails with the change".into()));
    }
    // The failure users hit: replayed by fingerprint where the repository is a Worker.
    api.heartbeat(run).map_err(reject)?;
    let reproduction = repro::check(
        &cfg.repro,
        &task,
        &run.fingerprint,
        (repo, &base_dir, &fix_dir),
        scratch,
        progress,
    );
    for (step, ok, text) in reproduction.evidence() {
        report.evidence.push(Evidence {
            step,
            exit_code: None,
            ok,
            output_tail: tail(&text),
        });
    }
    progress(&format!(
        "verify: fingerprint reproduction: {}",
        reproduction.detail
    ));
    let rejected = reproduction.rejection();
    if reproduction.verdict == repro::Verdict::NotReproduced {
        report.outcome = "not_reproduced".into();
    }
    report.reproduction = Some(reproduction);
    timed(report, "verify", t, ());
    if let Some(why) = rejected {
        return Err(Rejected(why));
    }

    // 4. Publish: push the branch (never the default one) and open a draft PR.
    let t = Instant::now();
    api.heartbeat(run).map_err(reject)?;
    git(
        repo,
        &[
            "push",
            "--quiet",
            "--force-with-lease",
            &cfg.remote,
            &format!("refs/heads/{branch}:refs/heads/{branch}"),
        ],
    )
    .map_err(reject)?;
    progress(&format!("pushed {branch} to {}", cfg.remote));
    let Some(gh) = &cfg.github else {
        return Err(Rejected(format!(
            "verified and pushed {branch}, but no GitHub repository is configured for the draft PR"
        )));
    };
    let diagnosis = std::fs::read_to_string(diagnosis_path).unwrap_or_default();
    let body = pr_body(
        run,
        &diagnosis,
        &report.evidence,
        report.reproduction.as_ref(),
        &base,
        &how,
    );
    let http = agent();
    let open_pull = |http: &ureq::Agent| -> Result<Option<github::IssueRef>, Rejected> {
        let existing = github_call(http, &github::find_pull(gh, &branch)).map_err(reject)?;
        Ok(serde_json::from_str::<Vec<github::IssueRef>>(&existing)
            .ok()
            .and_then(|v| v.into_iter().find(|p| p.state == "open")))
    };
    let pr = match open_pull(&http)? {
        Some(p) => p,
        None => {
            let title = format!(
                "selfheal: fix incident {} ({})",
                run.incident_id,
                short(&run.fingerprint)
            );
            match github_call(
                &http,
                &github::create_draft_pull(gh, &branch, &default, &title, &body),
            ) {
                Ok(created) => github::parse_created(&created)
                    .ok_or_else(|| Rejected("create PR: unexpected response".into()))?,
                // A create whose response was lost may have landed, and its retry then meets
                // GitHub's "a pull request already exists" (one open PR per head branch): the PR
                // of the branch is looked up again before this counts as a failure.
                Err(e) => open_pull(&http)?.ok_or_else(|| reject(e))?,
            }
        }
    };
    progress(&format!("draft PR {}", pr.html_url));
    timed(report, "publish", t, ());

    // 5. The PR's own CI: its check runs on the pushed head, followed until completed.
    if cfg.ci.timeout_secs == 0 {
        return Ok(pr.html_url);
    }
    let t = Instant::now();
    let head = git(&fix_dir, &["rev-parse", "HEAD"]).map_err(reject)?;
    progress(&format!(
        "following the PR's checks on {} (up to {} s)",
        short(&head),
        cfg.ci.timeout_secs
    ));
    let req = github::list_check_runs(gh, &head);
    let round = checks::follow(
        cfg.ci,
        &head,
        &mut || github_call(&http, &req).map_err(|e| e.0),
        &mut || t.elapsed().as_secs(),
        &mut |secs| {
            // The lease outlives the wait (a lost one shows at the result).
            let _ = api.heartbeat(run);
            std::thread::sleep(Duration::from_secs(secs));
        },
    );
    timed(report, "ci", t, ());
    progress(&round.headline());
    // Green is in `checks` only; anything else is evidence a reviewer reads.
    if round.state != "green" {
        report.evidence.push(Evidence {
            step: round.headline(),
            exit_code: None,
            ok: round.state != "red",
            output_tail: tail(&round.lines()),
        });
    }
    let turn = ci.map_or(0, |c| c.turn);
    let next = (round.state == "red" && turn < cfg.fix_ci).then(|| CiTurn {
        turn: turn + 1,
        head: head.clone(),
        note: checks::task_note(&round, turn + 1, cfg.fix_ci),
    });
    let reason = checks::failure_reason(&round, turn);
    let red = round.state == "red";
    report.checks.push(round);
    if !red {
        return Ok(pr.html_url);
    }
    // The draft stays open with its red checks; the run says where it is.
    report.pr_url = Some(pr.html_url);
    let Some(next) = next else {
        return Err(Rejected(reason));
    };
    // One more agent turn on the same branch, within what is left of the run's budget; the
    // diagnosis so far is kept when the turn writes none.
    progress(&format!(
        "CI turn {} of {}: the agent gets the red checks",
        next.turn, cfg.fix_ci
    ));
    let spent = report.usage.take();
    let diagnosis = std::fs::read_to_string(diagnosis_path).unwrap_or_default();
    let turn_cfg = FixerConfig {
        budget: checks::remaining(cfg.budget, spent.as_ref()),
        ..cfg.clone()
    };
    let out = attempt(
        &turn_cfg,
        api,
        run,
        scratch,
        diagnosis_path,
        report,
        progress,
        Some(&next),
    );
    report.usage = checks::combined(spent, report.usage.take());
    if std::fs::read_to_string(diagnosis_path).map_or(true, |d| d.trim().is_empty()) {
        let _ = std::fs::write(diagnosis_path, diagnosis);
    }
    out
}

/// The draft PR's body: links, the agent's diagnosis (untrusted, fenced), the test evidence and
/// the fingerprint reproduction (its own section; its steps in `evidence` are not repeated).
pub fn pr_body(
    run: &LeasedRun,
    diagnosis: &str,
    evidence: &[Evidence],
    reproduction: Option<&Reproduction>,
    base: &str,
    how: &str,
) -> String {
    let mut md = format!(
        "Draft opened by selfheal for incident {} (fingerprint `{}`), run {}.\n\n",
        run.incident_id, run.fingerprint, run.run_id
    );
    if let Some(url) = run
        .external_url
        .as_deref()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
    {
        md.push_str(&format!("Ticket: {url}\n\n"));
    }
    md.push_str(&format!(
        "Base: `{}` ({how}).\n\n## Diagnosis\n\n",
        short(base)
    ));
    md.push_str("Untrusted: written by the agent. Review it as you would a stranger's.\n\n");
    md.push_str(&crate::ticket::fence(if diagnosis.trim().is_empty() {
        "(the agent wrote no diagnosis)"
    } else {
        diagnosis
    }));
    md.push_str("\n## Verification\n\n");
    for e in evidence
        .iter()
        .filter(|e| !e.step.starts_with(repro::STEP_PREFIX))
    {
        md.push_str(&format!(
            "- {} — exit {} — {}\n",
            e.step,
            e.exit_code.map_or("killed".to_string(), |c| c.to_string()),
            if e.ok {
                "as required"
            } else {
                "NOT as required"
            }
        ));
        md.push_str(&format!("\n{}\n", crate::ticket::fence(&e.output_tail)));
    }
    if let Some(r) = reproduction {
        md.push('\n');
        md.push_str(&r.markdown());
    }
    md.push_str("\nselfheal never merges: review, then mark ready or close.\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_paths() {
        for p in [
            "tests/x.rs",
            "src/__tests__/a.js",
            "test/price.test.js",
            "a/b_test.go",
            "pkg/test_x.py",
            "web/a.spec.ts",
        ] {
            assert!(is_test_path(p), "{p}");
        }
        for p in ["src/price.js", "testing.md", "src/contest.rs", "tests"] {
            assert!(!is_test_path(p), "{p}");
        }
    }

    #[test]
    fn agent_templates_fill_and_quote() {
        let p = |s: &str| PathBuf::from(s);
        let c = agent_command(
            "claude",
            &p("/t/task.json"),
            &p("/t/it's.md"),
            &p("/w"),
            &p("/t/d.md"),
        );
        assert!(c.starts_with("claude -p"), "{c}");
        assert!(c.contains(r"'/t/it'\''s.md'"), "{c}");
        let own = agent_command(
            "my-agent --task {task_file} --in {workdir}",
            &p("/t/task.json"),
            &p("/m"),
            &p("/w"),
            &p("/d"),
        );
        assert_eq!(own, "my-agent --task '/t/task.json' --in '/w'");
    }

    #[test]
    fn shell_runs_are_killed_at_the_limit() {
        let dir = std::env::temp_dir();
        let ok = run_shell("echo hi; exit 3", &dir, &[], Duration::from_secs(10)).expect("run");
        assert_eq!(ok.code, Some(3));
        assert_eq!(ok.output.trim(), "hi");
        let start = Instant::now();
        let slow = run_shell("sleep 30", &dir, &[], Duration::from_millis(300)).expect("run");
        assert_eq!(slow.code, None);
        assert!(start.elapsed() < Duration::from_secs(10));

        // The agent's own children die with it (the whole process group).
        let pidfile = dir.join(format!("selfheal-fixer-test-{}", std::process::id()));
        let cmd = format!("sleep 30 & echo $! > '{}'; wait", pidfile.display());
        let grouped = run_shell(&cmd, &dir, &[], Duration::from_millis(500)).expect("run");
        assert_eq!(grouped.code, None);
        let pid = std::fs::read_to_string(&pidfile).expect("pid file");
        let _ = std::fs::remove_file(&pidfile);
        std::thread::sleep(Duration::from_millis(200));
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .next();
        assert!(
            matches!(state, None | Some("Z") | Some("X")),
            "grandchild {pid} still running: {stat}"
        );
    }

    #[test]
    fn kill_group_refuses_pid_0_and_1() {
        // Would signal our own group or every process of the user: must be a no-op.
        kill_group(0);
        kill_group(1);
    }
}
