//! Run-time dispatch to the fastest dot product this CPU has.
//!
//! The instruction set is detected once ([`isa`]); callers that loop fetch a kernel once
//! ([`quant_dot`], [`float_dot`]) and call it through a plain function pointer, so no detection
//! or type dispatch happens per row. Every kernel has the same contract as its scalar reference
//! in [`crate::dot`]; the tests in this module hold them to it.
//!
//! x86-64 has AVX2 kernels ([`x86`]); aarch64 has NEON kernels ([`arm`]), with and without the
//! `sdot` dot-product instruction. The aarch64 kernels are built and tested on an x86 host
//! under `qemu-aarch64` (see the README's "Checks").

use std::sync::OnceLock;

use crate::dot;
use crate::types::GgmlType;

/// An architecture's `float_dot`: safe wrappers that check the lengths around its F32, F16 and
/// BF16 kernels (each `unsafe fn(&[u8], &[f32]) -> f32`), and the table that hands them out.
/// `super` hands them out only after checking that the CPU has the kernels' features.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_macros)
)]
macro_rules! float_kernels {
    ($f32:path, $f16:path, $bf16:path) => {
        fn f32_f32_dot(w: &[u8], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len() * 4, "F32 dot: length mismatch");
            // SAFETY: the CPU has the kernel's features (see above); lengths checked.
            unsafe { $f32(w, x) }
        }
        fn f16_f32_dot(w: &[u8], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len() * 2, "F16 dot: length mismatch");
            // SAFETY: as `f32_f32_dot`.
            unsafe { $f16(w, x) }
        }
        fn bf16_f32_dot(w: &[u8], x: &[f32]) -> f32 {
            assert_eq!(w.len(), x.len() * 2, "BF16 dot: length mismatch");
            // SAFETY: as `f32_f32_dot`.
            unsafe { $bf16(w, x) }
        }
        pub(crate) fn float_dot(t: GgmlType) -> FloatDot {
            match t {
                GgmlType::F32 => f32_f32_dot,
                GgmlType::F16 => f16_f32_dot,
                GgmlType::BF16 => bf16_f32_dot,
                _ => panic!("float_dot called with quantised type {t}"),
            }
        }
    };
}

#[cfg(target_arch = "aarch64")]
mod arm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// An instruction-set level that has its own kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The portable reference kernels of [`crate::dot`].
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen and later).
    Avx2,
    /// aarch64 Advanced SIMD, which every aarch64 CPU has.
    Neon,
    /// aarch64 Advanced SIMD with the ARMv8.2 dot product `sdot` (Cortex-A55/A76 and later,
    /// Apple M1 and later, Graviton 2 and later).
    NeonDot,
}

impl Isa {
    /// Every level this CPU can run, slowest first (for tests and benchmarks).
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Neon, Isa::NeonDot]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }

    /// The level's short name in reports (`herd bench`'s kernels line).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon+sdot",
        }
    }

    /// Whether this CPU can run the kernels of this level.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => detect_hw() == Isa::Avx2,
            // Every aarch64 CPU has NEON; `sdot` only where detected.
            Isa::Neon => matches!(detect_hw(), Isa::Neon | Isa::NeonDot),
            Isa::NeonDot => detect_hw() == Isa::NeonDot,
        }
    }

    /// Panics unless this CPU can run the kernels of this level: every entry point that takes
    /// an `Isa` checks, as running AVX2 code on a CPU without it is undefined behaviour.
    pub(crate) fn require(self) {
        assert!(
            self.is_supported(),
            "{self:?} kernels requested on a CPU without them"
        );
    }
}

/// The level used by default: the best the CPU supports, unless the environment variable
/// `HERD_KERNELS=scalar` asks for the reference kernels (to bisect a numerical difference), or
/// `HERD_KERNELS=neon` for the NEON kernels without `sdot` on a CPU that has it (to compare).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| match std::env::var("HERD_KERNELS") {
        Ok(v) if v.eq_ignore_ascii_case("scalar") => Isa::Scalar,
        Ok(v) if v.eq_ignore_ascii_case("neon") && Isa::Neon.is_supported() => Isa::Neon,
        _ => detect_hw(),
    })
}

/// What the kernels in use are, in words, for benchmark reports: the level, and on x86-64
/// whether AVX-512 VNNI runs the quantised tiles and whether decode prefetches in software.
/// Numbers taken with different kernels are not comparable; `herd bench` prints this.
pub fn kernels() -> String {
    let level = isa().name();
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        let mut s = level.to_string();
        if x86::vnni() {
            s.push_str(", avx512-vnni tiles");
        }
        if crate::interleave::wanted(Isa::Avx2) {
            s.push_str(", grouped decode");
        }
        if x86::software_prefetch() {
            s.push_str(", software prefetch");
        }
        return s;
    }
    level.to_string()
}

/// The best level the hardware has, detected once.
fn detect_hw() -> Isa {
    static HW: OnceLock<Isa> = OnceLock::new();
    *HW.get_or_init(hw_level)
}

