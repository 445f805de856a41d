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

#[cfg(test)]
mod tests {
    use super::*;

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
