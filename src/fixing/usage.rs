//! An agent run's usage as its CLI reports it, and the run's own budget (turns, dollars).
//!
//! Read from the agent's documented machine output (never estimated):
//! - **Claude Code** `claude -p … --output-format json` prints one result object when it ends
//!   (`--output-format stream-json` ends with the same object): `{"type": "result", "subtype":
//!   "success" | "error_max_turns" | "error_max_budget_usd" | "error_during_execution", "is_error",
//!   "num_turns", "total_cost_usd", "usage": {"input_tokens", "output_tokens",
//!   "cache_creation_input_tokens", "cache_read_input_tokens"}, "result", …}` (Claude Code's
//!   headless-mode and Agent SDK result-message reference). Its own limits are the print-mode flags
//!   `--max-turns N` and `--max-budget-usd X`; a run stopped by one ends with the matching
//!   `error_max_*` subtype.
//! - **Codex** `codex exec --json` prints JSON Lines events; each `{"type": "turn.completed",
//!   "usage": {"input_tokens", "cached_input_tokens", "output_tokens"}}` (or `turn.failed`) ends
//!   one turn (openai/codex `exec_events.rs`). Codex reports no dollars and has no turn or dollar
//!   flag, so selfheal enforces its limits after the run.
//!
//! Whatever an agent does not report stays `None` ("not reported"), never 0.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Usage of one agent run, as reported by the agent CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    /// Which documented format it came from: `claude-code` or `codex`.
    pub reporter: String,
    /// Agent turns (Claude Code `num_turns`; Codex: turns ended).
    pub turns: Option<u64>,
    /// Input tokens, not counting cache reads (Codex: `input_tokens - cached_input_tokens`).
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the prompt cache (Claude Code only).
    pub cache_write_tokens: Option<u64>,
    /// Dollars (Claude Code `total_cost_usd`; Codex reports none).
    pub cost_usd: Option<f64>,
    /// The agent's own stop reason when it ended on an error (`error_max_turns`, …).
    pub stop: Option<String>,
    /// The agent's final message (Claude Code `result`), a diagnosis when it wrote no file.
    #[serde(skip)]
    pub result: Option<String>,
}

impl AgentUsage {
    /// Tokens in and out, when any were reported.
    pub fn total_tokens(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
        ];
        parts.iter().any(Option::is_some).then(|| {
            parts
                .iter()
                .flatten()
                .fold(0u64, |a, b| a.saturating_add(*b))
        })
    }

    /// "12 turns, 48,210 tokens, $0.61" with "not reported" for what is missing.
    pub fn spent(&self) -> String {
        let or_nr = |v: Option<String>| v.unwrap_or_else(|| "not reported".into());
        format!(
            "turns {}, tokens {}, dollars {}",
            or_nr(self.turns.map(|t| t.to_string())),
            or_nr(self.total_tokens().map(|t| t.to_string())),
            or_nr(self.cost_usd.map(|c| format!("${c:.4}"))),
        )
    }
}

fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn dollars(v: &Value, key: &str) -> Option<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|d| d.is_finite() && *d >= 0.0)
}

/// A Claude Code result object (`type: result`), else `None`.
fn claude_result(v: &Value) -> Option<AgentUsage> {
    if v.get("type").and_then(Value::as_str) != Some("result") {
        return None;
    }
    let usage = v.get("usage").cloned().unwrap_or(Value::Null);
    let subtype = v.get("subtype").and_then(Value::as_str).unwrap_or_default();
    Some(AgentUsage {
        reporter: "claude-code".into(),
        turns: count(v, "num_turns"),
        input_tokens: count(&usage, "input_tokens"),
        output_tokens: count(&usage, "output_tokens"),
        cache_read_tokens: count(&usage, "cache_read_input_tokens"),
        cache_write_tokens: count(&usage, "cache_creation_input_tokens"),
        cost_usd: dollars(v, "total_cost_usd"),
        stop: subtype.starts_with("error").then(|| subtype.to_string()),
        result: v.get("result").and_then(Value::as_str).map(str::to_string),
    })
}

