//! `normalize_message` and `route::route_pattern` on any text.
//!
//! Invariants: both are deterministic and bounded. `normalize_message` reads at most
//! `MAX_INPUT_BYTES` and writes at most 5 bytes per byte read (the widest replacement per input
//! byte is a lone digit becoming `<int>`), trimmed. `route_pattern` starts with `/`, keeps at
//! most `MAX_SEGMENTS` segments, reads at most `MAX_URL_BYTES` (`:id` can widen a one-byte
//! segment, plus one leading `/`), and has no empty segment and no `?`/`#` part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::normalize::{MAX_INPUT_BYTES, normalize_message};
use selfheal::route::{MAX_SEGMENTS, MAX_URL_BYTES, route_pattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let n = normalize_message(text);
    assert_eq!(normalize_message(text), n, "normalize not deterministic");
    let read = text.len().min(MAX_INPUT_BYTES);
    assert!(
        n.len() <= 5 * read,
        "normalized {} bytes from {read}",
        n.len()
    );
    assert_eq!(n.trim(), n.as_str(), "not trimmed: {n:?}");

    let r = route_pattern(text);
    assert_eq!(route_pattern(text), r, "route not deterministic");
    assert!(r.starts_with('/'), "{r:?}");
    let segments: Vec<&str> = r.split('/').skip(1).collect();
    assert!(
        segments.len() <= MAX_SEGMENTS,
        "{} segments",
        segments.len()
    );
    assert!(r == "/" || segments.iter().all(|s| !s.is_empty()), "{r:?}");
    assert!(!r.contains(['?', '#']), "{r:?}");
    assert!(
        r.len() <= MAX_URL_BYTES + 3 * MAX_SEGMENTS + 1,
        "route {} bytes",
        r.len()
    );
});
