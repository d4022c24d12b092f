//! Reading a GGUF file: the header is parsed from the memory map with every length checked
//! against the bytes that remain, so a corrupt file is an error naming the place, never a panic
//! or a huge allocation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herd_kernels::GgmlType;
use memmap2::Mmap;

use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC};
use crate::error::{Error, Result};
use crate::tensor::StoredTensor;

/// Dimensions a ggml tensor can have.
const MAX_DIMS: u32 = 4;
/// Arrays nest at most this deep (real files use one level).
const MAX_NESTING: usize = 4;

/// ggml type ids that exist but herd does not read, for the error message.
fn ggml_type_name(id: u32) -> &'static str {
    match id {
        4 => "Q4_2 (removed from ggml)",
        5 => "Q4_3 (removed from ggml)",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

#[derive(Clone, Debug)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (the row length).
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl GgufTensorInfo {
    /// The shape in PyTorch order, outermost first.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An open GGUF file: its metadata and tensor table, with the data memory-mapped.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    /// Keys in file order (metadata is also looked up by name).
    pub key_order: Vec<String>,
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
    map: Arc<Mmap>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str, msg: impl Into<String>) -> Error {
        Error::Malformed {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            what: what.to_string(),
            msg: msg.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(self.err(
                what,
                format!("needs {n} bytes but the file ends after {remaining} (truncated file?)"),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length that must fit in what remains of the file, `unit` bytes per item at least.
    fn len(&mut self, what: &str, unit: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(unit.max(1) as u64) > remaining {
            self.pos = at;
            return Err(self.err(
                what,
                format!("declares a length of {n} but only {remaining} bytes remain in the file (truncated or corrupt?)"),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.len(what, 1)?;
        let at = self.pos;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|e| Error::Malformed {
            path: self.path.to_path_buf(),
            offset: at as u64,
            what: what.to_string(),
            msg: format!("is not valid UTF-8 ({e})"),
        })
    }

    fn value(&mut self, t: ValueType, what: &str, depth: usize) -> Result<Value> {
        Ok(match t {
            ValueType::U8 => Value::U8(self.take(1, what)?[0]),
            ValueType::I8 => Value::I8(self.take(1, what)?[0] as i8),
            ValueType::Bool => {
                let b = self.take(1, what)?[0];
                match b {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    _ => return Err(self.err(what, format!("bool byte is {b}, not 0 or 1"))),
                }
            }
            ValueType::U16 => {
                let b = self.take(2, what)?;
                Value::U16(u16::from_le_bytes([b[0], b[1]]))
            }
            ValueType::I16 => {
                let b = self.take(2, what)?;
                Value::I16(i16::from_le_bytes([b[0], b[1]]))
            }
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(self.u32(what)? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(what)?)),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(self.u64(what)? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(what)?)),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                if depth >= MAX_NESTING {
                    return Err(self.err(what, "arrays nested too deeply"));
                }
                let et_id = self.u32(what)?;
                let et = ValueType::from_id(et_id)
                    .ok_or_else(|| self.err(what, format!("unknown array element type {et_id}")))?;
                // Strings and arrays take at least 8 bytes each (their length).
                let unit = et.fixed_size().unwrap_or(8);
                let n = self.len(what, unit)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(et, what, depth + 1)?);
                }
                Value::Array(et, items)
            }
        })
    }
}

impl GgufFile {
    /// Maps and parses `path`. Tensor data is not read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; herd does not defend against another process
        // truncating a model file while it is in use (neither does llama.cpp).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path, Arc::new(map))
    }

    fn parse(path: &Path, map: Arc<Mmap>) -> Result<Self> {
        let mut c = Cursor {
            buf: &map[..],
            pos: 0,
            path,
        };
        let magic = c.take(4, "magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(magic).into_owned(),
            });
        }
        let version = c.u32("version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::UnsupportedGgufVersion {
                    path: path.to_path_buf(),
                    version,
                    hint: "; version 1 files are from 2023: convert them again with a current llama.cpp",
                });
            }
            _ => {
                return Err(Error::UnsupportedGgufVersion {
                    path: path.to_path_buf(),
                    version,
                    hint: "",
                });
            }
        }
        // Each tensor info takes at least 8 + 4 + 4 + 8 bytes, each key/value 8 + 4.
        let n_tensors = c.len("tensor count", 24)?;
        let n_kv = c.len("metadata count", 12)?;

        let mut metadata = BTreeMap::new();
        let mut key_order = Vec::with_capacity(n_kv);
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let what = format!("metadata '{key}'");
            let tid = c.u32(&what)?;
            let t = ValueType::from_id(tid)
                .ok_or_else(|| c.err(&what, format!("unknown value type {tid}")))?;
            let v = c.value(t, &what, 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(c.err(&what, "key appears twice"));
            }
            key_order.push(key);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "general.alignment is {}, not a power of two",
                            v.display_short()
                        ),
                    ));
                }
            },
        };

        let mut infos = Vec::with_capacity(n_tensors);
        let mut names = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor #{i} name"))?;
            let what = format!("tensor '{name}'");
            let n_dims = c.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.err(
                    &what,
                    format!("has {n_dims} dimensions; ggml allows 1 to {MAX_DIMS}"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&what)?);
            }
            let tid = c.u32(&what)?;
            let offset = c.u64(&what)?;
            let dtype = GgmlType::from_id(tid).ok_or_else(|| Error::UnsupportedTensorType {
                path: path.to_path_buf(),
                tensor: name.clone(),
                type_id: tid,
                type_name: ggml_type_name(tid).to_string(),
                supported: supported_types(),
            })?;
            let elems = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|&n| n < (1 << 48))
                .ok_or_else(|| c.err(&what, format!("dimensions {dims:?} overflow")))?;
            if dims.contains(&0) {
                return Err(c.err(&what, format!("has an empty dimension: {dims:?}")));
            }
            let row_bytes = dtype.row_bytes(dims[0] as usize).ok_or_else(|| {
                c.err(
                    &what,
                    format!(
                        "rows of {} elements are not whole {dtype} blocks of {}",
                        dims[0],
                        dtype.block_size()
                    ),
                )
            })? as u64;
            let size = row_bytes * (elems / dims[0]);
            if offset % alignment != 0 {
                return Err(c.err(
                    &what,
                    format!("data offset {offset} is not a multiple of the alignment {alignment}"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(c.err(&what, "tensor name appears twice"));
            }
            infos.push(GgufTensorInfo {
                name,
                dims,
                dtype,
                offset,
                size,
            });
        }

        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        let file_len = map.len() as u64;
        for t in &infos {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.size));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "tensor '{}' ({} {:?}, {} bytes at data offset {}) extends past the end of the file ({} bytes): truncated or corrupt",
                            t.name,
                            t.dtype,
                            t.shape(),
                            t.size,
                            t.offset,
                            file_len
                        ),
                    ));
                }
            }
        }

        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            key_order,
            tensors: infos,
            alignment,
            data_offset,
            map,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The tensor's bytes as a window into the map.
    pub fn tensor(&self, info: &GgufTensorInfo) -> StoredTensor {
        StoredTensor::mapped(
            info.dtype,
            info.shape(),
            self.map.clone(),
            (self.data_offset + info.offset) as usize,
            info.size as usize,
        )
    }

    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }
}

fn supported_types() -> String {
    GgmlType::ALL
        .iter()
        .filter(|t| t.is_weight_type())
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}
