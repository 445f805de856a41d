//! Pipeline configuration: what counts as noise, and naming fallbacks.
//!
//! Built once per isolate from Worker vars (see the README's configuration section) and passed to
//! [`crate::event::process_item`]. Values come from outside, so building it validates them and
//! returns [`ConfigError`] instead of panicking.

use regex::bytes::Regex;

/// Settings of the tail pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Script name used when the runtime reports `scriptName: null` (always the case under `wrangler dev`).
    pub fallback_script_name: String,
    /// Exception names that are expected and never make an incident (exact, case-sensitive), e.g. `AbortError`.
    pub ignore_exception_names: Vec<String>,
    /// Messages that are expected (matched against the scrubbed, un-normalized message's UTF-8
    /// bytes; syntax and limits: [`crate::text::configured_regex`]).
    pub ignore_message_patterns: Vec<Regex>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            fallback_script_name: "unknown-script".to_string(),
            ignore_exception_names: Vec::new(),
            ignore_message_patterns: Vec::new(),
        }
    }
}

/// A configuration value that cannot be used; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl PipelineConfig {
    /// Builds a config from the Worker vars' string values.
    ///
    /// - `script_name`: `SELFHEAL_SCRIPT_NAME` (empty or absent → `unknown-script`);
    /// - `ignore_exceptions`: `SELFHEAL_IGNORE_EXCEPTIONS`, comma-separated names;
    /// - `ignore_messages`: `SELFHEAL_IGNORE_MESSAGES`, a JSON array of regular expressions
    ///   (Rust `regex` syntax, linear time).
    ///
    /// Errors: a JSON value that is not an array of strings, or a pattern that does not compile.
    pub fn from_vars(
        script_name: Option<&str>,
        ignore_exceptions: Option<&str>,
        ignore_messages: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut cfg = PipelineConfig::default();
        if let Some(name) = script_name.map(str::trim).filter(|s| !s.is_empty()) {
            cfg.fallback_script_name = name.to_string();
        }
        if let Some(list) = ignore_exceptions {
            cfg.ignore_exception_names = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(json) = ignore_messages.map(str::trim).filter(|s| !s.is_empty()) {
            let patterns: Vec<String> = serde_json::from_str(json).map_err(|e| {
                ConfigError(format!(
                    "SELFHEAL_IGNORE_MESSAGES must be a JSON array of strings: {e}"
                ))
            })?;
            for p in patterns {
                let re = crate::text::configured_regex(&p).map_err(|e| {
                    ConfigError(format!("SELFHEAL_IGNORE_MESSAGES pattern {p:?}: {e}"))
                })?;
                cfg.ignore_message_patterns.push(re);
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vars() {
        let cfg = PipelineConfig::from_vars(
            Some("api"),
            Some("AbortError, ,Expected"),
            Some(r#"["^rate limited", "quota \\d+"]"#),
        )
        .expect("valid");
        assert_eq!(cfg.fallback_script_name, "api");
        assert_eq!(cfg.ignore_exception_names, vec!["AbortError", "Expected"]);
        assert_eq!(cfg.ignore_message_patterns.len(), 2);
    }

    #[test]
    fn rejects_bad_values_with_the_variable_name() {
        let e = PipelineConfig::from_vars(None, None, Some("not json")).expect_err("bad json");
        assert!(e.0.contains("SELFHEAL_IGNORE_MESSAGES"));
        let e =
            PipelineConfig::from_vars(None, None, Some(r#"["(unclosed"]"#)).expect_err("bad regex");
        assert!(e.0.contains("(unclosed"));
        assert_eq!(
            PipelineConfig::from_vars(Some("  "), None, None)
                .expect("ok")
                .fallback_script_name,
            "unknown-script"
        );
    }
}
