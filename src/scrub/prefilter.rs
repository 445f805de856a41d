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

// The byte slots `Stats` counts (everything else goes to `OTHER`).
const DIGIT: usize = 0;
const COLON: usize = 1;
const DOT: usize = 2;
const DASH: usize = 3;
const AT: usize = 4;
const EQ: usize = 5;
const SLASH: usize = 6;
const UPPER_A: usize = 7;
const UPPER_C: usize = 8;
const UPPER_S: usize = 9;
const UPPER_K: usize = 10;
const UPPER: usize = 11; // other upper-case letters
const LOWER_HEX: usize = 12; // a-f
const OTHER: usize = 13;
const SLOTS: usize = 14;

const fn slot_table() -> [u8; 256] {
    let mut t = [OTHER as u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let slot = match b {
            b'0'..=b'9' => DIGIT,
            b':' => COLON,
            b'.' => DOT,
            b'-' => DASH,
            b'@' => AT,
            b'=' => EQ,
            b'/' => SLASH,
            b'A' => UPPER_A,
            b'C' => UPPER_C,
            b'S' => UPPER_S,
            b'K' => UPPER_K,
            b'B'..=b'Z' => UPPER,
            b'a'..=b'f' => LOWER_HEX,
            _ => OTHER,
        };
        t[i] = slot as u8;
        i += 1;
    }
    t
}

static SLOT: [u8; 256] = slot_table();

/// Counts of the bytes the scans care about (digits, `:`, `.`, `-`, `@`, `=`, `/`, upper-case
/// letters, `a`–`f`), in one pass over a text; every scan's first test is a lookup here.
#[derive(Clone, Copy)]
pub struct Stats {
    counts: [u32; SLOTS],
}

impl Stats {
    /// Counts the bytes of `text`.
    pub fn of(text: &[u8]) -> Stats {
        let mut counts = [0u32; SLOTS];
        for &b in text {
            if let Some(c) = counts.get_mut(usize::from(SLOT[usize::from(b)])) {
                *c += 1;
            }
        }
        Stats { counts }
    }

    fn slot(&self, i: usize) -> usize {
        self.counts.get(i).map_or(0, |&c| c as usize)
    }

    /// Occurrences of `b`, for the bytes with a slot of their own (`: . - @ = /`, `A C S K`);
    /// 0 for any other byte.
    pub fn count(&self, b: u8) -> usize {
        let i = usize::from(SLOT[usize::from(b)]);
        match i {
            UPPER | LOWER_HEX | DIGIT | OTHER => 0,
            _ => self.slot(i),
        }
    }

    /// ASCII digits.
    pub fn digits(&self) -> usize {
        self.slot(DIGIT)
    }

    /// ASCII upper-case letters.
    pub fn upper(&self) -> usize {
        [UPPER_A, UPPER_C, UPPER_S, UPPER_K, UPPER]
            .iter()
            .map(|&i| self.slot(i))
            .sum()
    }

    /// `a`–`f`.
    pub fn lower_hex(&self) -> usize {
        self.slot(LOWER_HEX)
    }
}

fn digit_run(text: &[u8], min: usize, sep: impl Fn(u8) -> bool) -> bool {
    run_holds(
        text,
        min,
        |b| b.is_ascii_digit() || sep(b),
        |b| b.is_ascii_digit(),
    )
}

/// `@url_userinfo`: `scheme://user@host` needs `://` and an `@`.
pub fn url_userinfo(text: &[u8], st: &Stats) -> bool {
    st.count(b'@') > 0 && st.count(b'/') >= 2 && text.windows(3).any(|w| w == b"://")
}

