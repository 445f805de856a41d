//! `selfheal`: the core's functions on the command line, over JSON Lines.
//!
//! Each of `scrub`, `normalize` and `fingerprint` reads JSON Lines on stdin and writes exactly one
//! JSON line on stdout per input line, in order. A line that cannot be used gives
//! `{"error": "..."}` on its line and the run goes on. They call the same library functions the
//! Workers run: [`selfheal::scrub::scrub_text`], [`selfheal::normalize::normalize_message`] and
//! [`selfheal::event::process_item`] (the tail Worker's whole pipeline for one TraceItem).
//!
//! `eval` runs the evaluations of [`selfheal::eval`] on the public corpora and prints the tables.
//! `fix` is the local fixer ([`selfheal::fixer`]): lease a ready run, let an agent fix it in a
//! worktree, verify, open a draft PR. `gate-report` and `label` read the gate's report and store
//! an operator's label through the agent-runner API (`SELFHEAL_API_URL`, `SELFHEAL_API_TOKEN`).

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use selfheal::config::PipelineConfig;
use selfheal::eval::scenarios::{ScenarioConfig, Scenarios};
use selfheal::eval::{Evaluation, data_dir};
use selfheal::event::{Verdict, process_item};
use selfheal::normalize::normalize_message;
use selfheal::scrub::scrub_text;
use selfheal::signal::gate::GatePolicy;
use selfheal::signal::replay::{DecisionLine, Replay};
use selfheal::trace::TraceItem;

