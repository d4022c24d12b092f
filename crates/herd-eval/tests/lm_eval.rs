//! The same numbers as lm-evaluation-harness: `scripts/make_lm_eval_fixture.py` ran lm-eval
//! 0.4 (`--model hf`, float32, zero-shot) on two MMLU subjects read from `../shared/data/mmlu`
//! with the hf-tiny llama model, and kept every sample's prompt, per-choice log-likelihoods
//! and lm-eval's `acc` / `acc_norm`. herd's `tasks/mmlu.toml` must write the same prompts, find
//! the same log-likelihoods (lm-eval's tokenisation split and left truncation at 256
//! positions included) and so the same accuracies.

mod common;

use herd_eval::backend::{Backend, Local};
use herd_eval::mc;

#[test]
fn mmlu_accuracy_equals_lm_evaluation_harness() {
    let fx = common::fixture("mmlu_lm_eval.json");
    let task = common::task("mmlu.toml");
    let items = task.items().unwrap();
    let mut local = Local::open(&common::shared().join("golden/hf-tiny/llama"), 2, false).unwrap();
    let subjects = fx["subjects"].as_object().unwrap();
    assert_eq!(subjects.len(), 2);
    for (subject, s) in subjects {
        // lm-eval's doc_id is the row's index in the file.
        let mine: Vec<_> = items.iter().filter(|i| &i.category == subject).collect();
        let samples = s["samples"].as_array().unwrap();
        assert_eq!(mine.len(), samples.len(), "{subject}: rows");
        let reqs: Vec<mc::LlRequest> = mine.iter().map(|it| mc::request(&task, it, &[])).collect();
        let mut lls = vec![];
        for chunk in reqs.chunks(16) {
            lls.extend(local.loglikelihood(chunk).unwrap().0);
        }
        let (mut acc, mut acc_norm, mut worst) = (0usize, 0usize, 0f64);
        for (((it, req), ll), sample) in mine.iter().zip(&reqs).zip(&lls).zip(samples) {
            let i = sample["doc_id"].as_u64().unwrap() as usize;
            assert_eq!(&mine[i].key, &it.key, "{subject}: samples out of order");
            assert_eq!(
                req.context,
                sample["context"].as_str().unwrap(),
                "{subject} {}: prompt",
                it.key
            );
            let want: Vec<f64> = serde_json::from_value(sample["loglikelihoods"].clone()).unwrap();
            let got: Vec<f64> = ll.iter().map(|r| r.logprob).collect();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((g - w).abs());
                assert!(
                    (g - w).abs() < 1e-4,
                    "{subject} {}: {got:?} vs lm-eval {want:?}",
                    it.key
                );
            }
            let (p, pn) = mc::predictions(&got, &mc::targets(&task, it));
            acc += (Some(p) == it.gold) as usize;
            acc_norm += (Some(pn) == it.gold) as usize;
        }
        let n = samples.len() as f64;
        let (a, an) = (acc as f64 / n, acc_norm as f64 / n);
        eprintln!(
            "{subject}: acc {a:.4} acc_norm {an:.4} (lm-eval {} {}), largest difference {worst:.2e}",
            s["acc"], s["acc_norm"]
        );
        assert!(
            (a - s["acc"].as_f64().unwrap()).abs() < 1e-12,
            "{subject}: acc {a} vs lm-eval {}",
            s["acc"]
        );
        assert!(
            (an - s["acc_norm"].as_f64().unwrap()).abs() < 1e-12,
            "{subject}: acc_norm {an} vs lm-eval {}",
            s["acc_norm"]
        );
    }
}
