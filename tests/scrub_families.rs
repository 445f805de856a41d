//! The PII families of issue 9, each on both sides of its line, with generated values:
//! IBANs of every country of the SWIFT IBAN registry (registry length + mod 97), card numbers in
//! the usual groupings (Luhn), US social security numbers, user names in home-directory paths,
//! and benign values that must stay visible.

use selfheal::scrub::scrub_text;
use selfheal::scrub::validate::{IBAN_LENGTHS, is_iban, luhn};

/// `cc` + check digits + `bban`, with the check digits computed (ISO 7064 mod 97-10).
fn iban(cc: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{cc}00");
    let mut rem: u64 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).map(u64::from).unwrap_or(0);
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    format!("{cc}{:02}{bban}", 98 - rem)
}

/// A BBAN of `n` chars, digits with a few letters (deterministic per country).
fn bban(cc: &str, n: usize) -> String {
    let seed = cc.bytes().map(u32::from).sum::<u32>();
    (0..n)
        .map(|i| {
            let k = (seed + 7 * i as u32) % 13;
            if i == 4 && n > 12 {
                char::from(b'A' + (k as u8 % 26))
            } else {
                char::from(b'0' + (k % 10) as u8)
            }
        })
        .collect()
}

fn spaced(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn has_rule(text: &str, rule: &str) -> bool {
    scrub_text(text).remarks.iter().any(|r| r.rule == rule)
}

#[test]
fn iban_of_every_registry_country() {
    assert!(IBAN_LENGTHS.len() >= 89, "{} countries", IBAN_LENGTHS.len());
    for &(cc, len) in IBAN_LENGTHS {
        let valid = iban(cc, &bban(cc, len - 4));
        assert_eq!(valid.len(), len, "{cc}");
        assert!(is_iban(&valid), "{valid}");
        let want = format!("[redacted:iban:{}]", cc.to_ascii_lowercase());
        for form in [valid.clone(), spaced(&valid)] {
            let text = format!("refund to {form} failed");
            assert_eq!(
                scrub_text(&text).text,
                format!("refund to {want} failed"),
                "{cc}: {form}"
            );
        }
        // wrong check digits, and one char too many / too few: not an IBAN of that country
        let mut wrong = valid.clone().into_bytes();
        wrong[2] = if wrong[2] == b'9' { b'1' } else { b'9' };
        let wrong = String::from_utf8(wrong).unwrap_or_default();
        assert!(!is_iban(&wrong), "{wrong}");
        let longer = iban(cc, &bban(cc, len - 3));
        let shorter = iban(cc, &bban(cc, len - 5));
        for bad in [wrong, longer, shorter] {
            assert!(
                !has_rule(&format!("ref {bad} end"), "@iban"),
                "{cc}: {bad} should not be an IBAN"
            );
        }
    }
}

/// A Luhn-valid number of `len` digits starting with `prefix`.
fn card(prefix: &str, len: usize) -> String {
    let mut body: String = prefix.to_string();
    while body.len() < len - 1 {
        body.push('7');
    }
    (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|n| luhn(n))
        .unwrap_or_default()
}

fn group(n: &str, sizes: &[usize], sep: &str) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    for &s in sizes {
        if let Some(part) = n.get(i..(i + s).min(n.len()))
            && !part.is_empty()
        {
            out.push(part.to_string());
        }
        i += s;
    }
    out.join(sep)
}

