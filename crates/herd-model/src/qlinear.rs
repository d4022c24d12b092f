//! A frozen weight matrix in its stored (quantised) type inside the candle graph: QLoRA-style
//! training keeps the base model's bytes as they are and trains f32 adapters beside them.
//!
//! Forward: `y[.., out] = x[.., in] · Wᵀ` with herd's kernels. Backward gives the input's
//! gradient, `gx[.., in] = gy[.., out] · W`, dequantising W a block of rows at a time; the
//! weight itself gets none (it is frozen).

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use herd_kernels::ThreadPool;
use herd_kernels::pool::chunk;

use crate::error::Result;
use crate::tensor::StoredTensor;

/// The pool the training path's custom ops share (one job at a time).
fn pool() -> &'static Mutex<ThreadPool> {
    static POOL: OnceLock<Mutex<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        Mutex::new(ThreadPool::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ))
    })
}

pub fn forward(x: &Tensor, w: &Arc<StoredTensor>) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(QMatMul { w: w.clone() })?)
}

fn f32_input<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else {
        candle_core::bail!("{what}: expected f32 input")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what}: expected a contiguous input")
    };
    Ok(&v[start..end])
}

struct QMatMul {
    w: Arc<StoredTensor>,
}

impl CustomOp1 for QMatMul {
    fn name(&self) -> &'static str {
        "herd-qmatmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout, self.name())?;
        let w = self.w.as_weight();
        let dims = layout.shape().dims();
        let cols = *dims.last().unwrap_or(&0);
        if cols != w.cols {
            candle_core::bail!(
                "herd-qmatmul: input width {cols}, weight rows of {}",
                w.cols
            );
        }
        let n = x.len() / cols.max(1);
        let mut y = vec![0f32; n * w.rows];
        let mut scratch = Vec::new();
        let pool = pool().lock().unwrap_or_else(|e| e.into_inner());
        herd_kernels::matmul(&pool, w, x, n, &mut y, &mut scratch);
        let mut out = dims.to_vec();
        if let Some(l) = out.last_mut() {
            *l = w.rows;
        }
        Ok((CpuStorage::F32(y), Shape::from(out)))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            grad_res
                .contiguous()?
                .apply_op1_no_bwd(&QMatMulT { w: self.w.clone() })?,
        ))
    }
}

/// `gx[.., in] = gy[.., out] · W`.
struct QMatMulT {
    w: Arc<StoredTensor>,
}

/// Rows of W dequantised at a time.
const BLOCK: usize = 32;

impl CustomOp1 for QMatMulT {
    fn name(&self) -> &'static str {
        "herd-qmatmul-backward"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let gy = f32_input(storage, layout, self.name())?;
        let w = self.w.as_weight();
        let dims = layout.shape().dims();
        let n = gy.len() / w.rows.max(1);
        let mut gx = vec![0f32; n * w.cols];
        let out = herd_kernels::SharedMut(gx.as_mut_ptr());
        let pool = pool().lock().unwrap_or_else(|e| e.into_inner());
        pool.run(|ith, nth| {
            let tokens = chunk(n, ith, nth);
            if tokens.is_empty() {
                return;
            }
            let mut buf = vec![0f32; BLOCK * w.cols];
            for r0 in (0..w.rows).step_by(BLOCK) {
                let rows = BLOCK.min(w.rows - r0);
                for r in 0..rows {
                    herd_kernels::dequantize_row(
                        w.dtype,
                        w.row(r0 + r),
                        &mut buf[r * w.cols..(r + 1) * w.cols],
                    );
                }
                for t in tokens.clone() {
                    // SAFETY: thread `ith` alone writes the rows `tokens` of gx.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.at(t * w.cols), w.cols) };
                    for r in 0..rows {
                        let g = gy[t * w.rows + r0 + r];
                        if g != 0.0 {
                            for (d, &v) in dst.iter_mut().zip(&buf[r * w.cols..(r + 1) * w.cols]) {
                                *d += g * v;
                            }
                        }
                    }
                }
            }
        });
        let mut shape = dims.to_vec();
        if let Some(l) = shape.last_mut() {
            *l = w.cols;
        }
        Ok((CpuStorage::F32(gx), Shape::from(shape)))
    }
}