#[cfg(target_arch = "x86_64")]
fn hw_level() -> Isa {
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

#[cfg(target_arch = "aarch64")]
fn hw_level() -> Isa {
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        Isa::NeonDot
    } else {
        Isa::Neon
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn hw_level() -> Isa {
    Isa::Scalar
}

/// Checks that `w` and `a` hold whole blocks and the same number of them: the kernels index
/// both by the weight's block count, so this is what makes their unchecked loads sound.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
#[inline]
pub(crate) fn check(t: GgmlType, w: &[u8], a: &[u8]) {
    let at = t.vec_dot_type();
    let (wb, ab) = (t.type_size(), at.type_size());
    assert!(
        w.len().is_multiple_of(wb) && a.len().is_multiple_of(ab) && w.len() / wb == a.len() / ab,
        "{t} dot: {} weight bytes and {} activation bytes do not match",
        w.len(),
        a.len()
    );
}

/// A dot product of a quantised (or F16/BF16) weight row with an activation row in the
/// weight type's `vec_dot_type`.
pub type QuantDot = fn(&[u8], &[u8]) -> f32;
/// A dot product of a quantised weight row with a Q8_0/Q8_1 activation row and its per-block
/// extras (scale as f32, quant sum): the matrix product's decode kernels.
pub(crate) type AuxDot = fn(&[u8], &[u8], &[u8]) -> f32;

/// The extras-taking dot product for weights of type `t`, where `isa` has one.
pub(crate) fn quant_dot_aux(isa: Isa, t: GgmlType) -> Option<AuxDot> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            isa.require();
            x86::quant_dot_aux(t)
        }
        // No such kernels elsewhere; `t` is only read on x86-64.
        _ => {
            let _ = t;
            None
        }
    }
}

/// The dot product for weights of type `t` with activations whose extras are laid out in
/// pairs of blocks (see `gemm::AuxKind::Pairs`), where `isa` has one.
pub(crate) fn quant_dot_pairs(isa: Isa, t: GgmlType) -> Option<AuxDot> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            isa.require();
            x86::quant_dot_pairs(t)
        }
        // No such kernels elsewhere; `t` is only read on x86-64.
        _ => {
            let _ = t;
            None
        }
    }
}

/// A dot product of a float weight row (F32/F16/BF16 bytes) with f32 activations.
pub type FloatDot = fn(&[u8], &[f32]) -> f32;

/// The quantised dot product for weights of type `t` at level `isa`.
///
/// # Panics
/// For F32 (use [`float_dot`]) and the activation-only types Q8_1/Q8_K; for a level the CPU
/// does not have.
pub fn quant_dot(isa: Isa, t: GgmlType) -> QuantDot {
    match isa {
        Isa::Scalar => scalar_quant_dot(t),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            isa.require();
            x86::quant_dot(t)
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => {
            isa.require();
            arm::quant_dot(isa == Isa::NeonDot, t)
        }
        _ => panic!("{isa:?} kernels requested on a CPU of another architecture"),
    }
}

/// The float dot product for weights of type `t` (F32, F16, BF16) at level `isa`.
pub fn float_dot(isa: Isa, t: GgmlType) -> FloatDot {
    match isa {
        Isa::Scalar => match t {
            GgmlType::F32 => |w, x| dot::dot_float(GgmlType::F32, w, x),
            GgmlType::F16 => |w, x| dot::dot_float(GgmlType::F16, w, x),
            GgmlType::BF16 => |w, x| dot::dot_float(GgmlType::BF16, w, x),
            _ => panic!("float_dot called with quantised type {t}"),
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            isa.require();
            x86::float_dot(t)
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => {
            isa.require();
            arm::float_dot(t)
        }
        _ => panic!("{isa:?} kernels requested on a CPU of another architecture"),
    }
}

fn scalar_quant_dot(t: GgmlType) -> QuantDot {
    // Non-capturing closures, one per type, so the type match happens here and not per call.
    match t {
        GgmlType::F16 => |w, a| dot::dot_quant(GgmlType::F16, w, a),
        GgmlType::BF16 => |w, a| dot::dot_quant(GgmlType::BF16, w, a),
        GgmlType::Q4_0 => |w, a| dot::dot_quant(GgmlType::Q4_0, w, a),
        GgmlType::Q4_1 => |w, a| dot::dot_quant(GgmlType::Q4_1, w, a),
        GgmlType::Q5_0 => |w, a| dot::dot_quant(GgmlType::Q5_0, w, a),
        GgmlType::Q5_1 => |w, a| dot::dot_quant(GgmlType::Q5_1, w, a),
        GgmlType::Q8_0 => |w, a| dot::dot_quant(GgmlType::Q8_0, w, a),
        GgmlType::Q2_K => |w, a| dot::dot_quant(GgmlType::Q2_K, w, a),
        GgmlType::Q3_K => |w, a| dot::dot_quant(GgmlType::Q3_K, w, a),
        GgmlType::Q4_K => |w, a| dot::dot_quant(GgmlType::Q4_K, w, a),
        GgmlType::Q5_K => |w, a| dot::dot_quant(GgmlType::Q5_K, w, a),
        GgmlType::Q6_K => |w, a| dot::dot_quant(GgmlType::Q6_K, w, a),
        GgmlType::F32 | GgmlType::Q8_1 | GgmlType::Q8_K => {
            panic!("quant_dot called with {t}, which has no quantised dot product")
        }
    }
}

/// Dot product of a float weight row with f32 activations, at the best level.
#[inline]
pub fn dot_float(t: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    float_dot(isa(), t)(w, x)
}

/// Dot product of a quantised weight row with activations in its `vec_dot_type`, at the best
/// level.
#[inline]
pub fn dot_quant(t: GgmlType, w: &[u8], a: &[u8]) -> f32 {
    quant_dot(isa(), t)(w, a)
}

/// Quantises one activation row exactly as [`crate::quantize::quantize_activations`] does
/// (same bytes), at level `isa`.
pub fn quantize_activations(isa: Isa, t: GgmlType, src: &[f32], dst: &mut [u8]) {
    isa.require();
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if x86::quantize_activations(t, src, dst) => {}
        _ => crate::quantize::quantize_activations(t, src, dst),
    }
}

#[cfg(test)]
pub(crate) mod tests;
