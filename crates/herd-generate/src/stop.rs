//! Stop strings over streamed text: text is released only once it can no longer turn out to be
//! the start of a stop string, so a stop string split across tokens is never printed.

/// Watches streamed text for any of several stop strings.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released: it ends with a prefix of some stop string.
    held: String,
    stopped: bool,
}

/// What [`StopMatcher::push`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// Text that is safe to show.
    pub text: String,
    /// Whether a stop string was found (the text stops right before it).
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Adds newly decoded text.
    pub fn push(&mut self, text: &str) -> Released {
        if self.stopped {
            return Released {
                text: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(text);
        // The earliest complete stop string ends generation there.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.stopped = true;
            return Released {
                text: out,
                stopped: true,
            };
        }
        // Hold back the longest tail that some stop string starts with.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_string();
        self.held.drain(..keep);
        Released {
            text: out,
            stopped: false,
        }
    }

    /// Releases whatever is held (generation ended for another reason).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()));
        let mut out = String::new();
        for p in pieces {
            let r = m.push(p);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn a_stop_string_split_across_tokens_stops_at_its_first_character() {
        assert_eq!(
            run(&["\nUser:"], &["Hello", " there", "\nUs", "er", ": hi"]),
            ("Hello there".into(), true)
        );
        assert_eq!(run(&["###"], &["a#", "#", "#b"]), ("a".into(), true));
    }

    #[test]
    fn nothing_that_might_start_a_stop_string_is_released_early() {
        let mut m = StopMatcher::new(["STOP".to_string()]);
        assert_eq!(m.push("abc ST").text, "abc ");
        assert_eq!(m.push("O").text, "");
        // "STOR" cannot become "STOP": all of it is released.
        assert_eq!(m.push("RM!").text, "STORM!");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        assert_eq!(
            run(&["world", "lo"], &["hello world"]),
            ("hel".into(), true)
        );
        assert_eq!(
            run(&["x", "yz"], &["ab", "y", "z", "x"]),
            ("ab".into(), true)
        );
    }

    #[test]
    fn held_text_comes_out_when_generation_ends_otherwise() {
        assert_eq!(
            run(&["</s>"], &["the end <", "/"]),
            ("the end </".into(), false)
        );
        assert_eq!(run(&[], &["plain"]), ("plain".into(), false));
    }

    #[test]
    fn multibyte_text_is_split_on_character_boundaries() {
        assert_eq!(
            run(&["。終"], &["日本語", "。", "終わり"]),
            ("日本語".into(), true)
        );
        assert_eq!(
            run(&["。終"], &["日本語", "。", "です"]),
            ("日本語。です".into(), false)
        );
    }
}