#[test]
fn cards_in_the_usual_groupings() {
    let cases: &[(&str, usize, &[usize], &str)] = &[
        ("4", 16, &[4, 4, 4, 4], "visa"),
        ("4", 13, &[4, 4, 4, 1], "visa"),
        ("4", 19, &[4, 4, 4, 4, 3], "visa"),
        ("51", 16, &[4, 4, 4, 4], "mastercard"),
        ("2221", 16, &[4, 4, 4, 4], "mastercard"),
        ("37", 15, &[4, 6, 5], "amex"),
        ("36", 14, &[4, 6, 4], "diners"),
        ("6011", 16, &[4, 4, 4, 4], "discover"),
        ("35", 16, &[4, 4, 4, 4], "jcb"),
        ("62", 16, &[4, 4, 4, 4], "unionpay"),
        ("6759", 19, &[4, 4, 4, 4, 3], "maestro"),
    ];
    for &(prefix, len, sizes, brand) in cases {
        let n = card(prefix, len);
        assert!(luhn(&n), "{n}");
        for form in [n.clone(), group(&n, sizes, " "), group(&n, sizes, "-")] {
            let out = scrub_text(&format!("charge {form} declined")).text;
            assert_eq!(
                out,
                format!("charge [redacted:credit_card:{brand}] declined"),
                "{form}"
            );
        }
        // one digit off: Luhn fails, the number stays (an id, an order number)
        let mut bad = n.clone().into_bytes();
        if let Some(last) = bad.last_mut() {
            *last = if *last == b'9' { b'0' } else { *last + 1 };
        }
        let bad = String::from_utf8(bad).unwrap_or_default();
        assert!(!has_rule(&format!("order {bad}"), "@credit_card"), "{bad}");
    }
}

#[test]
fn ssn_both_sides() {
    for ssn in ["078-05-1120", "536-22-1234", "219 09 9999", "665-01-0001"] {
        assert!(has_rule(&format!("ssn {ssn} on file"), "@ssn"), "{ssn}");
    }
    for not in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123-45-6789",
        "111-11-1111",
        "1-536-22-1234",
        "536-22-12345",
        "v536-22-1234",
    ] {
        assert!(!has_rule(&format!("id {not} x"), "@ssn"), "{not}");
    }
}

#[test]
fn home_directory_names_both_sides() {
    for (text, want) in [
        (
            "at /home/alice/app/index.js:1:2",
            "at /home/[redacted:user]/app/index.js:1:2",
        ),
        (
            "at file:///Users/jdoe/src/worker.ts:3:4",
            "at file:///Users/[redacted:user]/src/worker.ts:3:4",
        ),
        (
            "open 'C:\\Users\\Ana Lima\\x.txt'",
            "open 'C:\\Users\\[redacted:user]\\x.txt'",
        ),
        ("C:/Users/bob/AppData", "C:/Users/[redacted:user]/AppData"),
        (
            "C:\\Documents and Settings\\carol\\x",
            "C:\\Documents and Settings\\[redacted:user]\\x",
        ),
    ] {
        assert_eq!(scrub_text(text).text, want, "{text}");
    }
    for kept in [
        "at /home/runner/work/app/index.js:1:2",
        "C:\\Users\\Public\\Desktop",
        "/Users/Shared/x",
        "GET https://api.example.com/v1/Users/42",
        "/api/home/feed",
        "/home/$USER/.npmrc",
        "%USERPROFILE% is C:\\Users\\%USERNAME%\\x",
    ] {
        assert!(!has_rule(kept, "@home_user"), "{kept}");
    }
}

#[test]
fn benign_values_under_harmless_keys_stay() {
    // messages: a number, Infinity, an enum word, a page size under harmless keys
    for text in [
        "list failed: page=2 limit=Infinity sort=asc pageSize=50",
        "retry 3 of 5 after 250 ms (status=503, mode=strict)",
        "{\"page\":2,\"order\":\"desc\",\"limit\":100}",
    ] {
        let out = scrub_text(text);
        assert_eq!(out.text, text, "{:?}", out.remarks);
    }
    // the other side: the same shapes under credential keys go
    for (text, want) in [
        (
            "auth failed: password=2",
            "auth failed: password=[redacted:password]",
        ),
        ("token=Infinity", "token=[redacted:token]"),
        ("{\"pin\":\"1234\"}", "{\"pin\":\"[redacted:password]\"}"),
    ] {
        assert_eq!(scrub_text(text).text, want, "{text}");
    }
}
