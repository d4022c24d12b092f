//! Next-token cross-entropy on the trained positions of a batch.

use candle_core::{D, Device, Tensor};

use crate::Result;

/// A padded batch: `[B, T]` token ids, which positions are targets, where each token sits.
pub struct Batch {
    pub ids: Vec<Vec<u32>>,
    pub train: Vec<Vec<bool>>,
    pub layout: herd_model::reference::Layout,
}

impl Batch {
    /// Pads `seqs` to the longest of them (padding is never attended to nor trained).
    pub fn new(seqs: &[&herd_data::Sequence]) -> Self {
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let pad = |v: &[u32]| {
            v.iter()
                .copied()
                .chain(std::iter::repeat(0))
                .take(t)
                .collect::<Vec<u32>>()
        };
        Batch {
            ids: seqs.iter().map(|s| pad(&s.ids)).collect(),
            train: seqs
                .iter()
                .map(|s| {
                    s.train
                        .iter()
                        .copied()
                        .chain(std::iter::repeat(false))
                        .take(t)
                        .collect()
                })
                .collect(),
            layout: herd_model::reference::Layout {
                positions: seqs
                    .iter()
                    .map(|s| {
                        s.positions
                            .iter()
                            .copied()
                            .chain(std::iter::repeat(0))
                            .take(t)
                            .collect()
                    })
                    .collect(),
                valid: seqs
                    .iter()
                    .map(|s| (0..t).map(|i| i < s.len()).collect())
                    .collect(),
                segments: Some(
                    seqs.iter()
                        .map(|s| {
                            s.segments
                                .iter()
                                .copied()
                                .chain(std::iter::repeat(u32::MAX))
                                .take(t)
                                .collect()
                        })
                        .collect(),
                ),
            },
        }
    }

    /// Target tokens in the batch.
    pub fn targets(&self) -> usize {
        self.train.iter().flatten().filter(|&&t| t).count()
    }

    pub fn tokens(&self) -> usize {
        self.layout.valid.iter().flatten().filter(|&&v| v).count()
    }

    pub fn ids_tensor(&self) -> Result<Tensor> {
        let (b, t) = (self.ids.len(), self.ids.first().map_or(0, Vec::len));
        Ok(Tensor::from_vec(self.ids.concat(), (b, t), &Device::Cpu)?)
    }
}

/// Sum of `-log p(token)` over the batch's targets: logits `[B, T, V]` at position `i - 1`
/// predict token `i` when `train[i]`.
pub fn loss_sum(logits: &Tensor, batch: &Batch) -> Result<Tensor> {
    let (b, t, _v) = logits.dims3()?;
    if t < 2 {
        return Ok(Tensor::zeros((), candle_core::DType::F32, &Device::Cpu)?);
    }
    // [B, T-1, V]
    let l = logits.narrow(1, 0, t - 1)?.contiguous()?;
    let max = l.max_keepdim(D::Minus1)?.detach();
    let lse = (l
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + &max)?;
    let targets: Vec<u32> = batch
        .ids
        .iter()
        .flat_map(|row| row[1..].iter().copied())
        .collect();
    let targets = Tensor::from_vec(targets, (b, t - 1, 1), &Device::Cpu)?;
    // log p = logit[target] - logsumexp, [B, T-1]
    let picked = l.gather(&targets, D::Minus1)?.squeeze(D::Minus1)?;
    let logp = (picked - lse.squeeze(D::Minus1)?)?;
    let mask: Vec<f32> = batch
        .train
        .iter()
        .flat_map(|row| row[1..].iter().map(|&m| m as u8 as f32))
        .collect();
    let mask = Tensor::from_vec(mask, (b, t - 1), &Device::Cpu)?;
    Ok((logp * mask)?.sum_all()?.neg()?)
}
