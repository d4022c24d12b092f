//! Each sequence's keys and values ([`KvCache`]), in f32 or f16 ([`CacheType`]).

use herd_kernels::attention::Rows;

use crate::error::{Error, Result};
use crate::spec::ModelSpec;

/// The element type of a [`KvCache`]'s keys and values.
///
/// f16 halves the cache's memory and the bytes each decoded token reads from it, as
/// llama.cpp's default cache does; it rounds keys and values to 11 significant bits, which
/// moves logits by about 1e-3. f32, the engine's default, keeps them exactly as computed (the
/// commands that generate text choose f16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheType {
    #[default]
    F32,
    F16,
}

impl CacheType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            CacheType::F32 => 4,
            CacheType::F16 => 2,
        }
    }

    /// Bytes of the keys and values of `tokens` tokens of a model of `spec`.
    pub fn bytes(self, spec: &ModelSpec, tokens: usize) -> usize {
        2 * spec.n_layers * spec.kv_dim() * tokens * self.size()
    }

    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
        }
    }
}

impl std::str::FromStr for CacheType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(CacheType::F32),
            "f16" => Ok(CacheType::F16),
            _ => Err(format!("cache type {s:?}: f16 or f32")),
        }
    }
}

impl std::fmt::Display for CacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A cache's keys or values, in its element type.
pub(super) enum Store {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Store {
    fn new(t: CacheType, n: usize) -> Store {
        match t {
            CacheType::F32 => Store::F32(vec![0.0; n]),
            CacheType::F16 => Store::F16(vec![0; n]),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Store::F32(x) => x.len(),
            Store::F16(x) => x.len(),
        }
    }

    /// Writes `src` at element `at`, rounded to the store's type.
    pub(super) fn put(&mut self, at: usize, src: &[f32]) {
        match self {
            Store::F32(x) => x[at..at + src.len()].copy_from_slice(src),
            Store::F16(x) => herd_kernels::vec::f32_to_f16(src, &mut x[at..at + src.len()]),
        }
    }

    /// Copies `len` elements of `other` from `src` to `dst`, converting between types.
    pub(super) fn copy_from(&mut self, dst: usize, other: &Store, src: usize, len: usize) {
        let (d, s) = (dst..dst + len, src..src + len);
        match (self, other) {
            (Store::F32(x), Store::F32(y)) => x[d].copy_from_slice(&y[s]),
            (Store::F16(x), Store::F16(y)) => x[d].copy_from_slice(&y[s]),
            (Store::F16(x), Store::F32(y)) => herd_kernels::vec::f32_to_f16(&y[s], &mut x[d]),
            (Store::F32(x), Store::F16(y)) => herd_kernels::vec::f16_to_f32(&y[s], &mut x[d]),
        }
    }

    /// The elements from `at` on.
    pub(super) fn rows(&self, at: usize) -> Rows<'_> {
        match self {
            Store::F32(x) => Rows::F32(&x[at..]),
            Store::F16(x) => Rows::F16(&x[at..]),
        }
    }
}

/// Keys and values of one sequence, for every layer, in a buffer allocated up front.
///
/// Head-major: each key/value head's rows are one run of `capacity · head_dim` elements, so
/// the attention over one head reads one stream. Token-major rows (`[capacity, kv_dim]`) put
/// the other heads between two rows of one head; decoding at 2048 cached tokens then took 2.8
/// times as long per head, from memory, as the hardware prefetcher fetched the lines between.
pub struct KvCache {
    /// `[n_layers, n_kv_heads, capacity, head_dim]`
    pub(super) k: Store,
    pub(super) v: Store,
    pub(super) len: usize,
    pub(super) capacity: usize,
    pub(super) kv_dim: usize,
    pub(super) head_dim: usize,
}

impl KvCache {
    /// An empty cache of `t` for up to `capacity` tokens of a model of `spec`.
    pub(super) fn new(spec: &ModelSpec, capacity: usize, t: CacheType) -> KvCache {
        let kv_dim = spec.kv_dim();
        let n = spec.n_layers * capacity * kv_dim;
        KvCache {
            k: Store::new(t, n),
            v: Store::new(t, n),
            len: 0,
            capacity,
            kv_dim,
            head_dim: spec.head_dim,
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The keys' and values' element type.
    pub fn cache_type(&self) -> CacheType {
        match self.k {
            Store::F32(_) => CacheType::F32,
            Store::F16(_) => CacheType::F16,
        }
    }

    /// Forgets everything after the first `len` tokens (to rewind or reuse a prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes this cache hold the first `n` tokens of `other` (a cache of the same model),
    /// copying their keys and values: `n` completions of one prompt share its prefill. A
    /// cache of the other element type converts them.
    pub fn copy_prefix_from(&mut self, other: &KvCache, n: usize) -> Result<()> {
        if other.kv_dim != self.kv_dim
            || other.head_dim != self.head_dim
            || other.k.len() / other.capacity.max(1) != self.k.len() / self.capacity.max(1)
        {
            return Err(Error::Usage(
                "copying between caches of different models".into(),
            ));
        }
        if n > other.len || n > self.capacity {
            return Err(Error::Usage(format!(
                "cannot copy {n} tokens: the source holds {}, this cache {} at most",
                other.len, self.capacity
            )));
        }
        let layers = self.k.len() / (self.capacity * self.kv_dim).max(1);
        let len = n * self.head_dim;
        for l in 0..layers {
            for h in 0..self.kv_dim / self.head_dim.max(1) {
                let (src, dst) = (other.head_offset(l, h), self.head_offset(l, h));
                self.k.copy_from(dst, &other.k, src, len);
                self.v.copy_from(dst, &other.v, src, len);
            }
        }
        self.len = n;
        Ok(())
    }

    /// Where key/value head `head` of layer `layer` starts: its `capacity` rows of `head_dim`.
    pub(super) fn head_offset(&self, layer: usize, head: usize) -> usize {
        (layer * self.kv_dim + head * self.head_dim) * self.capacity
    }
}
