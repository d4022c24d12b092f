//! The candle reference forward pass against transformers' float32 outputs for every hf-tiny
//! architecture (`../shared/golden/hf-tiny`).

mod common;

use candle_core::{Device, Tensor};
use common::*;
use herd_model::Model;
use herd_model::reference::{Layout, RefCache, RefModel};

#[test]
fn prompt_logits_match_transformers_for_every_architecture() {
    for arch in HF_TINY {
        let g = golden(arch);
        let model = Model::open(hf_tiny(arch)).unwrap();
        let rm = RefModel::load(&model, &Device::Cpu).unwrap();
        let t = g.input_ids.len();
        let tokens = Tensor::from_vec(g.input_ids.clone(), (1, t), &Device::Cpu).unwrap();
        let logits = rm
            .forward(&tokens, &Layout::contiguous(&[0], t), None)
            .unwrap();
        let logits = logits.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        for (pos, (got, want)) in logits.iter().zip(&g.logits).enumerate() {
            let d = max_abs_diff(got, want);
            assert!(d < 1e-4, "{arch}: position {pos}: max |Δ| = {d}");
        }
    }
}

#[test]
fn cached_decoding_matches_transformers_generate() {
    for arch in HF_TINY {
        let g = golden(arch);
        let model = Model::open(hf_tiny(arch)).unwrap();
        let rm = RefModel::load(&model, &Device::Cpu).unwrap();
        let mut cache = RefCache::default();
        let t = g.input_ids.len();
        let tokens = Tensor::from_vec(g.input_ids.clone(), (1, t), &Device::Cpu).unwrap();
        let logits = rm
            .forward(&tokens, &Layout::contiguous(&[0], t), Some(&mut cache))
            .unwrap();
        let mut last: Vec<f32> = logits
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
            .pop()
            .unwrap();
        let mut generated = vec![];
        for (step, want) in g.step_logits.iter().enumerate() {
            let d = max_abs_diff(&last, want);
            assert!(d < 1e-4, "{arch}: step {step}: max |Δ| = {d}");
            let next = argmax(&last);
            generated.push(next);
            let pos = t + step;
            let tok = Tensor::from_vec(vec![next], (1, 1), &Device::Cpu).unwrap();
            let l = rm
                .forward(&tok, &Layout::contiguous(&[pos], 1), Some(&mut cache))
                .unwrap();
            last = l.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        }
        assert_eq!(generated, g.greedy_new_ids, "{arch}: greedy ids");
    }
}
