//! Every task file of `tasks/` reads its dataset completely, and a user's own dataset works
//! from a task file alone: JSON lines with the choices as one list and the answer as text.

mod common;

use herd_eval::mc;
use herd_eval::task::{Kind, Task};

#[test]
fn the_shipped_task_files_read_their_data() {
    for (file, kind, n, categories) in [
        ("mmlu.toml", Kind::MultipleChoice, 14079, 57), // the early release in shared (MANIFEST.tsv)
        ("cmmlu.toml", Kind::MultipleChoice, 11582, 67), // 11,649 lines less 67 headers
        ("gsm8k.toml", Kind::Generate, 1319, 1),
        ("mt_bench_single.toml", Kind::JudgeSingle, 80, 8),
        ("mt_bench_pairwise.toml", Kind::JudgePairwise, 80, 8),
        ("vicuna_pairwise.toml", Kind::JudgePairwise, 80, 9),
    ] {
        let t = common::task(file);
        assert_eq!(t.file.kind, kind, "{file}");
        let items = t.items().unwrap();
        assert_eq!(items.len(), n, "{file}");
        let mut cats: Vec<&str> = items.iter().map(|i| i.category.as_str()).collect();
        cats.sort();
        cats.dedup();
        assert_eq!(cats.len(), categories, "{file}: {cats:?}");
        if kind == Kind::MultipleChoice {
            assert!(
                items
                    .iter()
                    .all(|i| i.choices.len() == 4 && i.gold.is_some_and(|g| g < 4)),
                "{file}"
            );
            // Few-shot examples come from the dev files of the same subject.
            let pool = t.fewshot_items().unwrap();
            let shots = mc::shots(&pool, &items[0], 5);
            assert_eq!(shots.len(), 5, "{file}");
            assert!(shots.iter().all(|s| s.category == items[0].category));
        }
    }
    // MT-bench: two turns, reference answers for the maths questions.
    let mt = common::task("mt_bench_single.toml").items().unwrap();
    assert!(mt.iter().all(|i| i.turns.len() == 2));
    assert!(
        mt.iter()
            .filter(|i| i.category == "math")
            .all(|i| i.reference_turns.len() == 2)
    );
}

#[test]
fn a_users_jsonl_dataset_needs_only_a_task_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("quiz.jsonl"),
        "{\"id\": \"q1\", \"q\": \"2+2?\", \"options\": [\"3\", \"4\"], \"right\": \"4\", \"topic\": \"sums\"}\n\
         {\"id\": \"q2\", \"q\": \"Capital of France?\", \"options\": [\"Paris\", \"Rome\", \"Oslo\"], \"right\": \"A\", \"topic\": \"places\"}\n",
    )
    .unwrap();
    let path = dir.path().join("quiz.toml");
    std::fs::write(
        &path,
        "name = \"quiz\"\nversion = \"2\"\nkind = \"multiple_choice\"\n\
         [data]\npath = \"quiz.jsonl\"\nid = \"id\"\nquestion = \"q\"\nchoices = [\"options\"]\nanswer = \"right\"\ncategory = \"topic\"\n\
         [prompt]\ntemplate = \"Q: {question}\\n{choices}\\nA:\"\ntargets = \"texts\"\n",
    )
    .unwrap();
    let t = Task::load(&path, None).unwrap();
    let items = t.items().unwrap();
    assert_eq!((items[0].gold, items[1].gold), (Some(1), Some(0)));
    assert_eq!(items[1].category, "places");
    let r = mc::request(&t, &items[0], &[]);
    assert_eq!(r.context, "Q: 2+2?\nA. 3\nB. 4\nA:");
    assert_eq!(r.continuations, [" 3", " 4"]);

    // A row whose answer is none of its choices names its file and line.
    std::fs::write(dir.path().join("quiz.jsonl"), "{\"id\": \"q1\", \"q\": \"x\", \"options\": [\"3\", \"4\"], \"right\": \"5\", \"topic\": \"t\"}\n").unwrap();
    let e = t.items().unwrap_err().to_string();
    assert!(e.ends_with("quiz.jsonl:1: answer '5' is neither a label (A, B), an index below 2 nor one of the choices"), "{e}");
    // An unknown key in the task file is an error, not ignored.
    std::fs::write(&path, "name = \"quiz\"\nversion = \"2\"\nkind = \"multiple_choice\"\nshots = 3\n[data]\npath = \"quiz.jsonl\"\n").unwrap();
    let e = Task::load(&path, None).err().unwrap().to_string();
    assert!(e.contains("quiz.toml") && e.contains("shots"), "{e}");
}
