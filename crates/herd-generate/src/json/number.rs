//! JSON numbers, checked as they are written.

/// Is `s` the start of a JSON number (an integer if `integer`)?
pub(super) fn number_prefix_ok(s: &str, integer: bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    if i == b.len() {
        return true;
    }
    if b[i] == b'0' {
        i += 1;
    } else if b[i].is_ascii_digit() {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    } else {
        return false;
    }
    if i == b.len() {
        return true;
    }
    if b[i] == b'.' {
        if integer {
            return false;
        }
        i += 1;
        let digits_from = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == b.len() {
            return true;
        }
        // A fraction needs a digit before anything else.
        if i == digits_from {
            return false;
        }
    }
    if b[i] == b'e' || b[i] == b'E' {
        if integer {
            return false;
        }
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    i == b.len()
}

/// Is `s` a whole JSON number, which no further digit could extend into a different token?
pub(super) fn number_complete(s: &str) -> bool {
    let last = s.as_bytes().last().copied().unwrap_or(b'-');
    last.is_ascii_digit() && serde_json::from_str::<serde_json::Number>(s).is_ok()
}