/// The usage in an agent's output: the last Claude Code result object, else the sum of the Codex
/// `turn.completed` / `turn.failed` events; `None` when the output holds neither (an agent that
/// reports nothing). Lines that are not JSON are skipped; a whole output that is one (possibly
/// pretty-printed) JSON object counts as one line.
pub fn parse_usage(output: &str) -> Option<AgentUsage> {
    let whole = serde_json::from_str::<Value>(output.trim()).ok();
    let values: Vec<Value> = match whole {
        Some(v) => vec![v],
        None => output
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    };
    if let Some(claude) = values.iter().rev().find_map(claude_result) {
        return Some(claude);
    }
    let mut codex: Option<AgentUsage> = None;
    for v in &values {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "turn.completed" && kind != "turn.failed" {
            continue;
        }
        let u = codex.get_or_insert_with(|| AgentUsage {
            reporter: "codex".into(),
            turns: Some(0),
            ..AgentUsage::default()
        });
        u.turns = u.turns.map(|t| t + 1);
        if kind == "turn.failed" {
            u.stop = Some("turn.failed".into());
        }
        if let Some(usage) = v.get("usage") {
            let add = |slot: &mut Option<u64>, n: Option<u64>| {
                if let Some(n) = n {
                    *slot = Some(slot.unwrap_or(0).saturating_add(n));
                }
            };
            let cached = count(usage, "cached_input_tokens");
            let input = count(usage, "input_tokens").map(|i| i.saturating_sub(cached.unwrap_or(0)));
            add(&mut u.input_tokens, input);
            add(&mut u.cache_read_tokens, cached);
            add(&mut u.output_tokens, count(usage, "output_tokens"));
        }
    }
    codex
}

/// A run's own limits (`selfheal fix --max-turns N --max-usd X`); `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Most agent turns.
    pub max_turns: Option<u32>,
    /// Most dollars.
    pub max_usd: Option<f64>,
}

/// Which limit a run hit, with what it spent.
#[derive(Debug, Clone, PartialEq)]
pub struct Exhausted {
    /// `turns` or `usd`.
    pub limit: &'static str,
    /// The human line for the result's `reason` (and so the ticket's comment).
    pub reason: String,
}