/// `@base64_credentials`: an `=` right after 8 or more base64 characters.
pub fn padded_base64(text: &[u8], st: &Stats) -> bool {
    if st.count(b'=') == 0 {
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
pub fn card_digits(text: &[u8], st: &Stats) -> bool {
    st.digits() >= 13 && digit_run(text, 13, |b| b == b' ' || b == b'-')
}

/// `@phone`: 8 or more digits in one run of `[0-9 ()+.-]` (an accepted number has at least 8
/// digits and only those characters).
pub fn phone_digits(text: &[u8], st: &Stats) -> bool {
    st.digits() >= 8
        && digit_run(text, 8, |b| {
            matches!(b, b' ' | b'(' | b')' | b'+' | b'.' | b'-')
        })
}

/// `@ssn`, `@uk_nhs`: 9 digits in one run of digits, dashes and spaces.
pub fn ssn_digits(text: &[u8], st: &Stats) -> bool {
    st.digits() >= 9 && digit_run(text, 9, |b| b == b' ' || b == b'-')
}

/// `@iban`: two upper-case letters followed by two digits.
pub fn iban_start(text: &[u8], st: &Stats) -> bool {
    st.digits() >= 2
        && st.upper() >= 2
        && text.windows(4).any(|w| {
            w[0].is_ascii_uppercase()
                && w[1].is_ascii_uppercase()
                && w[2].is_ascii_digit()
                && w[3].is_ascii_digit()
        })
}

/// `@ipv4`: three dots in one run of digits and dots.
pub fn dotted_quad(text: &[u8], st: &Stats) -> bool {
    st.count(b'.') >= 3
        && st.digits() >= 4
        && run_holds(text, 3, |b| b.is_ascii_digit() || b == b'.', |b| b == b'.')
}

/// `@ipv6`: `::`, or six colons in one run of hex digits, colons and dots (the full form has
/// seven, the IPv4-embedded form six).
pub fn ipv6_like(text: &[u8], st: &Stats) -> bool {
    let colons = st.count(b':');
    colons >= 2
        && (text.windows(2).any(|w| w == b"::")
            || colons >= 6
                && run_holds(
                    text,
                    6,
                    |b| b.is_ascii_hexdigit() || b == b':' || b == b'.',
                    |b| b == b':',
                ))
}

/// `@mac`: five colons (or five dashes) in one run of hex digits and that separator, or two dots
/// in a run of hex digits and dots (`0012.3456.789A`).
pub fn mac_like(text: &[u8], st: &Stats) -> bool {
    let seps = |sep: u8, min: usize| {
        st.count(sep) >= min
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
/// for the keyword pass: Twilio's `AC`/`SK` + 32 lower-case hex needs those letters and a run of
/// 32 `[0-9a-f]` (the others, `pat`, `re_`, `Q~`, `|`, `%7C`, are keywords of the rule).
pub fn twilio_hex(text: &[u8], st: &Stats) -> bool {
    let prefix =
        (st.count(b'A') > 0 && st.count(b'C') > 0) || (st.count(b'S') > 0 && st.count(b'K') > 0);
    prefix
        && st.digits() + st.lower_hex() >= 32
        && run_holds(
            text,
            32,
            |b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            |_| true,
        )
}

/// `@high_entropy`: a token run of at least [`super::entropy::MIN_TOKEN_LEN`] bytes.
pub fn token_run20(text: &[u8], _st: &Stats) -> bool {
    token_run(text, super::entropy::MIN_TOKEN_LEN)
}

/// A run of at least `min` bytes of `[A-Za-z0-9+/=_-]` (a token the entropy finder looks at).
pub fn token_run(text: &[u8], min: usize) -> bool {
    if text.len() < min {
        return false;
    }
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

    fn yes(scan: fn(&[u8], &Stats) -> bool, text: &str) -> bool {
        scan(text.as_bytes(), &Stats::of(text.as_bytes()))
    }

    #[test]
    fn scans_say_yes_and_no() {
        assert!(yes(url_userinfo, "postgres://a:b@h"));
        assert!(!yes(url_userinfo, "https://example.com/a"));
        assert!(yes(padded_base64, "x: YWRtaW46cGFzc3dvcmQ="));
        assert!(!yes(padded_base64, "a=b"));
        assert!(yes(card_digits, "4111 1111 1111 1111"));
        assert!(!yes(card_digits, "id 123456789012"));
        assert!(yes(phone_digits, "+1 415 555 0132"));
        assert!(!yes(phone_digits, "port 8080"));
        assert!(yes(ssn_digits, "078-05-1121"));
        assert!(!yes(ssn_digits, "07-05-11"));
        assert!(yes(iban_start, "DE89 3704"));
        assert!(!yes(iban_start, "de89 3704"));
        assert!(yes(dotted_quad, "10.0.0.1"));
        assert!(!yes(dotted_quad, "v1.2.3"));
        assert!(yes(ipv6_like, "fe80::1"));
        assert!(yes(ipv6_like, "2001:db8:0:0:0:0:0:1"));
        assert!(!yes(ipv6_like, "app.js:12:34"));
        assert!(yes(mac_like, "00:1A:2B:3C:4D:5E"));
        assert!(yes(mac_like, "0012.3456.789A"));
        assert!(!yes(mac_like, "12:34:56"));
        assert!(yes(twilio_hex, "SK0123456789abcdef0123456789abcdef"));
        assert!(!yes(twilio_hex, "ACCESS denied"));
        assert!(yes(token_run20, "x wJalrXUtnFEMI/K7MDENG y"));
        assert!(!yes(token_run20, "short words only"));
    }

    #[test]
    fn stats_count_bytes() {
        let st = Stats::of(b"a1:b2::AKx=");
        assert_eq!(st.count(b':'), 3);
        assert_eq!(st.count(b'A'), 1);
        assert_eq!(st.count(b'x'), 0);
        assert_eq!(st.digits(), 2);
        assert_eq!(st.upper(), 2);
        assert_eq!(st.lower_hex(), 2);
    }
}
