//! Byte-level pre-checks ([`super::Scan`]) for the rules whose matches have no literal in common:
//! each answers "can this rule's pattern match anywhere in the text?" with a single linear pass
//! over the bytes and no allocation. A false "yes" only costs a regex search; a false "no" would
//! lose a match, so each check is a necessary condition of what its rule accepts (stated on the
//! function, and compared against the rule outputs of today's scrubber on every corpus by
//! `tests/scrub_oracle_diff.rs`).
//!
//! The idea is gitleaks' keyword prefilter (a rule runs only when one of its keywords is in the
//! fragment) extended to the PII rules, whose "keywords" are byte classes: a digit run for card
//! numbers and phones, a dotted quad for IPv4, `://` plus `@` for URL userinfo.

/// Largest count of bytes of `counted` inside one run of bytes of `class` (`counted` ⊆ `class`).
fn max_in_run(text: &[u8], class: impl Fn(u8) -> bool, counted: impl Fn(u8) -> bool) -> usize {
    let (mut best, mut cur) = (0, 0);
    for &b in text {
        if class(b) {
            if counted(b) {
                cur += 1;
                best = best.max(cur);
            }
        } else {
            cur = 0;
        }
    }
    best
}

/// `@url_userinfo`: `scheme://user@host` needs `://` and an `@`.
pub fn url_userinfo(text: &[u8]) -> bool {
    text.contains(&b'@') && text.windows(3).any(|w| w == b"://")
}

/// `@base64_credentials`: an `=` right after 8 or more base64 characters.
pub fn padded_base64(text: &[u8]) -> bool {
    let mut run = 0usize;
    for &b in text {
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            run += 1;
        } else {
            if b == b'=' && run >= 8 {
                return true;
            }
            run = 0;
        }
    }
    false
}

/// `@credit_card`: 13 or more digits in one run of digits, spaces and dashes (an accepted card
/// has 13–19 digits and only those separators).
pub fn card_digits(text: &[u8]) -> bool {
    max_in_run(
        text,
        |b| b.is_ascii_digit() || b == b' ' || b == b'-',
        |b| b.is_ascii_digit(),
    ) >= 13
}

/// `@phone`: 8 or more digits in one run of `[0-9 ()+.-]` (an accepted number has at least 8
/// digits and only those characters).
pub fn phone_digits(text: &[u8]) -> bool {
    max_in_run(
        text,
        |b| b.is_ascii_digit() || matches!(b, b' ' | b'(' | b')' | b'+' | b'.' | b'-'),
        |b| b.is_ascii_digit(),
    ) >= 8
}

/// `@ssn`: 9 digits in one run of digits, dashes and spaces.
pub fn ssn_digits(text: &[u8]) -> bool {
    max_in_run(
        text,
        |b| b.is_ascii_digit() || b == b' ' || b == b'-',
        |b| b.is_ascii_digit(),
    ) >= 9
}

/// `@iban`: two upper-case letters followed by two digits.
pub fn iban_start(text: &[u8]) -> bool {
    text.windows(4).any(|w| {
        w[0].is_ascii_uppercase()
            && w[1].is_ascii_uppercase()
            && w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
    })
}

/// `@ipv4`: three dots in one run of digits and dots.
pub fn dotted_quad(text: &[u8]) -> bool {
    max_in_run(text, |b| b.is_ascii_digit() || b == b'.', |b| b == b'.') >= 3
}

/// `@ipv6`: `::`, or six colons in one run of hex digits, colons and dots (the full form has
/// seven, the IPv4-embedded form six).
pub fn ipv6_like(text: &[u8]) -> bool {
    text.windows(2).any(|w| w == b"::")
        || max_in_run(
            text,
            |b| b.is_ascii_hexdigit() || b == b':' || b == b'.',
            |b| b == b':',
        ) >= 6
}

/// `@mac`: five colons (or five dashes) in one run of hex digits and that separator, or two dots
/// in a run of hex digits and dots (`0012.3456.789A`).
pub fn mac_like(text: &[u8]) -> bool {
    let seps = |sep: u8| max_in_run(text, |b| b.is_ascii_hexdigit() || b == sep, |b| b == sep);
    seps(b':') >= 5 || seps(b'-') >= 5 || seps(b'.') >= 2
}

/// The split-out short vendor prefixes of `@vendor_token`: `AC`/`SK` + 32 lower-case hex
/// (Twilio), `pat` (Airtable), `re_` (Resend), `Q~` (Azure AD), `|` or `%7C` (Facebook).
pub fn short_vendor_prefixes(text: &[u8]) -> bool {
    let twilio = text.windows(34).any(|w| {
        (w.starts_with(b"AC") || w.starts_with(b"SK"))
            && w[2..]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    });
    twilio
        || text.windows(3).any(|w| w == b"pat" || w == b"re_")
        || text.windows(2).any(|w| w == b"Q~")
        || text.contains(&b'|')
        || text
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'7' && (w[2] == b'C' || w[2] == b'c'))
}

/// `@high_entropy`: a token run of at least [`super::entropy::MIN_TOKEN_LEN`] bytes.
pub fn token_run20(text: &[u8]) -> bool {
    token_run(text, super::entropy::MIN_TOKEN_LEN)
}

/// A run of at least `min` bytes of `[A-Za-z0-9+/=_-]` (a token the entropy finder looks at).
pub fn token_run(text: &[u8], min: usize) -> bool {
    let mut run = 0usize;
    for &b in text {
        if super::entropy::is_token_byte(b) {
            run += 1;
            if run >= min {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_say_yes_and_no() {
        assert!(url_userinfo(b"postgres://a:b@h"));
        assert!(!url_userinfo(b"https://example.com/a"));
        assert!(padded_base64(b"x: YWRtaW46cGFzc3dvcmQ="));
        assert!(!padded_base64(b"a=b"));
        assert!(card_digits(b"4111 1111 1111 1111"));
        assert!(!card_digits(b"id 123456789012"));
        assert!(phone_digits(b"+1 415 555 0132"));
        assert!(!phone_digits(b"port 8080"));
        assert!(iban_start(b"DE89 3704"));
        assert!(!iban_start(b"de89 3704"));
        assert!(dotted_quad(b"10.0.0.1"));
        assert!(!dotted_quad(b"v1.2.3"));
        assert!(ipv6_like(b"fe80::1"));
        assert!(ipv6_like(b"2001:db8:0:0:0:0:0:1"));
        assert!(!ipv6_like(b"app.js:12:34"));
        assert!(mac_like(b"00:1A:2B:3C:4D:5E"));
        assert!(mac_like(b"0012.3456.789A"));
        assert!(!mac_like(b"12:34:56"));
        assert!(short_vendor_prefixes(b"SK0123456789abcdef0123456789abcdef"));
        assert!(!short_vendor_prefixes(b"ACCESS denied"));
        assert!(token_run(b"x wJalrXUtnFEMI/K7MDENG y", 20));
        assert!(!token_run(b"short words only", 20));
    }
}
