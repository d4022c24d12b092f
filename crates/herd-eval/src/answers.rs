//! FastChat answer files: MT-bench's (`choices[0].turns`) and the 2023 Vicuna evaluation's
//! (`text`), keyed by question id.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::data::{self, ReadOptions};
use crate::error::Result;

/// Answer turns per question id.
pub fn read_answers(path: &Path) -> Result<HashMap<String, Vec<String>>> {
    let mut out = HashMap::new();
    for r in data::read(path, &ReadOptions::default())? {
        let id = r.text("question_id")?;
        let turns = if let Some(Value::Array(ch)) = r.fields.get("choices") {
            let turns = ch
                .first()
                .and_then(|c| c.get("turns"))
                .and_then(Value::as_array)
                .ok_or_else(|| r.error("'choices' has no 'turns' list"))?;
            turns
                .iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| r.error("a turn is not a string"))?
        } else {
            vec![r.text("text")?]
        };
        if out.insert(id.clone(), turns).is_some() {
            return Err(r.error(format!("a second answer to question {id}")));
        }
    }
    Ok(out)
}

/// The model name an answer file names (`model_id`), if all its rows agree.
pub fn model_of(path: &Path) -> Result<Option<String>> {
    let rows = data::read(path, &ReadOptions::default())?;
    let mut names = rows.iter().filter_map(|r| r.text("model_id").ok());
    let first = names.next();
    Ok(first.filter(|f| names.all(|n| &n == f)))
}
