//! Answer extraction for generation tasks: the first capture of the first matching regular
//! expression (GSM8K's `#### 42`), else the last number in the text; then the normalisation
//! lm-evaluation-harness applies before exact match (commas, `$` and a final `.` removed).

use regex::Regex;

use crate::error::{Error, Result};
use crate::task::ExtractSpec;

pub struct Extractor {
    regexes: Vec<Regex>,
    last_number: bool,
}

/// A number as written in prose: sign, digits with thousands commas, decimals.
const NUMBER: &str = r"-?\$?[0-9][0-9,]*(?:\.[0-9]+)?";

impl Extractor {
    pub fn new(spec: &ExtractSpec) -> Result<Self> {
        let regexes = spec
            .regex
            .iter()
            .map(|r| Regex::new(r).map_err(|e| Error::Usage(format!("extract.regex {r:?}: {e}"))))
            .collect::<Result<_>>()?;
        Ok(Extractor {
            regexes,
            last_number: spec.last_number,
        })
    }

    /// The answer in `text`, normalised, or `None` when nothing matches.
    pub fn extract(&self, text: &str) -> Option<String> {
        for re in &self.regexes {
            if let Some(c) = re.captures(text) {
                let m = c.get(1).or_else(|| c.get(0))?;
                return Some(normalize(m.as_str()));
            }
        }
        if self.last_number {
            // The pattern is a constant and compiles.
            let re = Regex::new(NUMBER).ok()?;
            return re.find_iter(text).last().map(|m| normalize(m.as_str()));
        }
        None
    }
}

/// Commas, dollar signs, surrounding space and a final full stop removed.
pub fn normalize(s: &str) -> String {
    let s: String = s.chars().filter(|&c| c != ',' && c != '$').collect();
    let s = s.trim();
    s.strip_suffix('.').unwrap_or(s).trim().to_string()
}

/// Exact match after normalisation; numbers compare by value (`18.00` is `18`).
pub fn matches(pred: &str, gold: &str) -> bool {
    let (p, g) = (normalize(pred), normalize(gold));
    if p == g {
        return true;
    }
    match (p.parse::<f64>(), g.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() < 1e-9 * b.abs().max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gsm8k() -> Extractor {
        Extractor::new(&ExtractSpec {
            regex: vec![r"#### (\-?[0-9\.\,]+)".into()],
            last_number: true,
        })
        .unwrap()
    }

    #[test]
    fn marked_answer_wins_over_later_numbers() {
        assert_eq!(
            gsm8k().extract("so 3 eggs\n#### 1,200\nthen 7").as_deref(),
            Some("1200")
        );
    }

    #[test]
    fn last_number_without_marker() {
        assert_eq!(gsm8k().extract("She pays $18.").as_deref(), Some("18"));
        assert_eq!(
            gsm8k().extract("The answer is -3.5 dollars").as_deref(),
            Some("-3.5")
        );
        assert_eq!(gsm8k().extract("no digits"), None);
    }

    #[test]
    fn numeric_match() {
        assert!(matches("18.00", "18"));
        assert!(matches("1,000", "1000"));
        assert!(!matches("17", "18"));
    }
}
