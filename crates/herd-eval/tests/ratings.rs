//! Elo and Bradley–Terry ratings of the 2023 Vicuna review battles (1,040 games between seven
//! models) against values computed independently by `scripts/make_ratings_fixture.py`
//! (FastChat's `compute_elo`; Chatbot Arena's `compute_mle_elo` with scikit-learn, and a
//! minorise-maximise solver in numpy).

mod common;

use herd_eval::import::{Imported, import_file};
use herd_eval::ratings::{self, Method};
use herd_eval::runner::battles;
use herd_eval::store::Store;

#[test]
fn vicuna_battles_give_the_reference_ratings() {
    let fx = common::fixture("vicuna_ratings.json");
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("e.sqlite")).unwrap();
    let mut imp = Imported::default();
    let root = common::shared().join("data/vicuna_eval_2023/review");
    let mut files = vec![];
    for d in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    for f in &files {
        import_file(&mut store, f, None, &mut imp).unwrap();
    }
    let mut ids = imp.runs.clone();
    ids.sort();
    let b: Vec<_> = ids
        .iter()
        .flat_map(|id| battles(&store.items(id).unwrap()))
        .collect();
    assert_eq!(b.len() as u64, fx["battles"].as_u64().unwrap());
    for (x, want) in b.iter().zip(fx["first_battles"].as_array().unwrap()) {
        assert_eq!(x.model_a, want[0].as_str().unwrap());
        assert_eq!(x.model_b, want[1].as_str().unwrap());
    }

    let elo = ratings::elo(&b);
    let bt = ratings::bradley_terry(&b);
    for (m, v) in fx["elo"].as_object().unwrap() {
        assert!(
            (elo[m] - v.as_f64().unwrap()).abs() < 1e-9,
            "elo {m}: {} vs {v}",
            elo[m]
        );
    }
    for (m, v) in fx["bradley_terry_mm"].as_object().unwrap() {
        assert!(
            (bt[m] - v.as_f64().unwrap()).abs() < 1e-6,
            "bt {m}: {} vs {v}",
            bt[m]
        );
    }
    if let Some(sk) = fx["bradley_terry_sklearn"].as_object() {
        for (m, v) in sk {
            assert!(
                (bt[m] - v.as_f64().unwrap()).abs() < 1e-4,
                "bt (sklearn) {m}: {} vs {v}",
                bt[m]
            );
        }
    }

    // Bootstrap intervals: seeded, and around the point estimate.
    let a = ratings::with_intervals(&b, Method::BradleyTerry, 200, 7);
    assert_eq!(a, ratings::with_intervals(&b, Method::BradleyTerry, 200, 7));
    for r in &a {
        assert!(r.lo <= r.rating && r.rating <= r.hi, "{r:?}");
    }
    assert_eq!(a[0].model, "gpt-3.5-turbo:20230327");
    let e = ratings::with_intervals(&b, Method::Elo, 200, 7);
    assert!(e.iter().all(|r| r.lo < r.hi));
}
