//! Byte-level pre-checks ([`ScanKind`]) for the rules whose matches have no literal in common:
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

/// The byte-class pre-checks of the rule table, by name: what a rule's `scan` names
/// ([`super::RuleSpec::scan`]). Each is true when the rule's pattern can possibly match (it may
/// say true when it cannot; it must never say false when it can); the per-kind functions first
/// look at the byte counts ([`Stats`]), then stop at their first evidence. [`ScanKind::check`] is each check on its own (the reference, one
/// or more passes over the text); [`scan_all`] answers every kind at once in a single pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// [`url_userinfo`]
    UrlUserinfo,
    /// [`padded_base64`]
    PaddedBase64,
    /// [`card_digits`]
    CardDigits,
    /// [`phone_digits`]
    PhoneDigits,
    /// [`ssn_digits`]
    SsnDigits,
    /// [`iban_start`]
    IbanStart,
    /// [`dotted_quad`]
    DottedQuad,
    /// [`ipv6_like`]
    Ipv6Like,
    /// [`mac_like`]
    MacLike,
    /// [`twilio_hex`]
    TwilioHex,
    /// [`token_run20`]
    TokenRun20,
}

impl ScanKind {
    /// Every kind, in bit order of [`ScanSet`].
    pub const ALL: [ScanKind; 11] = [
        ScanKind::UrlUserinfo,
        ScanKind::PaddedBase64,
        ScanKind::CardDigits,
        ScanKind::PhoneDigits,
        ScanKind::SsnDigits,
        ScanKind::IbanStart,
        ScanKind::DottedQuad,
        ScanKind::Ipv6Like,
        ScanKind::MacLike,
        ScanKind::TwilioHex,
        ScanKind::TokenRun20,
    ];

