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

/// Whether some run of bytes of `class` holds at least `min` bytes of `counted` (`counted` ⊆
/// `class`); stops at the first such run.
fn run_holds(
    text: &[u8],
    min: usize,
    class: impl Fn(u8) -> bool,
    counted: impl Fn(u8) -> bool,
) -> bool {
    let mut cur = 0;
    for &b in text {
        if class(b) {
            cur += usize::from(counted(b));
            if cur >= min {
                return true;
            }
        } else {
            cur = 0;
        }
    }
    false
}

/// Whether `text` has at least `n` ASCII digits at all (a cheap, vectorised pre-check).
fn digits_at_least(text: &[u8], n: usize) -> bool {
    text.iter().filter(|b| b.is_ascii_digit()).count() >= n
}

/// Whether `text` has at least `n` bytes equal to `byte` (vectorised count).
fn count_at_least(text: &[u8], byte: u8, n: usize) -> bool {
    text.iter().filter(|&&b| b == byte).count() >= n
}

/// `@url_userinfo`: `scheme://user@host` needs `://` and an `@`.
pub fn url_userinfo(text: &[u8]) -> bool {
    text.contains(&b'@') && text.windows(3).any(|w| w == b"://")
}

/// `@base64_credentials`: an `=` right after 8 or more base64 characters.
pub fn padded_base64(text: &[u8]) -> bool {
    if !text.contains(&b'=') {
        return false;
    }
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
    digits_at_least(text, 13)
        && run_holds(
            text,
            13,
            |b| b.is_ascii_digit() || b == b' ' || b == b'-',
            |b| b.is_ascii_digit(),
        )
}

/// `@phone`: 8 or more digits in one run of `[0-9 ()+.-]` (an accepted number has at least 8
/// digits and only those characters).
pub fn phone_digits(text: &[u8]) -> bool {
    digits_at_least(text, 8)
        && run_holds(
            text,
            8,
            |b| b.is_ascii_digit() || matches!(b, b' ' | b'(' | b')' | b'+' | b'.' | b'-'),
            |b| b.is_ascii_digit(),
        )
}

/// `@ssn`, `@uk_nhs`: 9 digits in one run of digits, dashes and spaces.
pub fn ssn_digits(text: &[u8]) -> bool {
    digits_at_least(text, 9)
        && run_holds(
            text,
            9,
            |b| b.is_ascii_digit() || b == b' ' || b == b'-',
            |b| b.is_ascii_digit(),
        )
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
    count_at_least(text, b'.', 3)
        && digits_at_least(text, 4)
        && run_holds(text, 3, |b| b.is_ascii_digit() || b == b'.', |b| b == b'.')
}

/// `@ipv6`: `::`, or six colons in one run of hex digits, colons and dots (the full form has
/// seven, the IPv4-embedded form six).
pub fn ipv6_like(text: &[u8]) -> bool {
    count_at_least(text, b':', 2)
        && (text.windows(2).any(|w| w == b"::")
            || count_at_least(text, b':', 6)
                && run_holds(
                    text,
                    6,
                    |b| b.is_ascii_hexdigit() || b == b':' || b == b'.',
                    |b| b == b':',
                ))
}

/// `@mac`: five colons (or five dashes) in one run of hex digits and that separator, or two dots
/// in a run of hex digits and dots (`0012.3456.789A`).
pub fn mac_like(text: &[u8]) -> bool {
    let seps = |sep: u8, min: usize| {
        count_at_least(text, sep, min)
            && run_holds(
                text,
                min,
                |b| b.is_ascii_hexdigit() || b == sep,
                |b| b == sep,
            )
    };
    seps(b':', 5) || seps(b'-', 5) || seps(b'.', 2)
}

/// The split-out short vendor prefixes of `@vendor_token` whose keywords are too short or common
/// for the keyword pass: Twilio's `AC`/`SK` + 32 lower-case hex needs a run of 32 `[0-9a-f]`
/// (the others, `pat`, `re_`, `Q~`, `|`, `%7C`, are keywords of the rule).
pub fn twilio_hex(text: &[u8]) -> bool {
    text.len() >= 34
        && run_holds(
            text,
            32,
            |b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            |_| true,
        )
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
        assert!(twilio_hex(b"SK0123456789abcdef0123456789abcdef"));
        assert!(!twilio_hex(b"ACCESS denied"));
        assert!(token_run(b"x wJalrXUtnFEMI/K7MDENG y", 20));
        assert!(!token_run(b"short words only", 20));
    }
}
