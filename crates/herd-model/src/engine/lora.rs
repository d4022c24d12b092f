//! Low-rank adapters applied at run time: `y = W·x + scale · B·(A·x)` beside each adapted
//! projection, so the base weights stay memory-mapped in their stored (possibly quantised) type.

use herd_kernels::GgmlType;
use herd_kernels::matmul::matmul;
use herd_kernels::pool::ThreadPool;

use crate::error::{Error, Result};
use crate::tensor::StoredTensor;

/// One adapted projection: `A [r, in]`, `B [out, r]` (f32, in the engine's row order).
pub struct LoraPair {
    a: StoredTensor,
    b: StoredTensor,
    rank: usize,
    scale: f32,
}

impl LoraPair {
    /// `a` is `[rank, inp]` and `b` is `[out, rank]`, row-major.
    pub fn new(
        a: &[f32],
        b: &[f32],
        rank: usize,
        inp: usize,
        out: usize,
        scale: f32,
    ) -> Result<Self> {
        if rank == 0 || a.len() != rank * inp || b.len() != out * rank {
            return Err(Error::Usage(format!(
                "LoRA matrices of {} and {} values do not fit rank {rank}, {inp} inputs, {out} outputs",
                a.len(),
                b.len()
            )));
        }
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        Ok(LoraPair {
            a: StoredTensor::owned(GgmlType::F32, vec![rank, inp], bytes(a)),
            b: StoredTensor::owned(GgmlType::F32, vec![out, rank], bytes(b)),
            rank,
            scale,
        })
    }

    fn inputs(&self) -> usize {
        self.a.row_len()
    }

    fn outputs(&self) -> usize {
        self.b.rows()
    }
}

/// The adapted projections of one layer (None: that projection is not adapted).
#[derive(Default)]
pub struct LayerLora {
    pub q: Option<LoraPair>,
    pub k: Option<LoraPair>,
    pub v: Option<LoraPair>,
    pub o: Option<LoraPair>,
    pub gate: Option<LoraPair>,
    pub up: Option<LoraPair>,
    pub down: Option<LoraPair>,
}

impl LayerLora {
    /// Each pair with the (inputs, outputs) its projection has, for checking shapes.
    pub(crate) fn pairs(&self) -> [(&'static str, Option<&LoraPair>); 7] {
        [
            ("q", self.q.as_ref()),
            ("k", self.k.as_ref()),
            ("v", self.v.as_ref()),
            ("o", self.o.as_ref()),
            ("gate", self.gate.as_ref()),
            ("up", self.up.as_ref()),
            ("down", self.down.as_ref()),
        ]
    }
}

/// Checks that `pair` fits a projection of `inp` inputs and `out` outputs.
pub(crate) fn check(
    pair: &LoraPair,
    layer: usize,
    name: &str,
    inp: usize,
    out: usize,
) -> Result<()> {
    if pair.inputs() != inp || pair.outputs() != out {
        return Err(Error::Usage(format!(
            "LoRA for layer {layer} {name}: [{}→{}] does not fit the projection [{inp}→{out}]",
            pair.inputs(),
            pair.outputs()
        )));
    }
    Ok(())
}

/// Scratch for [`apply`], grown to the largest batch and then reused.
#[derive(Default)]
pub(crate) struct Scratch {
    low: Vec<f32>,
    delta: Vec<f32>,
}

/// `y[n, out] += scale · (x[n, in] · Aᵀ) · Bᵀ`.
pub(crate) fn apply(
    pool: &ThreadPool,
    pair: &LoraPair,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    s: &mut Scratch,
    quant: &mut Vec<u8>,
) {
    let (r, out) = (pair.rank, pair.outputs());
    if s.low.len() < n * r {
        s.low.resize(n * r, 0.0);
    }
    if s.delta.len() < n * out {
        s.delta.resize(n * out, 0.0);
    }
    matmul(pool, pair.a.as_weight(), x, n, &mut s.low[..n * r], quant);
    matmul(
        pool,
        pair.b.as_weight(),
        &s.low[..n * r],
        n,
        &mut s.delta[..n * out],
        quant,
    );
    y[..n * out]
        .iter_mut()
        .zip(&s.delta[..n * out])
        .for_each(|(y, d)| *y += pair.scale * d);
}
