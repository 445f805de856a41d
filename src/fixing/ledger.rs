//! The ledger row of a finished run (`fix_ledger`, migration 0010), read from the result the
//! fixer posts (`POST /api/runs/{id}/result`): `timings` (`[[phase, seconds], …]`, the fixer's
//! phases), `usage` ([`super::usage::AgentUsage`], or null when the agent reported nothing) and
//! `budget` ([`super::usage::Budget`]). Lenient by design: a field that is missing or not the
//! documented shape is "not reported" (NULL), never an error and never 0, so a result from an
//! older fixer or a hosted agent still finishes its run.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most phases kept per row.
const MAX_PHASES: usize = 16;
/// Longest phase name kept, characters.
const MAX_PHASE_NAME: usize = 32;

/// One ledger row (without run id and time, which the statement adds).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The run's outcome (`pr_opened`, `failed`, `budget_exhausted`).
    pub outcome: String,
    /// Whose documented output the usage came from; `None`: the agent reported nothing.
    pub reporter: Option<String>,
    /// Agent turns.
    pub turns: Option<i64>,
    /// Input tokens (not counting cache reads).
    pub input_tokens: Option<i64>,
    /// Output tokens.
    pub output_tokens: Option<i64>,
    /// Cache-read tokens.
    pub cache_read_tokens: Option<i64>,
    /// Cache-write tokens.
    pub cache_write_tokens: Option<i64>,
    /// Dollars.
    pub cost_usd: Option<f64>,
    /// The run's turn limit.
    pub max_turns: Option<i64>,
    /// The run's dollar limit.
    pub max_usd: Option<f64>,
    /// Seconds per phase, in the fixer's order.
    pub phases: Vec<(String, f64)>,
}

fn whole(v: &Value, key: &str) -> Option<i64> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn amount(v: &Value, key: &str) -> Option<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|d| d.is_finite() && *d >= 0.0)
}

impl LedgerEntry {
    /// The row of a result with `outcome` (already validated by the caller) and body `result`.
    pub fn from_result(outcome: &str, result: &Value) -> LedgerEntry {
        let usage = result.get("usage").cloned().unwrap_or(Value::Null);
        let budget = result.get("budget").cloned().unwrap_or(Value::Null);
        let phases = result
            .get("timings")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|p| {
                        let name = p.get(0)?.as_str()?;
                        let secs = p.get(1)?.as_f64().filter(|s| s.is_finite() && *s >= 0.0)?;
                        Some((name.chars().take(MAX_PHASE_NAME).collect(), secs))
                    })
                    .take(MAX_PHASES)
                    .collect()
            })
            .unwrap_or_default();
        LedgerEntry {
            outcome: outcome.to_string(),
            reporter: usage
                .get("reporter")
                .and_then(Value::as_str)
                .filter(|r| matches!(*r, "claude-code" | "codex"))
                .map(str::to_string),
            turns: whole(&usage, "turns"),
            input_tokens: whole(&usage, "input_tokens"),
            output_tokens: whole(&usage, "output_tokens"),
            cache_read_tokens: whole(&usage, "cache_read_tokens"),
            cache_write_tokens: whole(&usage, "cache_write_tokens"),
            cost_usd: amount(&usage, "cost_usd"),
            max_turns: whole(&budget, "max_turns"),
            max_usd: amount(&budget, "max_usd"),
            phases,
        }
    }

    /// The phases as a JSON object (`{"lease": 0.1, …}`; a repeated phase adds up).
    pub fn phases_json(&self) -> String {
        let mut m = Map::new();
        for (name, secs) in &self.phases {
            let prior = m.get(name).and_then(Value::as_f64).unwrap_or(0.0);
            m.insert(name.clone(), Value::from(prior + secs));
        }
        crate::store::json_text(&m)
    }

    /// Seconds over all phases; `None` without any.
    pub fn seconds(&self) -> Option<f64> {
        (!self.phases.is_empty()).then(|| self.phases.iter().map(|(_, s)| s).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_result_becomes_its_row_and_odd_fields_are_not_reported() {
        let result = json!({
            "lease_id": "l", "outcome": "budget_exhausted",
            "timings": [["lease", 0.05], ["prepare", 0.4], ["agent", 3.25], ["bad", -1], ["x"], "y"],
            "usage": {"reporter": "claude-code", "turns": 12, "input_tokens": 1840, "output_tokens": 4137,
                      "cache_read_tokens": 30211, "cache_write_tokens": 12022, "cost_usd": 0.6132, "stop": null},
            "budget": {"max_turns": 10, "max_usd": null}
        });
        let e = LedgerEntry::from_result("budget_exhausted", &result);
        assert_eq!(e.outcome, "budget_exhausted");
        assert_eq!(e.reporter.as_deref(), Some("claude-code"));
        assert_eq!(
            (e.turns, e.cost_usd, e.max_turns, e.max_usd),
            (Some(12), Some(0.6132), Some(10), None)
        );
        assert_eq!(e.phases.len(), 3, "malformed phases dropped");
        assert_eq!(e.seconds(), Some(3.7));
        let phases: Value = serde_json::from_str(&e.phases_json()).expect("json");
        assert_eq!(phases["agent"], json!(3.25));

        // An older fixer (no usage, no budget) or a strange body: everything "not reported".
        let bare = LedgerEntry::from_result(
            "failed",
            &json!({"usage": {"turns": -4, "cost_usd": "lots", "reporter": "me"}}),
        );
        assert_eq!(
            bare,
            LedgerEntry {
                outcome: "failed".into(),
                ..LedgerEntry::default()
            }
        );
        assert_eq!(bare.seconds(), None);
        assert_eq!(bare.phases_json(), "{}");
    }
}