    /// The check on its own (the definition [`scan_all`] must agree with).
    pub fn check(self, text: &[u8], st: &Stats) -> bool {
        match self {
            ScanKind::UrlUserinfo => url_userinfo(text, st),
            ScanKind::PaddedBase64 => padded_base64(text, st),
            ScanKind::CardDigits => card_digits(text, st),
            ScanKind::PhoneDigits => phone_digits(text, st),
            ScanKind::SsnDigits => ssn_digits(text, st),
            ScanKind::IbanStart => iban_start(text, st),
            ScanKind::DottedQuad => dotted_quad(text, st),
            ScanKind::Ipv6Like => ipv6_like(text, st),
            ScanKind::MacLike => mac_like(text, st),
            ScanKind::TwilioHex => twilio_hex(text, st),
            ScanKind::TokenRun20 => token_run20(text, st),
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The kinds of [`ScanKind`] that said yes on a text (one bit per kind, in declaration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanSet(u16);

impl ScanSet {
    /// Whether `kind` said yes.
    pub fn has(self, kind: ScanKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

// Byte classes of the fused pass.
const K_DIGIT: u16 = 1; // 0-9
const K_CARD: u16 = 1 << 1; // digit ' ' '-'          (card, ssn runs)
const K_PHONE: u16 = 1 << 2; // digit ' ' ( ) + . -   (phone runs)
const K_QUAD: u16 = 1 << 3; // digit '.'              (dotted quad runs)
const K_V6: u16 = 1 << 4; // hex ':' '.'              (ipv6 runs)
const K_MAC_COLON: u16 = 1 << 5; // hex ':'
const K_MAC_DASH: u16 = 1 << 6; // hex '-'
const K_MAC_DOT: u16 = 1 << 7; // hex '.'
const K_LHEX: u16 = 1 << 8; // 0-9 a-f                (Twilio runs)
const K_TOKEN: u16 = 1 << 9; // entropy::is_token_byte   (token runs)
const K_B64: u16 = 1 << 10; // alnum '+' '/'          (padded base64 runs)
const K_UPPER: u16 = 1 << 11; // A-Z

const fn classes(b: u8) -> u16 {
    let digit = b.is_ascii_digit();
    let hex = b.is_ascii_hexdigit();
    let mut k = 0;
    if digit {
        k |= K_DIGIT | K_CARD | K_PHONE | K_QUAD;
    }
    if matches!(b, b' ' | b'-') {
        k |= K_CARD;
    }
    if matches!(b, b' ' | b'(' | b')' | b'+' | b'.' | b'-') {
        k |= K_PHONE;
    }
    if b == b'.' {
        k |= K_QUAD | K_V6 | K_MAC_DOT;
    }
    if hex {
        k |= K_V6 | K_MAC_COLON | K_MAC_DASH | K_MAC_DOT;
    }
    if b == b':' {
        k |= K_V6 | K_MAC_COLON;
    }
    if b == b'-' {
        k |= K_MAC_DASH;
    }
    if digit || matches!(b, b'a'..=b'f') {
        k |= K_LHEX;
    }
    if super::entropy::is_token_byte(b) {
        k |= K_TOKEN;
    }
    if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/') {
        k |= K_B64;
    }
    if b.is_ascii_uppercase() {
        k |= K_UPPER;
    }
    k
}

/// One run counter of the fused pass: a lane of 8 bits in a `u64` (SWAR, eight counters per
/// word). The run is of bytes of class `class`; it counts the bytes of `counted` (a class bit, or
/// an exact byte); it has reached its goal once `threshold` counted bytes are in one run.
struct Lane {
    class: u16,
    counted: Counted,
    threshold: u8,
}

enum Counted {
    Class(u16),
    Byte(u8),
    All,
}

/// The run counters, two words of eight lanes.
const LANES: [[Lane; 8]; 2] = {
    const fn lane(class: u16, counted: Counted, threshold: u8) -> Lane {
        Lane {
            class,
            counted,
            threshold,
        }
    }
    use Counted::{All, Byte, Class};
    [
        [
            lane(K_CARD, Class(K_DIGIT), 9),  // ssn
            lane(K_CARD, Class(K_DIGIT), 13), // card
            lane(K_PHONE, Class(K_DIGIT), 8), // phone
            lane(K_QUAD, Byte(b'.'), 3),      // dotted quad
            lane(K_V6, Byte(b':'), 6),        // ipv6 full form
            lane(K_MAC_COLON, Byte(b':'), 5), // mac 00:1A:…
            lane(K_MAC_DASH, Byte(b'-'), 5),  // mac 00-1A-…
            lane(K_MAC_DOT, Byte(b'.'), 2),   // mac 0012.3456.…
        ],
        [
            lane(K_LHEX, All, 32), // Twilio hex
            // entropy::MIN_TOKEN_LEN (a unit test checks it)
            lane(K_TOKEN, All, 20),
            lane(K_B64, All, 8), // padded base64, read at each `=`
            lane(0, All, 1),
            lane(0, All, 1),
            lane(0, All, 1),
            lane(0, All, 1),
            lane(0, All, 1),
        ],
    ]
};

/// Lane indices of `LANES` that [`scan_all`] reads.
const L_SSN: u32 = 0;
const L_CARD: u32 = 1;
const L_PHONE: u32 = 2;
const L_QUAD: u32 = 3;
const L_V6: u32 = 4;
const L_MAC_COLON: u32 = 5;
const L_MAC_DASH: u32 = 6;
const L_MAC_DOT: u32 = 7;
const L_LHEX: u32 = 8;
const L_TOKEN: u32 = 9;
const L_B64: u32 = 10;

/// Per byte: lanes whose class holds the byte (0xFF lanes) and the increment per lane, per word
/// of run counters, with the two masks of a run's next value (`keep`: the class without bit 7,
/// `reset`: the start value of the lanes outside it); the byte's [`Stats`] slot as a 1 in one
/// lane of two counting words; bit 7 of the base64 lane for `=`.
struct Step {
    class: [u64; 2],
    inc: [u64; 2],
    keep: [u64; 2],
    reset: [u64; 2],
    count: [u64; 2],
    b64_eq: u64,
    /// [`UD_UPPER`] or [`UD_DIGIT`] (or 0): the byte's two bits in the IBAN window.
    ud: u32,
}

/// The two bits per byte of `scan_all`'s IBAN window: an ASCII upper-case letter, a digit.
const UD_UPPER: u32 = 0b10;
const UD_DIGIT: u32 = 0b01;
/// Upper, upper, digit, digit (the oldest byte in the high bits): the start of an IBAN.
const UD_IBAN: u32 = (UD_UPPER << 6) | (UD_UPPER << 4) | (UD_DIGIT << 2) | UD_DIGIT;

const fn step_table() -> [Step; 256] {
    let mut t = [const {
        Step {
            class: [0; 2],
            inc: [0; 2],
            keep: [0; 2],
            reset: [0; 2],
            count: [0; 2],
            b64_eq: 0,
            ud: 0,
        }
    }; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let k = classes(b);
        t[i].ud = if k & K_UPPER != 0 {
            UD_UPPER
        } else if k & K_DIGIT != 0 {
            UD_DIGIT
        } else {
            0
        };
        let slot = SLOT[i] as usize;
        t[i].count[slot / 8] = 1 << (8 * (slot % 8));
        let mut w = 0;
        while w < 2 {
            let mut l = 0;
            while l < 8 {
                let lane = &LANES[w][l];
                if k & lane.class != 0 {
                    t[i].class[w] |= 0xFF << (8 * l);
                    let counted = match lane.counted {
                        Counted::Class(c) => k & c != 0,
                        Counted::Byte(x) => b == x,
                        Counted::All => true,
                    };
                    if counted {
                        t[i].inc[w] |= 1 << (8 * l);
                    }
                }
                l += 1;
            }
            t[i].keep[w] = t[i].class[w] & !HIGH;
            t[i].reset[w] = BIAS[w] & !t[i].class[w];
            w += 1;
        }
        if b == b'=' {
            t[i].b64_eq = B64_HIGH;
        }
        i += 1;
    }
    t
}

/// Start value of each lane: `128 - threshold`, so that bit 7 of a lane is set exactly when its
/// run has counted `threshold` bytes.
const fn biases() -> [u64; 2] {
    let mut out = [0u64; 2];
    let mut w = 0;
    while w < 2 {
        let mut l = 0;
        while l < 8 {
            out[w] |= ((128 - LANES[w][l].threshold as u64) & 0xFF) << (8 * l);
            l += 1;
        }
        w += 1;
    }
    out
}

/// Built on first use rather than at compile time: as a `static` the table is 14 KB of the
/// tail's wasm data (about 1 KB of its gzip), while the code that builds it is a few hundred
/// bytes and runs once per isolate, in microseconds.
static STEP: std::sync::LazyLock<[Step; 256]> = std::sync::LazyLock::new(step_table);
const BIAS: [u64; 2] = biases();
const HIGH: u64 = 0x8080_8080_8080_8080;
/// Bit 7 of the base64 lane (`L_B64`, in the second word).
const B64_HIGH: u64 = 0x80u64 << (8 * (L_B64 - 8));
/// `scan_all`'s window flags.
const F_DOUBLE_COLON: u32 = 1;
const F_SCHEME_SEP: u32 = 2;
const F_IBAN: u32 = 4;
const F_B64_PADDED: u32 = 8;

/// Every [`ScanKind`] of `text` and its [`Stats`] in one pass over the bytes: the same answers as
/// calling [`ScanKind::check`] for each kind (a unit test compares them on random and hand-made
/// texts). The run counters are eight-bit lanes of two words (SWAR), so a byte costs a table
/// look-up and a few word operations whatever the number of checks; the per-check passes it
/// replaces each ran to the end of a text without a match, eleven passes over every stack trace.
pub fn scan_all(text: &[u8]) -> (ScanSet, Stats) {
    let mut counts = [0u32; SLOTS];
    // Every piece of state is a local of at most one word, not a `[u64; 2]` indexed in an inner
    // loop or a flag per window: with x86-64's 16 registers the older layout (arrays, three
    // window flags, four history bytes) spilled to the stack, and every byte waited on stores
    // and loads.
    let (mut runs0, mut runs1) = (BIAS[0], BIAS[1]);
    // a lane's bit 7 once its run reached the threshold: for good / while the run lasts (the
    // latter read only for the base64 lane, in the second word)
    let (mut reached0, mut reached1) = (0u64, 0u64);
    let mut in_run1 = 0u64;
    // the latest four bytes, newest in the low byte; their (upper, digit) bits, newest lowest
    let (mut last, mut ud) = (0u32, 0u32);
    // F_* bits: windows seen (`::`, `://`, the start of an IBAN) and a padded base64 run
    let mut flags = 0u32;
    // byte counts in eight-bit lanes (the `Stats` slots), added into `counts` every 255 bytes
    let table: &[Step; 256] = &STEP;
    for chunk in text.chunks(255) {
        let (mut lanes0, mut lanes1) = (0u64, 0u64);
        for &b in chunk {
            let step = &table[usize::from(b)];
            lanes0 += step.count[0];
            lanes1 += step.count[1];
            last = (last << 8) | u32::from(b);
            ud = (ud << 2) | step.ud;
            flags |= (u32::from(last & 0xFFFF == 0x3A3A) * F_DOUBLE_COLON)
                | (u32::from(last & 0xFF_FFFF == 0x3A_2F2F) * F_SCHEME_SEP)
                | (u32::from(ud & 0xFF == UD_IBAN) * F_IBAN)
                | (u32::from(in_run1 & step.b64_eq != 0) * F_B64_PADDED);
            // no lane exceeds 128 before its bit 7 is cleared: no carry into the next lane
            let next0 = runs0.wrapping_add(step.inc[0]);
            let next1 = runs1.wrapping_add(step.inc[1]);
            reached0 |= next0 & HIGH;
            reached1 |= next1 & HIGH;
            in_run1 = (in_run1 | (next1 & HIGH)) & step.class[1];
            runs0 = (next0 & step.keep[0]) | step.reset[0];
            runs1 = (next1 & step.keep[1]) | step.reset[1];
        }
        for (slot, c) in counts.iter_mut().enumerate() {
            let word = if slot < 8 { lanes0 } else { lanes1 };
            *c += ((word >> (8 * (slot % 8))) & 0xFF) as u32;
        }
    }
    let (double_colon, scheme_sep, iban, b64_padded) = (
        flags & F_DOUBLE_COLON != 0,
        flags & F_SCHEME_SEP != 0,
        flags & F_IBAN != 0,
        flags & F_B64_PADDED != 0,
    );
    let reached = [reached0, reached1];
    let lane = |l: u32| {
        let (w, i) = ((l / 8) as usize, l % 8);
        reached.get(w).is_some_and(|r| r & (0x80 << (8 * i)) != 0)
    };
    let st = Stats { counts };
    let (digits, colons) = (st.digits(), st.count(b':'));
    let mut set = 0u16;
    let mut put = |kind: ScanKind, yes: bool| {
        if yes {
            set |= kind.bit();
        }
    };
    put(
        ScanKind::UrlUserinfo,
        st.count(b'@') > 0 && st.count(b'/') >= 2 && scheme_sep,
    );
    put(ScanKind::PaddedBase64, st.count(b'=') > 0 && b64_padded);
    put(ScanKind::CardDigits, digits >= 13 && lane(L_CARD));
    put(ScanKind::PhoneDigits, digits >= 8 && lane(L_PHONE));
    put(ScanKind::SsnDigits, digits >= 9 && lane(L_SSN));
    put(ScanKind::IbanStart, digits >= 2 && st.upper() >= 2 && iban);
    put(
        ScanKind::DottedQuad,
        st.count(b'.') >= 3 && digits >= 4 && lane(L_QUAD),
    );
    put(
        ScanKind::Ipv6Like,
        colons >= 2 && (double_colon || colons >= 6 && lane(L_V6)),
    );
    put(
        ScanKind::MacLike,
        (colons >= 5 && lane(L_MAC_COLON))
            || (st.count(b'-') >= 5 && lane(L_MAC_DASH))
            || (st.count(b'.') >= 2 && lane(L_MAC_DOT)),
    );
    let prefix =
        (st.count(b'A') > 0 && st.count(b'C') > 0) || (st.count(b'S') > 0 && st.count(b'K') > 0);
    put(
        ScanKind::TwilioHex,
        prefix && digits + st.lower_hex() >= 32 && lane(L_LHEX),
    );
    put(
        ScanKind::TokenRun20,
        text.len() >= super::entropy::MIN_TOKEN_LEN && lane(L_TOKEN),
    );
    (ScanSet(set), st)
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

    /// `scan_all` must answer exactly what each check answers on its own.
    fn assert_fused_agrees(text: &[u8]) {
        let st = Stats::of(text);
        let (set, fused_st) = scan_all(text);
        assert_eq!(
            fused_st.counts,
            st.counts,
            "stats of {:?}",
            String::from_utf8_lossy(text)
        );
        for kind in ScanKind::ALL {
            assert_eq!(
                set.has(kind),
                kind.check(text, &st),
                "{kind:?} on {:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn token_lane_is_the_entropy_minimum() {
        assert_eq!(
            usize::from(LANES[1][(L_TOKEN - 8) as usize].threshold),
            crate::scrub::entropy::MIN_TOKEN_LEN
        );
    }

    #[test]
    fn fused_pass_agrees_with_every_check() {
        for text in [
            "",
            "postgres://a:b@h",
            "https://example.com/a",
            "x: YWRtaW46cGFzc3dvcmQ=",
            "a=b",
            "4111 1111 1111 1111",
            "id 123456789012",
            "+1 415 555 0132",
            "port 8080",
            "078-05-1121",
            "07-05-11",
            "DE89 3704",
            "de89 3704",
            "10.0.0.1",
            "v1.2.3",
            "fe80::1",
            "2001:db8:0:0:0:0:0:1",
            "app.js:12:34",
            "00:1A:2B:3C:4D:5E",
            "0012.3456.789A",
            "12:34:56",
            "SK0123456789abcdef0123456789abcdef",
            "ACCESS denied",
            "x wJalrXUtnFEMI/K7MDENG y",
            "short words only",
            "aa-bb-cc-dd-ee-ff",
            "a:/",
            ":/",
            "12345678=",
            "abcdefgh=",
            "AB12",
            "ABC1",
            "A1B2",
            "::",
            "a://b@c",
        ] {
            assert_fused_agrees(text.as_bytes());
        }
        // random texts (deterministic LCG), each over one alphabet of bytes some check counts,
        // so that every check says yes often and no often
        let alphabets: [&[u8]; 8] = [
            b"0123456789 -x",
            b"0123456789 ()+.-a",
            b"0123456789.:a",
            b"0123456789abcdefABCDEF:.-g",
            b"0123456789abcdefACSKz",
            b"abcXYZ019+/=_- ",
            b"ABDE0189 :/@.",
            b"0123456789abcdefABCDEFKSZxyz:./-@=+()_ ~\n\xc3\xa9",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        let mut yes = [0usize; ScanKind::ALL.len()];
        let n = 200_000;
        for _ in 0..n {
            let alphabet = alphabets[next() % alphabets.len()];
            let len = next() % 72;
            let mut text = Vec::with_capacity(len);
            while text.len() < len {
                let b = alphabet[next() % alphabet.len()];
                text.extend(std::iter::repeat_n(b, 1 + next() % 3));
            }
            assert_fused_agrees(&text);
            let (set, _) = scan_all(&text);
            for (k, kind) in ScanKind::ALL.iter().enumerate() {
                yes[k] += usize::from(set.has(*kind));
            }
        }
        for (k, kind) in ScanKind::ALL.iter().enumerate() {
            assert!(
                yes[k] >= 200 && n - yes[k] >= 200,
                "{kind:?} said yes {} of {n} times",
                yes[k]
            );
        }
    }
}
