//! Text helpers shared by every stage (scrub, normalize, route, stack, event, ticket): the lowest
//! layer of the crate, depending on nothing else in it, so that no stage has to reach up into
//! another one (until issue 9, `normalize`, `route` and `stack` imported `event::truncate`).

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
///
/// In: any text and a byte budget. Out: a prefix of `s` (all of it when `s.len() <= max`, empty
/// when `max` is 0). Never panics: the cut is moved back to the previous UTF-8 boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    s.get(..s.floor_char_boundary(max)).unwrap_or("")
}

/// Compiles a pattern an operator configured (`SELFHEAL_IGNORE_MESSAGES`,
/// `SELFHEAL_GATE_SUPPRESS`), the same way in every Worker and in the CLI.
///
/// In: Rust `regex` syntax (<https://docs.rs/regex/1/regex/#syntax>). Out: a
/// [`regex::bytes::Regex`] that the callers run over a text's UTF-8 bytes. Unicode mode is on by
/// default, so `.`, `\w`, `\d`, `\s` and `\b` mean what they mean in regex's `&str` API; since a
/// match over bytes need not be valid UTF-8, `(?-u)` may be set anywhere in the pattern.
///
/// Errors: regex's own message, prefixed by nothing (the caller names the variable). Two things
/// are refused because their Unicode tables are not linked into the Workers (together with the
/// other property tables, about 20 KB of the tail Worker's 400 KB gzip budget): `\p{..}`
/// classes, and case-insensitivity in Unicode mode (`(?i)`); for ASCII case-insensitivity write
/// `(?i-u)`, which the error then says.
pub fn configured_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::Regex::new(pattern).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("case insensitivity matching is not available") {
            format!(
                "{msg}\n(selfheal links no Unicode case-folding tables: write (?i-u) for \
                 ASCII case-insensitive matching)"
            )
        } else {
            msg
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_patterns_fold_ascii_case_only() {
        // `(?i)` in Unicode mode needs the case-folding tables, which no build links.
        let e = configured_regex("(?i)rate limited").expect_err("unicode (?i) is refused");
        assert!(e.contains("(?i-u)"), "{e}");
        // ASCII case folding works anywhere, also with `.` over bytes.
        let re = configured_regex("(?i-u)rate limited.*").expect("ascii (?i-u) compiles");
        assert!(re.is_match("RATE Limited for 30 s".as_bytes()));
        assert!(!re.is_match("rate-limited".as_bytes()));
        // Unicode mode stays the default for the rest of the syntax.
        let re = configured_regex(r"^\w+ failed\b").expect("unicode classes compile");
        assert!(re.is_match("Überweisung failed".as_bytes()));
        assert!(configured_regex(r"\p{Greek}").is_err());
        assert!(configured_regex("(unclosed").is_err());
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("abc", 0), "");
        // "é" is 2 bytes: a cut inside it backs off before it
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
    }
}