impl Budget {
    /// The environment given to the agent command, so a template can pass the limits on as the
    /// agent's own flags: `SELFHEAL_MAX_TURNS`, `SELFHEAL_MAX_USD` (only those set).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(t) = self.max_turns {
            env.push(("SELFHEAL_MAX_TURNS", t.to_string()));
        }
        if let Some(d) = self.max_usd {
            env.push(("SELFHEAL_MAX_USD", format!("{d}")));
        }
        env
    }

    /// Whether `usage` is over a limit, or the agent says it stopped on one (`error_max_turns`,
    /// `error_max_budget_usd`). An agent that reports nothing cannot be held to turns or dollars
    /// (`None`): its wall time still is.
    pub fn check(&self, usage: Option<&AgentUsage>) -> Option<Exhausted> {
        let u = usage?;
        let stopped = u.stop.as_deref().unwrap_or_default();
        let over_turns = match (self.max_turns, u.turns) {
            (Some(max), Some(t)) => t > u64::from(max),
            _ => false,
        } || stopped == "error_max_turns";
        let over_usd = match (self.max_usd, u.cost_usd) {
            (Some(max), Some(c)) => c > max,
            _ => false,
        } || stopped == "error_max_budget_usd";
        let limit_text = |v: Option<String>| v.unwrap_or_else(|| "the agent's own".into());
        if over_turns {
            Some(Exhausted {
                limit: "turns",
                reason: format!(
                    "budget exhausted: turn limit {} reached ({})",
                    limit_text(self.max_turns.map(|t| t.to_string())),
                    u.spent()
                ),
            })
        } else if over_usd {
            Some(Exhausted {
                limit: "usd",
                reason: format!(
                    "budget exhausted: dollar limit {} reached ({})",
                    limit_text(self.max_usd.map(|d| format!("${d:.2}"))),
                    u.spent()
                ),
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Claude Code `--output-format json` result, shaped as its headless-mode reference shows it.
    const CLAUDE_RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":48211,"duration_api_ms":45120,"num_turns":12,"result":"Cause: discount() read order.coupon.percent without a coupon.","session_id":"9f3c1a52-6c1e-4a8e-9d0b-3f1d2e4c5b6a","total_cost_usd":0.6132,"usage":{"input_tokens":1840,"cache_creation_input_tokens":12022,"cache_read_input_tokens":30211,"output_tokens":4137,"server_tool_use":{"web_search_requests":0},"service_tier":"standard"},"permission_denials":[]}"#;

    /// Codex `exec --json` events (openai/codex exec_events.rs).
    const CODEX_EVENTS: &str = r#"{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"Looking at price.js"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"node --test","aggregated_output":"","exit_code":1,"status":"completed"}}
{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}"#;

    #[test]
    fn claude_code_json_result() {
        let u = parse_usage(CLAUDE_RESULT).expect("usage");
        assert_eq!(u.reporter, "claude-code");
        assert_eq!(u.turns, Some(12));
        assert_eq!(u.cost_usd, Some(0.6132));
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens
            ),
            (Some(1840), Some(4137), Some(30211), Some(12022))
        );
        assert_eq!(u.total_tokens(), Some(1840 + 4137 + 30211 + 12022));
        assert_eq!(u.stop, None);
        assert!(u.result.as_deref().is_some_and(|r| r.starts_with("Cause:")));
        // Pretty-printed, or after other output lines (stream-json ends with the same object).
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<Value>(CLAUDE_RESULT).expect("json"),
        )
        .expect("pretty");
        assert_eq!(parse_usage(&pretty).map(|u| u.turns), Some(Some(12)));
        let stream = format!(
            "{{\"type\":\"system\",\"subtype\":\"init\"}}\nsome stderr line\n{CLAUDE_RESULT}\n"
        );
        assert_eq!(parse_usage(&stream).map(|u| u.cost_usd), Some(Some(0.6132)));
    }

    #[test]
    fn codex_json_events_sum_per_turn() {
        let two = format!(
            "{CODEX_EVENTS}\n{{\"type\":\"turn.started\"}}\n{{\"type\":\"turn.completed\",\"usage\":{{\"input_tokens\":1000,\"cached_input_tokens\":0,\"output_tokens\":50}}}}"
        );
        let u = parse_usage(&two).expect("usage");
        assert_eq!(u.reporter, "codex");
        assert_eq!(u.turns, Some(2));
        assert_eq!(u.input_tokens, Some(24763 - 24448 + 1000));
        assert_eq!(u.cache_read_tokens, Some(24448));
        assert_eq!(u.output_tokens, Some(172));
        assert_eq!(u.cost_usd, None, "Codex reports no dollars");
        assert!(u.spent().contains("dollars not reported"), "{}", u.spent());
    }

    #[test]
    fn nothing_reported_is_none() {
        assert_eq!(parse_usage(""), None);
        assert_eq!(parse_usage("agent finished\n{not json"), None);
        assert_eq!(parse_usage(r#"{"type":"system"}"#), None);
        // Negative or non-finite dollars are not a report.
        let odd = parse_usage(r#"{"type":"result","num_turns":1,"total_cost_usd":-3}"#);
        assert_eq!(odd.map(|u| u.cost_usd), Some(None));
    }

    #[test]
    fn budget_holds_turns_and_dollars() {
        let u = parse_usage(CLAUDE_RESULT).expect("usage");
        let none = Budget::default();
        assert_eq!(none.check(Some(&u)), None);
        assert!(none.env().is_empty());
        let turns = Budget {
            max_turns: Some(10),
            max_usd: None,
        };
        let hit = turns.check(Some(&u)).expect("over 10 turns");
        assert_eq!(hit.limit, "turns");
        assert!(hit.reason.contains("turn limit 10"), "{}", hit.reason);
        assert!(hit.reason.contains("$0.6132"), "{}", hit.reason);
        assert_eq!(
            Budget {
                max_turns: Some(12),
                max_usd: None
            }
            .check(Some(&u)),
            None,
            "at the limit is within it"
        );
        let usd = Budget {
            max_turns: None,
            max_usd: Some(0.5),
        };
        assert_eq!(usd.check(Some(&u)).map(|e| e.limit), Some("usd"));
        assert_eq!(
            usd.env(),
            vec![("SELFHEAL_MAX_USD", "0.5".to_string())],
            "passed on to the agent"
        );
        // Nothing reported: turns and dollars cannot be held.
        assert_eq!(usd.check(None), None);
        // The agent's own limit stopped it (Claude Code --max-turns): exhausted whatever selfheal's.
        let stopped = parse_usage(
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":11,"total_cost_usd":0.2,"usage":{"input_tokens":10,"output_tokens":5}}"#,
        )
        .expect("usage");
        assert_eq!(stopped.stop.as_deref(), Some("error_max_turns"));
        assert_eq!(none.check(Some(&stopped)).map(|e| e.limit), Some("turns"));
        // Codex: no dollars, so only its turns can exhaust a budget.
        let codex = parse_usage(CODEX_EVENTS).expect("usage");
        assert_eq!(usd.check(Some(&codex)), None);
        assert_eq!(
            Budget {
                max_turns: Some(0),
                max_usd: None
            }
            .check(Some(&codex))
            .map(|e| e.limit),
            Some("turns")
        );
    }
}