#[derive(Parser)]
#[command(
    name = "selfheal",
    version,
    about = "selfheal's core on the command line: scrub, normalize, fingerprint (JSON Lines in, JSON Lines out) and the evaluations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scrub secrets and PII from text.
    ///
    /// In: {"text": "..."} per line. Out: {"text": "<scrubbed>", "remarks": [{"rule": "@email",
    /// "start": N, "end": N}]}, where start/end are byte offsets of each replacement in the
    /// scrubbed text. Texts over 16 KiB are truncated first (an "@truncate" remark says so).
    Scrub,
    /// Normalize a message into its grouping key, with typed placeholders (<int>, <uuid>, <email>, …).
    ///
    /// In: {"message": "..."} per line. Out: {"normalized": "..."}.
    Normalize,
    /// Group events with the merge stage (selfheal::signal::grouping): events whose normalized messages
    /// share a shape and differ only in varying positions join one group, never across script,
    /// exception type, top frame (route when there is none) and status class.
    ///
    /// In: JSON Lines, {"message": "...", "exception_type"?, "script"?, "route"?, "top_frame"?,
    /// "status_class"?}. After reading all input, out: one {"group": "<key>", "fingerprint":
    /// "<32 hex>"} per valid input line, in input order; the key is the fingerprint of the
    /// group's first member. A malformed line is reported on stderr with its line number and
    /// skipped; blank lines are ignored; exit code 1 when any line was skipped. `--stats` prints
    /// lines, groups and seconds on stderr.
    Group {
        /// Print "N events, G groups, S s" on stderr.
        #[arg(long)]
        stats: bool,
    },
    /// Run the tail Worker's pipeline on one TraceItem and print its fingerprint.
    ///
    /// In: one TraceItem (the JSON the runtime passes to a tail handler) per line.
    /// Out: {"fingerprint": "<32 hex>", "components": {...}, "noise": false, "noise_reason": null}
    /// for an error, or {"fingerprint": null, "components": null, "noise": true, "noise_reason":
    /// "healthy" | "client_error" | "client_disconnected" | "ignored"} for noise.
    Fingerprint {
        #[command(flatten)]
        pipeline: PipelineFlags,
    },
    /// Lease the next ready fix run, let a coding agent fix it in a git worktree, verify the fix
    /// (a new test fails on the base commit and passes with the change; the test command passes),
    /// push branch selfheal/<incident> and open a draft PR. One run per invocation.
    Fix(Box<FixArgs>),
    /// Run every evaluation on the public corpora (scrubbing, grouping, stack parsing) and print
    /// the tables next to their baselines and goals.
    Eval {
        /// Print one JSON document instead of the tables.
        #[arg(long)]
        json: bool,
        /// The corpora folder (default: $SELFHEAL_SHARED_DATA, else ../shared/data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also run the gate on the generated scenario corpus (needs no corpora folder).
        #[arg(long)]
        gate: bool,
        /// Only the gate table.
        #[arg(long)]
        gate_only: bool,
        /// Seed of the scenario corpus.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Mean healthy requests per hour per scenario script.
        #[arg(long)]
        requests_per_hour: Option<f64>,
    },
    /// Replay TraceItems through the tail pipeline and the cron's gate and ticketing on SQLite
    /// (the real migrations, the Workers' statements), on the items' own clock: a cron run at every
    /// 5-minute boundary.
    ///
    /// In: JSON Lines, one TraceItem or an array of TraceItems (one tail invocation) per line, in
    /// time order. Out: one line per decision and change of decision, {"at": ms, "incident_id",
    /// "fingerprint", "decision": "ticket|watch|external|suppressed", "reasons": [...], "signals":
    /// {new, spike, regression, impact, cause}, "components": {script, route, exception_type,
    /// message, top_frame, status_class}}, then {"summary": {...}}. Gate settings: the --gate-*
    /// flags, each named after its SELFHEAL_GATE_* variable (also read from the environment).
    Replay {
        /// SQLite file to write (kept for inspection); default: in memory.
        #[arg(long, default_value = ":memory:")]
        db: String,
        #[command(flatten)]
        pipeline: PipelineFlags,
        #[command(flatten)]
        gate: GateFlags,
    },
    /// Print the gate's report from the agent-runner (GET /api/gate/report): over the incidents an
    /// operator labelled, the confusion matrix of the decision `ticket` against the labels,
    /// precision and recall, and the time from first occurrence to the first `ticket` decision.
    /// Exits 1 with the HTTP status and error on a failed request.
    GateReport {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the report's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print an incident's gate decisions, oldest first (GET /api/incidents/ID/decisions): one line
    /// per change, `<time> <mode> <decision> <reasons>`, or the JSON with every figure (--json).
    /// Exits 1 on an HTTP error (404: no such incident).
    Decisions {
        /// The incident id (`ops_incidents.id`).
        id: i64,
        /// Print the JSON (reasons and signals parsed) instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Store an operator's verdict on an incident (POST /api/incidents/ID/label), the ground truth
    /// of `gate-report`. Prints {"incident_id", "label", "label_at"}; exits 1 on an HTTP error
    /// (404: no such incident).
    Label {
        /// The incident id (`ops_incidents.id`, as GET /api/incidents lists it).
        id: i64,
        /// `actionable` (worth an agent) or `not_actionable`.
        #[arg(value_parser = ["actionable", "not_actionable"])]
        label: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List incidents (GET /api/incidents) as an aligned table: id, status, gate decision,
    /// occurrences, last seen (UTC), script, route, exception and message; `--json` prints the API's
    /// JSON. Exits 1 on an HTTP error.
    Incidents {
        /// Only incidents with this status (`open`, `ticketed`, `claimed`, `resolved`, `ignored`,
        /// `regressed`).
        #[arg(long)]
        status: Option<String>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One incident: its components, counts, gate decisions, history, occurrences per day and
    /// release, samples, ticket and fix runs per attempt with their PRs (GET /api/incidents,
    /// /api/incidents/ID/decisions, /api/incidents/ID/history, /api/incidents/ID/detail,
    /// /api/tickets). Exits 1 on an HTTP error or when there is no such incident.
    Show {
        /// The incident id.
        id: i64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List fix runs (GET /api/runs) as a table; `--json` for the API's JSON.
    Runs {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The fix budget (GET /api/budget): `day used/cap`, then every cap (runs per day, week and
    /// month; dollars per day and month) against its spend; `--json` for the API's JSON.
    Budget {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resolve, ignore or reopen an incident (POST /api/incidents/ID/resolve|ignore|reopen; a row
    /// of its history records it). Prints `#ID from -> to`; exits 1 on an HTTP error (404: no such
    /// incident; 409: it changed status meanwhile).
    #[command(name = "resolve")]
    Resolve {
        /// The incident id.
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// See `resolve`. With `--until-escalating` the incident comes back by itself when it
    /// escalates (in the spirit of Sentry's "archive until escalating": an hour with at least 10
    /// occurrences and 3× its hourly average of the 7 days before the ignore).
    Ignore {
        /// The incident id.
        id: i64,
        /// Come back when the incident escalates.
        #[arg(long)]
        until_escalating: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Queue another fix attempt for an incident whose last attempt has ended, even past
    /// `SELFHEAL_MAX_ATTEMPTS` (POST /api/incidents/ID/retry). Prints `#ID attempt N queued`;
    /// exits 1 on an HTTP error (409: an attempt is in flight or none was made yet).
    Retry {
        /// The incident id.
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Split an incident out of its group (POST /api/incidents/ID/unmerge): it becomes its own
    /// group and stays so on later cron runs; when it was linked to another member's ticket it is
    /// unlinked and gets its own ticket on the next cron. Prints `#ID unmerged (group KEY)` or
    /// `#ID already split out`; exits 1 on an HTTP error (404: no such incident).
    Unmerge {
        /// The incident id.
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// See `resolve`.
    Reopen {
        /// The incident id.
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The ingest dead-letter queue: `selfheal ingest dead` lists the parked messages (GET
    /// /api/ingest/dead: one line each, `<message_id> <events> events <attempts> tries <error>`);
    /// `selfheal ingest replay` applies them all, exactly once (POST /api/ingest/dead/replay,
    /// repeated while some are left) and prints `replayed=N unreadable=M left=K`. Exits 1 on an
    /// HTTP error, 2 when some messages are unreadable and stay parked.
    Ingest {
        /// `dead` or `replay`.
        #[arg(value_parser = ["dead", "replay"])]
        action: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write the gate's scenario corpus as JSON Lines (one tail invocation per line, time order),
    /// for `selfheal replay`; the labels go to stderr as JSON lines.
    Scenarios {
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Mean healthy requests per hour per scenario script.
        #[arg(long)]
        requests_per_hour: Option<f64>,
        /// Warm-up days before the evaluated day.
        #[arg(long)]
        warmup_days: Option<u32>,
    },
}

/// The tail pipeline's settings, as the tail Worker's variables.
#[derive(clap::Args)]
struct PipelineFlags {
    /// Script name for items whose scriptName is null (as SELFHEAL_SCRIPT_NAME).
    #[arg(long)]
    script_name: Option<String>,
    /// Comma-separated exception names to ignore (as SELFHEAL_IGNORE_EXCEPTIONS).
    #[arg(long)]
    ignore_exceptions: Option<String>,
    /// JSON array of message regexes to ignore (as SELFHEAL_IGNORE_MESSAGES).
    #[arg(long)]
    ignore_messages: Option<String>,
}

impl PipelineFlags {
    fn config(&self) -> Result<PipelineConfig, String> {
        PipelineConfig::from_vars(
            self.script_name.as_deref(),
            self.ignore_exceptions.as_deref(),
            self.ignore_messages.as_deref(),
        )
        .map_err(|e| e.to_string())
    }
}

/// One `--gate-…` flag per [`selfheal::signal::gate::POLICY_VARS`] entry
/// (`SELFHEAL_GATE_MIN_OCCURRENCES` → `--gate-min-occurrences`), each also read from its variable.
struct GateFlags {
    values: std::collections::BTreeMap<&'static str, String>,
}

fn flag_of(var: &'static str) -> String {
    format!(
        "gate-{}",
        var.trim_start_matches("SELFHEAL_GATE_")
            .to_ascii_lowercase()
            .replace('_', "-")
    )
}

impl clap::FromArgMatches for GateFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut values = std::collections::BTreeMap::new();
        for var in selfheal::signal::gate::POLICY_VARS {
            if let Some(v) = m.get_one::<String>(&flag_of(var)) {
                values.insert(*var, v.clone());
            }
        }
        Ok(GateFlags { values })
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for GateFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for var in selfheal::signal::gate::POLICY_VARS {
            let name: &'static str = Box::leak(flag_of(var).into_boxed_str());
            cmd = cmd.arg(
                clap::Arg::new(name)
                    .long(name)
                    .env(*var)
                    .value_name("VALUE")
                    .help(format!("as {var} (see the README's gate settings)")),
            );
        }
        cmd
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// A JSON value as a table cell (strings bare, null as `-`).
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// ms since the epoch as `YYYY-MM-DD HH:MM` UTC.
fn utc_minute(v: &Value) -> String {
    let Some(ms) = v.as_i64() else {
        return "-".to_string();
    };
    let secs = ms.div_euclid(1000);
    let (day, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}",
        selfheal::store::utc_day(day * 86_400_000),
        rem / 3600,
        rem % 3600 / 60
    )
}

fn incident_cells(i: &Value) -> Vec<String> {
    let mut message = cell(&i["normalized_message"]);
    if message.chars().count() > 60 {
        message = message.chars().take(59).collect::<String>() + "…";
    }
    vec![
        cell(&i["id"]),
        cell(&i["status"]),
        cell(&i["gate_decision"]),
        cell(&i["occurrence_count"]),
        utc_minute(&i["last_seen"]),
        cell(&i["script_name"]),
        cell(&i["route_pattern"]),
        cell(&i["exception_type"]),
        message,
    ]
}

/// Prints rows under a header, columns padded to their widest cell (by characters).
fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// `selfheal show ID`.
fn show(id: i64, as_json: bool, api: &ApiArgs) -> Result<(), String> {
    let incidents = api_call(api, "GET", "/api/incidents", None)?;
    let incident = incidents
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["id"] == id)
        .cloned()
        .ok_or_else(|| format!("no incident #{id}"))?;
    let decisions = api_call(api, "GET", &format!("/api/incidents/{id}/decisions"), None)?;
    let history = api_call(api, "GET", &format!("/api/incidents/{id}/history"), None)?;
    let of_incident = |v: Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["incident_id"] == id)
            .cloned()
            .collect()
    };
    let tickets = of_incident(api_call(api, "GET", "/api/tickets", None)?);
    let detail = api_call(api, "GET", &format!("/api/incidents/{id}/detail"), None)?;
    let runs: Vec<Value> = detail["runs"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!(
            "{}",
            json!({ "incident": incident, "decisions": decisions["decisions"], "history": history["history"],
                    "tickets": tickets, "runs": runs, "daily": detail["daily"], "samples": detail["samples"] })
        );
        return Ok(());
    }
    let i = &incident;
    println!(
        "incident #{id}  {}  {} occurrences",
        cell(&i["status"]),
        cell(&i["occurrence_count"])
    );
    for (k, label) in selfheal::dashboard::COMPONENTS {
        println!("  {label:<14}{}", cell(&i[*k]));
    }
    println!("  {:<14}{}", "first seen", utc_minute(&i["first_seen"]));
    println!("  {:<14}{}", "last seen", utc_minute(&i["last_seen"]));
    println!(
        "gate: {} {}",
        cell(&i["gate_decision"]),
        cell(&i["gate_reasons"])
    );
    for d in decisions["decisions"].as_array().into_iter().flatten() {
        println!(
            "  {} {} {} {}",
            utc_minute(&d["at"]),
            cell(&d["mode"]),
            cell(&d["decision"]),
            cell(&d["reasons"])
        );
    }
    println!("history:");
    for h in history["history"].as_array().into_iter().flatten() {
        println!(
            "  {} {} -> {} by {} ({})",
            utc_minute(&h["at"]),
            cell(&h["from_status"]),
            cell(&h["to_status"]),
            cell(&h["actor"]),
            cell(&h["why"])
        );
    }
    for t in &tickets {
        println!(
            "ticket #{} {}: {}",
            cell(&t["id"]),
            cell(&t["state"]),
            cell(&t["title"])
        );
    }
    println!("occurrences per day:");
    for d in detail["daily"].as_array().into_iter().flatten() {
        println!(
            "  {} {:<12} {}",
            cell(&d["day"]),
            cell(&d["release"]),
            cell(&d["occurrences"])
        );
    }
    println!("samples:");
    for e in detail["samples"].as_array().into_iter().flatten() {
        println!(
            "  {} {} {} {} {}",
            utc_minute(&e["event_timestamp"]),
            cell(&e["method"]),
            cell(&e["url"]),
            cell(&e["status"]),
            cell(&e["message"])
        );
    }
    for r in &runs {
        println!(
            "fix run #{} attempt {} {} PR {} {} ended {}",
            cell(&r["id"]),
            cell(&r["attempt"]),
            cell(&r["state"]),
            cell(&r["pr_url"]),
            cell(&r["pr_state"]),
            cell(&r["ended"])
        );
    }
    Ok(())
}

/// `selfheal resolve|ignore|reopen ID`.
fn operator(id: i64, action: &str, api: &ApiArgs) -> Result<(), String> {
    let v = api_call(
        api,
        "POST",
        &format!("/api/incidents/{id}/{action}"),
        Some(&json!({})),
    )?;
    println!("#{id} {} -> {}", cell(&v["from"]), cell(&v["to"]));
    Ok(())
}

/// `selfheal ingest dead|replay` (see the command's doc).
fn ingest(action: &str, api: &ApiArgs) -> Result<ExitCode, String> {
    if action == "dead" {
        let v = api_call(api, "GET", "/api/ingest/dead", None)?;
        for p in v["parked"].as_array().into_iter().flatten() {
            println!(
                "{} {} events {} tries {}",
                p["message_id"].as_str().unwrap_or("?"),
                p["events"],
                p["attempts"],
                p["error"].as_str().unwrap_or("")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (mut replayed, mut unreadable) = (0, Vec::new());
    loop {
        let v = api_call(api, "POST", "/api/ingest/dead/replay", Some(&json!({})))?;
        let n = v["replayed"].as_u64().unwrap_or(0);
        replayed += n;
        for id in v["unreadable"].as_array().into_iter().flatten() {
            if let Some(id) = id.as_str()
                && !unreadable.iter().any(|u: &String| u == id)
            {
                unreadable.push(id.to_string());
            }
        }
        let left = v["left"].as_u64().unwrap_or(0);
        if n == 0 || left as usize <= unreadable.len() {
            println!(
                "replayed={replayed} unreadable={} left={left}",
                unreadable.len()
            );
            for id in &unreadable {
                eprintln!("unreadable, left parked: {id}");
            }
            return Ok(if unreadable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
    }
}

/// Where the agent-runner API is.
#[derive(clap::Args)]
struct ApiArgs {
    /// Agent-runner URL.
    #[arg(long, env = "SELFHEAL_API_URL")]
    api: String,
    /// Agent-runner bearer token.
    #[arg(long, env = "SELFHEAL_API_TOKEN", hide_env_values = true)]
    token: String,
}

/// One call to the agent-runner API; the JSON body of a 2xx answer. Errors name the method, the
/// URL, the status and the API's `error` message (or the start of its body).
fn api_call(a: &ApiArgs, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("{}{path}", a.api.trim_end_matches('/'));
    let auth = format!("Bearer {}", a.token);
    let sent = match body {
        Some(b) => http.post(&url).header("authorization", &auth).send_json(b),
        None => http.get(&url).header("authorization", &auth).call(),
    };
    let mut resp = sent.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{method} {url}: HTTP {status}, unreadable body: {e}"))?;
    let value: Option<Value> = serde_json::from_str(&text).ok();
    if !(200..300).contains(&status) {
        let why = value
            .as_ref()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| text.chars().take(200).collect());
        return Err(format!("{method} {url}: HTTP {status}: {why}"));
    }
    value.ok_or_else(|| format!("{method} {url}: HTTP {status}, body is not JSON"))
}

#[derive(clap::Args)]
struct FixArgs {
    /// Agent-runner URL.
    #[arg(long, env = "SELFHEAL_API_URL")]
    api: String,
    /// Agent-runner bearer token.
    #[arg(long, env = "SELFHEAL_API_TOKEN", hide_env_values = true)]
    token: String,
    /// The agent command: `claude`, `codex` (shipped templates) or any shell command, with
    /// {task_file}, {task_md}, {workdir} and {diagnosis_file} filled in.
    #[arg(long, env = "SELFHEAL_AGENT")]
    agent: String,
    /// The test command (run with sh -c in the worktree), e.g. "cargo test" or "npm test".
    #[arg(long, env = "SELFHEAL_TEST_CMD")]
    test_cmd: String,
    /// The local checkout of the repository.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The git remote to fetch from and push to.
    #[arg(long, default_value = "origin")]
    remote: String,
    /// Wall-time limit of the agent, seconds.
    #[arg(long, default_value_t = 1800)]
    agent_timeout_secs: u64,
    /// Wall-time limit of one test run, seconds.
    #[arg(long, default_value_t = 900)]
    test_timeout_secs: u64,
    /// Lease length, seconds (renewed at each step).
    #[arg(long, default_value_t = 900)]
    lease_secs: u64,
    /// Where worktrees and task files go (default: a temp folder).
    #[arg(long)]
    work_root: Option<PathBuf>,
    /// GitHub repository (owner/name) for the draft PR.
    #[arg(long, env = "SELFHEAL_GITHUB_REPO")]
    github_repo: Option<String>,
    /// GitHub token (contents and pull requests write).
    #[arg(long, env = "SELFHEAL_GITHUB_TOKEN", hide_env_values = true)]
    github_token: Option<String>,
    /// GitHub API root (GitHub Enterprise Server, or a test stand-in).
    #[arg(long, env = "SELFHEAL_GITHUB_API")]
    github_api: Option<String>,
    /// Name reported with the lease.
    #[arg(long, env = "USER", default_value = "selfheal-fixer")]
    owner: String,
    /// Print the report as one JSON document at the end.
    #[arg(long)]
    json: bool,
    /// Most agent turns: passed to Claude Code as `--max-turns`, enforced after the run otherwise.
    #[arg(long, env = "SELFHEAL_MAX_TURNS")]
    max_turns: Option<u32>,
    /// Most dollars: passed to Claude Code as `--max-budget-usd`, enforced after the run otherwise.
    #[arg(long, env = "SELFHEAL_MAX_USD")]
    max_usd: Option<f64>,
    /// Fingerprint reproduction: `auto` (where the repository is a Worker, its sampled requests
    /// replayed under `wrangler dev` must give the incident's fingerprint before the fix and not
    /// after) or `off` (test-only verification).
    #[arg(long, env = "SELFHEAL_REPRO", default_value = "auto", value_parser = ["auto", "off"])]
    repro: String,
    /// The wrangler command for the reproduction (run with sh -c), e.g. "npx wrangler"; default:
    /// the repository's node_modules/.bin/wrangler, else wrangler on PATH.
    #[arg(long, env = "SELFHEAL_WRANGLER")]
    wrangler: Option<String>,
    /// Follow the draft PR's checks (GitHub check runs on its head commit) until all are
    /// completed, at most this many seconds; 0: do not follow.
    #[arg(long, env = "SELFHEAL_CI_TIMEOUT_SECS", default_value_t = 900)]
    ci_timeout_secs: u64,
    /// Seconds between two polls of the PR's checks.
    #[arg(long, default_value_t = 15)]
    ci_poll_secs: u64,
    /// Extra agent turns on red PR checks (each: fix, verify, push to the same branch, wait for
    /// the checks again); 0: red checks fail the run as `ci_failed`.
    #[arg(long, env = "SELFHEAL_FIX_CI", default_value_t = 0)]
    fix_ci: u32,
}

fn fix(a: FixArgs) -> Result<ExitCode, String> {
    let github = match (&a.github_repo, &a.github_token) {
        (Some(r), Some(t)) => Some(
            selfheal::github::Repo::new(a.github_api.as_deref(), r, t)
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    let cfg = selfheal::fixer::FixerConfig {
        api: a.api,
        token: a.token,
        owner: a.owner,
        repo_dir: a.repo,
        remote: a.remote,
        agent_cmd: a.agent,
        test_cmd: a.test_cmd,
        agent_timeout: std::time::Duration::from_secs(a.agent_timeout_secs),
        test_timeout: std::time::Duration::from_secs(a.test_timeout_secs),
        lease_ttl: std::time::Duration::from_secs(a.lease_secs),
        work_root: a
            .work_root
            .unwrap_or_else(|| std::env::temp_dir().join("selfheal-fix")),
        github,
        budget: selfheal::fixing::usage::Budget {
            max_turns: a.max_turns,
            max_usd: match a.max_usd {
                Some(d) if !(d.is_finite() && d >= 0.0) => {
                    return Err(format!("--max-usd must be a dollar amount, got {d}"));
                }
                other => other,
            },
        },
        repro: selfheal::fixing::repro::Settings {
            mode: if a.repro == "off" {
                selfheal::fixing::repro::Mode::Off
            } else {
                selfheal::fixing::repro::Mode::Auto
            },
            wrangler: a.wrangler,
            ..Default::default()
        },
        ci: selfheal::fixing::checks::Follow {
            timeout_secs: a.ci_timeout_secs,
            poll_secs: a.ci_poll_secs,
            grace_secs: selfheal::fixing::checks::GRACE_SECS,
        },
        fix_ci: a.fix_ci,
    };
    let start = std::time::Instant::now();
    let report = selfheal::fixer::run_once(&cfg, &mut |line| {
        eprintln!("[{:>7.2}s] {line}", start.elapsed().as_secs_f64());
    })
    .map_err(|e| e.to_string())?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    }
    Ok(
        if matches!(
            report.outcome.as_str(),
            "failed" | "budget_exhausted" | "diagnosed" | "not_reproduced"
        ) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// Applies `f` to every stdin line: `f` writes that line's one JSON output, without the newline,
/// into the buffer it is given (cleared for each line). The input line and the output buffer are
/// reused from line to line, so a run allocates only what `f` itself does. I/O errors end the run.
fn each_line(mut f: impl FnMut(&str, &mut Vec<u8>)) -> std::io::Result<()> {
    let mut stdin = std::io::stdin().lock();
    let interactive = std::io::stdin().is_terminal();
    let mut out = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut line = Vec::new();
    let mut buf = Vec::new();
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        buf.clear();
        match std::str::from_utf8(&line) {
            Ok(text) => f(text, &mut buf),
            Err(e) => write_value(
                &mut buf,
                &json!({ "error": format!("line is not UTF-8: {e}") }),
            ),
        }
        buf.push(b'\n');
        out.write_all(&buf)?;
        if interactive {
            out.flush()?;
        }
    }
    out.flush()
}

/// Appends `v` as compact JSON. Serializing what the commands write (a `Value`, a `String`) into
/// a `Vec` cannot fail; should it ever, the JSON written there says so instead of being cut off.
fn write_value(buf: &mut Vec<u8>, v: &impl serde::Serialize) {
    let start = buf.len();
    if let Err(e) = serde_json::to_writer(&mut *buf, v) {
        buf.truncate(start);
        let msg = json!({ "error": format!("could not write the result: {e}") });
        buf.extend_from_slice(msg.to_string().as_bytes());
    }
}

/// The string field `key` of a JSON object line, or the error value to print.
fn string_field(line: &str, key: &str) -> Result<String, Value> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| json!({ "error": format!("invalid JSON: {e}") }))?;
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(json!({ "error": format!("expected an object with a string field \"{key}\"") })),
    }
}

fn scrub(line: &str) -> Value {
    match string_field(line, "text") {
        Ok(text) => serde_json::to_value(scrub_text(&text))
            .unwrap_or_else(|e| json!({ "error": e.to_string() })),
        Err(e) => e,
    }
}

/// The `normalize` command's input line, read without building a `serde_json::Value`: the
/// message is borrowed from the line unless it holds escapes.
#[derive(serde::Deserialize)]
struct MessageLine<'a> {
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
}

/// One output line of `normalize`: `{"normalized":"…"}`, written straight into `out` (the same
/// bytes as serializing `json!({"normalized": …})`, without building the `Value`).
fn normalize(line: &str, out: &mut Vec<u8>) {
    // Fast path: an object with a string `message` (the usual line). Anything else (invalid
    // JSON, another shape, a duplicate key) takes the general path, which words the errors.
    let normalized = match serde_json::from_str::<MessageLine>(line) {
        Ok(m) => normalize_message(&m.message),
        Err(_) => match string_field(line, "message") {
            Ok(m) => normalize_message(&m),
            Err(e) => return write_value(out, &e),
        },
    };
    out.extend_from_slice(br#"{"normalized":"#);
    write_value(out, &normalized);
    out.push(b'}');
}

fn fingerprint(line: &str, cfg: &PipelineConfig, now_ms: i64) -> Value {
    let item: TraceItem = match serde_json::from_str(line) {
        Ok(item) => item,
        Err(e) => return json!({ "error": format!("not a TraceItem: {e}") }),
    };
    match process_item(&item, cfg, now_ms) {
        Verdict::Event(e) => json!({
            "fingerprint": e.fingerprint,
            "components": e.components,
            "noise": false,
            "noise_reason": null,
        }),
        Verdict::Noise(reason) => json!({
            "fingerprint": null,
            "components": null,
            "noise": true,
            "noise_reason": reason,
        }),
    }
}

/// `selfheal group`: reads every stdin line, then writes one group line per valid input line.
fn group(stats: bool) -> std::io::Result<ExitCode> {
    use selfheal::signal::grouping::{GroupInput, MinerConfig, group_events};
    let started = std::time::Instant::now();
    let mut inputs = Vec::new();
    let mut skipped = 0usize;
    let mut err = std::io::stderr().lock();
    for (i, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let line = line?;
        let parsed = std::str::from_utf8(&line)
            .map_err(|e| format!("line is not UTF-8: {e}"))
            .and_then(|text| {
                let text = text.trim_end_matches('\r');
                if text.trim().is_empty() {
                    Ok(None)
                } else {
                    GroupInput::parse(text).map(Some)
                }
            });
        match parsed {
            Ok(Some(input)) => inputs.push(input),
            Ok(None) => {}
            Err(e) => {
                skipped += 1;
                writeln!(err, "selfheal group: line {}: {e} (skipped)", i + 1)?;
            }
        }
    }
    let grouped = group_events(&inputs, &MinerConfig::default());
    let mut out = BufWriter::new(std::io::stdout().lock());
    for g in &grouped {
        serde_json::to_writer(&mut out, g)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if stats {
        let mut groups: Vec<&str> = grouped.iter().map(|g| g.group.as_str()).collect();
        groups.sort_unstable();
        groups.dedup();
        writeln!(
            err,
            "selfheal group: {} events, {} groups, {:.3} s",
            grouped.len(),
            groups.len(),
            started.elapsed().as_secs_f64()
        )?;
    }
    if skipped > 0 {
        writeln!(err, "selfheal group: {skipped} malformed line(s) skipped")?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let io = |e: std::io::Error| format!("I/O error: {e}");
    match cli.command {
        Command::Scrub => each_line(|line, out| write_value(out, &scrub(line))).map_err(io)?,
        Command::Normalize => each_line(normalize).map_err(io)?,
        Command::Group { stats } => return group(stats).map_err(io),
        Command::Fingerprint { pipeline } => {
            let cfg = pipeline.config()?;
            let now = now_ms();
            each_line(|line, out| write_value(out, &fingerprint(line, &cfg, now))).map_err(io)?;
        }
        Command::Fix(args) => return fix(*args),
        Command::GateReport { api, json } => {
            let v = api_call(&api, "GET", "/api/gate/report", None)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                let r: selfheal::signal::report::GateReport = serde_json::from_value(v)
                    .map_err(|e| format!("GET /api/gate/report: unexpected body: {e}"))?;
                print!("{}", selfheal::signal::report::render(&r));
            }
        }
        Command::Decisions { id, json, api } => {
            let v = api_call(&api, "GET", &format!("/api/incidents/{id}/decisions"), None)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                println!(
                    "incident {}: now {} (label {})",
                    id,
                    v["gate_decision"].as_str().unwrap_or("undecided"),
                    v["label"].as_str().unwrap_or("none")
                );
                let rows = v["decisions"].as_array().cloned().unwrap_or_default();
                for d in rows {
                    let reasons: Vec<&str> = d["reasons"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    println!(
                        "{} {} {} {}",
                        d["at"]
                            .as_i64()
                            .map(selfheal::ticket::utc_datetime)
                            .unwrap_or_default(),
                        d["mode"].as_str().unwrap_or(""),
                        d["decision"].as_str().unwrap_or(""),
                        reasons.join(",")
                    );
                }
            }
        }
        Command::Label { id, label, api } => {
            let v = api_call(
                &api,
                "POST",
                &format!("/api/incidents/{id}/label"),
                Some(&json!({ "label": label })),
            )?;
            println!("{v}");
        }
        Command::Ingest { action, api } => return ingest(&action, &api),
        Command::Incidents { status, json, api } => {
            let v = api_call(&api, "GET", "/api/incidents", None)?;
            let rows: Vec<&Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| status.as_deref().is_none_or(|s| i["status"] == s))
                .collect();
            if json {
                println!("{}", Value::Array(rows.into_iter().cloned().collect()));
            } else {
                print_table(
                    &[
                        "id",
                        "status",
                        "gate",
                        "count",
                        "last_seen",
                        "script",
                        "route",
                        "type",
                        "message",
                    ],
                    rows.iter().map(|i| incident_cells(i)).collect(),
                );
            }
        }
        Command::Show { id, json, api } => show(id, json, &api)?,
        Command::Runs { json, api } => {
            let v = api_call(&api, "GET", "/api/runs", None)?;
            if json {
                println!("{v}");
            } else {
                print_table(
                    &[
                        "id",
                        "incident",
                        "ticket",
                        "state",
                        "budget_day",
                        "deferred_day",
                        "updated",
                    ],
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            [
                                "id",
                                "incident_id",
                                "ticket_id",
                                "state",
                                "budget_day",
                                "deferred_day",
                            ]
                            .iter()
                            .map(|k| cell(&r[*k]))
                            .chain(std::iter::once(utc_minute(&r["updated_at"])))
                            .collect()
                        })
                        .collect(),
                );
            }
        }
        Command::Budget { json, api } => {
            let v = api_call(&api, "GET", "/api/budget", None)?;
            if json {
                println!("{v}");
            } else {
                println!(
                    "{} {}/{}",
                    cell(&v["day"]),
                    cell(&v["used"]),
                    cell(&v["cap"])
                );
                // Every cap against its spend (runs, dollars), with its window.
                let amount = |c: &Value, x: &Value| match (c["unit"].as_str(), x.as_f64()) {
                    (_, None) => "none".to_string(),
                    (Some("usd"), Some(d)) => format!("${d:.2}"),
                    (_, Some(n)) => format!("{n:.0}"),
                };
                print_table(
                    &["cap", "used", "limit", "since", "resets", "state", "var"],
                    v["caps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            vec![
                                cell(&c["name"]),
                                amount(c, &c["used"]),
                                amount(c, &c["cap"]),
                                utc_minute(&c["since"]),
                                utc_minute(&c["resets_at"]),
                                if c["reached"] == true {
                                    "reached"
                                } else {
                                    "ok"
                                }
                                .to_string(),
                                cell(&c["var"]),
                            ]
                        })
                        .collect(),
                );
                if let Some(n) = v["monthly_runs_without_dollars"]
                    .as_i64()
                    .filter(|n| *n > 0)
                {
                    println!(
                        "{n} run(s) this month reported no dollars (not counted in the dollar caps)"
                    );
                }
            }
        }
        Command::Resolve { id, api } => operator(id, "resolve", &api)?,
        Command::Ignore {
            id,
            until_escalating,
            api,
        } => {
            let v = api_call(
                &api,
                "POST",
                &format!("/api/incidents/{id}/ignore"),
                Some(&json!({ "until_escalating": until_escalating })),
            )?;
            let until = if until_escalating {
                " (until escalating)"
            } else {
                ""
            };
            println!("#{id} {} -> {}{until}", cell(&v["from"]), cell(&v["to"]));
        }
        Command::Retry { id, api } => {
            let v = api_call(
                &api,
                "POST",
                &format!("/api/incidents/{id}/retry"),
                Some(&json!({})),
            )?;
            println!("#{id} attempt {} queued", cell(&v["attempt"]));
        }
        Command::Unmerge { id, api } => {
            let v = api_call(
                &api,
                "POST",
                &format!("/api/incidents/{id}/unmerge"),
                Some(&json!({})),
            )?;
            if v["changed"].as_bool() == Some(true) {
                println!("#{id} unmerged (group {})", cell(&v["group_key"]));
            } else {
                println!("#{id} already split out");
            }
        }
        Command::Reopen { id, api } => operator(id, "reopen", &api)?,
        Command::Replay { db, pipeline, gate } => {
            let cfg = pipeline.config()?;
            let policy = GatePolicy::from_vars(|name| gate.values.get(name).cloned())
                .map_err(|e| e.to_string())?;
            return replay(cfg, policy, &db);
        }
        Command::Scenarios {
            seed,
            requests_per_hour,
            warmup_days,
        } => {
            let mut cfg = ScenarioConfig {
                seed,
                ..ScenarioConfig::default()
            };
            if let Some(r) = requests_per_hour {
                cfg.requests_per_hour = r;
            }
            if let Some(w) = warmup_days {
                cfg.warmup_days = w;
            }
            let sc = Scenarios::new(&cfg);
            for b in sc.bugs() {
                eprintln!(
                    "{}",
                    json!({"scenario": b.scenario, "bug": b.bug, "script": b.script, "actionable": b.actionable,
                           "onset_ms": b.onset_ms, "deadline_ms": b.deadline_ms, "why": b.why})
                );
            }
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            for (_, line) in sc.invocations() {
                writeln!(out, "{line}").map_err(io)?;
            }
            out.flush().map_err(io)?;
        }
        Command::Eval {
            gate_only: true,
            json,
            seed,
            requests_per_hour,
            ..
        } => return eval_gate(json, seed, requests_per_hour),
        Command::Eval {
            json,
            data,
            gate,
            seed,
            requests_per_hour,
            ..
        } => {
            if gate {
                eval_gate(json, seed, requests_per_hour)?;
            }
            let Some(dir) = data_dir(data.as_deref()) else {
                eprintln!(
                    "selfheal eval: SKIPPED: no corpora folder (give --data DIR, set SELFHEAL_SHARED_DATA, or put ../shared/data beside the repository)"
                );
                return Ok(ExitCode::from(2));
            };
            let ev = Evaluation::run(&dir).map_err(|e| e.to_string())?;
            if json {
                let text = serde_json::to_string_pretty(&ev).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                print!("{}", ev.render());
                println!(
                    "\ngoals: {}",
                    if ev.goals_met() {
                        "all met"
                    } else {
                        "NOT all met (see above)"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_gate(json: bool, seed: u64, requests_per_hour: Option<f64>) -> Result<ExitCode, String> {
    let mut cfg = ScenarioConfig {
        seed,
        ..ScenarioConfig::default()
    };
    if let Some(r) = requests_per_hour {
        cfg.requests_per_hour = r;
    }
    let e = selfheal::eval::gate::evaluate(&cfg, &GatePolicy::default())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", selfheal::eval::gate::render(&e));
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(cfg: PipelineConfig, policy: GatePolicy, db: &str) -> Result<ExitCode, String> {
    let io = |e: std::io::Error| format!("I/O error: {e}");
    let mut r = Replay::new(cfg, policy, db).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut failed: Option<std::io::Error> = None;
    let mut emit = |d: DecisionLine| {
        if failed.is_none()
            && let Err(e) = serde_json::to_writer(&mut out, &d)
                .map_err(std::io::Error::other)
                .and_then(|_| out.write_all(b"\n"))
        {
            failed = Some(e);
        }
    };
    let started = std::time::Instant::now();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(io)?;
        r.feed(&line, &mut emit).map_err(|e| e.to_string())?;
    }
    let summary = r.finish(&mut emit).map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(io(e));
    }
    let secs = started.elapsed().as_secs_f64();
    let mut doc = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
    if let Some(o) = doc.as_object_mut() {
        o.insert("seconds".into(), json!(secs));
        o.insert(
            "items_per_second".into(),
            json!(summary.items as f64 / secs.max(1e-9)),
        );
    }
    writeln!(out, "{}", json!({ "summary": doc })).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("selfheal: {message}");
            ExitCode::FAILURE
        }
    }
}
