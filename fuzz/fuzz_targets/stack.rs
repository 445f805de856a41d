//! `stack::parse_stack`, `top_in_app_frame`, `Frame::key` and `panic_location` on any text.
//!
//! Invariants: at most `MAX_FRAMES` frames; a frame comes from one line of at most
//! `MAX_LINE_BYTES`, so its function and file are no longer; the top in-app frame is the first
//! frame that is in-app; `panic_location` gives a file and a line or nothing. Deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::stack::{MAX_FRAMES, MAX_LINE_BYTES, panic_location, parse_stack, top_in_app_frame};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frames = parse_stack(text);
    assert!(frames.len() <= MAX_FRAMES, "{} frames", frames.len());
    assert_eq!(parse_stack(text), frames, "not deterministic");
    for f in &frames {
        assert!(
            f.function
                .as_ref()
                .is_none_or(|s| s.len() <= MAX_LINE_BYTES)
        );
        assert!(f.file.as_ref().is_none_or(|s| s.len() <= MAX_LINE_BYTES));
        let key = f.key();
        assert_eq!(f.key(), key);
    }
    let top = top_in_app_frame(&frames);
    assert_eq!(top, frames.iter().find(|f| f.in_app()));
    if let Some(p) = panic_location(text) {
        assert!(p.file.as_ref().is_some_and(|f| !f.is_empty()));
        assert!(p.line.is_some() && p.function.is_none());
        let _ = p.key();
    }
});
