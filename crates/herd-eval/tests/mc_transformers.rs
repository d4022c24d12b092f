//! Multiple choice by log-likelihood against transformers: the per-choice log-likelihoods of
//! real MMLU items (zero- and one-shot, some long enough to be cut at the model's 256
//! positions) on two hf-tiny models, from `scripts/make_eval_fixture.py`; and batching that
//! changes nothing.

mod common;

use herd_eval::backend::{Backend, Local};
use herd_eval::mc::{self, Encoded, score_local};

#[test]
fn mmlu_loglikelihoods_match_transformers() {
    let fx = common::fixture("mmlu_transformers.json");
    let task = common::task("mmlu.toml");
    let items = task.items().unwrap();
    let pool = task.fewshot_items().unwrap();
    for arch in ["llama", "qwen2"] {
        let mut local = Local::open(
            &common::shared().join("golden/hf-tiny").join(arch),
            1,
            false,
        )
        .unwrap();
        let expected = fx["models"][arch]["items"].as_array().unwrap();
        assert_eq!(
            local.max_len as u64,
            fx["models"][arch]["max_length"].as_u64().unwrap()
        );
        let mut worst: f64 = 0.0;
        let (mut acc, mut acc_fx) = (0, 0);
        for e in expected {
            let key = e["key"].as_str().unwrap();
            let item = items
                .iter()
                .find(|i| i.key == key)
                .unwrap_or_else(|| panic!("no item {key}"));
            let shots = mc::shots(&pool, item, e["num_fewshot"].as_u64().unwrap() as usize);
            let req = mc::request(&task, item, &shots);
            assert_eq!(
                req.context,
                e["context"].as_str().unwrap(),
                "{arch} {key}: prompt"
            );
            let enc = Encoded::new(&local.tok, false, &req).unwrap();
            let ids: Vec<u32> = serde_json::from_value(e["context_ids"].clone()).unwrap();
            let conts: Vec<Vec<u32>> =
                serde_json::from_value(e["continuation_ids"].clone()).unwrap();
            if let Some(at) = enc
                .context
                .iter()
                .zip(&ids)
                .position(|(a, b)| a != b)
                .or((enc.context.len() != ids.len()).then_some(enc.context.len().min(ids.len())))
            {
                let w = |v: &[u32]| v[at.saturating_sub(3)..(at + 4).min(v.len())].to_vec();
                panic!(
                    "{arch} {key}: context tokens differ at {at} of {}/{}: herd {:?}, transformers {:?}",
                    enc.context.len(),
                    ids.len(),
                    w(&enc.context),
                    w(&ids)
                );
            }
            assert_eq!(
                enc.continuations, conts,
                "{arch} {key}: continuation tokens"
            );
            let (res, _) = local.loglikelihood(&[req]).unwrap();
            for (j, r) in res[0].iter().enumerate() {
                let want = e["loglikelihoods"][j].as_f64().unwrap();
                worst = worst.max((r.logprob - want).abs());
                assert!(
                    (r.logprob - want).abs() < 1e-4,
                    "{arch} {key} choice {j}: {} vs {want}",
                    r.logprob
                );
                assert_eq!(
                    r.greedy,
                    e["greedy"][j].as_bool().unwrap(),
                    "{arch} {key} choice {j}: greedy"
                );
            }
            let ll: Vec<f64> = res[0].iter().map(|r| r.logprob).collect();
            let (pred, _) = mc::predictions(&ll, &mc::targets(&task, item));
            acc += (Some(pred) == item.gold) as u64;
            acc_fx += e["acc"].as_u64().unwrap();
        }
        assert_eq!(acc, acc_fx, "{arch}: accuracy");
        eprintln!(
            "{arch}: {} items, largest difference {worst:.2e}, {acc} right",
            expected.len()
        );
    }
}

#[test]
fn batched_scores_equal_one_at_a_time() {
    let task = common::task("mmlu.toml");
    let items = task.items().unwrap();
    let pool = task.fewshot_items().unwrap();
    let mut local = Local::open(&common::shared().join("golden/hf-tiny/llama"), 2, false).unwrap();
    // Zero-, one- and five-shot items of several lengths, the longer ones cut at 256 tokens.
    let encs: Vec<Encoded> = items
        .iter()
        .step_by(997)
        .zip([0, 1, 5].into_iter().cycle())
        .map(|(it, k)| {
            Encoded::new(
                &local.tok,
                false,
                &mc::request(&task, it, &mc::shots(&pool, it, k)),
            )
            .unwrap()
        })
        .collect();
    assert!(encs.len() >= 12);
    let max = local.max_len;
    let batched = score_local(&mut local.engine, &encs, max).unwrap();
    for batch in [1, 3, 5] {
        let mut alone = vec![];
        for c in encs.chunks(batch) {
            alone.extend(score_local(&mut local.engine, c, max).unwrap());
        }
        for (a, b) in batched.iter().flatten().zip(alone.iter().flatten()) {
            assert!(
                (a.logprob - b.logprob).abs() < 1e-5,
                "batch {batch}: {} vs {}",
                a.logprob,
                b.logprob
            );
            assert_eq!(a.greedy, b.greedy);
        }
    }
}
