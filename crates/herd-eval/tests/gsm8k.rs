//! GSM8K answer extraction agrees with the official `####` answers on the whole test file when
//! fed the reference solutions.

mod common;

use herd_eval::extract::{Extractor, matches};

#[test]
fn extraction_from_reference_solutions_is_always_right() {
    let task = common::task("gsm8k.toml");
    let items = task.items().unwrap();
    assert_eq!(items.len(), 1319);
    let ex = Extractor::new(&task.file.extract).unwrap();
    let mut wrong = vec![];
    for it in &items {
        let solution = it.fields["answer"].as_str().unwrap();
        let gold = it.reference.as_deref().unwrap();
        match ex.extract(solution) {
            Some(got) if matches(&got, gold) => {}
            other => wrong.push(format!("{}: {other:?} vs {gold}", it.key)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 1319 wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // Without the marker the last number is taken: the solutions with "####" removed.
    let mut last = 0;
    for it in &items {
        let solution = it.fields["answer"].as_str().unwrap().replace("####", "");
        if ex
            .extract(&solution)
            .is_some_and(|g| matches(&g, it.reference.as_deref().unwrap()))
        {
            last += 1;
        }
    }
    assert_eq!(last, 1319);
}
